// Crash-safe state: every file osd writes for later (the online distiller's draft, optimizer and
// state.json; held-out records; trainer checkpoints; HF checkpoints) is detected when torn or
// corrupt, and the version before it is used, with a warning.
#include "tests/test_common.hpp"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "models/common/files.hpp"
#include "models/common/saved_folder.hpp"
#include "models/distillation/online_distiller.hpp"
#include "models/distillation/record_file.hpp"
#include "models/distillation/text_corpus.hpp"
#include "models/distillation/trainer.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "tests/spec_fixtures.hpp"

using namespace osd;
using namespace osd::test;

namespace {

std::string fresh_dir(const std::string& name) {
  const auto dir = files::temp_dir() + "/osd-state-" + std::to_string(::getpid()) + "-" + name;
  files::remove_tree(dir);
  return dir;
}

void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Keeps the first n bytes (a torn write).
void truncate_to(const std::string& path, size_t n) { overwrite(path, files::read_all(path).substr(0, n)); }

// Flips one byte in the middle (silent corruption, same size).
void flip_a_byte(const std::string& path) {
  auto bytes = files::read_all(path);
  REQUIRE(!bytes.empty());
  bytes[bytes.size() / 2] ^= 0x5A;
  overwrite(path, bytes);
}

double weights_distance(Transformer& a, Transformer& b) {
  torch::NoGradGuard g;
  auto tokens = random_tokens(1, 8, a.config().vocab_size, 3);
  return max_abs_diff(a.forward_full(tokens), b.forward_full(tokens));
}

}  // namespace

TEST_CASE("state: a torn or corrupt online-distiller file falls back to the save before it",
          "[state][online]") {
  const auto draft1 = peaked_model(tiny_config(64, 32, 1), 11);
  const auto draft2 = peaked_model(tiny_config(64, 32, 1), 12);
  for (const std::string file : {"model.safetensors", "optimizer.pt", "state.json", "config.json"}) {
    for (const bool torn : {true, false}) {
      DYNAMIC_SECTION(file << (torn ? " torn" : " corrupt")) {
        const auto dir = fresh_dir("online");
        OnlineDistiller(*draft1, DistillOptions{}, c10::Device(c10::kCPU), 1).save(dir);
        OnlineDistiller(*draft2, DistillOptions{}, c10::Device(c10::kCPU), 2).save(dir);
        auto newest = OnlineDistiller::find_saved(dir);
        CHECK(newest.version == 2);
        CHECK(newest.warning.empty());
        const auto path = dir + "/draft/" + file;
        REQUIRE(files::exists(path));
        if (torn)
          truncate_to(path, files::file_size(path) / 2);
        else
          flip_a_byte(path);
        const auto saved = OnlineDistiller::find_saved(dir);
        INFO(saved.warning);
        CHECK(saved.version == 1);
        CHECK(saved.path == dir + "/draft.previous");
        CHECK(saved.warning.find(file) != std::string::npos);
        auto restored = OnlineDistiller::restore(dir, DistillOptions{}, c10::Device(c10::kCPU));
        CHECK(restored->version() == 1);
        auto weights = restored->snapshot(c10::Device(c10::kCPU), torch::kFloat32);
        CHECK(weights_distance(*weights, *draft1) == 0.0);
        // The next save replaces the damaged version; the good one stays as the previous.
        restored->save(dir);
        CHECK(OnlineDistiller::find_saved(dir).warning.empty());
        CHECK(files::check_folder(dir + "/draft.previous").state == files::FolderState::damaged);
        files::remove_tree(dir);
      }
    }
  }
}

TEST_CASE("state: with no intact version the error names every damaged file and the fix", "[state][online]") {
  const auto dir = fresh_dir("online-none");
  const auto draft = peaked_model(tiny_config(64, 32, 1), 11);
  OnlineDistiller(*draft, DistillOptions{}, c10::Device(c10::kCPU), 1).save(dir);
  OnlineDistiller(*draft, DistillOptions{}, c10::Device(c10::kCPU), 2).save(dir);
  flip_a_byte(dir + "/draft/model.safetensors");
  truncate_to(dir + "/draft.previous/optimizer.pt", 10);
  CHECK_THROWS_WITH(OnlineDistiller::find_saved(dir),
                    Catch::Contains("draft: model.safetensors: checksum mismatch") &&
                        Catch::Contains("draft.previous: optimizer.pt: 10 bytes") && Catch::Contains("aside"));
  files::remove_tree(dir);
}

TEST_CASE("state: held-out records fall back to the previous file when the newest is damaged",
          "[state][online]") {
  const auto dir = fresh_dir("records");
  files::make_dirs(dir);
  const auto path = dir + "/heldout.bin";
  auto record = [](int64_t source) {
    DistillRecord r;
    r.context = {1, 2, 3};
    r.top_ids = {4, 5};
    r.top_probs = {0.5f, 0.25f};
    r.tail = 0.25f;
    r.source = source;
    return r;
  };
  save_records(path, {record(1)});
  save_records(path, {record(2), record(3)});
  CHECK(load_newest_records(path).records.size() == 2);
  SECTION("torn") { truncate_to(path, files::file_size(path) - 5); }
  SECTION("corrupt") { flip_a_byte(path); }
  SECTION("missing (a crash between the renames never leaves this, but a person might)") {
    std::remove(path.c_str());
  }
  auto loaded = load_newest_records(path);
  INFO(loaded.warning);
  REQUIRE(loaded.records.size() == 1);
  CHECK(loaded.records[0].source == 1);
  CHECK(loaded.from == files::previous_of(path));
  if (files::exists(path)) CHECK(loaded.warning.find("heldout.bin") != std::string::npos);
  files::remove_tree(dir);
}

TEST_CASE("state: an older records file (no checksum) still loads", "[state][online]") {
  const auto dir = fresh_dir("records-v1");
  files::make_dirs(dir);
  DistillRecord r;
  r.context = {7};
  r.top_ids = {1};
  r.top_probs = {1.0f};
  const auto v2 = encode_records({r});
  // OSDRECS1: the magic, then the payload (the v2 header's length and CRC dropped).
  overwrite(dir + "/old.bin", "OSDRECS1" + v2.substr(20));
  auto back = load_records(dir + "/old.bin");
  REQUIRE(back.size() == 1);
  CHECK(back[0].context == r.context);
  files::remove_tree(dir);
}

TEST_CASE("state: a trainer checkpoint is sealed, and --resume falls back past a damaged one",
          "[state][train]") {
  const auto dir = fresh_dir("ckpt");
  const auto text = dir + "-text.txt";
  {
    std::ofstream f(text);
    for (int i = 0; i < 400; ++i) f << "line " << i << ": the quick brown fox jumps over the lazy dog.\n";
  }
  auto corpus = TextCorpus::load({{"t", text}}, {});
  TrainOptions opt;
  opt.steps = 4;
  opt.batch = 2;
  opt.seq_len = 16;
  opt.warmup = 1;
  opt.eval_batches = 1;
  auto model = std::make_shared<Transformer>(byte_model_config(16, 1), 7);
  Trainer trainer(model, opt, corpus);
  trainer.train_step();
  trainer.save(dir);  // step 1
  trainer.train_step();
  trainer.save(dir, [](const std::string& folder) { std::ofstream(folder + "/extra.txt") << "sealed too"; });
  CHECK(files::check_folder(dir).state == files::FolderState::intact);
  std::string warning;
  CHECK(Trainer::checkpoint_to_resume(dir, &warning) == dir);
  CHECK(warning.empty());
  // A torn weights file: load_hf_checkpoint refuses it by name, --resume takes the one before.
  truncate_to(dir + "/model.safetensors", 100);
  CHECK_THROWS_WITH(load_hf_checkpoint(dir), Catch::Contains("model.safetensors"));
  const auto from = Trainer::checkpoint_to_resume(dir, &warning);
  CHECK(from == files::previous_of(dir));
  CHECK(warning.find("model.safetensors") != std::string::npos);
  auto back = load_hf_checkpoint(from, c10::Device(c10::kCPU), DType::f32);
  Trainer resumed(back, opt, corpus);
  resumed.resume(from);
  CHECK(resumed.step() == 1);
  files::remove_tree(dir);
  files::remove_tree(files::previous_of(dir));
  std::remove(text.c_str());
}

TEST_CASE("state: an HF checkpoint is written durably and a saved-over folder drops stale checksums",
          "[state][checkpoint]") {
  const auto dir = fresh_dir("hf");
  auto m = peaked_model(tiny_config(64, 32, 1), 5);
  // A sealed folder, then a plain save over it: the checksums no longer describe the files, so
  // they are removed rather than failing the next load.
  files::make_dirs(files::begin_folder(dir));
  save_hf_checkpoint(dir + ".partial", *m);
  files::commit_folder(dir);
  CHECK(files::check_folder(dir).state == files::FolderState::intact);
  auto other = peaked_model(tiny_config(64, 32, 1), 6);
  save_hf_checkpoint(dir, *other);
  CHECK(files::check_folder(dir).state == files::FolderState::unchecked);
  CHECK(weights_distance(*load_hf_checkpoint(dir), *other) == 0.0);
  for (const auto& name : files::list_dir(dir)) CHECK(name.find(".tmp") == std::string::npos);
  files::remove_tree(dir);
  files::remove_tree(files::previous_of(dir));
}
