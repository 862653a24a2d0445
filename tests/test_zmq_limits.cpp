// The ZeroMQ front end against slow and hostile clients: a client that never reads, floods of
// peers, oversize frames and idle metrics connections neither block the I/O thread nor delay
// other clients.
#include "tests/test_common.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "runtime/runtime.hpp"
#include "runtime/zmq_server.hpp"
#include "tests/spec_fixtures.hpp"
#include "tests/zmq_client.hpp"

using namespace osd;
using namespace osd::test;
using json = nlohmann::json;

namespace {

struct Served {
  std::shared_ptr<Transformer> target, draft;
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<ZmqServer> server;
  zmq::context_t ctx{1};
  ~Served() {
    if (server) server->stop();
    if (rt) rt->shutdown(false);
  }
};

std::unique_ptr<Served> serve(ZmqServerOptions zo = {}) {
  auto s = std::make_unique<Served>();
  s->target = peaked_model(tiny_config(256, 64, 2), 1);
  s->draft = perturbed_copy(*s->target, 2, 0.003);
  RuntimeOptions o;
  o.target = s->target;
  o.draft = s->draft;
  o.max_batch = 16;
  o.max_len = 256;
  o.max_in_flight = 1024;
  o.threads = 2;
  // One draft token per round: a token event per one or two tokens, so replies are many.
  o.adaptive_k = false;
  o.k = 1;
  o.token_text = [](int64_t t) { return std::string(1, static_cast<char>(t)); };
  std::string err;
  s->rt = Runtime::create(o, &err);
  REQUIRE(s->rt);
  zo.endpoint = "tcp://127.0.0.1:*";
  s->server = ZmqServer::start(*s->rt, zo, &err);
  REQUIRE(s->server);
  return s;
}

json greedy_request(const std::string& id, const std::vector<int64_t>& tokens, int64_t n) {
  return json{{"op", "generate"}, {"id", id}, {"tokens", tokens}, {"max_new_tokens", n}, {"temperature", 0}};
}

// Answers within a minute, or the test fails (instead of hanging) when the I/O thread is stuck.
bool healthy_within_a_minute(JsonClient& probe) {
  probe.send(json{{"op", "health"}});
  auto ev = probe.recv(60000);
  return ev && (*ev)["event"] == "health";
}

}  // namespace

TEST_CASE("zmq limits: a client that never reads does not block the I/O thread or other clients",
          "[zmq][limits]") {
  auto s = serve();
  // A DEALER that reads nothing, with the smallest receive buffers: its replies back up into
  // the server within a few hundred messages.
  zmq::socket_t silent(s->ctx, zmq::socket_type::dealer);
  silent.set(zmq::sockopt::linger, 0);
  silent.set(zmq::sockopt::rcvhwm, 1);
  silent.set(zmq::sockopt::rcvbuf, 1024);
  silent.connect(s->server->endpoint());
  for (int i = 0; i < 300; ++i) {
    const auto req = greedy_request("s" + std::to_string(i), {static_cast<int64_t>(1 + i % 200), 2, 3}, 120);
    silent.send(zmq::buffer(req.dump()), zmq::send_flags::none);
  }
  // Another client is served meanwhile, and to the end.
  JsonClient other(s->ctx, s->server->endpoint());
  for (int i = 0; i < 5; ++i) {
    auto done = other.generate(greedy_request("o" + std::to_string(i), {4, 5, 6}, 20));
    INFO(done.dump());
    CHECK(done["event"] == "done");
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the silent client's backlog grows
  CHECK(healthy_within_a_minute(other));
  auto after = other.generate(greedy_request("after", {7, 8}, 10));
  CHECK(after["event"] == "done");
}
