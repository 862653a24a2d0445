#pragma once
// osd-bench subcommands, one registration function per file bench_<name>.cpp.
#include <CLI/CLI.hpp>

#include <c10/core/Device.h>
#include <string>

namespace osd::bench {

void add_model_bench(CLI::App& app, bool& json);
void add_spec_bench(CLI::App& app, bool& json);
void add_serve_bench(CLI::App& app, bool& json);
void add_online_bench(CLI::App& app, bool& json);
void add_tokenizer_bench(CLI::App& app, bool& json);
void add_load_bench(CLI::App& app, bool& json);
void add_trace_bench(CLI::App& app, bool& json);
void add_http_bench(CLI::App& app, bool& json);

// "NVIDIA H100 80GB HBM3" (CUDA builds), "cuda" otherwise.
std::string torch_cuda_device_name(c10::Device dev);

}  // namespace osd::bench
