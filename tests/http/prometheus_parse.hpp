#pragma once
// A strict reader of Prometheus text (format 0.0.4) for tests: every sample must belong to a
// family declared once with HELP and TYPE before its samples, label values are unescaped, and a
// series (name plus labels) appears once.
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace osd::test {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromPage {
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram | summary
  std::vector<PromSample> samples;

  // The value of the one sample with this name and exactly these labels; throws if absent.
  double value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels) return s.value;
    throw std::runtime_error("no sample " + name);
  }
  bool has(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels) return true;
    return false;
  }
  std::vector<PromSample> all(const std::string& name) const {
    std::vector<PromSample> out;
    for (const auto& s : samples)
      if (s.name == name) out.push_back(s);
    return out;
  }
};

// The family a sample name belongs to (histogram samples end in _bucket, _sum, _count).
inline std::string prom_family(const std::string& sample, const std::map<std::string, std::string>& types) {
  if (types.count(sample)) return sample;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (sample.size() > sfx.size() && sample.compare(sample.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const auto base = sample.substr(0, sample.size() - sfx.size());
      if (types.count(base) && (types.at(base) == "histogram" || types.at(base) == "summary")) return base;
    }
  }
  return "";
}

inline PromPage parse_prometheus(const std::string& text) {
  PromPage page;
  std::set<std::string> help, series;
  std::string current;  // the family whose samples may follow
  size_t pos = 0;
  while (pos < text.size()) {
    const auto end = text.find('\n', pos);
    if (end == std::string::npos) throw std::runtime_error("the text does not end with a newline");
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      const auto name = line.substr(7, line.find(' ', 7) - 7);
      if (!help.insert(name).second) throw std::runtime_error("HELP twice for " + name);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const auto sp = line.find(' ', 7);
      const auto name = line.substr(7, sp - 7);
      if (page.types.count(name)) throw std::runtime_error("TYPE twice for " + name);
      if (!help.count(name)) throw std::runtime_error("TYPE before HELP for " + name);
      page.types[name] = line.substr(sp + 1);
      current = name;
      continue;
    }
    if (line[0] == '#') continue;
    PromSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (line.at(i) != '}') {
        const auto eq = line.find('=', i);
        const auto key = line.substr(i, eq - i);
        if (line.at(eq + 1) != '"') throw std::runtime_error("unquoted label value: " + line);
        std::string v;
        size_t j = eq + 2;
        for (; line.at(j) != '"'; ++j) {
          if (line[j] == '\\') {
            const char c = line.at(++j);
            if (c == 'n') v += '\n';
            else if (c == '\\' || c == '"') v += c;
            else throw std::runtime_error("bad escape in " + line);
          } else {
            v += line[j];
          }
        }
        s.labels[key] = v;
        i = j + 1;
        if (line.at(i) == ',') ++i;
      }
      ++i;
    }
    if (line.at(i) != ' ') throw std::runtime_error("no value: " + line);
    const std::string value = line.substr(i + 1);
    if (value == "+Inf") s.value = 1.0 / 0.0;
    else if (value == "NaN") s.value = 0.0 / 0.0;
    else {
      char* stop = nullptr;
      s.value = std::strtod(value.c_str(), &stop);
      if (*stop != '\0') throw std::runtime_error("bad value: " + line);
    }
    const auto family = prom_family(s.name, page.types);
    if (family.empty() || family != current)
      throw std::runtime_error("sample outside its family's block: " + line);
    if (!series.insert(line.substr(0, i)).second) throw std::runtime_error("series twice: " + line);
    page.samples.push_back(std::move(s));
  }
  return page;
}

}  // namespace osd::test
