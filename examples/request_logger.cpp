// A user-written actor in osd's pipeline: a request logger that also enforces a policy.
//
// It sits between intake and the router (RuntimeOptions::stages), sees every admitted request,
// logs it (osd::log, spdlog underneath), counts requests per domain, and answers requests whose prompt contains a
// banned token itself (an error DoneEvent) instead of forwarding them. Its state is its own;
// it talks to the rest of osd only through messages (actors/messages.hpp).
// Runs as a test: exit code 0 when the logger saw every request and the policy held.
#include <torch/torch.h>

#include <iostream>

#include "actors/messages.hpp"
#include "models/core/transformer.hpp"
#include "models/common/log.hpp"
#include "runtime/runtime.hpp"

namespace {

constexpr int64_t kBannedToken = 13;

struct LoggerState {
  std::map<std::string, int64_t> per_domain;
  int64_t refused = 0;
  static inline const char* name = "example.request_logger";
};

caf::behavior request_logger(caf::stateful_actor<LoggerState>* self, caf::actor next) {
  return {
    [=](osd::route_atom, osd::Submission& sub, caf::actor& sink) {
      auto& st = self->state;
      const std::string domain = sub.domain.empty() ? "(none)" : sub.domain;
      ++st.per_domain[domain];
      osd::log::info(osd::log::cat("request ", sub.id, " domain=", domain, " prompt=", sub.request.prompt.size(),
                                   " tokens max_new=", sub.request.max_new_tokens));
      const auto& p = sub.request.prompt;
      if (std::find(p.begin(), p.end(), kBannedToken) != p.end()) {
        ++st.refused;
        self->send(sink, osd::DoneEvent{sub.id, {}, "", "error", "policy", "prompt contains a banned token", {}, 0, 0});
        return;
      }
      self->send(next, osd::route_atom_v, std::move(sub), std::move(sink));
    },
    [=](osd::stats_atom) -> std::string {
      std::string out;
      for (const auto& [d, n] : self->state.per_domain) out += d + "=" + std::to_string(n) + " ";
      return out + "refused=" + std::to_string(self->state.refused);
    },
  };
}

}  // namespace

int main() {
  osd::RuntimeOptions opt;
  opt.target = std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny"), 1);
  opt.draft = std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny-draft"), 2);
  opt.max_batch = 4;
  opt.max_len = 128;
  caf::actor logger;  // kept to ask it for its counts at the end
  opt.stages.push_back([&](caf::actor_system& sys, caf::actor next) {
    logger = sys.spawn(request_logger, std::move(next));
    return logger;
  });
  std::string error;
  auto rt = osd::Runtime::create(opt, &error);
  if (!rt) {
    std::cerr << error << "\n";
    return 1;
  }
  int failures = 0;
  for (int i = 0; i < 6; ++i) {
    osd::GenerateParams p;
    p.prompt_tokens = {1, 2, static_cast<int64_t>(i == 3 ? kBannedToken : 40 + i)};
    p.max_new_tokens = 8;
    p.domain = i % 2 ? "code" : "prose";
    auto r = rt->submit(p)->get();
    const bool banned = i == 3;
    if (banned != (r.error_code == "policy") || (!banned && r.tokens.size() != 8)) ++failures;
  }
  // Ask the logger for its counts from a scoped actor in the logger's own actor system.
  std::string counts;
  {
    caf::scoped_actor self{logger->home_system()};
    self->request(logger, std::chrono::seconds(5), osd::stats_atom_v)
        .receive([&](const std::string& s) { counts = s; }, [&](caf::error&) { ++failures; });
  }
  std::cout << "logger counts: " << counts << "\n";
  if (counts != "code=3 prose=3 refused=1") ++failures;
  rt->shutdown();
  std::cout << (failures ? "FAILED" : "ok") << "\n";
  return failures ? 1 : 0;
}
