// models/transformer + kv_cache: incremental decoding through the cache computes exactly what
// one full forward computes, for every config variant the loader supports.
#include "tests/test_common.hpp"

#include "models/core/transformer.hpp"

using namespace osd;
using osd::test::max_abs_diff;
using osd::test::random_tokens;

namespace {

ModelConfig variant(const std::string& name) {
  ModelConfig c = *ModelConfig::preset("tiny");
  c.name = name;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  if (name == "gqa") c.num_kv_heads = 2;
  if (name == "mqa") c.num_kv_heads = 1;
  if (name == "tied") c.tie_word_embeddings = true;
  if (name == "qwen2-bias") c.qkv_bias = true;
  if (name == "llama-bias") c.qkv_bias = c.o_bias = c.mlp_bias = true;
  if (name == "rope-linear") { c.rope_scaling.type = RopeScalingType::linear; c.rope_scaling.factor = 4; }
  if (name == "rope-llama3") {
    c.rope_scaling.type = RopeScalingType::llama3;
    c.rope_scaling.factor = 8;
    c.rope_scaling.original_max_position_embeddings = 64;  // small, so all three bands occur
    c.rope_theta = 500000;
  }
  c.head_dim = 0;
  return c.finalize();
}

// Biases start at zero; make them non-zero so a missing bias would show.
void randomize_biases(Transformer& m) {
  torch::NoGradGuard g;
  for (auto& p : m.named_parameters())
    if (p.key().find("b") != std::string::npos && p.key().find("norm") == std::string::npos &&
        p.value().dim() == 1)
      p.value().normal_(0, 0.5);
}

// Reference: full forward of each sequence on its own. Returns per-sequence logits [T_i, V].
std::vector<at::Tensor> reference(Transformer& m, const std::vector<at::Tensor>& seqs) {
  std::vector<at::Tensor> out;
  for (const auto& s : seqs) out.push_back(m.forward_full(s.unsqueeze(0)).squeeze(0));
  return out;
}

const std::vector<std::string> kVariants = {"mha", "gqa", "mqa", "tied", "qwen2-bias",
                                            "llama-bias", "rope-linear", "rope-llama3"};

}  // namespace

TEST_CASE("prefill + single-token steps equal a full forward, batch of ragged sequences",
          "[transformer]") {
  for (const auto& name : kVariants) {
    DYNAMIC_SECTION(name) {
      Transformer m(variant(name), 7);
      randomize_biases(m);
      const std::vector<int64_t> total = {9, 14, 5}, prompt = {4, 7, 1};
      std::vector<at::Tensor> seqs;
      for (size_t i = 0; i < total.size(); ++i) seqs.push_back(random_tokens(1, total[i], 256, 100 + i).squeeze(0));
      auto ref = reference(m, seqs);
      auto cache = m.make_cache(8, 32);
      std::vector<int64_t> slots;
      for (size_t i = 0; i < seqs.size(); ++i) slots.push_back(cache.allocate_slot());
      // Batched, right-padded prefill.
      const int64_t P = *std::max_element(prompt.begin(), prompt.end());
      auto batch = torch::zeros({3, P}, torch::kInt64);
      for (int i = 0; i < 3; ++i) batch[i].narrow(0, 0, prompt[i]).copy_(seqs[i].narrow(0, 0, prompt[i]));
      auto logits = m.forward(batch, slots, cache, prompt);
      double worst = 0;
      for (int i = 0; i < 3; ++i)
        worst = std::max(worst, max_abs_diff(logits[i].narrow(0, 0, prompt[i]), ref[i].narrow(0, 0, prompt[i])));
      // Single-token steps; rows drop out as their sequence ends (non-contiguous slot subsets).
      for (int64_t pos = 1; pos < 14; ++pos) {
        std::vector<int64_t> rows, step_slots, toks;
        for (int i = 0; i < 3; ++i)
          if (pos >= prompt[i] && pos < total[i]) { rows.push_back(i); step_slots.push_back(slots[i]); toks.push_back(seqs[i][pos].item<int64_t>()); }
        if (rows.empty()) continue;
        auto out = m.forward(torch::tensor(toks).view({-1, 1}), step_slots, cache);  // [b, 1, V]
        for (size_t r = 0; r < rows.size(); ++r)
          worst = std::max(worst, max_abs_diff(out[r][0], ref[rows[r]][pos]));
      }
      CHECK(worst <= 1e-4);
      for (int i = 0; i < 3; ++i) CHECK(cache.length(slots[i]) == total[i]);
    }
  }
}

TEST_CASE("prefill + chunks of k tokens equal a full forward, last_only picks each row end",
          "[transformer]") {
  for (const auto& name : {std::string("gqa"), std::string("qwen2-bias")}) {
    Transformer m(variant(name), 11);
    randomize_biases(m);
    const int64_t k = 3;
    const std::vector<int64_t> total = {17, 10, 13};
    std::vector<at::Tensor> seqs;
    for (int i = 0; i < 3; ++i) seqs.push_back(random_tokens(1, total[i], 256, 200 + i).squeeze(0));
    auto ref = reference(m, seqs);
    auto cache = m.make_cache(3, 24);
    std::vector<int64_t> slots = {cache.allocate_slot(), cache.allocate_slot(), cache.allocate_slot()};
    std::reverse(slots.begin(), slots.end());  // slots 0,1,2 in order: the contiguous read path
    // Prefill 2 tokens each with last_only.
    auto pre = torch::stack({seqs[0].narrow(0, 0, 2), seqs[1].narrow(0, 0, 2), seqs[2].narrow(0, 0, 2)});
    auto last = m.forward(pre, slots, cache, {2, 2, 1}, /*last_only=*/true);       // [3, 1, V]
    double worst = max_abs_diff(last[0][0], ref[0][1]);
    worst = std::max(worst, max_abs_diff(last[2][0], ref[2][0]));
    cache.truncate(slots[2], 1);  // exercise truncate inside the flow (was already 1)
    std::vector<int64_t> done = {2, 2, 1};
    while (true) {
      auto chunk = torch::zeros({3, k}, torch::kInt64);
      std::vector<int64_t> n(3);
      bool any = false;
      for (int i = 0; i < 3; ++i) {
        n[i] = std::max<int64_t>(1, std::min(k, total[i] - done[i]));
        if (done[i] >= total[i]) continue;  // finished rows still need a real token: repeat last
        any = true;
        chunk[i].narrow(0, 0, n[i]).copy_(seqs[i].narrow(0, done[i], n[i]));
      }
      if (!any) break;
      std::vector<int64_t> rows, rs;
      std::vector<at::Tensor> rows_t;
      std::vector<int64_t> nn;
      for (int i = 0; i < 3; ++i) if (done[i] < total[i]) { rows.push_back(i); rs.push_back(slots[i]); rows_t.push_back(chunk[i]); nn.push_back(n[i]); }
      auto out = m.forward(torch::stack(rows_t), rs, cache, nn);
      for (size_t r = 0; r < rows.size(); ++r) {
        int i = rows[r];
        worst = std::max(worst, max_abs_diff(out[r].narrow(0, 0, nn[r]), ref[i].narrow(0, done[i], nn[r])));
        done[i] += nn[r];
      }
    }
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE(
    "the graph-capturable step equals a full forward, within a short span and over the whole cache",
    "[transformer]") {
  // step_static is what CUDA graphs capture; on the CPU it runs eagerly, so the CPU suite checks
  // its cache writes and masks against forward_full: slots 2 and 0 of ragged lengths, 3 tokens
  // per row, then one more token per row through the cache it wrote.
  auto cfg = *ModelConfig::preset("tiny");
  Transformer model(cfg, 3);
  const std::vector<at::Tensor> prompts = {random_tokens(1, 7, 256, 1),
                                           random_tokens(1, 4, 256, 2)};
  auto tok = random_tokens(2, 3, 256, 3), next = random_tokens(2, 1, 256, 4);
  for (int64_t span : {0, 16}) {
    auto cache = model.make_cache(3, 24);
    for (int i = 0; i < 3; ++i) cache.allocate_slot();
    model.forward(prompts[0], {2}, cache);
    model.forward(prompts[1], {0}, cache);
    auto got = model.step_static(tok, torch::tensor({7, 4}), torch::tensor({2, 0}), cache, span);
    cache.commit({2, 0}, {3, 3});
    auto after = model.forward(next, {2, 0}, cache);  // [2, 1, V]
    INFO("span " << span);
    for (int64_t r = 0; r < 2; ++r) {
      auto seq = torch::cat({prompts[r], tok.narrow(0, r, 1), next.narrow(0, r, 1)}, 1);  // [1, L]
      auto ref = model.forward_full(seq);  // [1, L, V]
      const int64_t L = seq.size(1);
      CHECK(max_abs_diff(got.narrow(0, r, 1), ref.narrow(1, L - 4, 3)) <= 1e-4);
      CHECK(max_abs_diff(after.narrow(0, r, 1), ref.narrow(1, L - 1, 1)) <= 1e-4);
    }
  }
}

TEST_CASE("truncate then append equals a fresh forward on the new sequence", "[transformer]") {
  Transformer m(variant("gqa"), 3);
  auto cache = m.make_cache(2, 40);
  auto slot = cache.allocate_slot();
  auto a = random_tokens(1, 20, 256, 1);
  m.forward(a, {slot}, cache);
  for (int64_t keep : {12, 5, 0}) {
    cache.truncate(slot, keep);
    auto b = random_tokens(1, 6, 256, 50 + keep);
    auto out = m.forward(b, {slot}, cache);                                         // [1, 6, V]
    auto full_seq = torch::cat({a.narrow(1, 0, keep), b}, 1);
    auto ref = m.forward_full(full_seq).narrow(1, keep, 6);
    CHECK(max_abs_diff(out, ref) <= 1e-4);
    CHECK(cache.length(slot) == keep + 6);
    a = full_seq;
  }
}

TEST_CASE("warming attention plans runs every padded prompt length and leaves the cache as it was",
          "[transformer]") {
  Transformer m(variant("gqa"), 3);
  auto cache = m.make_cache(2, 200);  // padded prompt lengths 64, 128, 192 and 200 (the limit)
  auto live = cache.allocate_slot();
  auto a = random_tokens(1, 20, 256, 7);
  m.forward(a, {live}, cache);
  CHECK(m.warm_attention_plans(cache, /*full_forward=*/false) == 4);
  CHECK(m.warm_attention_plans(cache, /*full_forward=*/true) == 8);
  CHECK(cache.free_slots() == 1);  // the scratch slot went back
  CHECK(cache.length(live) == 20);
  // The live sequence continues exactly as a full forward of it.
  auto b = random_tokens(1, 5, 256, 8);
  auto next = m.forward(b, {live}, cache);  // [1, 5, V]
  auto ref = m.forward_full(torch::cat({a, b}, 1)).narrow(1, 20, 5);
  CHECK(max_abs_diff(next, ref) <= 1e-4);
  // A full cache has no scratch slot: a clear error, nothing changed.
  auto other = cache.allocate_slot();
  CHECK_THROWS(m.warm_attention_plans(cache, false));
  CHECK(cache.length(live) == 25);
  CHECK(cache.length(other) == 0);
}

TEST_CASE("bf16 forward runs and stays close to fp32", "[transformer]") {
  auto cfg = variant("gqa");
  Transformer m32(cfg, 5);
  cfg.dtype = DType::bf16;
  Transformer m16(cfg, 5);
  REQUIRE(m16.dtype() == torch::kBFloat16);
  auto t = random_tokens(2, 8, 256, 9);
  auto ref = m32.forward_full(t);
  auto cache = m16.make_cache(2, 16);
  std::vector<int64_t> slots = {cache.allocate_slot(), cache.allocate_slot()};
  auto out = m16.forward(t, slots, cache);
  REQUIRE(out.scalar_type() == torch::kFloat32);
  CHECK(max_abs_diff(out, ref) < 0.05);
  CHECK(max_abs_diff(out, m16.forward_full(t)) < 0.05);
}

TEST_CASE("bad input: clear errors, cache still usable afterwards", "[transformer][errors]") {
  Transformer m(variant("gqa"), 1);
  auto cache = m.make_cache(2, 16);
  auto s0 = cache.allocate_slot();
  auto prompt = random_tokens(1, 4, 256, 4);
  m.forward(prompt, {s0}, cache);
  auto expect_error = [&](auto&& fn, const std::string& needle) {
    try {
      fn();
      FAIL("no error; expected one mentioning '" << needle << "'");
    } catch (const osd::Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
    CHECK(cache.length(s0) == 4);
  };
  expect_error([&] { m.forward(torch::zeros({3}, torch::kInt64), {s0}, cache); }, "dimensions");
  expect_error([&] { m.forward(torch::zeros({1, 2}, torch::kFloat32), {s0}, cache); }, "dtype");
  expect_error([&] { m.forward(torch::full({1, 2}, 256, torch::kInt64), {s0}, cache); }, "outside the vocabulary");
  expect_error([&] { m.forward(torch::full({1, 2}, -1, torch::kInt64), {s0}, cache); }, "outside the vocabulary");
  expect_error([&] { m.forward(torch::zeros({2, 1}, torch::kInt64), {s0}, cache); }, "slots for a batch");
  expect_error([&] { m.forward(torch::zeros({1, 1}, torch::kInt64), {7}, cache); }, "unknown KV cache slot");
  expect_error([&] { m.forward(torch::zeros({1, 1}, torch::kInt64), {1}, cache); }, "not allocated");
  expect_error([&] { m.forward(torch::zeros({2, 1}, torch::kInt64), {s0, s0}, cache); }, "twice");
  expect_error([&] { m.forward(torch::zeros({1, 13}, torch::kInt64), {s0}, cache); }, "max_len");
  expect_error([&] { m.forward(torch::zeros({1, 2}, torch::kInt64), {s0}, cache, {3}); }, "num_new");
  expect_error([&] { cache.truncate(s0, 5); }, "cannot truncate");
  expect_error([&] { cache.free_slot(1); }, "not allocated");
  // Past max_position_embeddings (a model with a short context, a cache longer than it).
  auto short_cfg = variant("gqa");
  short_cfg.max_position_embeddings = 6;
  Transformer ms(short_cfg, 1);
  auto big = ms.make_cache(1, 32);
  auto bs = big.allocate_slot();
  ms.forward(torch::zeros({1, 5}, torch::kInt64), {bs}, big);
  CHECK_THROWS_WITH(ms.forward(torch::zeros({1, 2}, torch::kInt64), {bs}, big),
                    Catch::Contains("max_position_embeddings"));
  CHECK(big.length(bs) == 5);
  CHECK_THROWS_WITH(ms.forward_full(torch::zeros({1, 7}, torch::kInt64)), Catch::Contains("max_position"));
  // Full cache, freed slot.
  auto s1 = cache.allocate_slot();
  CHECK_THROWS_WITH(cache.allocate_slot(), Catch::Contains("KV cache full"));
  cache.free_slot(s1);
  CHECK_THROWS_WITH(cache.free_slot(s1), Catch::Contains("not allocated"));
  CHECK_THROWS_WITH(m.forward(torch::zeros({1, 1}, torch::kInt64), {s1}, cache), Catch::Contains("not allocated"));
  // A bad config is refused at construction.
  auto bad = variant("gqa");
  bad.num_kv_heads = 3;
  CHECK_THROWS_WITH(Transformer(bad), Catch::Contains("multiple of num_key_value_heads"));
  CHECK_THROWS_WITH(KVCache(variant("gqa"), 0, 8, torch::kCPU, torch::kFloat32), Catch::Contains("num_slots"));
  // The cache still works: continuing equals a full forward.
  auto next = random_tokens(1, 3, 256, 8);
  auto out = m.forward(next, {s0}, cache);
  auto ref = m.forward_full(torch::cat({prompt, next}, 1)).narrow(1, 4, 3);
  CHECK(max_abs_diff(out, ref) <= 1e-4);
  // And a freed slot is reusable.
  auto s2 = cache.allocate_slot();
  CHECK(cache.length(s2) == 0);
  CHECK(max_abs_diff(m.forward(prompt, {s2}, cache), m.forward_full(prompt)) <= 1e-4);
}
