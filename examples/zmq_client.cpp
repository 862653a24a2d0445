// A minimal C++ client for osd-serve over ZeroMQ (docs/PROTOCOL.md), with cppzmq and
// nlohmann-json only: no torch, no osd library. It
//   1. sends a generate request, prints the tokens' text as they stream and then the final reply;
//   2. sends a longer one and cancels it after its first tokens, on the same socket (request ids
//      belong to the connection that sent them).
// Exit code 0 when both went as the protocol says.
//
//   build/osd-serve &                                   # serving on tcp://127.0.0.1:5555
//   build/osd-example-zmq-client tcp://127.0.0.1:5555 "def fibonacci("
//
// Build it outside osd with: g++ -std=c++17 zmq_client.cpp -lzmq   (Debian: cppzmq-dev nlohmann-json3-dev)
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <iostream>
#include <optional>
#include <string>

using json = nlohmann::json;

namespace {

// One reply (one frame, one JSON object), or nothing after timeout_ms.
std::optional<json> receive(zmq::socket_t& sock, int timeout_ms = 30000) {
  zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return std::nullopt;
  zmq::message_t frame;
  if (!sock.recv(frame)) return std::nullopt;
  return json::parse(frame.to_string());
}

void send(zmq::socket_t& sock, const json& request) { sock.send(zmq::buffer(request.dump()), zmq::send_flags::none); }

// 1. Generate and stream: "token" events, then exactly one "done" (or "error").
bool generate(zmq::socket_t& sock, const std::string& prompt) {
  send(sock, {{"op", "generate"}, {"id", "cpp-1"}, {"prompt", prompt}, {"max_new_tokens", 16}, {"temperature", 0}});
  std::vector<int64_t> streamed;
  while (auto reply = receive(sock)) {
    const json& ev = *reply;
    if (ev["event"] == "token") {
      for (int64_t t : ev["tokens"]) streamed.push_back(t);
      std::cout << ev["text"].get<std::string>() << std::flush;
    } else if (ev["event"] == "done") {
      std::cout << "\nfinish=" << ev["finish_reason"].get<std::string>() << " tokens=" << ev["tokens"].size()
                << " route=" << ev.value("route", "") << " accepted=" << ev["stats"]["num_accepted_tokens"] << "/"
                << ev["stats"]["num_draft_tokens"] << "\n";
      // The streamed tokens are the final reply's tokens, in order.
      return ev["tokens"].get<std::vector<int64_t>>() == streamed;
    } else {
      std::cerr << "error " << ev.value("code", "") << ": " << ev.value("message", "") << "\n";
      return false;
    }
  }
  std::cerr << "no reply\n";
  return false;
}

// 2. Cancel: a long request, cancelled once its first tokens arrive. The server answers the
// cancel with "cancel_ack", then the request's one final reply: "done" with finish_reason
// "cancelled" and the tokens made so far.
bool generate_and_cancel(zmq::socket_t& sock, const std::string& prompt) {
  send(sock, {{"op", "generate"}, {"id", "cpp-2"}, {"prompt", prompt}, {"max_new_tokens", 400}});
  bool cancel_sent = false, acked = false;
  while (auto reply = receive(sock)) {
    const json& ev = *reply;
    if (ev["event"] == "token" && !cancel_sent) {
      send(sock, {{"op", "cancel"}, {"id", "cpp-2"}});
      cancel_sent = true;
    } else if (ev["event"] == "cancel_ack") {
      acked = true;
      std::cout << "cancel acknowledged\n";
    } else if (ev["event"] == "done") {
      const std::string finish = ev["finish_reason"];
      std::cout << "cancelled request: finish=" << finish << " tokens=" << ev["tokens"].size() << "\n";
      return acked && finish == "cancelled";
    } else if (ev["event"] == "error") {
      std::cerr << "error " << ev.value("code", "") << ": " << ev.value("message", "") << "\n";
      return false;
    }
  }
  std::cerr << "no reply\n";
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5555";
  const std::string prompt = argc > 2 ? argv[2] : "def fibonacci(";
  zmq::context_t ctx;
  zmq::socket_t sock(ctx, zmq::socket_type::dealer);  // osd-serve binds a ROUTER
  sock.set(zmq::sockopt::linger, 0);
  sock.connect(endpoint);
  const bool streamed_ok = generate(sock, prompt);
  const bool cancel_ok = generate_and_cancel(sock, prompt);
  std::cout << (streamed_ok && cancel_ok ? "ok" : "FAILED") << "\n";
  return streamed_ok && cancel_ok ? 0 : 1;
}
