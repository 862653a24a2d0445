#include "actors/router.hpp"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/messages.hpp"

namespace osd {

namespace {

constexpr size_t kFeatures = 4096;
constexpr size_t kPromptWindow = 512;  // the last tokens of the prompt describe it

// Hashed trigram frequencies of the prompt's last tokens, L2-normalised.
std::vector<float> prompt_features(const std::vector<int64_t>& prompt) {
  std::vector<float> v(kFeatures, 0.f);
  const size_t from = prompt.size() > kPromptWindow ? prompt.size() - kPromptWindow : 0;
  for (size_t i = from; i + 2 < prompt.size(); ++i) {
    uint64_t h = static_cast<uint64_t>(prompt[i]) * 0x9E3779B97F4A7C15ull;
    h ^= static_cast<uint64_t>(prompt[i + 1]) * 0xC2B2AE3D27D4EB4Full + (h << 6);
    h ^= static_cast<uint64_t>(prompt[i + 2]) * 0x165667B19E3779F9ull + (h >> 3);
    v[h % kFeatures] += 1.f;
  }
  double norm = 0;
  for (float x : v) norm += double(x) * x;
  if (norm > 0)
    for (auto& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

struct Profile {
  std::vector<double> sum = std::vector<double>(kFeatures, 0.0);
  int64_t examples = 0;
  void add(const std::vector<float>& v) {
    for (size_t i = 0; i < kFeatures; ++i) sum[i] += v[i];
    ++examples;
  }
  double cosine(const std::vector<float>& v) const {
    double dot = 0, norm = 0;
    for (size_t i = 0; i < kFeatures; ++i) dot += sum[i] * v[i], norm += sum[i] * sum[i];
    return norm > 0 ? dot / std::sqrt(norm) : -1.0;
  }
};

struct RouterState {
  RouterOptions opt;
  std::vector<Profile> profiles;
  std::map<RequestId, std::vector<float>> pending;  // automatic requests awaiting their outcome
  int64_t round_robin = 0;
  int64_t labelled = 0, automatic = 0, evaluated = 0, best_picks = 0, outcomes = 0;
  double acceptance_sum = 0;
  std::vector<int64_t> picks, best_counts;
  static inline const char* name = "osd.router";
};

using Self = caf::stateful_actor<RouterState>;

int64_t route_of_label(const RouterState& st, const std::string& domain) {
  for (size_t r = 0; r < st.opt.routes.size(); ++r)
    if (st.opt.routes[r] == domain) return static_cast<int64_t>(r);
  return -1;
}

int64_t choose(RouterState& st, const std::vector<float>& v) {
  int64_t best = -1;
  double best_sim = -1;
  for (size_t r = 0; r < st.profiles.size(); ++r) {
    if (st.profiles[r].examples == 0) continue;
    const double sim = st.profiles[r].cosine(v);
    if (sim > best_sim) best_sim = sim, best = static_cast<int64_t>(r);
  }
  if (best >= 0) return best;
  return st.round_robin++ % static_cast<int64_t>(st.opt.routes.size());
}

caf::behavior router(Self* self, caf::actor verifier, RouterOptions opt) {
  auto& st = self->state;
  st.opt = opt;
  if (st.opt.routes.empty()) st.opt.routes.push_back("default");
  const size_t R = st.opt.routes.size();
  st.profiles.resize(R);
  st.picks.assign(R, 0);
  st.best_counts.assign(R, 0);
  return {
      [=](route_atom, Submission& sub, caf::actor& sink) {
        auto& st = self->state;
        if (R == 1) {
          sub.route = 0;
        } else if (int64_t r = route_of_label(st, sub.domain); r >= 0) {
          sub.route = r;
          st.profiles[r].add(prompt_features(sub.request.prompt));
          ++st.labelled;
        } else {
          auto v = prompt_features(sub.request.prompt);
          sub.route = choose(st, v);
          sub.auto_routed = true;
          ++st.automatic;
          int64_t fewest = INT64_MAX;
          for (const auto& p : st.profiles) fewest = std::min(fewest, p.examples);
          sub.evaluate_routes = fewest < st.opt.eval_warmup ||
                                (st.opt.eval_every > 0 && st.automatic % st.opt.eval_every == 0);
          if (st.pending.size() > 100000)
            st.pending.clear();  // outcomes lost to failures: bound memory
          st.pending[sub.id] = std::move(v);
        }
        ++st.picks[sub.route];
        self->send(verifier, admit_atom_v, std::move(sub), std::move(sink));
      },
      [=](RouteOutcome& o) {
        auto& st = self->state;
        auto it = st.pending.find(o.id);
        if (it == st.pending.end()) return;
        ++st.outcomes;
        st.acceptance_sum += o.acceptance;
        if (o.agreement.size() == R) {
          size_t best = 0;
          for (size_t r = 1; r < R; ++r)
            if (o.agreement[r] > o.agreement[best]) best = r;
          ++st.evaluated;
          ++st.best_counts[best];
          // A tie with the best counts as a best pick.
          if (o.route >= 0 && static_cast<size_t>(o.route) < R &&
              o.agreement[o.route] >= o.agreement[best] - 1e-12)
            ++st.best_picks;
          st.profiles[best].add(it->second);
        }
        st.pending.erase(it);
      },
      [=](stats_atom) -> std::string {
        auto& st = self->state;
        nlohmann::json routes = nlohmann::json::array();
        for (size_t r = 0; r < R; ++r)
          routes.push_back({{"name", st.opt.routes[r]},
                            {"picks", st.picks[r]},
                            {"profile_examples", st.profiles[r].examples},
                            {"best_in_evaluations", st.best_counts[r]}});
        return nlohmann::json{
            {"routes", routes},
            {"labelled", st.labelled},
            {"automatic", st.automatic},
            {"evaluated", st.evaluated},
            {"best_picks", st.best_picks},
            {"best_pick_rate", st.evaluated ? double(st.best_picks) / st.evaluated : 0.0},
            {"automatic_acceptance", st.outcomes ? st.acceptance_sum / st.outcomes : 0.0}}
            .dump();
      },
  };
}

}  // namespace

caf::actor spawn_router(caf::actor_system& sys, caf::actor verifier, RouterOptions opt) {
  return sys.spawn(router, std::move(verifier), std::move(opt));
}

}  // namespace osd
