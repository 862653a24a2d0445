// osd-train's core: the corpus reader, pretraining, offline distillation, checkpoints, resume.
#include <unistd.h>

#include <fstream>

#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/distillation/losses.hpp"
#include "models/distillation/text_corpus.hpp"
#include "models/distillation/trainer.hpp"
#include "test_common.hpp"

using namespace osd;

namespace {

using test::temp_path;

// Regular text a tiny model learns in seconds: numbered lines of a few fixed sentences.
std::string write_text(const std::string& name, int lines, uint64_t seed) {
  static const char* sentences[] = {"the cat sat on the mat.", "a dog ran in the park.",
                                    "we write code in c++.", "def add(a, b): return a + b"};
  std::string path = temp_path(name);
  std::ofstream f(path);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < lines; ++i) f << (i % 100) << ": " << sentences[rng() % 4] << "\n";
  return path;
}

TrainOptions quick_options(int64_t steps) {
  TrainOptions o;
  o.steps = steps;
  o.batch = 8;
  o.seq_len = 32;
  o.lr = 1e-2;
  o.warmup = 5;
  o.eval_every = 0;
  o.eval_batches = 2;
  o.seed = 3;
  return o;
}

double mean_kl_to(Transformer& teacher, Transformer& student, const TextCorpus& corpus) {
  torch::NoGradGuard g;
  auto b = corpus.eval_batches(8, 32, 1).at(0);
  auto p = torch::softmax(teacher.forward_full(b.inputs), -1).reshape({-1, 256});
  return distill_loss(DistillLoss::forward_kl, student.forward_full(b.inputs).reshape({-1, 256}), p)
      .item<double>();
}

}  // namespace

TEST_CASE("train: corpus reads text and JSONL, splits eval, samples shifted windows", "[train]") {
  const std::string txt = temp_path("a.txt"), jsonl = temp_path("b.jsonl");
  std::ofstream(txt) << std::string(1000, 'x');
  std::ofstream(jsonl) << "{\"text\": \"hello\"}\n\n{\"text\": \"world\"}\n";
  auto c = TextCorpus::load({{"a", txt}, {"b", jsonl}}, {}, 0.1);
  REQUIRE(c.domains().size() == 2);
  CHECK(c.domains()[0].train.size() == 900);
  CHECK(c.domains()[0].eval.size() == 100);
  std::string b(c.domains()[1].train.begin(), c.domains()[1].train.end());
  b += std::string(c.domains()[1].eval.begin(), c.domains()[1].eval.end());
  CHECK(b == "hello\n\nworld");
  std::mt19937_64 rng(1);
  auto batch = TextCorpus::load({{"a", write_text("w.txt", 200, 1)}}, {}).sample_batch(4, 16, rng);
  CHECK(batch.inputs.sizes() == torch::IntArrayRef({4, 16}));
  CHECK(torch::equal(batch.inputs.narrow(1, 1, 15), batch.targets.narrow(1, 0, 15)));
  // An eval-only domain is evaluated, never sampled for training.
  auto ev = TextCorpus::load({{"a", txt}}, {{"z", txt}});
  CHECK(ev.domains()[1].train.empty());
  for (int i = 0; i < 20; ++i) CHECK(ev.sample_batch(2, 8, rng).inputs.eq('x').all().item<bool>());
}

TEST_CASE("train: bad inputs are clear errors", "[train][errors]") {
  const std::string bad = temp_path("bad.jsonl");
  std::ofstream(bad) << "{\"text\": \"ok\"}\n{\"txt\": 1}\n";
  auto msg = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(msg([&] {
          TextCorpus::load({{"a", "/nonexistent/x.txt"}}, {});
        }).find("/nonexistent/x.txt: cannot open") != std::string::npos);
  CHECK(msg([&] {
          TextCorpus::load({{"a", bad}}, {});
        }).find(bad + ":2: expected {\"text\": string}") != std::string::npos);
  const std::string tiny = temp_path("tiny.txt");
  std::ofstream(tiny) << "abc";
  std::mt19937_64 rng(0);
  CHECK(msg([&] {
          TextCorpus::load({{"a", tiny}}, {}).sample_batch(1, 64, rng);
        }).find("a window needs 65") != std::string::npos);
  auto corpus = TextCorpus::load({{"a", write_text("e.txt", 100, 2)}}, {});
  auto model = std::make_shared<Transformer>(test::byte_model_config(16, 1), 0);
  auto opt = quick_options(10);
  opt.loss = "fkl";
  CHECK(msg([&] { Trainer(model, opt, corpus); }).find("distils from a teacher") !=
        std::string::npos);
  opt = quick_options(10);
  opt.seq_len = 1000;
  CHECK(msg([&] {
          Trainer(model, opt, corpus);
        }).find("exceeds the model's max_position_embeddings") != std::string::npos);
  opt = quick_options(10);
  opt.lr = -1;
  CHECK(msg([&] { Trainer(model, opt, corpus); }).find("lr must be in (0, 1]") !=
        std::string::npos);
  opt = quick_options(10);
  opt.loss = "mse";
  CHECK(msg([&] { Trainer(model, opt, corpus); }).find("unknown loss 'mse'") != std::string::npos);
  auto teacher = std::make_shared<Transformer>(test::byte_model_config(16, 1).finalize(), 1);
  auto other_vocab = test::byte_model_config(16, 1);
  other_vocab.vocab_size = 300;
  opt.loss = "fkl";
  CHECK(msg([&] {
          Trainer(std::make_shared<Transformer>(other_vocab, 0), opt, corpus, teacher);
        }).find("teacher vocabulary 256 != student vocabulary 300") != std::string::npos);
  CHECK(msg([&] {
          Trainer t(model, quick_options(10), corpus);
          t.resume("/nonexistent");
        }).find("/nonexistent/trainer/state.json: cannot open") != std::string::npos);
}

TEST_CASE("train: a tiny model learns in seconds, its checkpoint reloads, resume continues exactly",
          "[train]") {
  auto corpus = TextCorpus::load({{"text", write_text("t.txt", 3000, 5)}}, {});
  auto model = std::make_shared<Transformer>(test::byte_model_config(32, 1), 7);
  Trainer trainer(model, quick_options(60), corpus);
  const double before = trainer.evaluate().loss;
  while (trainer.step() < 40) {
    auto r = trainer.train_step();
    REQUIRE_FALSE(r.skipped);
  }
  const double after = trainer.evaluate().loss;
  INFO("eval loss before " << before << ", after 40 steps " << after);
  // Measured: 5.55 -> 0.97 nats/byte (ln 256 = 5.55 is uniform); asserted with headroom.
  CHECK(before > 5.0);
  CHECK(after < 1.6);

  const std::string dir = temp_path("ckpt");
  trainer.save(dir);
  CHECK(Trainer::has_trainer_state(dir));
  auto reloaded = load_hf_checkpoint(dir);
  auto tokens = test::random_tokens(2, 24, 256, 9);
  {
    torch::NoGradGuard g;
    CHECK(test::max_abs_diff(reloaded->forward_full(tokens), model->forward_full(tokens)) == 0.0);
  }

  // Continue the original 20 more steps; a resumed trainer must land on the same weights.
  while (trainer.step() < 60) trainer.train_step();
  auto resumed_model = load_hf_checkpoint(dir);
  Trainer resumed(resumed_model, quick_options(60), corpus);
  resumed.resume(dir);
  CHECK(resumed.step() == 40);
  while (resumed.step() < 60) resumed.train_step();
  {
    torch::NoGradGuard g;
    const double diff =
        test::max_abs_diff(resumed_model->forward_full(tokens), model->forward_full(tokens));
    INFO("resumed vs uninterrupted max |diff| " << diff);
    CHECK(diff < 1e-4);
  }
  // A control: a trainer that does not resume (fresh optimizer and data order) ends elsewhere.
  auto fresh_model = load_hf_checkpoint(dir);
  Trainer fresh(fresh_model, quick_options(20), corpus);
  while (fresh.step() < 20) fresh.train_step();
  {
    torch::NoGradGuard g;
    CHECK(test::max_abs_diff(fresh_model->forward_full(tokens), model->forward_full(tokens)) >
          1e-3);
  }
  files::remove_tree(dir);
}

TEST_CASE("train: offline distillation moves a draft toward its teacher", "[train]") {
  auto corpus = TextCorpus::load({{"text", write_text("d.txt", 3000, 6)}}, {});
  auto teacher = std::make_shared<Transformer>(test::byte_model_config(32, 1), 7);
  {
    Trainer t(teacher, quick_options(40), corpus);
    while (t.step() < 40) t.train_step();
  }
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  auto student = std::make_shared<Transformer>(test::byte_model_config(16, 1), 8);
  const double kl_before = mean_kl_to(*teacher, *student, corpus);
  auto opt = quick_options(40);
  opt.loss = "fkl";
  Trainer t(student, opt, corpus, teacher);
  while (t.step() < 40) t.train_step();
  const double kl_after = mean_kl_to(*teacher, *student, corpus);
  INFO("KL(teacher || student) before " << kl_before << ", after " << kl_after);
  // Measured: 3.26 -> 0.54; asserted with headroom.
  CHECK(kl_after < 0.5 * kl_before);
}

TEST_CASE("train: the byte tokenizer is the identity on bytes", "[train][tokenizer]") {
  auto tok = load_text_tokenizer("bytes");
  const std::string s = "h\xc3\xa9llo\n";
  auto ids = tok->encode(s);
  CHECK(ids.size() == s.size());
  CHECK(ids[1] == 0xc3);
  CHECK(tok->decode(ids) == s);
  CHECK(tok->vocab_size() == 256);
  CHECK_THROWS_WITH(load_text_tokenizer("/nonexistent/tok.model"),
                    Catch::Contains("no such tokenizer"));
}
