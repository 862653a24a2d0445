#include "runtime/cli/bench_online_workload.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/text/text_tokenizer.hpp"
#include "runtime/cli/bench_stats.hpp"

namespace osd::bench {

std::pair<size_t, size_t> Workload::segment(const std::string& d) const {
  size_t from = size(), to = 0;
  for (size_t i = 0; i < size(); ++i)
    if (domain[i] == d) from = std::min(from, i), to = std::max(to, i + 1);
  return from < to ? std::pair{from, to} : std::pair{size_t{0}, size_t{0}};
}

Workload load_workload(const std::string& corpora, const std::vector<std::string>& domains,
                       int64_t per_domain, int64_t skip, const TextTokenizer& tokenizer) {
  Workload w;
  std::set<std::string> seen;
  for (const auto& d : domains) {
    const std::string path = corpora + "/" + d + ".prompts.jsonl";
    std::ifstream f(path);
    if (!f)
      throw Error(path + ": cannot open (build the corpora: python3 scripts/build_corpora.py)");
    std::string line;
    int64_t n = 0, lines = 0;
    while (lines < skip && std::getline(f, line)) ++lines;
    while (n < per_domain && std::getline(f, line)) {
      ++lines;
      auto text = nlohmann::json::parse(line).at("prompt").get<std::string>();
      auto ids = tokenizer.encode(text);
      auto h = prompt_hash(ids);
      if (!seen.insert(h).second) {
        ++w.repeats_dropped;
        continue;
      }
      w.domain.push_back(d);
      w.prompt.push_back(std::move(text));
      w.ids.push_back(std::move(ids));
      w.hash.push_back(std::move(h));
      ++n;
    }
    if (n < per_domain)
      throw Error(path + ": " + std::to_string(lines) + " lines give " + std::to_string(n) +
                  " distinct prompts after skipping " + std::to_string(skip) + ", " +
                  std::to_string(per_domain) + " needed");
  }
  return w;
}

std::vector<size_t> request_order(const Workload& w, int64_t repeat) {
  std::vector<size_t> order(w.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (repeat == 0) return order;
  std::mt19937_64 rng(7919 * static_cast<uint64_t>(repeat));
  for (size_t from = 0; from < order.size();) {
    size_t to = from;
    while (to < order.size() && w.domain[to] == w.domain[from]) ++to;
    std::shuffle(order.begin() + from, order.begin() + to, rng);
    from = to;
  }
  return order;
}

void dump_prompts(const std::string& path, const Workload& w, int64_t new_tokens) {
  std::ofstream f(path);
  if (!f) throw Error(path + ": cannot write the prompts file");
  for (size_t i = 0; i < w.size(); ++i)
    f << nlohmann::json{{"index", i},
                        {"domain", w.domain[i]},
                        {"prompt_ids", w.ids[i]},
                        {"hash", w.hash[i]},
                        {"new_tokens", new_tokens}}
             .dump()
      << "\n";
  if (!f) throw Error(path + ": cannot write the prompts file");
}

namespace {
std::string record_path(const std::string& state_dir) {
  return state_dir + "/distilled_prompts.txt";
}
}  // namespace

std::set<std::string> distilled_prompts(const std::string& state_dir) {
  std::set<std::string> out;
  std::ifstream f(record_path(state_dir));
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.insert(line);
  return out;
}

void record_distilled_prompts(const std::string& state_dir, const Workload& w) {
  files::make_dirs(state_dir);
  std::ofstream f(record_path(state_dir), std::ios::app);
  for (const auto& h : w.hash) f << h << "\n";
  if (!f) throw Error(record_path(state_dir) + ": cannot write");
}

int64_t prompt_overlap(const Workload& w, const std::set<std::string>& distilled) {
  int64_t n = 0;
  for (const auto& h : w.hash) n += distilled.count(h) > 0;
  return n;
}

}  // namespace osd::bench
