#include "models/distillation/text_corpus.hpp"

#include <torch/torch.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/common/error.hpp"

namespace osd {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void append_text(std::string& out, const std::string& text) {
  if (!out.empty()) out += "\n\n";
  out += text;
}

std::vector<int64_t> encode(const std::string& text, const TextTokenizer* tokenizer) {
  static const auto bytes = load_text_tokenizer("bytes");
  return (tokenizer ? tokenizer : bytes.get())->encode(text);
}

TokenBatch windows(const std::vector<const std::vector<int64_t>*>& streams,
                   const std::vector<int64_t>& starts, int64_t T) {
  const int64_t B = static_cast<int64_t>(starts.size());
  auto all = torch::empty({B, T + 1}, torch::kInt64);
  auto a = all.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t <= T; ++t) a[b][t] = (*streams[b])[starts[b] + t];
  return {all.narrow(1, 0, T).contiguous(), all.narrow(1, 1, T).contiguous()};  // [B, T] each
}

}  // namespace

std::vector<int64_t> TextCorpus::read_tokens(const std::string& path,
                                             const TextTokenizer* tokenizer) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  std::string out;
  if (!ends_with(path, ".jsonl")) {
    std::stringstream ss;
    ss << f.rdbuf();
    return encode(ss.str(), tokenizer);
  }
  std::string line;
  int64_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      auto j = nlohmann::json::parse(line);
      append_text(out, j.at("text").get<std::string>());
    } catch (const std::exception& e) {
      throw Error(path + ":" + std::to_string(n) + ": expected {\"text\": string}: " + e.what());
    }
  }
  return encode(out, tokenizer);
}

TextCorpus TextCorpus::load(const std::vector<CorpusFile>& train,
                            const std::vector<CorpusFile>& eval, double eval_fraction,
                            std::shared_ptr<const TextTokenizer> tokenizer) {
  if (train.empty()) throw Error("no training files");
  if (!(eval_fraction > 0 && eval_fraction < 1)) throw Error("eval fraction must be in (0, 1)");
  TextCorpus c;
  std::map<std::string, size_t> index;
  auto domain = [&](const std::string& name) -> CorpusDomain& {
    auto it = index.find(name);
    if (it != index.end()) return c.domains_[it->second];
    index[name] = c.domains_.size();
    c.domains_.push_back({name, {}, {}});
    return c.domains_.back();
  };
  for (const auto& f : train) {
    auto tokens = read_tokens(f.path, tokenizer.get());
    if (tokens.empty()) throw Error(f.path + ": no text");
    auto& d = domain(f.domain);
    d.train.insert(d.train.end(), tokens.begin(), tokens.end());
  }
  for (const auto& f : eval) {
    auto tokens = read_tokens(f.path, tokenizer.get());
    auto& d = domain(f.domain);
    d.eval.insert(d.eval.end(), tokens.begin(), tokens.end());
  }
  for (auto& d : c.domains_) {
    if (!d.eval.empty() || d.train.empty()) continue;
    const size_t n = static_cast<size_t>(d.train.size() * eval_fraction);
    d.eval.assign(d.train.end() - n, d.train.end());
    d.train.resize(d.train.size() - n);
  }
  return c;
}

int64_t TextCorpus::train_tokens() const {
  int64_t n = 0;
  for (const auto& d : domains_) n += static_cast<int64_t>(d.train.size());
  return n;
}

TokenBatch TextCorpus::sample_batch(int64_t B, int64_t T, std::mt19937_64& rng) const {
  std::vector<double> weights;
  for (const auto& d : domains_) {
    if (d.train.empty()) {  // an eval-only domain
      weights.push_back(0);
      continue;
    }
    if (static_cast<int64_t>(d.train.size()) < T + 1)
      throw Error("domain '" + d.name + "' has " + std::to_string(d.train.size()) +
                  " training tokens; a window needs " + std::to_string(T + 1));
    weights.push_back(static_cast<double>(d.train.size()));
  }
  if (train_tokens() == 0) throw Error("no training text");
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  std::vector<const std::vector<int64_t>*> streams;
  std::vector<int64_t> starts;
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = domains_[pick(rng)].train;
    std::uniform_int_distribution<int64_t> at(0, static_cast<int64_t>(s.size()) - T - 1);
    streams.push_back(&s);
    starts.push_back(at(rng));
  }
  return windows(streams, starts, T);
}

std::vector<TokenBatch> TextCorpus::eval_batches(int64_t B, int64_t T, int64_t n) const {
  std::vector<const std::vector<int64_t>*> streams;
  std::vector<int64_t> starts;
  for (const auto& d : domains_) {
    const int64_t room = static_cast<int64_t>(d.eval.size()) - T - 1;
    if (room < 0) continue;  // too short to evaluate at this length
    for (int64_t i = 0; i < n * B; ++i) {
      streams.push_back(&d.eval);
      starts.push_back(room * i / std::max<int64_t>(1, n * B - 1));
    }
  }
  std::vector<TokenBatch> out;
  for (size_t i = 0; i < starts.size(); i += B) {
    const size_t end = std::min(starts.size(), i + B);
    out.push_back(windows({streams.begin() + i, streams.begin() + end},
                          {starts.begin() + i, starts.begin() + end}, T));
  }
  return out;
}

}  // namespace osd
