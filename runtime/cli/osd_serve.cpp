// osd-serve: serves speculative decoding over ZeroMQ. With no arguments it serves the default
// pair on tcp://127.0.0.1:5555; `osd-serve --help` lists every configuration key.
//
// Stopping (docs/OPERATIONS.md): SIGTERM or SIGINT closes intake, lets the requests in flight
// finish for up to osd.drain-timeout-ms, cancels the rest (each still gets its final reply),
// saves the distillers' state and exits 0; a second signal exits at once (1). When an actor the
// requests need dies or the front end fails, every request in flight is answered "unavailable"
// and osd-serve exits 3, for a supervisor (systemd, Kubernetes) to restart it.
#include <torch/torch.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <thread>

#include "models/core/tensor_util.hpp"
#include "models/core/transformer.hpp"
#include "runtime/config_doc.hpp"
#include "runtime/model_source.hpp"
#include "runtime/runtime.hpp"
#include "runtime/serve_config.hpp"
#include "runtime/zmq_server.hpp"
#ifdef OSD_WITH_HTTP
#include "runtime/serve_http.hpp"
#endif

namespace {

// "" when osd-serve can run models on `device` (option `option` set it), else why not and the
// fix, in one line: asked before loading, so libtorch's list of backends never reaches the user.
std::string device_problem(const std::string& device, const std::string& option) {
  if (device.rfind("cuda", 0) != 0) return "";
  if (!torch::cuda::is_available()) {
#ifndef OSD_WITH_CUDA
    return "this build has no CUDA (libtorch CPU); use --" + option + "=cpu";
#else
    return "no CUDA device is visible (torch::cuda::is_available() is false); use --" + option +
           "=cpu, or check the driver and CUDA_VISIBLE_DEVICES";
#endif
  }
  const int64_t index = device.size() > 5 ? std::stoll(device.substr(5)) : 0;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count)
    return "--" + option + "=" + device + ", but this machine has " + std::to_string(count) +
           " CUDA device(s): use cuda:0" + (count > 1 ? " to cuda:" + std::to_string(count - 1) : "");
  return "";
}

// "" when a draft `spec` can serve `target`, else the sizes and the fix. A target of another
// vocabulary with osd.draft left at `default` gets the bundled default pair's draft, which cannot
// match it: say so.
std::string vocabulary_mismatch(const osd::Transformer& draft, const std::string& spec, const osd::Transformer& target,
                                const std::string& target_spec, const std::string& option) {
  const int64_t dv = draft.config().vocab_size, tv = target.config().vocab_size;
  if (dv == tv) return "";
  const std::string sizes = "the target " + target_spec + " has a vocabulary of " + std::to_string(tv) +
                            " tokens, the draft " + spec + " one of " + std::to_string(dv);
  const std::string fix = "; pass --osd.draft=none (target-only decoding) or --" + option +
                          "=DIR with a draft of the target's " + std::to_string(tv) + " tokens";
  if (spec == "default")
    return sizes + ": " + option + " defaulted to the bundled default pair's draft (" + osd::default_models_dir() +
           "/draft)" + fix;
  return sizes + fix;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals in every thread; main waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  osd::ServeConfigLoad loaded;
  if (auto err = osd::load_serve_config(argc, argv, &loaded); !err.empty()) {
    std::cerr << "osd-serve: " << err << "\n";
    return 2;
  }
  if (loaded.action == osd::ServeAction::print_help) {
    std::cout << osd::serve_help_text();
    return 0;
  }
  if (loaded.action == osd::ServeAction::print_config_doc) {
    std::cout << osd::config_markdown();
    return 0;
  }
  const osd::ServeSettings& s = loaded.settings;
  for (const auto& [device, option] : {std::pair{s.device, std::string("osd.device")},
                                       std::pair{s.draft_device, std::string("osd.draft-device")}}) {
    if (auto why = device_problem(device, option); !why.empty()) {
      std::cerr << "osd-serve: " << why << "\n";
      return 2;
    }
  }
  if (s.torch_threads > 0) at::set_num_threads(static_cast<int>(s.torch_threads));
  else osd::init_torch_threads();

  std::string error;
  osd::RuntimeOptions ro = osd::runtime_options(s);  // models, routes and tokenizer below
  const auto source = [&](const std::string& spec, bool draft = false) {
    const std::string device = draft && !s.draft_device.empty() ? s.draft_device : s.device;
    return osd::ModelSource{spec, device, s.dtype, static_cast<uint64_t>(s.weights_seed)};
  };
  ro.target = osd::load_model(source(s.target), osd::ModelRole::target, &error);
  if (!ro.target) {
    std::cerr << "osd-serve: " << error << "\n";
    return 2;
  }
  if (s.draft != "none") {
    ro.draft = osd::load_model(source(s.draft, true), osd::ModelRole::draft, &error);
    if (!ro.draft) {
      std::cerr << "osd-serve: " << error << "\n";
      return 2;
    }
    if (auto why = vocabulary_mismatch(*ro.draft, s.draft, *ro.target, s.target, "osd.draft"); !why.empty()) {
      std::cerr << "osd-serve: " << why << "\n";
      return 2;
    }
  }
  auto split = [](const std::string& list) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : list + ",") {
      if (c == ',') {
        if (!cur.empty()) out.push_back(cur);
        cur.clear();
      } else if (c != ' ') {
        cur += c;
      }
    }
    return out;
  };
  const auto route_names = split(s.routes), route_specs = split(s.route_drafts);
  if (!route_specs.empty() && route_specs.size() != route_names.size()) {
    std::cerr << "osd-serve: osd.route-drafts names " << route_specs.size() << " models for " << route_names.size()
              << " routes\n";
    return 2;
  }
  if (!route_names.empty() && !ro.draft) {
    std::cerr << "osd-serve: osd.routes needs a draft (osd.draft is none)\n";
    return 2;
  }
  for (size_t r = 0; r < route_names.size(); ++r) {
    // Every route owns its own copy of the weights (its distiller trains it alone).
    const std::string spec = route_specs.empty() ? s.draft : route_specs[r];
    auto d = osd::load_model(source(spec, true), osd::ModelRole::draft, &error);
    if (!d) {
      std::cerr << "osd-serve: route " << route_names[r] << ": " << error << "\n";
      return 2;
    }
    const std::string option = route_specs.empty() ? "osd.draft" : "osd.route-drafts";
    if (auto why = vocabulary_mismatch(*d, spec, *ro.target, s.target, option); !why.empty()) {
      std::cerr << "osd-serve: route " << route_names[r] << ": " << why << "\n";
      return 2;
    }
    ro.routes.push_back({route_names[r], d});
  }
  ro.online.enabled = s.online.enabled && ro.draft != nullptr;
  // The tokenizer: the target folder's files, or bytes for byte-level models (presets, the
  // default pair: token t < 256 is the byte t), or what osd.tokenizer names.
  std::shared_ptr<const osd::TextTokenizer> tokenizer;
  try {
    tokenizer = osd::serve_tokenizer(s.tokenizer, s.target, *ro.target);
  } catch (const std::exception& e) {
    std::cerr << "osd-serve: " << e.what() << "\n";
    return 2;
  }
  ro.tokenizer = tokenizer;
  auto runtime = osd::Runtime::create(ro, &error);
  if (!runtime) {
    std::cerr << "osd-serve: " << error << "\n";
    return 2;
  }
  osd::ZmqServerOptions zo = osd::zmq_server_options(s);  // the tokenizer below
  if (tokenizer) {
    zo.encode = [tokenizer](const std::string& text) { return tokenizer->encode_prompt(text); };
    if (tokenizer->special_tokens().eos) zo.default_eos = {*tokenizer->special_tokens().eos};
  }
  auto server = osd::ZmqServer::start(*runtime, zo, &error);
  if (!server) {
    std::cerr << "osd-serve: " << error << "\n";
    return 2;
  }
#ifdef OSD_WITH_HTTP
  std::unique_ptr<osd::HttpServer> http;
  std::string chat_source;
  if (!s.http.empty()) {
    osd::HttpServeInputs hi;
    hi.tokenizer = tokenizer;
    hi.tokenizer_dir = osd::tokenizer_folder(s.tokenizer, s.target);
    for (const auto& route : ro.routes) hi.route_names.push_back(route.name);
    for (size_t r = 0; r < ro.routes.size(); ++r)
      hi.route_drafts.push_back(route_specs.empty() ? s.draft : route_specs[r]);
    if (ro.routes.empty() && ro.draft) hi.route_names = {"default"}, hi.route_drafts = {s.draft};
    hi.context = std::min(ro.max_len, ro.target->config().max_position_embeddings);
    hi.vocab_size = ro.target->config().vocab_size;
    http = osd::start_http(*runtime, s, hi, &chat_source, &error);
    if (!http) {
      std::cerr << "osd-serve: " << error << "\n";
      return 2;
    }
  }
#else
  if (!s.http.empty()) {
    std::cerr << "osd-serve: osd.http is set, but this build has no HTTP front end (install "
                 "libcpp-httplib-dev and rebuild)\n";
    return 2;
  }
#endif
  std::cerr << "osd-serve: target " << s.target << ", draft " << s.draft << ", tokenizer "
            << (tokenizer ? tokenizer->name() : std::string("none")) << " (" << s.device << (s.draft_device.empty() ? "" : ", drafts on " + s.draft_device) << ", " << s.dtype
            << "), " << std::max<size_t>(ro.routes.size(), ro.draft ? 1 : 0) << " draft route(s), online distillation "
            << (ro.online.enabled ? "on" : "off") << ", serving on " << server->endpoint();
  if (!server->metrics_endpoint().empty()) std::cerr << ", metrics on " << server->metrics_endpoint() << "/metrics";
#ifdef OSD_WITH_HTTP
  if (http) std::cerr << ", HTTP on " << http->address() << " (chat template: " << chat_source << ")";
#endif
  std::cerr << "; Ctrl-C or SIGTERM drains and stops" << std::endl;
  // Drills (docs/OPERATIONS.md): OSD_INJECT_FAILURE=ACTOR@MS ends that actor MS ms after start,
  // as a crash would (ACTOR as health names it: verifier, buffer:default, distiller:default, ...).
  if (const char* inject = std::getenv("OSD_INJECT_FAILURE"); inject && *inject) {
    const std::string spec = inject;
    const auto at = spec.find('@');
    const std::string actor = spec.substr(0, at);
    const long ms = at == std::string::npos ? 0 : std::atol(spec.c_str() + at + 1);
    std::thread([rt = runtime.get(), actor, ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      std::cerr << "osd-serve: OSD_INJECT_FAILURE ends " << actor
                << (rt->inject_failure(actor) ? "" : " (no such actor)") << std::endl;
    }).detach();
  }
  // Wait for a stop signal, watching the runtime's and the front end's health meanwhile.
  int sig = 0;
  for (;;) {
    const timespec tick{0, 200 * 1000 * 1000};
    siginfo_t info;
    sig = sigtimedwait(&stop_signals, &info, &tick);
    if (sig > 0) break;
    const auto health = runtime->health();
    const std::string front_end = server->failure();
    if (health.status != osd::HealthStatus::failed && front_end.empty()) continue;
    std::cerr << "osd-serve: cannot serve any more: "
              << (front_end.empty() ? health.reason : "the ZeroMQ front end stopped: " + front_end)
              << "; answering the requests in flight and exiting 3 for a restart" << std::endl;
    server->begin_drain();
#ifdef OSD_WITH_HTTP
    if (http) http->drain();
#endif
    if (!front_end.empty()) runtime->drain(std::chrono::milliseconds(0));
    runtime->shutdown(false);  // every request answered (failed or cancelled); state saved
    server->wait_replied(std::chrono::seconds(5));
    server->stop(std::chrono::seconds(2));
#ifdef OSD_WITH_HTTP
    if (http) http->stop();
#endif
    return 3;
  }
  // Draining. A second signal exits at once.
  std::thread([stop_signals] {
    int again = 0;
    sigwait(&stop_signals, &again);
    std::cerr << "osd-serve: second signal (" << strsignal(again) << "): exiting at once" << std::endl;
    _exit(1);
  }).detach();
  const auto deadline = std::chrono::milliseconds(s.drain_timeout_ms);
  std::cerr << "osd-serve: " << strsignal(sig) << ": draining " << server->in_flight()
            << " request(s) in flight for up to " << s.drain_timeout_ms
            << " ms (a second signal exits at once)" << std::endl;
  server->begin_drain();
#ifdef OSD_WITH_HTTP
  if (http) http->drain();  // new completions get 503 while those in flight finish
#endif
  const int64_t left = runtime->drain(deadline);
  if (left > 0)
    std::cerr << "osd-serve: drain deadline reached: cancelling " << left << " request(s)" << std::endl;
  runtime->shutdown(false);  // cancels what is left (a final reply each), then saves state
  if (!server->wait_replied(std::chrono::seconds(10)))
    std::cerr << "osd-serve: " << server->in_flight() << " final reply(ies) could not be sent" << std::endl;
  server->stop(std::chrono::seconds(2));
#ifdef OSD_WITH_HTTP
  if (http) http->stop();
#endif
  std::cerr << "osd-serve: stopped" << std::endl;
  return 0;
}
