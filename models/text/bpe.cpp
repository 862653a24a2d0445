#include "models/text/bpe.hpp"

#include <cstdio>
#include <queue>

#include "models/common/error.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

BpeModel::BpeModel(std::vector<std::pair<std::string, int64_t>> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options, const std::string& where, const std::vector<int32_t>* ranks)
    : options_(std::move(options)) {
  // Ids are dense in real vocabularies: a sparse one would cost memory for every missing id, so
  // an id far past the number of tokens is refused (a corrupt file, not a big vocabulary).
  const int64_t limit = std::min<int64_t>(int64_t{1} << 24, 2 * static_cast<int64_t>(vocab.size()) + 1024);
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0 || id >= limit)
      throw Error(where + ": token '" + token + "' has id " + std::to_string(id) + ", out of range for a vocabulary of " +
                  std::to_string(vocab.size()) + " tokens");
    max_id = std::max(max_id, id);
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  token_to_id_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    token_to_id_.emplace(token, id);
    id_to_token_[static_cast<size_t>(id)] = std::move(token);
  }
  if (ranks && ranks->size() != merges.size())
    throw Error(where + ": merge ranks do not match the merges");
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const int64_t ia = token_to_id(a), ib = token_to_id(b), ir = token_to_id(a + b);
    if (ia < 0 || ib < 0 || ir < 0)
      throw Error(where + ": merge " + std::to_string(rank) + " '" + a + " " + b +
                  "' uses a token that is not in the vocabulary");
    const auto r = ranks ? (*ranks)[rank] : static_cast<int32_t>(rank);
    merges_.emplace(pair_key(ia, ib), Merge{r, static_cast<int32_t>(ir)});  // first rank wins
  }
  if (options_.unk_token) {
    unk_id_ = token_to_id(*options_.unk_token);
    if (unk_id_ < 0)
      throw Error(where + ": unk_token '" + *options_.unk_token + "' is not in the vocabulary");
  }
  if (options_.byte_fallback) {
    byte_ids_.assign(256, -1);
    char name[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      byte_ids_[static_cast<size_t>(b)] = token_to_id(name);
    }
  }
}

int64_t BpeModel::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(std::string(token));
  return it == token_to_id_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

void BpeModel::emit_unknown(std::string_view chars, std::vector<int64_t>& ids) const {
  if (options_.byte_fallback) {
    bool all = true;
    for (unsigned char c : chars) all = all && byte_ids_[c] >= 0;
    if (all) {
      for (unsigned char c : chars) ids.push_back(byte_ids_[c]);
      return;
    }
  }
  if (unk_id_ >= 0) ids.push_back(unk_id_);  // without an unk token the character is dropped
}

void BpeModel::encode_word(std::string_view word, std::vector<int64_t>& ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = token_to_id_.find(std::string(word)); it != token_to_id_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  // Symbols in a linked list over the word's characters; merging keeps the left one.
  struct Symbol {
    int64_t id;
    uint32_t begin, end;  // bytes of the word
    int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  const auto chars = split_chars(word);
  symbols.reserve(chars.size());
  for (const auto& c : chars) {
    const auto begin = static_cast<uint32_t>(c.data() - word.data());
    auto it = token_to_id_.find(std::string(c));
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({it == token_to_id_.end() ? -1 : it->second, begin,
                       begin + static_cast<uint32_t>(c.size()), n - 1, n + 1});
  }
  symbols.back().next = -1;

  // Candidate merges ordered by rank, then by position (the leftmost of equal merges first).
  using Candidate = std::pair<int64_t, int32_t>;  // (rank << 32 | left position, right position)
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const auto& l = symbols[static_cast<size_t>(left)];
    const auto& r = symbols[static_cast<size_t>(right)];
    if (l.id < 0 || r.id < 0) return;
    auto it = merges_.find(pair_key(l.id, r.id));
    if (it != merges_.end())
      queue.push({(static_cast<int64_t>(it->second.rank) << 32) | left, right});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const auto [key, right] = queue.top();
    queue.pop();
    const auto left = static_cast<int32_t>(key & 0xFFFFFFFF);
    const auto rank = static_cast<int32_t>(key >> 32);
    auto& l = symbols[static_cast<size_t>(left)];
    if (l.next != right || l.id < 0) continue;  // stale: left was merged away or changed neighbour
    auto& r = symbols[static_cast<size_t>(right)];
    auto it = merges_.find(pair_key(l.id, r.id));
    if (it == merges_.end() || it->second.rank != rank) continue;  // stale: left changed
    l.id = it->second.result;
    l.end = r.end;
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = left;
    r.id = -2;  // dead
    r.next = -1;
    if (l.prev >= 0) consider(l.prev);
    consider(left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const auto& s = symbols[static_cast<size_t>(i)];
    if (s.id >= 0)
      ids.push_back(s.id);
    else
      emit_unknown(word.substr(s.begin, s.end - s.begin), ids);
  }
}

}  // namespace osd::text
