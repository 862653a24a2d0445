// osd-bench load: checkpoint load time against file size, unsharded and sharded, to a device.
// Writes random-weight checkpoints of the given presets to a temporary folder, then times
// load_hf_checkpoint (best of --repeat, after one untimed load that warms the page cache).
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <memory>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/core/config.hpp"
#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/core/transformer.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"

namespace osd::bench {

namespace {

// Bytes of the checkpoint's weight files (model.safetensors or the shards, and the index).
uint64_t folder_bytes(const std::string& dir) {
  uint64_t total = 0;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return 0;
  while (const dirent* e = ::readdir(d.get())) {
    const std::string name = e->d_name;
    const bool shard = name.rfind("model", 0) == 0 && name.size() > 12 &&
                       name.compare(name.size() - 12, 12, ".safetensors") == 0;
    if (!shard && name != "model.safetensors.index.json") continue;
    struct stat st {};
    if (::stat((dir + "/" + name).c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

}  // namespace

void add_load_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand("load", "checkpoint load seconds vs file size (random weights)");
  auto sizes =
      std::make_shared<std::vector<std::string>>(std::vector<std::string>{"tiny", "10m", "100m"});
  auto device = std::make_shared<std::string>("cpu");
  auto dtype = std::make_shared<std::string>("bfloat16");
  auto repeat = std::make_shared<int>(3);
  auto shard = std::make_shared<uint64_t>(50'000'000);
  cmd->add_option("--sizes", *sizes, "model presets")->capture_default_str();
  cmd->add_option("--device", *device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--dtype", *dtype, "checkpoint and load dtype")->capture_default_str();
  cmd->add_option("--repeat", *repeat)->check(CLI::Range(1, 100))->capture_default_str();
  cmd->add_option("--shard-bytes", *shard, "the sharded variant's shard size")
      ->capture_default_str();
  cmd->callback([=, &json] {
    c10::Device dev(*device);
    auto dt = parse_dtype(*dtype);
    if (!dt) throw CLI::ValidationError("--dtype", "unknown dtype " + *dtype);
    const bool cuda = dev.is_cuda();
    Report rep("load", {"model", "params", "layout", "files MB", "load s", "GB/s"});
    const auto root = files::temp_dir() + "/osd-bench-load-" + std::to_string(::getpid());
    for (const auto& name : *sizes) {
      auto cfg = ModelConfig::preset(name);
      if (!cfg) throw CLI::ValidationError("--sizes", "unknown preset " + name);
      cfg->dtype = *dt;
      int64_t params = 0;
      {
        Transformer m(*cfg, 1);
        for (const auto& p : m.parameters()) params += p.numel();
        save_hf_checkpoint(root + "/" + name + "-one", m);
        save_hf_checkpoint(root + "/" + name + "-sharded", m, *shard);
      }
      for (const std::string layout : {"one", "sharded"}) {
        const auto dir = root + "/" + name + "-" + layout;
        (void)load_hf_checkpoint(dir, dev,
                                 *dt);  // warm the page cache: time parsing + copying, not the disk
        double best = 1e30;
        for (int r = 0; r < *repeat; ++r) {
          const double t0 = now_synced(cuda);
          auto m = load_hf_checkpoint(dir, dev, *dt);
          best = std::min(best, now_synced(cuda) - t0);
        }
        const double mb = folder_bytes(dir) / 1e6;
        rep.add({name, params, layout == "one" ? "model.safetensors" : "sharded", mb, best,
                 mb / 1e3 / best});
      }
      files::remove_tree(root + "/" + name + "-one");
      files::remove_tree(root + "/" + name + "-sharded");
    }
    files::remove_tree(root);
    rep.note("device", cuda ? torch_cuda_device_name(dev) : std::string("cpu"));
    rep.note("dtype", *dtype);
    rep.note("cache", "warm (one untimed load first)");
    rep.print(json);
  });
}

}  // namespace osd::bench
