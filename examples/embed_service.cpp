// Embedding osd in a C++ service: build a Runtime over a target and a draft, submit requests
// from several threads, stream tokens through a callback, read the final results and the
// runtime's statistics, shut down gracefully. Runs as a test (exit code 0 = all good).
//
// The models here are random tiny ones so the example runs anywhere in a second; a real service
// loads its checkpoints instead.
#include <torch/torch.h>

#include <iostream>
#include <thread>

#include "models/core/transformer.hpp"
#include "runtime/runtime.hpp"

int main() {
  auto target = std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny"), 1);
  auto draft = std::make_shared<osd::Transformer>(*osd::ModelConfig::preset("tiny-draft"), 2);

  osd::RuntimeOptions opt;
  opt.target = target;
  opt.draft = draft;
  opt.max_batch = 8;
  opt.max_len = 256;
  opt.token_text = [](int64_t t) { return std::string(1, static_cast<char>(t)); };  // byte-level
  std::string error;
  auto runtime = osd::Runtime::create(opt, &error);
  if (!runtime) {
    std::cerr << "cannot start osd: " << error << "\n";
    return 1;
  }

  // Four "service threads", each handling two user requests.
  std::vector<std::thread> workers;
  std::atomic<int> failures{0}, streamed_tokens{0};
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      for (int r = 0; r < 2; ++r) {
        osd::GenerateParams p;
        p.prompt_tokens = {static_cast<int64_t>('a' + w), static_cast<int64_t>('0' + r)};
        p.max_new_tokens = 16;
        p.temperature = 0.8;
        p.seed = static_cast<uint64_t>(w * 10 + r);
        auto handle = runtime->submit(p, [&](const osd::TokenChunk& c) { streamed_tokens += static_cast<int>(c.tokens.size()); });
        osd::GenerateResult res = handle->get();
        if (!res.ok() || res.tokens.size() != 16) ++failures;
        std::cout << res.id << ": " << res.tokens.size() << " tokens, finish=" << res.finish
                  << ", drafted " << res.num_draft_tokens << ", accepted " << res.num_accepted_tokens << "\n";
      }
    });
  }
  for (auto& t : workers) t.join();

  // A bad request is an error value, and the runtime keeps serving.
  osd::GenerateParams bad;
  bad.prompt_tokens = {1};
  bad.top_p = 3.0;
  auto bad_result = runtime->submit(bad)->get();
  std::cout << "bad request: " << bad_result.error_code << ": " << bad_result.error_message << "\n";
  if (bad_result.ok()) ++failures;

  std::cout << "stats: " << runtime->stats_json() << "\n";
  runtime->shutdown();
  std::cout << "streamed " << streamed_tokens << " tokens; failures: " << failures << "\n";
  return failures == 0 && streamed_tokens == 8 * 16 ? 0 : 1;
}
