#include "models/distillation/round_records.hpp"

namespace osd {

RecordSource round_records(int64_t route, const std::vector<RecordedRow>& rows, at::Tensor logits,
                           int64_t K1, bool all_positions, int64_t top_k) {
  RecordSource src;
  src.route = route;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const int64_t k = static_cast<int64_t>(r.drafts.size()), n = r.accepted;
    int64_t from = 0, to = 0;  // positions j (draft tokens appended), inclusive
    if (k == 0) {
      if (!r.plain) continue;
    } else {
      if (!all_positions && n == k) continue;  // nothing was rejected
      from = all_positions ? 0 : n, to = n;
    }
    const auto q = static_cast<int64_t>(src.bases.size());
    src.bases.push_back(r.so_far);
    src.drafts.push_back(r.drafts);
    src.sources.push_back(r.source);
    src.greedy.push_back(r.greedy);
    for (int64_t j = from; j <= to; ++j) {
      src.rows.push_back(static_cast<int64_t>(i) * K1 + j);
      src.seq.push_back(q);
      src.appended.push_back(j);
    }
  }
  if (!src.rows.empty()) {
    src.logits = std::move(logits);
    src.top_k = top_k;
  }
  return src;
}

RecordSource prompt_records(int64_t route, int64_t source, const std::vector<int64_t>& prompt,
                            at::Tensor logits, int64_t top_k, bool greedy) {
  const int64_t P = static_cast<int64_t>(prompt.size()), m = logits.size(0);
  RecordSource src;
  src.route = route;
  src.prompt = true;
  src.bases.emplace_back(prompt.begin(), prompt.begin() + (P - m));
  src.drafts.emplace_back(prompt.begin() + (P - m), prompt.end() - 1);
  src.sources.push_back(source);
  src.greedy.push_back(greedy);
  for (int64_t j = 0; j < m; ++j) {
    src.rows.push_back(j);
    src.seq.push_back(0);
    src.appended.push_back(j);
  }
  src.logits = std::move(logits);
  src.top_k = top_k;
  return src;
}

}  // namespace osd
