#pragma once
// "Did you mean ...?" for misspelt names (request fields, options): the known name nearest to a
// given one by edit distance, when it is close enough to be a likely typo. Header-only and
// torch-free, so parsers that are fuzzed alone (tests/fuzz) use it without another source.
#include <algorithm>
#include <string>
#include <vector>

namespace osd {

// Levenshtein distance: insertions, deletions and substitutions of one byte each cost 1.
inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

// The name of `known` nearest to `name`, or "" when none is closer than max(3, |name| / 3 + 2)
// edits (farther: not a typo of it).
inline std::string nearest_name(const std::string& name, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = std::max<size_t>(3, name.size() / 3 + 2);
  for (const auto& k : known) {
    // The distance is at least the difference in length: a long name costs nothing to refuse.
    if ((name.size() > k.size() ? name.size() - k.size() : k.size() - name.size()) >= best_d) continue;
    const size_t d = edit_distance(name, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best;
}

}  // namespace osd
