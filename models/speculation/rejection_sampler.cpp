#include "models/speculation/rejection_sampler.hpp"

#include <torch/torch.h>

#include "models/common/error.hpp"
#include "models/speculation/sampling.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

namespace {
// Accepted draft tokens per row: the leading run of true in ok [B, K] -> [B] int64.
at::Tensor leading_run(const at::Tensor& ok) { return ok.to(torch::kInt64).cumprod(1).sum(1); }
}  // namespace

namespace {

// The rule on the device: accepted [B] and next token [B] int64, no host synchronisation.
std::pair<at::Tensor, at::Tensor> rejection_sample_on_device(const RejectionInput& in, AcceptRule rule) {
  check_dims(in.draft_tokens, 2, "rejection_sample draft_tokens [B, K]");
  check_dims(in.q, 3, "rejection_sample q [B, K, V]");
  check_dims(in.p, 3, "rejection_sample p [B, K + 1, V]");
  const int64_t B = in.draft_tokens.size(0), K = in.draft_tokens.size(1), V = in.p.size(2);
  if (in.q.size(0) != B || in.q.size(1) != K || in.p.size(0) != B || in.p.size(1) != K + 1 ||
      (K > 0 && in.q.size(2) != V))
    throw Error("rejection_sample: shapes disagree: tokens " + shape_str(in.draft_tokens) +
                ", q " + shape_str(in.q) + ", p " + shape_str(in.p));
  const bool final_per_position = static_cast<int64_t>(in.u_final.size()) == B * (K + 1);
  if (static_cast<int64_t>(in.k.size()) != B ||
      (static_cast<int64_t>(in.u_final.size()) != B && !final_per_position) ||
      static_cast<int64_t>(in.u_accept.size()) != B * K)
    throw Error("rejection_sample: k, u_accept or u_final has the wrong length");
  for (auto k : in.k)
    if (k < 0 || k > K) throw Error("rejection_sample: k outside [0, K]");
  auto dev = in.p.device();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  auto kt = to_device(torch::tensor(in.k, torch::kInt64), dev);                   // [B]
  at::Tensor accepted;                                                            // [B]
  if (K > 0) {
    auto idx = to_device(in.draft_tokens, dev).unsqueeze(-1);                         // [B, K, 1]
    auto p_x = in.p.narrow(1, 0, K).gather(-1, idx).squeeze(-1).to(torch::kFloat64);  // [B, K]
    auto q_x = in.q.gather(-1, idx).squeeze(-1).to(torch::kFloat64);                  // [B, K]
    auto u = to_device(torch::tensor(in.u_accept, torch::kFloat64).view({B, K}), dev);
    // accept iff u < min(1, p/q)  <=>  u * q < p   (q > 0 for a token drawn from q)
    auto ok = rule == AcceptRule::broken_q_over_p ? u * p_x < q_x : u * q_x < p_x;
    accepted = leading_run(ok.logical_and(prefix_mask(in.k, K, dev)));            // [B]
  } else {
    accepted = torch::zeros({B}, i64);
  }
  // The distribution of the next token at position `accepted` of each row.
  auto at_n = accepted.view({B, 1, 1}).expand({B, 1, V});
  auto p_n = in.p.gather(1, at_n).squeeze(1);                                     // [B, V]
  at::Tensor final_probs = p_n;
  if (K > 0 && rule != AcceptRule::broken_resample_from_p) {
    auto q_n = in.q.gather(1, accepted.clamp_max(K - 1).view({B, 1, 1}).expand({B, 1, V})).squeeze(1);
    auto residual = (p_n - q_n).clamp_min(0);                                      // [B, V]
    auto rejected = (accepted < kt).unsqueeze(1);
    // Mass of exactly 0 cannot be reached by a real rejection; guard against rounding anyway.
    auto has_mass = residual.sum(-1, true) > 0;
    final_probs = torch::where(rejected.logical_and(has_mass), residual, p_n);
  }
  auto u_final = to_device(torch::tensor(in.u_final, torch::kFloat64), dev);
  if (final_per_position) u_final = u_final.view({B, K + 1}).gather(1, accepted.unsqueeze(1)).squeeze(1);
  return {accepted, sample_from_probs(final_probs, u_final)};
}

// The coupled draw: the target draws every position j from its uniform by inverse CDF (x_j); the
// draft's token j is accepted while it equals x_j; the next token is x at the first mismatch (or
// the bonus position). p: [B, K + 1, V]; u_target: [B * (K + 1)]. Returns accepted, next [B].
std::pair<at::Tensor, at::Tensor> coupled_on_device(const at::Tensor& drafts, const at::Tensor& p,
                                                    const std::vector<int64_t>& k,
                                                    const std::vector<double>& u_target) {
  const int64_t B = p.size(0), K1 = p.size(1), V = p.size(2), K = K1 - 1;
  auto dev = p.device();
  auto x = sample_from_probs(p.reshape({B * K1, V}), torch::tensor(u_target, torch::kFloat64))
               .view({B, K1});                                                     // [B, K + 1]
  at::Tensor accepted = torch::zeros({B}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  if (K > 0) {
    auto same = to_device(drafts, dev).eq(x.narrow(1, 0, K));                     // [B, K]
    accepted = leading_run(same.logical_and(prefix_mask(k, K, dev)));
  }
  return {accepted, x.gather(1, accepted.unsqueeze(1)).squeeze(1)};
}

// Reads accepted and next [B] to the host: the round's one synchronisation.
RejectionOutput to_host(const at::Tensor& accepted, const at::Tensor& next) {
  const int64_t B = accepted.size(0);
  auto both = torch::stack({accepted, next}).to(torch::kCPU);                     // [2, B]
  RejectionOutput out;
  auto a = both[0], n = both[1];
  out.accepted.assign(a.data_ptr<int64_t>(), a.data_ptr<int64_t>() + B);
  out.next_token.assign(n.data_ptr<int64_t>(), n.data_ptr<int64_t>() + B);
  return out;
}

}  // namespace

RejectionOutput rejection_sample(const RejectionInput& in, AcceptRule rule) {
  auto [accepted, next] = rejection_sample_on_device(in, rule);
  return to_host(accepted, next);
}

namespace {
// The proposal's draft tokens on the host, [B, K] int64: from host_tokens where the proposer
// filled them (it always does), else read from the device.
at::Tensor host_drafts(const Proposals& prop, int64_t K) {
  const int64_t B = static_cast<int64_t>(prop.k.size());
  bool filled = static_cast<int64_t>(prop.host_tokens.size()) == B;
  for (int64_t i = 0; filled && i < B; ++i)
    filled = static_cast<int64_t>(prop.host_tokens[i].size()) >= prop.k[i];
  if (!filled || K == 0)
    return K == 0 ? torch::zeros({B, 0}, torch::kInt64) : prop.tokens.to(torch::kCPU);
  auto out = torch::zeros({B, K}, torch::kInt64);
  auto acc = out.accessor<int64_t, 2>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < prop.k[i]; ++j) acc[i][j] = prop.host_tokens[i][j];
  return out;
}
}  // namespace

RoundVerification verify_round(const Proposals& prop, const at::Tensor& logits,
                               const std::vector<SamplingParams>& row_params,
                               const std::vector<int64_t>& row_positions, AcceptRule rule) {
  const int64_t B = logits.size(0), K1 = logits.size(1), V = logits.size(2), K = K1 - 1;
  if (static_cast<int64_t>(row_params.size()) != B || static_cast<int64_t>(row_positions.size()) != B)
    throw Error("verify_round: one sampling params and one position per row needed");
  RoundVerification r;
  bool all_greedy = rule == AcceptRule::exact, any_coupled = false, any_rejection = false;
  for (const auto& p : row_params) {
    all_greedy = all_greedy && p.greedy();
    const bool coupled = !p.greedy() && p.mode == SamplingMode::coupled && rule == AcceptRule::exact;
    any_coupled = any_coupled || coupled;
    any_rejection = any_rejection || !coupled;
  }
  if (all_greedy) {
    // The rule with one-hot p and q: accept while the target's argmax equals the draft token,
    // then emit the target's argmax. The argmaxes come to the host (the round's one sync) and the
    // comparison runs there: at batch 1 each further kernel costs more than the arithmetic.
    const auto best = logits.argmax(-1).to(torch::kCPU);  // [B, K + 1]
    const auto drafts = host_drafts(prop, K);             // [B, K]
    const auto b = best.accessor<int64_t, 2>();
    const auto d = drafts.accessor<int64_t, 2>();
    for (int64_t i = 0; i < B; ++i) {
      int64_t n = 0;
      while (n < prop.k[i] && d[i][n] == b[i][n]) ++n;
      r.out.accepted.push_back(n);
      r.out.next_token.push_back(b[i][n]);
    }
  } else {
    // Each row's uniforms from its seed and positions: the accept tests of draft tokens 1..K and
    // the target's draw at every position the round's last token may land on.
    std::vector<double> u_accept, u_target;
    u_accept.reserve(B * K);
    u_target.reserve(B * K1);
    for (int64_t i = 0; i < B; ++i) {
      const uint64_t seed = row_params[i].seed;
      for (int64_t j = 0; j < K; ++j)
        u_accept.push_back(position_uniform(seed, row_positions[i] + j, DrawPurpose::accept));
      for (int64_t j = 0; j < K1; ++j)
        u_target.push_back(position_uniform(seed, row_positions[i] + j, DrawPurpose::target));
    }
    std::vector<SamplingParams> params;
    params.reserve(B * K1);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t j = 0; j < K1; ++j) params.push_back(row_params[i]);
    r.target_probs = processed_probs(logits.view({B * K1, V}), params).view({B, K1, V});
    // The draft may live on another device (osd.draft-device): its tokens and q come to p's.
    const auto dev = r.target_probs.device();
    auto drafts = to_device(prop.tokens, dev);
    at::Tensor accepted, next;
    if (any_rejection) {
      RejectionInput in{drafts, to_device(prop.probs, dev), r.target_probs, prop.k,
                        std::move(u_accept), u_target};
      std::tie(accepted, next) = rejection_sample_on_device(in, rule);
    }
    if (any_coupled) {
      auto [acc_c, next_c] = coupled_on_device(drafts, r.target_probs, prop.k, u_target);
      if (!any_rejection) {
        accepted = acc_c, next = next_c;
      } else {
        std::vector<uint8_t> coupled(B);
        for (int64_t i = 0; i < B; ++i)
          coupled[i] = !row_params[i].greedy() && row_params[i].mode == SamplingMode::coupled;
        auto c = to_device(torch::tensor(std::vector<int64_t>(coupled.begin(), coupled.end())).to(torch::kBool), dev);
        accepted = torch::where(c, acc_c, accepted);
        next = torch::where(c, next_c, next);
      }
    }
    r.out = to_host(accepted, next);
  }
  for (int64_t i = 0; i < B; ++i) {
    Verdict v{prop.ids[i], prop.k[i], r.out.accepted[i], {}};
    v.emitted.assign(prop.host_tokens[i].begin(), prop.host_tokens[i].begin() + v.accepted);
    v.emitted.push_back(r.out.next_token[i]);
    r.verdicts.push_back(std::move(v));
  }
  return r;
}

}  // namespace osd
