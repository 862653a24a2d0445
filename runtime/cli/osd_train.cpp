// osd-train: pretrain a byte-level model on text, or distil a draft from a teacher offline.
// Checkpoints are HF folders (config.json + model.safetensors) that osd-serve and HF transformers
// load; dir/trainer/ holds the optimizer and step for --resume.
//
//   osd-train --data python=py.train.txt --data c=c.train.txt --dim 256 --layers 4 --out target
//   osd-train --data py.train.txt --teacher target --loss fkl --dim 96 --layers 1 --out draft
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/core/tensor_util.hpp"
#include "models/distillation/trainer.hpp"

namespace {

osd::CorpusFile parse_file_arg(const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos) return {"", arg};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

std::string human_duration(double s) {
  char buf[32];
  if (s < 0 || !std::isfinite(s)) return "?";
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  return buf;
}

// One line, redrawn in place on a terminal; on a pipe, printed every `every` steps.
void progress(const osd::StepReport& r, int64_t total, double tok_per_s, double eta_s,
              double eval_loss, bool tty) {
  const int width = 24;
  const int filled = static_cast<int>(width * r.step / total);
  std::string bar(filled, '#');
  bar.resize(width, '.');
  char line[256];
  std::snprintf(line, sizeof line, "[%s] %lld/%lld loss %.3f%s lr %.2e %.0f tok/s ETA %s",
                bar.c_str(), static_cast<long long>(r.step), static_cast<long long>(total), r.loss,
                r.skipped ? " (skipped)" : "", r.lr, tok_per_s, human_duration(eta_s).c_str());
  std::string s = line;
  if (std::isfinite(eval_loss)) {
    char ev[48];
    std::snprintf(ev, sizeof ev, " eval %.3f", eval_loss);
    s += ev;
  }
  if (tty)
    std::cerr << "\r" << s << "\033[K" << std::flush;
  else
    std::cerr << s << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "osd-train: pretrain a byte-level model or distil a draft offline; writes HF checkpoints"};
  std::vector<std::string> data_args, eval_args;
  std::string out, init, teacher_dir, preset, device = "cpu", tokenizer = "bytes";
  osd::ModelConfig cfg;
  cfg.vocab_size = 256;
  cfg.hidden_size = 128;
  cfg.num_layers = 2;
  cfg.num_heads = 4;
  cfg.num_kv_heads = 0;
  cfg.intermediate_size = 0;
  cfg.max_position_embeddings = 1024;
  cfg.tie_word_embeddings = false;
  osd::TrainOptions opt;
  int64_t save_every = 0, threads = 0, model_seed = -1;
  double time_budget = 0;
  double eval_fraction = 0.05;
  bool resume = false, no_bf16 = false, json = false;
  app.add_option("--data", data_args,
                 "training text: [domain=]FILE (.txt or .jsonl with {\"text\": ...}); repeat")
      ->required();
  app.add_option("--eval", eval_args,
                 "held-out text: [domain=]FILE; domains without one hold out --eval-fraction");
  app.add_option("--eval-fraction", eval_fraction)->capture_default_str();
  app.add_option("--out", out, "checkpoint folder (HF format)")->required();
  app.add_option("--tokenizer", tokenizer,
                 "bytes, a tokenizer.json, a SentencePiece .model, or a checkpoint folder; its files are "
                 "copied next to the weights")
      ->capture_default_str();
  auto* g = app.add_option_group("model", "a new model (ignored with --init or --resume)");
  g->add_option("--preset", preset, "start from a preset's shape");
  g->add_option("--dim", cfg.hidden_size)->capture_default_str();
  g->add_option("--layers", cfg.num_layers)->capture_default_str();
  g->add_option("--heads", cfg.num_heads)->capture_default_str();
  g->add_option("--kv-heads", cfg.num_kv_heads, "0: = heads")->capture_default_str();
  g->add_option("--ffn", cfg.intermediate_size, "0: ~8/3 dim rounded to 32")->capture_default_str();
  g->add_option("--vocab", cfg.vocab_size)->capture_default_str();
  g->add_option("--max-pos", cfg.max_position_embeddings)->capture_default_str();
  g->add_flag("--tie", cfg.tie_word_embeddings, "tie input and output embeddings");
  g->add_option("--model-seed", model_seed, "weight init seed (default: --seed)");
  app.add_option("--init", init, "continue from this HF checkpoint's weights (fresh optimizer)");
  app.add_option("--teacher", teacher_dir, "teacher checkpoint for distillation losses");
  app.add_option("--loss", opt.loss, "ce | fkl | rkl | jsd | tvd")->capture_default_str();
  app.add_option("--jsd-beta", opt.jsd_beta)->capture_default_str();
  app.add_option("--steps", opt.steps)->capture_default_str();
  app.add_option("--batch", opt.batch)->capture_default_str();
  app.add_option("--seq-len", opt.seq_len)->capture_default_str();
  app.add_option("--lr", opt.lr)->capture_default_str();
  app.add_option("--min-lr-ratio", opt.min_lr_ratio)->capture_default_str();
  app.add_option("--warmup", opt.warmup)->capture_default_str();
  app.add_option("--weight-decay", opt.weight_decay)->capture_default_str();
  app.add_option("--clip", opt.clip)->capture_default_str();
  app.add_option("--eval-every", opt.eval_every)->capture_default_str();
  app.add_option("--eval-batches", opt.eval_batches, "per domain")->capture_default_str();
  app.add_option("--save-every", save_every, "steps between checkpoints (0: at the end only)")
      ->capture_default_str();
  app.add_option("--seed", opt.seed)->capture_default_str();
  app.add_option("--time-budget", time_budget, "stop (and save) after this many seconds of training (0: no limit)")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_option("--device", device, "cpu | cuda | cuda:N")->capture_default_str();
  app.add_flag("--no-bf16", no_bf16, "train in float32 on CUDA too");
  app.add_flag("--resume", resume,
               "continue the run saved in --out (weights, optimizer, step, data order)");
  app.add_option("--threads", threads, "libtorch threads (0: cores)")->capture_default_str();
  app.add_flag("--json", json, "print a JSON summary as the last line");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0)
    at::set_num_threads(static_cast<int>(threads));
  else
    osd::init_torch_threads();
  opt.bf16 = !no_bf16;
  const bool tty = isatty(STDERR_FILENO);
  if (opt.warmup >= opt.steps)
    std::cerr << "osd-train: warning: --warmup " << opt.warmup << " is not shorter than --steps " << opt.steps
              << ": the learning rate is still warming up at the last step (it reaches " << opt.steps << "/"
              << opt.warmup << " of --lr) and never decays; lower --warmup (e.g. --warmup " << opt.steps / 10 << ")"
              << std::endl;
  try {
    auto tok = osd::load_text_tokenizer(tokenizer);
    std::vector<osd::CorpusFile> train, eval;
    for (const auto& a : data_args) train.push_back(parse_file_arg(a));
    for (const auto& a : eval_args) eval.push_back(parse_file_arg(a));
    auto corpus = osd::TextCorpus::load(train, eval, eval_fraction, tok);
    if (tokenizer != "bytes" && cfg.vocab_size == 256) cfg.vocab_size = tok->vocab_size();  // --vocab not given
    const c10::Device dev(device);
    // --resume reads the newest intact checkpoint: out, or out.previous when out is damaged.
    std::string resume_from, resume_warning;
    if (resume) resume_from = osd::Trainer::checkpoint_to_resume(out, &resume_warning);
    if (!resume_warning.empty()) std::cerr << "osd-train: warning: " << resume_warning << std::endl;
    const bool resuming = !resume_from.empty();
    std::shared_ptr<osd::Transformer> model;
    if (resuming || !init.empty()) {
      model = osd::load_hf_checkpoint(resuming ? resume_from : init, dev, osd::DType::f32);
    } else {
      if (!preset.empty()) {
        auto p = osd::ModelConfig::preset(preset);
        if (!p) throw osd::Error("unknown preset '" + preset + "'");
        cfg = *p;
      } else {
        cfg.name = "osd-train";
        if (cfg.num_kv_heads == 0) cfg.num_kv_heads = cfg.num_heads;
        if (cfg.intermediate_size == 0)
          cfg.intermediate_size = (cfg.hidden_size * 8 / 3 + 31) / 32 * 32;
      }
      cfg.dtype = osd::DType::f32;
      cfg.finalize();
      if (auto err = cfg.validate(); !err.empty()) throw osd::Error("model: " + err);
      model = std::make_shared<osd::Transformer>(
          cfg, model_seed >= 0 ? uint64_t(model_seed) : opt.seed, dev);
    }
    if (model->config().vocab_size < tok->vocab_size())
      throw osd::Error("the model's vocabulary (" + std::to_string(model->config().vocab_size) +
                       ") is smaller than the tokenizer's (" + std::to_string(tok->vocab_size()) + ")");
    std::shared_ptr<osd::Transformer> teacher;
    if (!teacher_dir.empty()) {
      teacher = osd::load_hf_checkpoint(teacher_dir, dev,
                                        dev.is_cuda() ? osd::DType::bf16 : osd::DType::f32);
      for (auto& p : teacher->parameters()) p.set_requires_grad(false);
      const int64_t teacher_vocab = teacher->config().vocab_size, student_vocab = model->config().vocab_size;
      if (teacher_vocab != student_vocab) {
        const bool new_model = !resuming && init.empty();
        throw osd::Error(
            "the teacher " + teacher_dir + " has a vocabulary of " + std::to_string(teacher_vocab) +
            " tokens, the student " + std::to_string(student_vocab) + " (tokenizer " + tok->name() + ", " +
            std::to_string(tok->vocab_size()) + " tokens)" +
            (new_model ? "; the student must use the teacher's tokenizer: add --tokenizer " + teacher_dir +
                             " (or the tokenizer file the teacher was trained with)" +
                             (app.count("--vocab") ? " and drop --vocab" : "")
                       : "; --init and --resume keep their checkpoint's vocabulary: start from a checkpoint "
                         "with the teacher's vocabulary, or train a new student with --tokenizer " + teacher_dir));
      }
    }
    osd::Trainer trainer(model, opt, corpus, teacher);
    if (resuming) trainer.resume(resume_from);
    std::cerr << "osd-train: " << model->config().num_parameters() << " parameters ("
              << model->config().num_layers << " layers, dim " << model->config().hidden_size
              << "), " << corpus.train_tokens() << " training tokens (" << tok->name() << ") in " << corpus.domains().size()
              << " domain(s), loss " << opt.loss << ", " << device
              << (resuming ? ", resumed at step " + std::to_string(trainer.step()) : "")
              << std::endl;

    auto save = [&] {  // float32 weights: resume continues exactly
      // The tokenizer goes beside the weights (osd-serve and HF tools find it there), sealed with them.
      trainer.save(out, [&](const std::string& folder) { osd::save_tokenizer_files(tokenizer, folder); });
    };
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t start_step = trainer.step();
    double eval_loss = std::nan(""), last_loss = std::nan("");
    int64_t skipped = 0;
    const int64_t print_every = std::max<int64_t>(1, opt.steps / 50);
    bool out_of_time = false;
    while (trainer.step() < opt.steps) {
      if (time_budget > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > time_budget) {
        out_of_time = true;
        std::cerr << "\nosd-train: --time-budget " << time_budget << " s reached at step " << trainer.step() << " of "
                  << opt.steps << std::endl;
        break;
      }
      auto r = trainer.train_step();
      skipped += r.skipped;
      if (!r.skipped) last_loss = r.loss;
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double done = double(trainer.step() - start_step);
      const double tok_s = done * opt.batch * opt.seq_len / std::max(1e-9, elapsed);
      const double eta = elapsed / std::max(1.0, done) * double(opt.steps - trainer.step());
      const bool eval_now = (opt.eval_every > 0 && trainer.step() % opt.eval_every == 0) ||
                            trainer.step() == opt.steps;
      if (eval_now) eval_loss = trainer.evaluate().loss;
      if (tty || eval_now || trainer.step() % print_every == 0)
        progress(r, opt.steps, tok_s, eta, eval_loss, tty);
      if (save_every > 0 && trainer.step() % save_every == 0 && trainer.step() < opt.steps) save();
    }
    if (tty) std::cerr << "\n";
    save();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto ev = trainer.evaluate();
    std::cout << "osd-train: wrote " << out << " after " << trainer.step() << " steps ("
              << trainer.tokens_seen() << " tokens) in " << human_duration(elapsed) << "\n";
    // The loss is per token of the tokenizer: per byte only for the byte-level one.
    const std::string unit = tok->name() == "bytes" ? "byte" : "token";
    std::printf("  domain        eval loss (nats/%s)%s bits/%s\n", unit.c_str(), unit == "byte" ? "  " : " ",
                unit.c_str());
    nlohmann::json per;
    for (const auto& [name, l] : ev.per_domain) {
      std::printf("  %-12s  %10.4f              %6.3f\n", name.empty() ? "(all)" : name.c_str(), l,
                  l / std::log(2.0));
      per[name] = l;
    }
    std::printf("  %-12s  %10.4f              %6.3f\n", "total", ev.loss, ev.loss / std::log(2.0));
    if (json)
      std::cout << nlohmann::json{{"out", out},
                                  {"steps", trainer.step()},
                                  {"tokens", trainer.tokens_seen()},
                                  {"seconds", elapsed},
                                  {"train_loss", last_loss},
                                  {"eval_loss", ev.loss},
                                  {"eval_loss_per_domain", per},
                                  {"eval_loss_unit", "nats/" + unit},
                                  {"skipped_steps", skipped},
                                  {"stopped_by_time_budget", out_of_time},
                                  {"parameters", model->config().num_parameters()}}
                       .dump()
                << std::endl;
  } catch (const std::exception& e) {
    if (tty) std::cerr << "\n";
    std::cerr << "osd-train: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
