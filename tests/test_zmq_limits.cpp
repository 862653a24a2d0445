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

// GET over plain TCP; with `send_request` false, opens a connection and sends nothing. Returns
// what the server sent before it closed the connection ("" when it closed without a word).
std::string http_exchange(const std::string& endpoint, const std::string& request) {
  const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "connect failed";
  timeval tv{60, 0};  // a read that waits longer fails the test rather than hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!request.empty() && ::write(fd, request.data(), request.size()) < 0) return "write failed";
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return n < 0 ? "timeout" : out;
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
  // Whether the silent client's replies back up into the server depends on its socket buffers
  // (in this process they did not); tests/serve_slow_client.sh drives osd-serve until they do
  // and checks the client is dropped.
}

TEST_CASE("zmq limits: clients beyond max_clients are refused while the others are served",
          "[zmq][limits]") {
  ZmqServerOptions zo;
  zo.max_clients = 2;
  auto s = serve(zo);
  JsonClient a(s->ctx, s->server->endpoint()), b(s->ctx, s->server->endpoint()),
      c(s->ctx, s->server->endpoint());
  a.send(greedy_request("a", {1, 2}, 200));
  b.send(greedy_request("b", {3, 4}, 200));
  REQUIRE(a.recv());  // both are in flight (a token event each)
  REQUIRE(b.recv());
  auto refused = c.generate(greedy_request("c", {5}, 4));
  CHECK(refused["event"] == "error");
  CHECK(refused["code"] == "too_many_clients");
  CHECK(refused["retry_after_ms"].get<int>() > 0);
  for (auto* cl : {&a, &b}) {  // the two finish
    json ev;
    while (auto e = cl->recv()) {
      ev = *e;
      if (ev["event"] != "token") break;
    }
    CHECK(ev["event"] == "done");
  }
  CHECK(c.generate(greedy_request("c2", {5}, 4))["event"] == "done");  // a place is free again
}

TEST_CASE("zmq limits: oversize frames and ids get errors and the server keeps serving", "[zmq][limits]") {
  ZmqServerOptions zo;
  zo.max_frame_bytes = 4096;
  auto s = serve(zo);
  JsonClient cl(s->ctx, s->server->endpoint());
  cl.send_raw(std::string(10000, ' '));
  auto big = cl.recv();
  REQUIRE(big);
  CHECK((*big)["code"] == "frame_too_large");
  cl.send(greedy_request(std::string(300, 'x'), {1}, 2));
  auto long_id = cl.recv();
  REQUIRE(long_id);
  CHECK((*long_id)["code"] == "invalid_request");
  CHECK((*long_id)["id"].is_null());
  // A frame far beyond the limit (> 16x) drops the connection inside ZeroMQ before it is
  // buffered; the server goes on.
  {
    JsonClient hostile(s->ctx, s->server->endpoint());
    hostile.send_raw(std::string(100000, 'x'));
  }
  CHECK(cl.generate(greedy_request("ok", {1, 2}, 4))["event"] == "done");
}

TEST_CASE("zmq limits: idle metrics connections are closed and stats never block requests", "[zmq][limits]") {
  ZmqServerOptions zo;
  zo.metrics_endpoint = "tcp://127.0.0.1:*";
  zo.metrics_idle_ms = 200;
  zo.max_metrics_connections = 4;
  auto s = serve(zo);
  // A connection that never sends a request is closed by the server, without a word.
  CHECK(http_exchange(s->server->metrics_endpoint(), "") == "");
  // Half a request, never finished: closed too.
  CHECK(http_exchange(s->server->metrics_endpoint(), "GET /metr") == "");
  // A whole request is answered.
  auto page = http_exchange(s->server->metrics_endpoint(), "GET /metrics HTTP/1.0\r\n\r\n");
  CHECK(page.rfind("HTTP/1.0 200 OK", 0) == 0);
  // Many stats requests at once and a generate among them: the generate is served, and every
  // stats request is answered (stats or busy).
  JsonClient cl(s->ctx, s->server->endpoint());
  for (int i = 0; i < 40; ++i) cl.send(json{{"op", "stats"}});
  cl.send(greedy_request("g", {1, 2}, 4));
  int stats = 0, busy = 0, done = 0;
  while (stats + busy < 40 || done < 1) {
    auto ev = cl.recv(60000);
    REQUIRE(ev);
    if ((*ev)["event"] == "stats") ++stats;
    if ((*ev)["event"] == "error" && (*ev)["code"] == "busy") ++busy;
    if ((*ev)["event"] == "done") ++done;
  }
  CHECK(done == 1);
  CHECK(stats >= 1);
  cl.send(json{{"op", "stats"}});
  auto st = cl.recv(60000);
  REQUIRE(st);
  CHECK((*st)["stats"]["server"]["metrics_closed_idle"].get<int64_t>() >= 2);
}

TEST_CASE("zmq limits: draining refuses new work and answers the requests in flight", "[zmq][drain]") {
  auto s = serve();
  JsonClient cl(s->ctx, s->server->endpoint());
  cl.send(greedy_request("long", {1, 2, 3}, 60));
  REQUIRE(cl.recv());  // streaming
  s->server->begin_drain();
  s->rt->drain(std::chrono::milliseconds(0));
  auto refused = cl.generate(greedy_request("new", {4}, 4));
  CHECK(refused["code"] == "shutting_down");
  cl.send(json{{"op", "health"}});
  json health;
  while (auto ev = cl.recv()) {
    if ((*ev)["event"] == "health") {
      health = *ev;
      break;
    }
  }
  CHECK(health["status"] == "draining");
  s->rt->shutdown(false);
  CHECK(s->server->wait_replied(std::chrono::seconds(60)));
  json last;
  while (auto ev = cl.recv(5000)) last = *ev;
  CHECK(last["id"] == "long");
  CHECK((last["event"] == "done" && (last["finish_reason"] == "cancelled" || last["finish_reason"] == "length")));
}
