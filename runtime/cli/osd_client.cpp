// osd-client: send one request to osd-serve and stream the answer.
//   osd-client "def fibonacci("                  streamed text on stdout
//   osd-client --stop ")" --stop ":" "def f("    several stop strings: one --stop each
//   osd-client --op stats                         the server's statistics (JSON)
// Ctrl-C while a request streams cancels it on the same connection (ids are per connection, so
// only this client can) and waits for its final reply, at most --cancel-wait-ms; a second Ctrl-C
// quits at once. Exit codes: 0 done, 1 error reply, 2 (or CLI11's code) bad arguments, 3 no or
// unreadable reply, 130 interrupted by Ctrl-C.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <iostream>
#include <optional>

namespace {

volatile std::sig_atomic_t g_interrupts = 0;

// First Ctrl-C: noted, the main loop cancels the request. Second: quit now (write and _exit are
// async-signal-safe; nothing else is done here).
void on_interrupt(int) {
  if (++g_interrupts >= 2) {
    const char msg[] = "\nosd-client: interrupted again, quitting without the final reply\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(130);
  }
}

void catch_interrupts() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a waiting zmq_poll returns EINTR and the loop sees the flag
  sigaction(SIGINT, &sa, nullptr);
}

// Waits up to timeout_ms for one reply; nullopt on timeout or interruption (check g_interrupts).
std::optional<std::string> receive(zmq::socket_t& sock, int64_t timeout_ms) {
  zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
  try {
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return std::nullopt;
    zmq::message_t m;
    if (!sock.recv(m, zmq::recv_flags::dontwait)) return std::nullopt;
    return m.to_string();
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::nullopt;
    throw;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"osd-client: send a request to osd-serve over ZeroMQ and stream the reply"};
  std::string prompt, endpoint = "tcp://127.0.0.1:5555", op = "generate", id, domain;
  std::vector<int64_t> tokens, eos;
  std::vector<std::string> stop;
  int64_t max_new_tokens = 64, top_k = 0, seed = 0, timeout_ms = 60000, cancel_wait_ms = 10000;
  double temperature = 1.0, top_p = 1.0;
  bool no_stream = false, raw = false, show_stats = false, dry_run = false;
  app.add_option("prompt", prompt, "prompt text");
  app.add_option("--endpoint", endpoint, "server endpoint")->capture_default_str();
  app.add_option("--op", op, "generate | stats | health | cancel")->check(CLI::IsMember({"generate", "stats", "health", "cancel"}))->capture_default_str();
  app.add_option("--id", id, "request id (cancel needs it; generate: 'osd-client' when not given)");
  // List options take one value per flag (or a comma-separated list where values cannot hold a
  // comma), so they never swallow the positional prompt: --stop ")" "def f(" prompts "def f(".
  app.add_option("--tokens", tokens, "prompt as token ids instead of text: --tokens 1,2,3 (or repeat --tokens)")
      ->allow_extra_args(false)->delimiter(',');
  app.add_option("--max-new-tokens", max_new_tokens)->capture_default_str();
  app.add_option("--temperature", temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-p", top_p)->capture_default_str();
  app.add_option("--top-k", top_k)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_option("--stop", stop, "a stop string; repeat --stop for several")->allow_extra_args(false);
  app.add_option("--eos", eos, "end-of-sequence token ids: --eos 2,3 (or repeat --eos)")
      ->allow_extra_args(false)->delimiter(',');
  app.add_option("--domain", domain, "route hint");
  app.add_option("--timeout-ms", timeout_ms, "give up after this long without a reply")->capture_default_str();
  app.add_option("--cancel-wait-ms", cancel_wait_ms,
                 "after Ctrl-C, wait this long for the cancelled request's final reply")->capture_default_str();
  app.add_flag("--no-stream", no_stream, "only the final reply");
  app.add_flag("--json", raw, "print every reply as JSON, one per line");
  app.add_flag("--stats", show_stats, "print the request's statistics to stderr at the end");
  app.add_flag("--dry-run", dry_run, "print the request frame (JSON) instead of sending it");
  app.allow_extras();  // said below, with how to give several values
  CLI11_PARSE(app, argc, argv);
  for (const auto& extra : app.remaining()) {
    if (extra == "--") continue;  // "--" before a prompt that starts with "-"
    if (extra.rfind("-", 0) == 0)
      std::cerr << "osd-client: unknown option " << extra << " (osd-client --help lists them)\n";
    else
      std::cerr << "osd-client: unexpected argument '" << extra
                << "': give one prompt (quote it); several values of a list option: repeat the flag "
                   "(--stop a --stop b) or, for ids, a comma-separated list (--tokens 1,2,3)\n";
    return 2;
  }

  if (!tokens.empty() && !prompt.empty()) {
    std::cerr << "osd-client: give the prompt as text or as --tokens, not both (got --tokens and \"" << prompt
              << "\"; several ids: --tokens 1,2,3)\n";
    return 2;
  }
  nlohmann::json req = {{"op", op}};
  if (op == "generate") {
    if (!tokens.empty()) req["tokens"] = tokens;
    else req["prompt"] = prompt;
    req["max_new_tokens"] = max_new_tokens;
    req["temperature"] = temperature;
    req["top_p"] = top_p;
    req["top_k"] = top_k;
    req["seed"] = seed;
    if (!stop.empty()) req["stop"] = stop;
    if (!eos.empty()) req["eos"] = eos;
    if (!domain.empty()) req["domain"] = domain;
    req["stream"] = !no_stream;
    if (id.empty()) id = "osd-client";  // known before any reply, so Ctrl-C can cancel it
  }
  if (!id.empty()) req["id"] = id;
  if (dry_run) {
    std::cout << req.dump() << std::endl;
    return 0;
  }
  if (op == "generate") catch_interrupts();
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
  sock.set(zmq::sockopt::linger, 0);
  sock.connect(endpoint);
  sock.send(zmq::buffer(req.dump()), zmq::send_flags::none);
  bool cancelling = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    if (g_interrupts > 0 && !cancelling) {
      cancelling = true;
      sock.send(zmq::buffer(nlohmann::json{{"op", "cancel"}, {"id", id}}.dump()), zmq::send_flags::none);
      std::cerr << "\nosd-client: cancelling " << id << " (Ctrl-C again to quit at once)\n";
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cancel_wait_ms);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (cancelling)
        std::cerr << "osd-client: no final reply for " << id << " within " << cancel_wait_ms << " ms of the cancel\n";
      else
        std::cerr << "osd-client: no reply from " << endpoint << " within " << timeout_ms << " ms\n";
      return cancelling ? 130 : 3;
    }
    const auto frame = receive(sock, left.count());
    if (!frame) continue;  // interrupted (the loop cancels) or timed out (the loop reports)
    if (!cancelling) deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto ev = nlohmann::json::parse(*frame, nullptr, false);
    if (ev.is_discarded()) {
      std::cerr << "osd-client: unreadable reply\n";
      return 3;
    }
    if (raw) std::cout << ev.dump() << std::endl;
    const std::string event = ev.value("event", "");
    if (event == "token") {
      if (!raw) std::cout << ev.value("text", "") << std::flush;
    } else if (event == "done") {
      if (!raw) std::cout << (no_stream ? ev.value("text", "") : "") << std::endl;
      if (show_stats || cancelling)
        std::cerr << "finish: " << ev.value("finish_reason", "") << (show_stats ? ", stats: " + ev["stats"].dump() : "")
                  << "\n";
      return cancelling ? 130 : 0;
    } else if (event == "error") {
      std::cerr << "osd-client: error " << ev.value("code", "") << ": " << ev.value("message", "") << "\n";
      return 1;
    } else if (event == "cancel_ack") {
      if (op == "generate") continue;  // ours, after Ctrl-C: the final reply follows
      if (!raw) std::cout << "cancelled " << ev.value("id", "") << std::endl;
      return 0;
    } else {
      if (!raw) std::cout << ev.dump(2) << std::endl;
      return 0;
    }
  }
}
