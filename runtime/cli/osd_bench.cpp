// osd-bench: every speed and memory figure of the project comes from here, never from tests.
// Each subcommand prints a table; with --json its last line is one JSON object.
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include "models/common/error.hpp"
#include "models/core/tensor_util.hpp"
#include "runtime/cli/benches.hpp"

#if __has_include(<cuda_runtime_api.h>) && defined(OSD_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace osd::bench {
std::string torch_cuda_device_name(c10::Device dev) {
#if __has_include(<cuda_runtime_api.h>) && defined(OSD_WITH_CUDA)
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, dev.has_index() ? dev.index() : 0) == cudaSuccess) return prop.name;
#endif
  return "cuda";
}
}  // namespace osd::bench

int main(int argc, char** argv) {
  osd::init_torch_threads();
  CLI::App app{"osd-bench: osd's benchmarks (tables; --json adds one JSON object as the last line)"};
  bool json = false;
  app.add_flag("--json", json, "print one JSON object as the last line");
  app.require_subcommand(1);
  app.fallthrough();  // --json may come after the subcommand too
  osd::bench::add_model_bench(app, json);
  osd::bench::add_spec_bench(app, json);
  osd::bench::add_serve_bench(app, json);
  osd::bench::add_online_bench(app, json);
  osd::bench::add_tokenizer_bench(app, json);
  osd::bench::add_load_bench(app, json);
  osd::bench::add_trace_bench(app, json);
  osd::bench::add_http_bench(app, json);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const osd::Error& e) {
    std::fprintf(stderr, "osd-bench: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "osd-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
