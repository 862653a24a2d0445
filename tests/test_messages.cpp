// actors/messages: every message type survives CAF's binary serializer, tensors included, so
// any actor could live in another process.
#include "tests/test_common.hpp"

#include "actors/messages.hpp"

using namespace osd;

namespace {
template <class T>
T roundtrip(const T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  T copy = x;
  REQUIRE(!sink(copy));
  T out;
  caf::binary_deserializer source{nullptr, buf};
  REQUIRE(!source(out));
  return out;
}
}  // namespace

TEST_CASE("messages survive binary serialization, tensors included", "[messages]") {
  Proposals p;
  p.ids = {3, 9};
  p.k = {2, 0};
  p.host_tokens = {{5, 6}, {}};
  p.tokens = torch::tensor({{5, 6}, {0, 0}});
  p.probs = torch::rand({2, 2, 11});
  p.seconds = 0.25;
  p.draft_steps = 2;
  auto q = roundtrip(p);
  CHECK(q.ids == p.ids);
  CHECK(q.k == p.k);
  CHECK(q.host_tokens == p.host_tokens);
  CHECK(q.draft_steps == 2);
  REQUIRE(q.probs.defined());
  CHECK(torch::equal(q.tokens, p.tokens));
  CHECK(torch::equal(q.probs, p.probs));
  CHECK(q.probs.scalar_type() == torch::kFloat32);

  Submission s{"r1", {}, "code", false};
  s.request.prompt = {1, 2, 3};
  s.request.sampling.top_p = 0.5;
  s.request.stop = {"\n\n"};
  auto s2 = roundtrip(s);
  CHECK(s2.id == "r1");
  CHECK(s2.request.prompt == s.request.prompt);
  CHECK(s2.request.sampling.top_p == 0.5);
  CHECK(s2.request.stop == s.request.stop);
  CHECK(s2.domain == "code");

  DoneEvent d{"r1", {4, 5}, "hi", "length", "", "", {}, 1.5, 9.0};
  d.stats.num_drafts = 3;
  d.stats.accepted_per_pos = {2, 1};
  auto d2 = roundtrip(d);
  CHECK(d2.tokens == d.tokens);
  CHECK(d2.stats.num_drafts == 3);
  CHECK(d2.stats.accepted_per_pos == d.stats.accepted_per_pos);
  CHECK(d2.total_ms == 9.0);

  Verdict v{7, 3, 2, {8, 9, 10}};
  auto v2 = roundtrip(v);
  CHECK(v2.emitted == v.emitted);
  CHECK(v2.accepted == 2);

  // A round's records as the verifier sends them (its logits, not a staged top-k): the copy
  // builds the same records.
  RecordSource src;
  src.route = 1;
  src.logits = torch::randn({3, 11});  // [N, V]
  src.top_k = 4;
  src.bases = {{1, 2}};
  src.drafts = {{3, 4}};
  src.sources = {20};
  src.greedy = {1};
  src.rows = {0, 1, 2};
  src.seq = {0, 0, 0};
  src.appended = {0, 1, 2};
  auto src2 = roundtrip(src);
  CHECK(src2.top_k == 4);
  REQUIRE(src2.logits.defined());
  CHECK(torch::equal(src2.logits, src.logits));
  CHECK(!src2.staged.probs.defined());
  auto a = make_records(src), b = make_records(src2);
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  for (size_t m = 0; m < a.size(); ++m) {
    CHECK(b[m].context == a[m].context);
    CHECK(b[m].top_ids == a[m].top_ids);
    CHECK(b[m].top_probs == a[m].top_probs);
  }
}

TEST_CASE("a corrupt tensor payload is a clear error", "[messages][errors]") {
  CHECK_THROWS_WITH(tensor_from_bytes({'n', 'o', 't'}), Catch::Contains("cannot decode a serialized tensor"));
  CHECK(!tensor_from_bytes({}).defined());
  CHECK(tensor_to_bytes(at::Tensor()).empty());
}
