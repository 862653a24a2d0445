#pragma once
// osd-bench online's workload: prompts of several domains in shift order, their token ids and
// hashes, the request order of each repeat, the prompts file both osd and the Hugging Face
// comparison read (--dump-prompts), and the record of the prompts a saved state's drafts were
// distilled on (so that evaluation prompts are checked to be disjoint from them).
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace osd {
class TextTokenizer;
}

namespace osd::bench {

struct Workload {
  std::vector<std::string> domain;         // per request, in shift order
  std::vector<std::string> prompt;         // per request: its text
  std::vector<std::vector<int64_t>> ids;   // per request: its token ids (bytes)
  std::vector<std::string> hash;           // per request: prompt_hash(ids)
  int64_t repeats_dropped = 0;             // prompts left out: an earlier prompt had its hash
  size_t size() const { return prompt.size(); }
  // [from, to) of the domain's requests (a contiguous segment).
  std::pair<size_t, size_t> segment(const std::string& d) const;
};

// `per_domain` prompts of each domain from CORPORA/DOMAIN.prompts.jsonl after its first `skip`
// lines. No prompt occurs twice: one whose hash an earlier prompt has is left out and the next
// line taken, so the online replay never scores a prompt it distilled on earlier in the run.
// Throws osd::Error naming the file when it is missing or too short.
Workload load_workload(const std::string& corpora, const std::vector<std::string>& domains,
                       int64_t per_domain, int64_t skip, const TextTokenizer& tokenizer);

// The order requests are submitted in, as workload indices. Repeat 0: the workload's order;
// later repeats: shuffled within each domain (seeded by the repeat), so the shift is kept.
std::vector<size_t> request_order(const Workload& w, int64_t repeat);

// One JSON line per request in workload order: {"index", "domain", "prompt_ids", "hash",
// "new_tokens"}. Throws osd::Error when the file cannot be written.
void dump_prompts(const std::string& path, const Workload& w, int64_t new_tokens);

// The hashes of the prompts the drafts saved in a state folder were distilled on
// (STATE/distilled_prompts.txt, one hash a line; empty when the folder has none), and adding a
// workload's hashes to it after its online replay saved there.
std::set<std::string> distilled_prompts(const std::string& state_dir);
void record_distilled_prompts(const std::string& state_dir, const Workload& w);
// Requests of the workload whose prompt is in `distilled`.
int64_t prompt_overlap(const Workload& w, const std::set<std::string>& distilled);

}  // namespace osd::bench
