// A user-written router in osd's pipeline: picks each request's draft route from its prompt.
//
// osd serves several drafts at once, one per route (RuntimeOptions::routes). Its own router sends
// a request to the route its `domain` names and chooses for the others. This example puts an
// actor in front of it (RuntimeOptions::stages) that reads the prompt, looks for keywords and
// writes the chosen route's name into the request's `domain`, the supported way to pick a route:
// osd's router then sends it there and learns the prompt for that route. A request that already
// names one of the routes keeps it.
//
// Two routes, "code" and "chat", on random tiny models made here (a real service loads its
// checkpoints). Runs as a test: exit code 0 when every request was served by the route the
// keyword router chose, as each result's route and the runtime's statistics show.
//   build/osd-example-keyword-router
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "actors/messages.hpp"
#include "models/core/transformer.hpp"
#include "models/text/text_tokenizer.hpp"
#include "runtime/runtime.hpp"

namespace {

// A prompt containing `keyword` goes to `route`; the first matching rule wins.
struct KeywordRule {
  std::string keyword;
  std::string route;
};

struct KeywordRouterState {
  std::vector<KeywordRule> rules;
  std::string fallback;                               // route of prompts no rule matches
  std::shared_ptr<const osd::TextTokenizer> tokenizer;  // the runtime's, to read the prompt's text
  static inline const char* name = "example.keyword_router";
};

std::string route_for(const KeywordRouterState& st, const std::string& text) {
  for (const auto& rule : st.rules)
    if (text.find(rule.keyword) != std::string::npos) return rule.route;
  return st.fallback;
}

bool names_a_route(const KeywordRouterState& st, const std::string& domain) {
  if (domain == st.fallback) return true;
  for (const auto& rule : st.rules)
    if (domain == rule.route) return true;
  return false;
}

// The stage: (route_atom, Submission, sink) in, the same message to `next` out (osd's router,
// or the next user stage). Prompt ids were checked against the vocabulary at intake.
caf::behavior keyword_router(caf::stateful_actor<KeywordRouterState>* self, caf::actor next,
                             KeywordRouterState config) {
  self->state = std::move(config);
  return {
      [=](osd::route_atom, osd::Submission& sub, caf::actor& sink) {
        const auto& st = self->state;
        if (!names_a_route(st, sub.domain)) sub.domain = route_for(st, st.tokenizer->decode(sub.request.prompt));
        self->send(next, osd::route_atom_v, std::move(sub), std::move(sink));
      },
  };
}

}  // namespace

int main() {
  // Byte-level text (token t is byte t), the vocabulary of the tiny presets.
  auto tokenizer = osd::load_text_tokenizer("bytes");
  osd::RuntimeOptions opt;
  opt.target = std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny"), 1);
  opt.routes = {{"code", std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny-draft"), 2)},
                {"chat", std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny-draft"), 3)}};
  opt.tokenizer = tokenizer;
  opt.max_batch = 4;
  opt.max_len = 128;
  opt.max_new_tokens_limit = 64;
  KeywordRouterState rules;
  rules.rules = {{"def ", "code"}, {"#include", "code"}, {"return", "code"}};
  rules.fallback = "chat";
  rules.tokenizer = tokenizer;
  opt.stages.push_back([rules](caf::actor_system& sys, caf::actor next) {
    return sys.spawn(keyword_router, std::move(next), rules);
  });
  std::string error;
  auto rt = osd::Runtime::create(opt, &error);
  if (!rt) {
    std::cerr << error << "\n";
    return 1;
  }

  // Each prompt with the domain its client sent ("" = let the keyword router choose) and the
  // route that must serve it.
  struct Case {
    std::string prompt, domain, expected_route;
  };
  const std::vector<Case> cases = {
      {"def fibonacci(n):", "", "code"},        {"Hello, how are you?", "", "chat"},
      {"#include <vector>", "", "code"},        {"Tell me a story", "", "chat"},
      {"x = 1; return x", "", "code"},          {"def f(): explain in words", "chat", "chat"},
      {"What is osd?", "not-a-route", "chat"},
  };
  int failures = 0;
  for (const auto& c : cases) {
    osd::GenerateParams p;
    p.prompt_tokens = tokenizer->encode(c.prompt);
    p.max_new_tokens = 8;
    p.temperature = 0;
    p.domain = c.domain;
    const osd::GenerateResult r = rt->submit(p)->get();
    std::cout << "'" << c.prompt << "' -> route " << r.route << " (" << r.tokens.size() << " tokens)\n";
    if (!r.ok() || r.route != c.expected_route) ++failures;
  }

  // osd's router counts every request as labelled (the keyword router named its route) and
  // none as automatic; per route it counts the requests it sent there.
  const auto stats = nlohmann::json::parse(rt->stats_json());
  const auto& router = stats["router"];
  std::cout << "router: " << router.dump() << "\n";
  int64_t code_requests = 0;
  for (const auto& c : cases) code_requests += c.expected_route == "code";
  if (router["labelled"] != cases.size() || router["automatic"] != 0) ++failures;
  for (const auto& route : router["routes"]) {
    const int64_t expected = route["name"] == "code" ? code_requests : int64_t(cases.size()) - code_requests;
    if (route["picks"] != expected) ++failures;
  }
  rt->shutdown();
  std::cout << (failures ? "FAILED" : "ok") << "\n";
  return failures ? 1 : 0;
}
