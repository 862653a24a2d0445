// osd-serve: serves speculative decoding over ZeroMQ. With no arguments it serves the default
// pair on tcp://127.0.0.1:5555; `osd-serve --help` lists every configuration key.
#include <torch/torch.h>

#include <csignal>
#include <iostream>

#include "models/tensor_util.hpp"
#include "models/transformer.hpp"
#include "runtime/runtime.hpp"
#include "runtime/serve_config.hpp"
#include "runtime/zmq_server.hpp"

namespace {

std::shared_ptr<osd::Transformer> load_model(const std::string& name, const osd::ServeSettings& s,
                                             std::string* error) {
  auto cfg = osd::ModelConfig::preset(name);
  if (!cfg) {
    *error = "unknown model '" + name + "' (presets:";
    for (const auto& p : osd::ModelConfig::preset_names()) *error += " " + p;
    *error += ")";
    return nullptr;
  }
  auto dt = osd::parse_dtype(s.dtype);
  if (!dt) {
    *error = "unknown dtype '" + s.dtype + "'";
    return nullptr;
  }
  cfg->dtype = *dt;
  try {
    return std::make_shared<osd::Transformer>(*cfg, static_cast<uint64_t>(s.weights_seed), c10::Device(s.device));
  } catch (const std::exception& e) {
    *error = "cannot build model '" + name + "': " + e.what();
    return nullptr;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals in every thread; main waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  osd::ServeConfig cfg;
  osd::ServeSettings s;
  bool help = false;
  if (auto err = cfg.load(argc, argv, s, help); !err.empty()) {
    std::cerr << "osd-serve: " << err << "\n";
    return 2;
  }
  if (help) return 0;
  if (s.torch_threads > 0) at::set_num_threads(static_cast<int>(s.torch_threads));
  else osd::init_torch_threads();

  std::string error;
  osd::RuntimeOptions ro;
  ro.target = load_model(s.target, s, &error);
  if (!ro.target) {
    std::cerr << "osd-serve: " << error << "\n";
    return 2;
  }
  if (s.draft != "none") {
    ro.draft = load_model(s.draft, s, &error);
    if (!ro.draft) {
      std::cerr << "osd-serve: " << error << "\n";
      return 2;
    }
  }
  ro.max_batch = s.max_batch;
  ro.max_len = s.max_len;
  ro.k = s.k;
  ro.adaptive_k = s.adaptive_k;
  ro.k_max = s.k_max;
  ro.groups = s.groups;
  ro.max_in_flight = s.max_in_flight;
  ro.max_new_tokens_limit = s.max_new_tokens;
  ro.threads = static_cast<int>(caf::get_or(cfg, "scheduler.max-threads", size_t{0}));
  // The presets are byte-level models: token t < 256 is the byte t.
  const bool bytes = ro.target->config().vocab_size >= 256;
  if (bytes) ro.token_text = [](int64_t t) { return t < 256 ? std::string(1, static_cast<char>(t)) : std::string(); };
  auto runtime = osd::Runtime::create(ro, &error);
  if (!runtime) {
    std::cerr << "osd-serve: " << error << "\n";
    return 2;
  }
  osd::ZmqServerOptions zo;
  zo.endpoint = s.endpoint;
  zo.metrics_endpoint = s.metrics_endpoint;
  zo.max_frame_bytes = static_cast<size_t>(s.max_frame_bytes);
  if (bytes)
    zo.encode = [](const std::string& text) {
      std::vector<int64_t> ids;
      for (unsigned char c : text) ids.push_back(c);
      return ids;
    };
  auto server = osd::ZmqServer::start(*runtime, zo, &error);
  if (!server) {
    std::cerr << "osd-serve: " << error << "\n";
    return 2;
  }
  std::cerr << "osd-serve: target " << s.target << ", draft " << s.draft << " (" << s.device << ", " << s.dtype
            << "), serving on " << server->endpoint();
  if (!server->metrics_endpoint().empty()) std::cerr << ", metrics on " << server->metrics_endpoint() << "/metrics";
  std::cerr << "; Ctrl-C stops" << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "osd-serve: stopping (finishing requests in flight)" << std::endl;
  server->stop();
  runtime->shutdown(true);
  return 0;
}
