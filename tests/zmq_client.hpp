#pragma once
// A minimal DEALER client for the tests: one JSON object per frame each way.
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace osd::test {

class JsonClient {
 public:
  JsonClient(zmq::context_t& ctx, const std::string& endpoint) : sock_(ctx, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
  }
  void send(const nlohmann::json& j) { send_raw(j.dump()); }
  void send_raw(const std::string& s) { sock_.send(zmq::buffer(s), zmq::send_flags::none); }
  void send_parts(const std::vector<std::string>& parts) {
    for (size_t i = 0; i < parts.size(); ++i)
      sock_.send(zmq::buffer(parts[i]), i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  std::optional<nlohmann::json> recv(int timeout_ms = 20000) {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return std::nullopt;
    zmq::message_t m;
    if (!sock_.recv(m)) return std::nullopt;
    return nlohmann::json::parse(m.to_string());
  }
  // Sends a generate request and collects events until its done or error; tokens from the
  // token events are appended to `streamed`.
  nlohmann::json generate(const nlohmann::json& req, std::vector<int64_t>* streamed = nullptr) {
    send(req);
    while (auto ev = recv()) {
      if ((*ev)["event"] == "token" && streamed)
        for (auto t : (*ev)["tokens"]) streamed->push_back(t.get<int64_t>());
      if ((*ev)["event"] == "done" || (*ev)["event"] == "error") return *ev;
    }
    return nlohmann::json{{"event", "timeout"}};
  }
  void close() { sock_.close(); }

 private:
  zmq::socket_t sock_;
};

}  // namespace osd::test
