// HF checkpoints: save -> load is bit-exact for every dtype and config variant; corrupt files
// and configs give errors that name the file and the tensor or key.
#include "tests/test_common.hpp"

#include <unistd.h>

#include <fstream>
#include <set>

#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/weights/safetensors.hpp"
#include "models/core/transformer.hpp"

using namespace osd;

namespace {
std::string tmpdir(const std::string& name) {
  auto d = files::temp_dir() + "/osd-ckpt-" + std::to_string(::getpid()) + "-" + name;
  files::remove_tree(d);
  return d;
}
ModelConfig variant(const std::string& v) {
  ModelConfig c = *ModelConfig::preset("tiny");
  if (v == "tied") c.tie_word_embeddings = true;
  if (v == "qwen2") c.qkv_bias = true;
  if (v == "llama-bias") c.qkv_bias = c.o_bias = c.mlp_bias = true;
  if (v == "llama3") {
    c.rope_scaling.type = RopeScalingType::llama3;
    c.rope_scaling.factor = 8;
    c.rope_scaling.original_max_position_embeddings = 64;
  }
  return c;
}
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}
void spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary | std::ios::trunc) << s; }
// Loading `dir` must fail with an error that mentions `needle`.
void expect_load_error(const std::string& dir, const std::string& needle) {
  try {
    load_hf_checkpoint(dir);
    FAIL("loaded; expected an error mentioning " << needle);
  } catch (const osd::Error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("checkpoint: save -> load is bit-exact for every dtype and variant", "[checkpoint]") {
  for (auto dt : {DType::f32, DType::bf16, DType::f16}) {
    for (const std::string v : {"gqa", "tied", "qwen2", "llama-bias", "llama3"}) {
      DYNAMIC_SECTION(dtype_name(dt) << " " << v) {
        auto cfg = variant(v);
        cfg.dtype = dt;
        Transformer m(cfg, 9);
        {
          torch::NoGradGuard g;
          for (auto& p : m.named_parameters()) p.value().normal_(0, 0.5);  // biases and norms too
        }
        const auto dir = tmpdir(std::string(dtype_name(dt)) + v);
        save_hf_checkpoint(dir, m);
        auto back = load_hf_checkpoint(dir);
        CHECK(back->config().dtype == dt);
        CHECK(back->config().tie_word_embeddings == cfg.tie_word_embeddings);
        CHECK(back->config().qkv_bias == cfg.qkv_bias);
        CHECK(back->config().rope_scaling.type == cfg.rope_scaling.type);
        auto a = m.named_parameters(), b = back->named_parameters();
        REQUIRE(a.size() == b.size());
        int differ = 0;
        for (const auto& p : a) differ += !torch::equal(p.value(), b[p.key()]);
        CHECK(differ == 0);
        if (dt == DType::f32) {
          auto t = torch::randint(0, 256, {1, 7}, torch::kInt64);
          CHECK(torch::equal(m.forward_full(t), back->forward_full(t)));
        }
        files::remove_tree(dir);
      }
    }
  }
}

TEST_CASE("checkpoint: corrupt files and configs are clear errors", "[checkpoint][errors]") {
  Transformer m(variant("gqa"), 1);
  const auto dir = tmpdir("bad");
  save_hf_checkpoint(dir, m);
  const std::string st = dir + "/model.safetensors", cj = dir + "/config.json";
  const std::string good = slurp(st), good_cfg = slurp(cj);
  auto expect = [&](const std::string& needle) {
    expect_load_error(dir, needle);
    spit(st, good);
    spit(cj, good_cfg);
  };
  auto header_len = [&](uint64_t n) {
    std::string s = good;
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return s;
  };
  uint64_t hl = 0;
  for (int i = 7; i >= 0; --i) hl = (hl << 8) | static_cast<unsigned char>(good[i]);
  const std::string header = good.substr(8, hl);
  auto with_header = [&](const std::string& h) {  // same data section, edited header
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((uint64_t(h.size()) >> (8 * i)) & 0xFF);
    return s + h + good.substr(8 + hl);
  };
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string h = header;
    auto pos = h.find(from);
    REQUIRE(pos != std::string::npos);
    h.replace(pos, from.size(), to);
    return with_header(h);
  };
  spit(st, good.substr(0, 5)); expect("truncated");
  spit(st, header_len(good.size())); expect("past the end of the file");
  spit(st, good.substr(0, 8 + hl + 100)); expect("past the end of the file");   // data truncated
  spit(st, with_header("{not json")); expect("not valid JSON");
  spit(st, edit("\"F32\"", "\"Q99\"")); expect("unknown dtype 'Q99'");
  spit(st, edit("\"model.embed_tokens.weight\"", "\"model.embed_tokenz.weight\"")); expect("missing tensor 'model.embed_tokens.weight'");
  {
    // Shape that disagrees with the bytes.
    auto pos = header.find("\"model.norm.weight\"");
    auto sh = header.find("[64]", pos);
    REQUIRE(sh != std::string::npos);
    std::string h = header;
    h.replace(sh, 4, "[65]");
    spit(st, with_header(h));
    expect("do not match shape and dtype");
  }
  {
    // Overlapping and out-of-range offsets: point norm's range at embed's.
    auto j = nlohmann::json::parse(header);
    j["model.norm.weight"]["data_offsets"] = j["model.embed_tokens.weight"]["data_offsets"];
    j["model.norm.weight"]["shape"] = j["model.embed_tokens.weight"]["shape"];
    spit(st, with_header(j.dump()));
    expect("overlap");
    j = nlohmann::json::parse(header);
    auto off = j["model.norm.weight"]["data_offsets"];
    uint64_t len = off[1].get<uint64_t>() - off[0].get<uint64_t>();
    j["model.norm.weight"]["data_offsets"] = {uint64_t{1} << 40, (uint64_t{1} << 40) + len};
    spit(st, with_header(j.dump()));
    expect("past the end of the file");
  }
  // Shape that disagrees with config.json.
  {
    auto j = nlohmann::json::parse(good_cfg);
    j["intermediate_size"] = 200;
    spit(cj, j.dump());
    expect("config.json implies");
  }
  {
    auto j = nlohmann::json::parse(good_cfg);
    j["architectures"] = {"GPT2LMHeadModel"};
    spit(cj, j.dump());
    expect("unsupported architecture 'GPT2LMHeadModel'");
  }
  {
    auto j = nlohmann::json::parse(good_cfg);
    j.erase("hidden_size");
    spit(cj, j.dump());
    expect("missing key 'hidden_size'");
  }
  spit(cj, "{broken"); expect("invalid JSON");
  std::remove(cj.c_str()); expect("cannot open");
  CHECK(torch::equal(load_hf_checkpoint(dir)->forward_full(torch::ones({1, 3}, torch::kInt64)),
                     m.forward_full(torch::ones({1, 3}, torch::kInt64))));  // restored files load again
  files::remove_tree(dir);
}

TEST_CASE("checkpoint: sharded and unsharded saves give the same model, every dtype", "[checkpoint]") {
  for (auto dt : {DType::f32, DType::bf16, DType::f16}) {
    DYNAMIC_SECTION(dtype_name(dt)) {
      auto cfg = variant("gqa");
      cfg.dtype = dt;
      Transformer m(cfg, 4);
      {
        torch::NoGradGuard g;
        for (auto& p : m.named_parameters()) p.value().normal_(0, 0.5);
      }
      const auto one = tmpdir(std::string("one-") + dtype_name(dt)), many = tmpdir(std::string("many-") + dtype_name(dt));
      save_hf_checkpoint(one, m);
      save_hf_checkpoint(many, m, 20000);  // every tensor past 20 kB gets a shard of its own
      CHECK(files::exists(one + "/model.safetensors"));
      CHECK_FALSE(files::exists(one + "/model.safetensors.index.json"));
      REQUIRE(files::exists(many + "/model.safetensors.index.json"));
      CHECK_FALSE(files::exists(many + "/model.safetensors"));
      const auto index = nlohmann::json::parse(slurp(many + "/model.safetensors.index.json"));
      std::set<std::string> shard_files;
      for (const auto& [tensor, file] : index["weight_map"].items()) shard_files.insert(file.get<std::string>());
      CHECK(shard_files.size() > 3);
      CHECK(files::exists(many + "/" + *shard_files.begin()));
      auto a = load_hf_checkpoint(one), b = load_hf_checkpoint(many);
      int differ = 0;
      auto pb = b->named_parameters(), pm = m.named_parameters();
      for (const auto& p : a->named_parameters()) differ += !torch::equal(p.value(), pb[p.key()]) + !torch::equal(p.value(), pm[p.key()]);
      CHECK(differ == 0);
      // Saving unsharded over the sharded folder leaves one consistent layout.
      save_hf_checkpoint(many, m);
      CHECK_FALSE(files::exists(many + "/model.safetensors.index.json"));
      CHECK(torch::equal(load_hf_checkpoint(many)->named_parameters()["norm"], pm["norm"]));
      files::remove_tree(one);
      files::remove_tree(many);
    }
  }
}

TEST_CASE("checkpoint: Mistral round trip, and sliding_window caps the context", "[checkpoint]") {
  auto cfg = variant("gqa");
  cfg.name = "MistralForCausalLM";
  Transformer m(cfg, 2);
  const auto dir = tmpdir("mistral");
  save_hf_checkpoint(dir, m);
  auto j = nlohmann::json::parse(slurp(dir + "/config.json"));
  CHECK(j["architectures"][0] == "MistralForCausalLM");
  CHECK(j["model_type"] == "mistral");
  auto back = load_hf_checkpoint(dir);
  CHECK(back->config().name == "MistralForCausalLM");
  CHECK(torch::equal(back->forward_full(torch::ones({1, 4}, torch::kInt64)), m.forward_full(torch::ones({1, 4}, torch::kInt64))));
  j["sliding_window"] = 16;
  spit(dir + "/config.json", j.dump());
  CHECK(load_hf_checkpoint(dir)->config().max_position_embeddings == 16);
  files::remove_tree(dir);
}

TEST_CASE("checkpoint: a broken shard index is a clear error", "[checkpoint][errors]") {
  Transformer m(variant("gqa"), 1);
  const auto dir = tmpdir("badindex");
  save_hf_checkpoint(dir, m, 20000);
  const auto index_path = dir + "/model.safetensors.index.json";
  const auto good = slurp(index_path);
  auto expect = [&](const std::string& needle) {
    expect_load_error(dir, needle);
    spit(index_path, good);
  };
  auto j = nlohmann::json::parse(good);
  j["weight_map"].erase("model.norm.weight");
  spit(index_path, j.dump());
  expect("no shard for tensor 'model.norm.weight'");
  j = nlohmann::json::parse(good);
  j["weight_map"]["model.norm.weight"] = "model-99999-of-99999.safetensors";
  spit(index_path, j.dump());
  expect("does not exist");
  j["weight_map"]["model.norm.weight"] = "../../etc/passwd";
  spit(index_path, j.dump());
  expect("not a file in this folder");
  j = nlohmann::json::parse(good);
  j.erase("weight_map");
  spit(index_path, j.dump());
  expect("weight_map");
  spit(index_path, "{\"weight_map\": ");
  expect("invalid JSON");
  std::remove(index_path.c_str());
  expect("no model.safetensors or model.safetensors.index.json");
  files::remove_tree(dir);
}
