// osd-bench http: the HTTP front end against the ZeroMQ front end on one runtime, side by side:
// the same greedy requests at each concurrency through each protocol (clients in this process,
// over 127.0.0.1), repeated with the order alternating. Reports p50 / p99 latency and throughput
// as the median and the min-max over repeats, and the HTTP layer's added p50 latency as the
// ratio HTTP / ZeroMQ (median and min-max of the per-repeat ratios).
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include <sys/resource.h>

#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"
#include "models/core/transformer.hpp"
#include "runtime/model_source.hpp"
#include "runtime/runtime.hpp"
#include "runtime/zmq_server.hpp"

#ifdef OSD_WITH_HTTP
#include <httplib.h>
#include <zmq.hpp>

#include "models/text/text_tokenizer.hpp"
#include "runtime/http_server.hpp"
#endif

namespace osd::bench {

#ifdef OSD_WITH_HTTP
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

struct Run {
  double p50_ms = 0, p99_ms = 0, req_per_s = 0, tok_per_s = 0;
  double cpu_ms_per_req = 0;  // this process's CPU time (user + system, all threads) per request
};

double cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

// Median and range of one figure over the repeats, as "median [min-max]".
struct Spread {
  double median = 0, min = 0, max = 0;
  explicit Spread(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    median = v[v.size() / 2];
    min = v.front();
    max = v.back();
  }
  json cell(int digits) const {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.*f [%.*f-%.*f]", digits, median, digits, min, digits, max);
    return buf;
  }
};

// `n` requests from `C` client threads; each thread sends its next request when the last is answered.
template <class Send>
Run drive(int64_t C, int64_t n, int64_t new_tokens, Send send) {
  std::vector<double> lat(n);
  std::atomic<int64_t> next{0}, failed{0};
  const auto t0 = Clock::now();
  const double cpu0 = cpu_ms();
  std::vector<std::thread> clients;
  for (int64_t c = 0; c < C; ++c)
    clients.emplace_back([&, c] {
      auto one = send(c);  // a per-thread client: connect once
      for (int64_t i; (i = next++) < n;) {
        const auto a = Clock::now();
        if (!one(i)) ++failed;
        lat[i] = std::chrono::duration<double, std::milli>(Clock::now() - a).count();
      }
    });
  for (auto& t : clients) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (failed > 0) throw std::runtime_error(std::to_string(failed.load()) + " requests failed");
  return {pct(lat, 0.5), pct(lat, 0.99), n / secs, n * new_tokens / secs, (cpu_ms() - cpu0) / n};
}

}  // namespace
#endif

void add_http_bench(CLI::App& app, bool& json_out) {
  auto* cmd = app.add_subcommand("http", "HTTP (OpenAI API) against ZeroMQ on one runtime: latency and throughput");
  struct Opts {
    std::vector<int64_t> concurrency{1, 16, 64};
    int64_t requests = 48, new_tokens = 32, repeats = 3, max_batch = 32, k = 4;
    bool stream = false, adaptive_k = false;
    std::string target = "default", draft = "default";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--concurrency", o->concurrency, "client threads per level")->capture_default_str();
  cmd->add_option("--requests", o->requests, "requests per level and protocol (at least 2x the concurrency)")
      ->capture_default_str();
  cmd->add_option("--new-tokens", o->new_tokens)->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--repeats", o->repeats)->check(CLI::Range(1, 100))->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--target", o->target, "model spec (runtime/model_source.hpp)")->capture_default_str();
  cmd->add_option("--draft", o->draft, "model spec, or none")->capture_default_str();
  cmd->add_flag("--stream", o->stream, "stream tokens (ZeroMQ token events, HTTP server-sent events)");
  cmd->add_option("--k", o->k, "draft tokens per round (fixed: every run verifies the same shapes)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  cmd->add_flag("--adaptive-k", o->adaptive_k, "choose k per sequence from measured costs (adds run-to-run noise)");
  cmd->callback([o, &json_out] {
#ifndef OSD_WITH_HTTP
    throw std::runtime_error("this build has no HTTP front end (install libcpp-httplib-dev and rebuild)");
#else
    std::string err;
    RuntimeOptions ro;
    ro.target = load_model({o->target, "cpu", "float32", 0}, ModelRole::target, &err);
    if (!ro.target) throw std::runtime_error(err);
    if (o->draft != "none") {
      ro.draft = load_model({o->draft, "cpu", "float32", 0}, ModelRole::draft, &err);
      if (!ro.draft) throw std::runtime_error(err);
    }
    ro.tokenizer = serve_tokenizer("auto", o->target, *ro.target);
    if (!ro.tokenizer) throw std::runtime_error("the target has no tokenizer");
    ro.max_batch = o->max_batch;
    ro.max_in_flight = 1 << 16;
    ro.k = o->k;
    ro.adaptive_k = o->adaptive_k;
    auto rt = Runtime::create(ro, &err);
    if (!rt) throw std::runtime_error(err);
    ZmqServerOptions zo;
    zo.endpoint = "tcp://127.0.0.1:*";
    zo.encode = [tok = ro.tokenizer](const std::string& text) { return tok->encode_prompt(text); };
    auto zmq_server = ZmqServer::start(*rt, zo, &err);
    if (!zmq_server) throw std::runtime_error(err);
    HttpServerOptions ho;
    ho.port = 0;
    ho.threads = static_cast<int>(*std::max_element(o->concurrency.begin(), o->concurrency.end())) + 8;
    ho.model.id = "bench";
    ho.model.context = std::min<int64_t>(ro.max_len, ro.target->config().max_position_embeddings);
    ho.model.vocab_size = ro.target->config().vocab_size;
    ho.tokenizer = ro.tokenizer;
    auto http = HttpServer::start(*rt, ho, &err);
    if (!http) throw std::runtime_error(err);

    const std::vector<std::string> prompts = {"def fibonacci(n):", "int main(void) {", "In the beginning",
                                              "import numpy as np", "The quick brown fox", "#include <stdio.h>"};
    zmq::context_t ctx(1);
    const std::string zmq_endpoint = zmq_server->endpoint();
    const int port = http->port();
    const int64_t M = o->new_tokens;
    const bool stream = o->stream;
    // One request through each protocol; true when answered with M tokens.
    auto zmq_client = [&](int64_t) {
      auto sock = std::make_shared<zmq::socket_t>(ctx, zmq::socket_type::dealer);
      sock->set(zmq::sockopt::linger, 0);
      sock->connect(zmq_endpoint);
      return [sock, &prompts, M, stream](int64_t i) {
        const json req = {{"op", "generate"}, {"prompt", prompts[i % prompts.size()]},
                          {"max_new_tokens", M}, {"temperature", 0}, {"stream", stream}};
        sock->send(zmq::buffer(req.dump()), zmq::send_flags::none);
        while (true) {
          zmq::message_t m;
          if (!sock->recv(m)) return false;
          const auto ev = json::parse(m.to_string());
          if (ev["event"] == "done" && ev["tokens"].size() == static_cast<size_t>(M)) return true;
          if (ev["event"] == "done" || ev["event"] == "error") {
            std::fprintf(stderr, "osd-bench http: ZeroMQ answered %s\n", ev.dump().substr(0, 300).c_str());
            return false;
          }
        }
      };
    };
    auto http_client = [&](int64_t) {
      auto cli = std::make_shared<httplib::Client>("127.0.0.1", port);
      cli->set_keep_alive(true);
      // httplib's client writes headers and body separately: with Nagle's algorithm on, the
      // body waits for the server's delayed ACK (40 ms). Clients that matter set TCP_NODELAY.
      cli->set_tcp_nodelay(true);
      cli->set_read_timeout(600, 0);
      return [cli, &prompts, M, stream](int64_t i) {
        const json req = {{"prompt", prompts[i % prompts.size()]}, {"max_tokens", M}, {"temperature", 0},
                          {"stream", stream}};
        auto r = cli->Post("/v1/completions", req.dump(), "application/json");
        const bool ok = r && r->status == 200 &&
                        (stream ? r->body.find("data: [DONE]") != std::string::npos
                                : json::parse(r->body)["usage"]["completion_tokens"] == M);
        if (!ok)
          std::fprintf(stderr, "osd-bench http: HTTP answered %d %s\n", r ? r->status : -1,
                       r ? r->body.substr(0, 300).c_str() : httplib::to_string(r.error()).c_str());
        return ok;
      };
    };
    // Warm-up: every code path once at the largest concurrency.
    const int64_t warm_c = std::min<int64_t>(8, *std::max_element(o->concurrency.begin(), o->concurrency.end()));
    drive(warm_c, warm_c * 2, M, zmq_client);
    drive(warm_c, warm_c * 2, M, http_client);

    Report rep("http", {"concurrency", "protocol", "p50 ms", "p99 ms", "req/s", "tok/s", "cpu ms/req", "http/zmq p50"});
    json raw = json::array();
    for (int64_t C : o->concurrency) {
      const int64_t n = std::max(o->requests, 2 * C);
      std::vector<Run> zmq_runs, http_runs;
      std::vector<double> ratios;
      for (int64_t r = 0; r < o->repeats; ++r) {
        // Alternate which protocol goes first, so a drift of the machine does not favour one.
        Run z, h;
        if (r % 2 == 0) {
          z = drive(C, n, M, zmq_client);
          h = drive(C, n, M, http_client);
        } else {
          h = drive(C, n, M, http_client);
          z = drive(C, n, M, zmq_client);
        }
        zmq_runs.push_back(z);
        http_runs.push_back(h);
        ratios.push_back(h.p50_ms / z.p50_ms);
        raw.push_back({{"concurrency", C}, {"repeat", r}, {"requests", n},
                       {"zmq", {{"p50_ms", z.p50_ms}, {"p99_ms", z.p99_ms}, {"req_per_s", z.req_per_s},
                                {"cpu_ms_per_req", z.cpu_ms_per_req}}},
                       {"http", {{"p50_ms", h.p50_ms}, {"p99_ms", h.p99_ms}, {"req_per_s", h.req_per_s},
                                 {"cpu_ms_per_req", h.cpu_ms_per_req}}}});
      }
      for (const auto* runs : {&zmq_runs, &http_runs}) {
        auto field = [&](double Run::*f) {
          std::vector<double> v;
          for (const auto& x : *runs) v.push_back(x.*f);
          return Spread(v);
        };
        const bool is_http = runs == &http_runs;
        rep.add({C, is_http ? "http" : "zmq", field(&Run::p50_ms).cell(1), field(&Run::p99_ms).cell(1),
                 field(&Run::req_per_s).cell(1), field(&Run::tok_per_s).cell(0), field(&Run::cpu_ms_per_req).cell(1),
                 is_http ? Spread(ratios).cell(3) : json("")});
      }
    }
    rep.note("runs", raw);
    rep.note("requests", std::to_string(M) + " new tokens, greedy, " + (stream ? "streamed" : "not streamed") +
                             ", prompts of 16-20 bytes, " + std::to_string(o->repeats) + " repeats (median [min-max])");
    rep.note("models", o->target + " / " + o->draft + ", online distillation off, max batch " +
                           std::to_string(o->max_batch) + ", " +
                           (o->adaptive_k ? std::string("adaptive k") : "k = " + std::to_string(o->k)));
    rep.note("threads", at::get_num_threads());
    rep.note("cpu ms/req", "CPU time of the whole process (model, server, clients) per request");
    rep.note("http/zmq p50", "HTTP p50 latency / ZeroMQ p50 latency in the same repeat (goal <= 1.05)");
    http->stop();
    zmq_server->stop();
    rt->shutdown();
    rep.print(json_out);
#endif
  });
}

}  // namespace osd::bench
