// osd-client: send one request to osd-serve and stream the answer.
//   osd-client "def fibonacci("                  streamed text on stdout
//   osd-client --op stats                         the server's statistics (JSON)
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"osd-client: send a request to osd-serve over ZeroMQ and stream the reply"};
  std::string prompt, endpoint = "tcp://127.0.0.1:5555", op = "generate", id, domain;
  std::vector<int64_t> tokens, eos;
  std::vector<std::string> stop;
  int64_t max_new_tokens = 64, top_k = 0, seed = 0, timeout_ms = 60000;
  double temperature = 1.0, top_p = 1.0;
  bool no_stream = false, raw = false, show_stats = false;
  app.add_option("prompt", prompt, "prompt text");
  app.add_option("--endpoint", endpoint, "server endpoint")->capture_default_str();
  app.add_option("--op", op, "generate | stats | health | cancel")->check(CLI::IsMember({"generate", "stats", "health", "cancel"}))->capture_default_str();
  app.add_option("--id", id, "request id (cancel needs it)");
  app.add_option("--tokens", tokens, "prompt as token ids instead of text");
  app.add_option("--max-new-tokens", max_new_tokens)->capture_default_str();
  app.add_option("--temperature", temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-p", top_p)->capture_default_str();
  app.add_option("--top-k", top_k)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_option("--stop", stop, "stop strings");
  app.add_option("--eos", eos, "end-of-sequence token ids");
  app.add_option("--domain", domain, "route hint");
  app.add_option("--timeout-ms", timeout_ms, "give up after this long without a reply")->capture_default_str();
  app.add_flag("--no-stream", no_stream, "only the final reply");
  app.add_flag("--json", raw, "print every reply as JSON, one per line");
  app.add_flag("--stats", show_stats, "print the request's statistics to stderr at the end");
  CLI11_PARSE(app, argc, argv);

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
  }
  if (!id.empty()) req["id"] = id;
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
  sock.set(zmq::sockopt::linger, 0);
  sock.connect(endpoint);
  sock.send(zmq::buffer(req.dump()), zmq::send_flags::none);
  while (true) {
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) {
      std::cerr << "osd-client: no reply from " << endpoint << " within " << timeout_ms << " ms\n";
      return 3;
    }
    zmq::message_t m;
    if (!sock.recv(m)) return 3;
    auto ev = nlohmann::json::parse(m.to_string(), nullptr, false);
    if (ev.is_discarded()) {
      std::cerr << "osd-client: unreadable reply\n";
      return 3;
    }
    if (raw) std::cout << ev.dump() << std::endl;
    const std::string event = ev.value("event", "");
    if (event == "token" && !raw) {
      std::cout << ev.value("text", "") << std::flush;
    } else if (event == "done") {
      if (!raw) std::cout << (no_stream ? ev.value("text", "") : "") << std::endl;
      if (show_stats) std::cerr << "finish: " << ev.value("finish_reason", "") << ", stats: " << ev["stats"].dump() << "\n";
      return 0;
    } else if (event == "error") {
      std::cerr << "osd-client: error " << ev.value("code", "") << ": " << ev.value("message", "") << "\n";
      return 1;
    } else if (event != "token" && event != "cancel_ack") {
      if (!raw) std::cout << ev.dump(2) << std::endl;
      return 0;
    } else if (event == "cancel_ack") {
      if (!raw) std::cout << "cancelled " << ev.value("id", "") << std::endl;
      return 0;
    }
  }
}
