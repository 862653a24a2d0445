#include "runtime/http_server.hpp"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "models/text/text_tokenizer.hpp"
#include "runtime/prometheus.hpp"
#include "runtime/runtime.hpp"

namespace osd {

using json = nlohmann::json;
using openai::ApiError;
using openai::Endpoint;

namespace {

// One completion's events, from the runtime's client thread to the connection's thread.
struct Call {
  std::mutex m;
  std::condition_variable cv;
  std::string text;  // streamed text not yet taken by the connection (stream: true only)
  bool keep_text = false;
  bool started = false;  // a token arrived: admitted and generating
  std::optional<GenerateResult> result;
};

// JSON bodies. With the charset, httplib does not compress them (it would for a bare
// "application/json" when the client accepts gzip or br): a latency cost for small bodies.
constexpr const char* kJson = "application/json; charset=utf-8";

// How long a waiting connection thread sleeps before it checks that its client is still there.
constexpr auto kPollInterval = std::chrono::milliseconds(250);

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(openai::dump(e.body()), kJson);
}

// An error after which the connection is closed: the request's body was not (fully) read, so
// the next bytes on the connection are not a request.
void send_error_and_close(httplib::Response& res, const ApiError& e) {
  auto body = std::make_shared<std::string>(openai::dump(e.body()));
  res.status = e.status;
  res.set_header("Connection", "close");
  res.set_content_provider(body->size(), kJson,
                           [body](size_t offset, size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return false;  // the body is out; failing the write closes the socket
                           });
}

const char* reason(int status) {
  switch (status) {
    case 400: return "the request could not be read";
    case 405: return "method not allowed";
    case 413: return "request too large";
    case 414: return "the request line is too long";
    case 416: return "range not satisfiable";
    case 500: return "internal error";
    default: return "error";
  }
}

ApiError too_large(size_t limit) {
  ApiError e;
  e.status = 413;
  e.message = "the request body exceeds " + std::to_string(limit) + " bytes (osd.http-max-body-bytes)";
  e.code = "request_too_large";
  return e;
}

// The runtime ids of the completions being served.
struct InFlightSet {
  mutable std::mutex m;
  std::set<std::string> ids;
  size_t size() const {
    std::lock_guard<std::mutex> l(m);
    return ids.size();
  }
};

// Holds a completion's place among those in flight until its response is written.
struct InFlight {
  InFlightSet* set;
  std::string id;
  InFlight(InFlightSet* s, std::string request_id) : set(s), id(std::move(request_id)) {
    std::lock_guard<std::mutex> l(set->m);
    set->ids.insert(id);
  }
  ~InFlight() {
    std::lock_guard<std::mutex> l(set->m);
    set->ids.erase(id);
  }
};

}  // namespace

struct HttpServer::Impl {
  Runtime* rt = nullptr;
  HttpServerOptions opt;
  httplib::Server svr;
  std::thread listener;
  std::atomic<bool> listen_done{false};
  int bound_port = 0;
  std::atomic<bool> draining{false}, stopped{false};
  std::atomic<int64_t> next_id{1};
  uint64_t seed_base = 0;
  int64_t started_at = 0;
  InFlightSet in_flight;  // for stop(true), /health and the metrics
  // Answers by path and status, and clients gone mid-response (osd_http_* metrics).
  std::mutex counts_m;
  std::map<std::pair<std::string, int>, int64_t> answers;
  std::atomic<int64_t> disconnects{0};

  void routes();
  void complete(Endpoint endpoint, const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader& reader);
  bool read_body(const httplib::Request& req, const httplib::ContentReader& reader,
                 httplib::Response& res, std::string& body);
  std::string metrics_text();
};


bool HttpServer::Impl::read_body(const httplib::Request& req, const httplib::ContentReader& reader,
                                 httplib::Response& res, std::string& body) {
  const size_t limit = opt.max_body_bytes;
  // Bodies a little over the limit are read and dropped, so the client reads the 413 rather than
  // a reset connection; a body past `drain_cap` is not read at all.
  const size_t drain_cap = std::max<size_t>(size_t{16} << 20, limit * 4);
  if (req.has_header("Content-Length")) {
    const auto declared = req.get_header_value<uint64_t>("Content-Length");
    if (declared > drain_cap) {
      send_error_and_close(res, too_large(limit));
      return false;
    }
  }
  size_t seen = 0;
  bool over = false;
  const bool complete = reader([&](const char* data, size_t n) {
    seen += n;
    if (seen > drain_cap) return false;
    if (seen > limit) {
      over = true;
      body.clear();
      body.shrink_to_fit();
    } else {
      body.append(data, n);
    }
    return true;
  });
  if (over || seen > limit) {
    if (complete) send_error(res, too_large(limit));
    else send_error_and_close(res, too_large(limit));
    return false;
  }
  if (!complete) {
    ApiError e;
    e.message = "the request body could not be read (closed early, malformed chunks, or slower than " +
                std::to_string(opt.io_timeout_s) + " s)";
    e.code = "incomplete_body";
    send_error_and_close(res, e);
    return false;
  }
  return true;
}

void HttpServer::Impl::complete(Endpoint endpoint, const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader) {
  std::string body;
  if (!read_body(req, reader, res, body)) return;
  if (draining) return send_error(res, openai::runtime_error("shutting_down", "the server is shutting down"));
  auto parsed = openai::parse_request(endpoint, body, opt.model);
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
  const auto& r = std::get<openai::ParsedRequest>(parsed);

  std::vector<int64_t> prompt;
  if (endpoint == Endpoint::chat_completions) {
    if (!opt.chat_prompt) {
      ApiError e;
      e.message = opt.chat_unavailable;
      e.code = "chat_template_unavailable";
      return send_error(res, e);
    }
    auto tokens = opt.chat_prompt(r.messages);
    if (auto* e = std::get_if<ApiError>(&tokens)) return send_error(res, *e);
    prompt = std::move(std::get<std::vector<int64_t>>(tokens));
  } else if (r.prompt_is_tokens) {
    prompt = r.prompt_tokens;
  } else {
    prompt = opt.tokenizer->encode_prompt(r.prompt_text);
  }
  const int64_t prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t n = next_id++;
  auto params = openai::generate_params(r, std::move(prompt), opt.model,
                                        splitmix64(seed_base ^ static_cast<uint64_t>(n)), opt.default_eos);
  if (auto* e = std::get_if<ApiError>(&params)) return send_error(res, *e);
  auto& p = std::get<GenerateParams>(params);
  p.id = "http-" + std::to_string(n);
  const std::string id = p.id;

  auto call = std::make_shared<Call>();
  call->keep_text = r.stream;
  auto guard = std::make_shared<InFlight>(&in_flight, id);
  rt->submit(
      std::move(p),
      [call](const TokenChunk& c) {
        std::lock_guard<std::mutex> l(call->m);
        // Wake the connection only for what it waits on: the first token, or text to stream.
        const bool wake = !call->started || call->keep_text;
        if (call->keep_text) call->text += c.text;
        call->started = true;
        if (wake) call->cv.notify_all();
      },
      [call](const GenerateResult& result) {
        std::lock_guard<std::mutex> l(call->m);
        call->result = result;
        call->cv.notify_all();
      });

  // The status line waits for the first token or the answer: a refusal (busy, a bad request the
  // runtime caught) is then an HTTP error, not a broken stream or a 200 with an error inside.
  std::optional<GenerateResult> early;
  {
    std::unique_lock<std::mutex> l(call->m);
    call->cv.wait(l, [&] { return call->started || call->result.has_value(); });
    early = call->result;
  }
  if (early && early->finish == "error") {
    const ApiError e = openai::runtime_error(early->error_code, early->error_message);
    if (e.status == 429) res.set_header("Retry-After", std::to_string(opt.retry_after_s));
    return send_error(res, e);
  }
  if (early && early->finish == "cancelled")
    return send_error(res, openai::runtime_error("shutting_down", "the request was cancelled: the server is shutting down"));

  openai::Reply reply;
  reply.endpoint = endpoint;
  reply.id = std::string(endpoint == Endpoint::chat_completions ? "chatcmpl-" : "cmpl-") + "osd-" + std::to_string(n);
  reply.created = static_cast<int64_t>(std::time(nullptr));
  reply.model = opt.model.id;

  Impl* self = this;
  // The client went away: cancel, so the runtime frees the request's KV cache slot now.
  auto gone = [self, id] {
    self->rt->cancel(id);
    ++self->disconnects;
    return false;
  };
  // Waits for the answer, checking every kPollInterval that the client is still there.
  auto await_result = [call](httplib::DataSink& sink, std::string* text) -> std::optional<GenerateResult> {
    std::unique_lock<std::mutex> l(call->m);
    call->cv.wait_for(l, kPollInterval, [&] { return call->result.has_value() || (text && !call->text.empty()); });
    if (text) text->swap(call->text);
    return call->result;
  };

  if (!r.stream) {
    if (early) {
      res.set_content(openai::dump(openai::response_body(reply, *early, prompt_tokens)), kJson);
      return;
    }
    // Generating: the status is 200 from here; a failure later is reported in the body.
    res.set_chunked_content_provider(
        kJson, [=](size_t, httplib::DataSink& sink) {
          (void)guard;
          while (true) {
            auto result = await_result(sink, nullptr);
            if (!result) {
              if (!sink.is_writable()) return gone();
              continue;
            }
            std::string out;
            if (result->finish == "error" || result->finish == "cancelled")
              out = openai::dump(openai::runtime_error(result->error_code.empty() ? "cancelled" : result->error_code,
                                                       result->error_message.empty() ? "the request was cancelled"
                                                                                     : result->error_message)
                                     .body());
            else
              out = openai::dump(openai::response_body(reply, *result, prompt_tokens));
            if (!sink.write(out.data(), out.size())) return gone();
            sink.done();
            return true;
          }
        });
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  const bool usage = r.include_usage;
  auto text = std::make_shared<openai::StreamText>(r.stop);
  res.set_chunked_content_provider(
      "text/event-stream", [=](size_t, httplib::DataSink& sink) {
        (void)guard;
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        if (endpoint == Endpoint::chat_completions && !write(openai::sse_event(openai::role_chunk(reply, usage))))
          return gone();
        while (true) {
          std::string piece;
          auto result = await_result(sink, &piece);
          if (!piece.empty()) {
            const std::string ready = text->push(piece);
            if (!ready.empty() && !write(openai::sse_event(openai::text_chunk(reply, ready, "", usage))))
              return gone();
          } else if (!result && !sink.is_writable()) {
            return gone();
          }
          if (!result) continue;
          std::string tail;
          if (result->finish == "error" || result->finish == "cancelled") {
            const auto e = openai::runtime_error(result->error_code.empty() ? "cancelled" : result->error_code,
                                                 result->error_message.empty() ? "the request was cancelled"
                                                                               : result->error_message);
            tail = openai::sse_event(e.body());
          } else {
            const std::string rest = text->finish(result->text);
            if (!rest.empty()) tail += openai::sse_event(openai::text_chunk(reply, rest, "", usage));
            json last = openai::text_chunk(reply, "", openai::finish_reason(result->finish), usage);
            last["osd"] = openai::osd_extension(*result);
            tail += openai::sse_event(last);
            if (usage)
              tail += openai::sse_event(
                  openai::usage_chunk(reply, prompt_tokens, static_cast<int64_t>(result->tokens.size())));
          }
          tail += openai::sse_done();
          if (!write(tail)) return gone();
          sink.done();
          return true;
        }
      });
}

std::string HttpServer::Impl::metrics_text() {
  std::string text = prometheus_text(json::parse(rt->stats_json(), nullptr, false));
  PrometheusWriter w;
  w.family("osd_http_responses_total", "counter", "HTTP responses written, by path and status.");
  {
    std::lock_guard<std::mutex> l(counts_m);
    for (const auto& [key, count] : answers)
      w.sample("osd_http_responses_total", {{"path", key.first}, {"status", std::to_string(key.second)}},
               static_cast<double>(count));
  }
  w.family("osd_http_disconnects_total", "counter",
           "Completions whose client went away before the answer was written (each was cancelled).");
  w.sample("osd_http_disconnects_total", {}, static_cast<double>(disconnects.load()));
  w.family("osd_http_in_flight", "gauge", "Completions the HTTP front end is serving.");
  w.sample("osd_http_in_flight", {}, static_cast<double>(in_flight.size()));
  return text + w.text();
}

void HttpServer::Impl::routes() {
  svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader) {
    complete(Endpoint::completions, req, res, reader);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& reader) {
    complete(Endpoint::chat_completions, req, res, reader);
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(openai::dump(openai::models_body(opt.model, started_at, opt.model_metadata)), kJson);
  });
  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const bool ok = !draining;
    res.status = ok ? 200 : 503;
    res.set_content(json{{"status", ok ? "ok" : "draining"}, {"in_flight", in_flight.size()}}.dump(),
                    kJson);
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  // httplib's own answers (404 unknown path, 400 unreadable request line, 414, ...) get OpenAI's
  // error object too.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                 httplib::Response& res) {
    if (!res.body.empty() || res.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "no route " + req.method + " " + req.path +
                  " (POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics)";
      e.code = "unknown_route";
    } else {
      e.message = "HTTP " + std::to_string(res.status) + " (" + reason(res.status) + ")";
      if (res.status >= 500) e.type = "server_error";
    }
    res.set_content(openai::dump(e.body()), kJson);
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    ApiError e;
    e.status = 500;
    e.type = "server_error";
    e.code = "internal";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& x) {
      e.message = x.what();
    } catch (...) {
      e.message = "unknown error";
    }
    send_error(res, e);
  });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    // Known paths by name; anything else as one label value, so scanners cannot grow the map.
    static const std::set<std::string> known{"/v1/completions", "/v1/chat/completions", "/v1/models",
                                             "/health", "/metrics"};
    std::lock_guard<std::mutex> l(counts_m);
    ++answers[{known.count(req.path) ? req.path : std::string("other"), res.status}];
  });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<HttpServer> HttpServer::start(Runtime& rt, HttpServerOptions opt, std::string* error) {
  auto fail = [&](const std::string& msg) -> std::unique_ptr<HttpServer> {
    if (error) *error = msg;
    return nullptr;
  };
  if (!opt.tokenizer) return fail("the HTTP front end needs a tokenizer (osd.tokenizer is none)");
  if (opt.threads < 1 || opt.threads > 4096) return fail("HTTP threads must be in [1, 4096]");
  if (opt.max_body_bytes < 256) return fail("the HTTP body limit must be at least 256 bytes");
  auto impl = std::make_unique<Impl>();
  impl->rt = &rt;
  impl->opt = std::move(opt);
  impl->started_at = static_cast<int64_t>(std::time(nullptr));
  impl->seed_base = splitmix64(static_cast<uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count()));
  auto& svr = impl->svr;
  const int threads = impl->opt.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr.set_tcp_nodelay(true);  // small SSE writes go out at once
  svr.set_keep_alive_max_count(100000);
  svr.set_keep_alive_timeout(impl->opt.keep_alive_s);
  svr.set_read_timeout(impl->opt.io_timeout_s, 0);
  svr.set_write_timeout(impl->opt.io_timeout_s, 0);
  // Bodies are read by the handlers, which enforce max_body_bytes themselves (chunked ones too).
  svr.set_payload_max_length(std::numeric_limits<size_t>::max());
  impl->routes();
  const auto& host = impl->opt.host;
  impl->bound_port = impl->opt.port == 0 ? svr.bind_to_any_port(host)
                                          : (svr.bind_to_port(host, impl->opt.port) ? impl->opt.port : -1);
  if (impl->bound_port <= 0)
    return fail("cannot listen on http://" + host + ":" + std::to_string(impl->opt.port) +
                " (address in use, or not an address of this machine)");
  auto* raw = impl.get();
  impl->listener = std::thread([raw] {
    raw->svr.listen_after_bind();
    raw->listen_done = true;
  });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->bound_port; }

std::string HttpServer::address() const {
  return "http://" + impl_->opt.host + ":" + std::to_string(impl_->bound_port);
}

int64_t HttpServer::in_flight() const { return static_cast<int64_t>(impl_->in_flight.size()); }

void HttpServer::drain() { impl_->draining = true; }

void HttpServer::stop(bool cancel_in_flight) {
  impl_->draining = true;
  if (impl_->stopped.exchange(true)) return;
  if (cancel_in_flight) {
    std::lock_guard<std::mutex> l(impl_->in_flight.m);
    for (const auto& id : impl_->in_flight.ids) impl_->rt->cancel(id);
  }
  // listen_after_bind may not have started listening yet: wait until it has, so stop() ends it.
  while (!impl_->svr.is_running() && !impl_->listen_done)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->svr.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

HttpServer::~HttpServer() { stop(true); }

}  // namespace osd
