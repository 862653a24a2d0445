// Chat templates as @huggingface/jinja renders them: its preprocessing, its lexer, a parser to an
// AST with its precedences, and an evaluator whose values follow its JavaScript semantics (number
// formatting, `==`, truthiness, string methods that ignore their arguments...).
#include "models/text/chat_template.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace osd {

namespace {

using Kind = ChatTemplateError::Kind;

constexpr std::ptrdiff_t kMaxStackBytes = 512 << 10;  // recursion in parse() and in render()
constexpr int kMaxExprHeight = 200;                   // one expression tree (a + a + ... chains)
constexpr int kMaxValueDepth = 400;                   // lists and dicts inside each other
constexpr std::size_t kWorkFactor = 64;               // string work bound, in max_output_bytes

// Where things are: byte offsets in the template source, turned into a line and a column only
// when an error is reported.
using Offset = std::size_t;
constexpr Offset kNowhere = std::string::npos;

// Thrown inside; ChatTemplate::parse and render turn it into a ChatTemplateError.
struct Failure {
  Kind kind;
  Offset at;
  std::string message;
};

[[noreturn]] void fail(Kind kind, Offset at, std::string message) {
  throw Failure{kind, at, std::move(message)};
}
[[noreturn]] void fail(std::string message) {
  throw Failure{Kind::kRender, kNowhere, std::move(message)};
}

// Bounds recursion by the stack it uses, whatever the build's frame sizes: deep nesting or a
// runaway macro becomes an error, never a stack overflow.
class StackBudget {
 public:
  void check(Kind kind, const char* what) const {
    char probe;
    if (base_ - reinterpret_cast<std::intptr_t>(&probe) > kMaxStackBytes)
      fail(kind, kNowhere, what);
  }

 private:
  char base_probe_ = 0;
  std::intptr_t base_ = reinterpret_cast<std::intptr_t>(&base_probe_);
};

// ---- text: UTF-8, and strings, numbers and case as JavaScript has them -------------------------

// Decodes the character at s[i] and moves i past it; a malformed byte decodes as U+FFFD.
uint32_t next_char(const std::string& s, std::size_t& i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  const int n = lead < 0x80       ? 1
                : lead >> 5 == 6  ? 2
                : lead >> 4 == 14 ? 3
                : lead >> 3 == 30 ? 4
                                  : 0;
  if (n == 0 || i + n > s.size()) return ++i, 0xFFFD;
  uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if (c >> 6 != 2) return ++i, 0xFFFD;
    cp = cp << 6 | (c & 0x3F);
  }
  i += n;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  const int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  static const unsigned char lead[] = {0, 0, 0xC0, 0xE0, 0xF0};
  out += static_cast<char>(n == 1 ? cp : lead[n] | cp >> (6 * (n - 1)));
  for (int k = n - 2; k >= 0; --k) out += static_cast<char>(0x80 | (cp >> (6 * k) & 0x3F));
}

// The characters of `s`, each as its own UTF-8 bytes (JavaScript's Array.from(string)).
std::vector<std::string> characters(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0, start = 0; i < s.size(); start = i) {
    next_char(s, i);
    out.push_back(s.substr(start, i - start));
  }
  return out;
}

// JavaScript's string length: UTF-16 code units.
std::size_t utf16_length(const std::string& s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size();) n += next_char(s, i) >= 0x10000 ? 2 : 1;
  return n;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_word_byte(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// Byte length of the JavaScript whitespace character (regex \s) at s[i], or 0.
std::size_t space_at(const std::string& s, std::size_t i) {
  if (i >= s.size()) return 0;
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
  if (c < 0xC2) return 0;
  std::size_t j = i;
  const uint32_t cp = next_char(s, j);
  const bool space = cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
                     cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
  return space ? j - i : 0;
}

std::size_t skip_spaces(const std::string& s, std::size_t i) {
  while (std::size_t n = space_at(s, i)) i += n;
  return i;
}
std::string trim_start(const std::string& s) {
  return s.substr(skip_spaces(s, 0));
}
std::string trim_end(const std::string& s) {
  std::size_t end = s.size();
  for (std::size_t n = 1; n <= 3 && n <= end;) {
    if (space_at(s, end - n) == n) {
      end -= n, n = 1;
    } else {
      ++n;
    }
  }
  return s.substr(0, end);
}
std::string trim(const std::string& s) {
  return trim_end(trim_start(s));
}

// Number.prototype.toString(): shortest round-trip digits, exponent outside [1e-7, 1e21).
std::string js_number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x < 0 ? "-Infinity" : "Infinity";
  if (x == 0) return "0";
  char buf[64];
  const auto fmt = std::chars_format::scientific;
  const std::string sci(buf, std::to_chars(buf, buf + sizeof buf, std::fabs(x), fmt).ptr);
  const std::size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int n = std::stoi(sci.substr(e + 1)) + 1;  // digits[0] is at 10^(n-1)
  const int k = static_cast<int>(digits.size());
  const std::string sign = x < 0 ? "-" : "";
  if (k <= n && n <= 21) return sign + digits + std::string(n - k, '0');
  if (0 < n && n <= 21) return sign + digits.substr(0, n) + "." + digits.substr(n);
  if (-6 < n && n <= 0) return sign + "0." + std::string(-n, '0') + digits;
  const std::string mantissa = digits.substr(0, 1) + (k > 1 ? "." + digits.substr(1) : "");
  return sign + mantissa + (n >= 1 ? "e+" : "e-") + std::to_string(std::abs(n - 1));
}

// How @huggingface/jinja prints a float: integral values keep one decimal ("2.0").
std::string float_text(double x) {
  if (x == 0 && std::signbit(x)) return "-0.0";
  if (!std::isfinite(x) || x != std::floor(x) || std::fabs(x) >= 1e21) return js_number(x);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", x);
  return buf;
}

// End of the longest decimal literal (sign, digits, fraction, exponent) at s[i], or i.
std::size_t scan_decimal(const std::string& s, std::size_t i) {
  const auto digits_from = [&](std::size_t j) {
    while (j < s.size() && is_digit(s[j])) ++j;
    return j;
  };
  const std::size_t start = i + (i < s.size() && (s[i] == '+' || s[i] == '-'));
  std::size_t j = digits_from(start);
  if (j < s.size() && s[j] == '.' && (j > start || digits_from(j + 1) > j + 1))
    j = digits_from(j + 1);
  if (j == start) return i;
  if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    const std::size_t x = j + 1 + (j + 1 < s.size() && (s[j + 1] == '+' || s[j + 1] == '-'));
    if (digits_from(x) > x) j = digits_from(x);
  }
  return j;
}

double parse_decimal(const std::string& text) {
  const std::size_t sign = !text.empty() && (text[0] == '+' || text[0] == '-');
  double value = 0;
  if (std::from_chars(text.data() + sign, text.data() + text.size(), value).ec ==
      std::errc::result_out_of_range) {
    value =
        text.find("e-") != std::string::npos || text.find("E-") != std::string::npos ? 0 : HUGE_VAL;
  }
  return sign && text[0] == '-' ? -value : value;
}

// JavaScript's parseFloat, parseInt(s, 10) and Number(s).
double js_parse_float(const std::string& s) {
  const std::size_t i = skip_spaces(s, 0), end = scan_decimal(s, i);
  if (end > i) return parse_decimal(s.substr(i, end - i));
  const std::size_t sign = i < s.size() && (s[i] == '+' || s[i] == '-');
  if (s.compare(i + sign, 8, "Infinity") == 0) return s[i] == '-' ? -HUGE_VAL : HUGE_VAL;
  return std::nan("");
}
double js_parse_int(const std::string& s) {
  const std::size_t i = skip_spaces(s, 0), sign = i < s.size() && (s[i] == '+' || s[i] == '-');
  std::size_t end = i + sign;
  while (end < s.size() && is_digit(s[end])) ++end;
  return end > i + sign ? parse_decimal(s.substr(i, end - i)) : std::nan("");
}
double js_to_number(const std::string& s) {
  const std::string t = trim(s);
  if (t.empty()) return 0;
  const std::size_t radix = t.size() > 2 && t[0] == '0' ? std::string("xXoObB").find(t[1]) : 6;
  if (radix < 6) {  // 0x1f, 0o17, 0b11
    const std::size_t base = radix < 2 ? 16 : radix < 4 ? 8 : 2;
    double value = 0;
    for (std::size_t i = 2; i < t.size(); ++i) {
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(t[i])));
      const std::size_t digit = std::string("0123456789abcdef").find(c);
      if (digit >= base) return std::nan("");
      value = value * static_cast<double>(base) + static_cast<double>(digit);
    }
    return value;
  }
  const std::size_t sign = t[0] == '+' || t[0] == '-';
  if (t.compare(sign, std::string::npos, "Infinity") == 0)
    return t[0] == '-' ? -HUGE_VAL : HUGE_VAL;
  return scan_decimal(t, 0) == t.size() ? parse_decimal(t) : std::nan("");
}

// Upper-case ranges and the distance to their lower case, as JavaScript maps them for ASCII,
// Latin-1, Greek and Cyrillic; other scripts keep their case here.
struct CaseRange {
  uint32_t first, last;
  int offset;
};
constexpr CaseRange kCaseRanges[] = {{'A', 'Z', 32},     {0xC0, 0xD6, 32},   {0xD8, 0xDE, 32},
                                     {0x391, 0x3A1, 32}, {0x3A3, 0x3AB, 32}, {0x410, 0x42F, 32},
                                     {0x400, 0x40F, 80}, {0x388, 0x38A, 37}, {0x38E, 0x38F, 63},
                                     {0x386, 0x386, 38}, {0x38C, 0x38C, 64}, {0x178, 0x178, -121}};

std::string map_case(const std::string& s, bool upper) {
  std::string out;
  for (std::size_t i = 0, start = 0; i < s.size(); start = i) {
    uint32_t cp = next_char(s, i), mapped = cp;
    for (const CaseRange& r : kCaseRanges) {
      const uint32_t first = upper ? r.first + r.offset : r.first;
      if (cp >= first && cp <= first + (r.last - r.first))
        mapped = upper ? cp - r.offset : cp + r.offset;
    }
    if (upper && (cp == 0xB5 || cp == 0x3C2)) mapped = cp == 0xB5 ? 0x39C : 0x3A3;
    if (upper && cp == 0xDF) {
      out += "SS";
    } else if (mapped == cp) {
      out.append(s, start, i - start);
    } else {
      append_utf8(out, mapped);
    }
  }
  return out;
}
std::string to_upper(const std::string& s) {
  return map_case(s, true);
}
std::string to_lower(const std::string& s) {
  return map_case(s, false);
}

// @huggingface/jinja's title(): upper-cases the ASCII letter that starts each word, nothing else.
std::string title_case(std::string s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((i == 0 || !is_word_byte(s[i - 1])) && s[i] >= 'a' && s[i] <= 'z') s[i] -= 32;
  }
  return s;
}

// JSON.stringify of a string; ensure_ascii escapes U+007F and up as UTF-16 \uXXXX.
void append_json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  static const std::string special = "\"\\\b\f\n\r\t", named = "\"\\bfnrt";
  const auto escape = [&out](uint32_t unit) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\u%04x", unit);
    out += buf;
  };
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80 && ensure_ascii) {
      const uint32_t cp = next_char(s, i);
      if (cp < 0x10000) {
        escape(cp);
      } else {
        escape(0xD800 + ((cp - 0x10000) >> 10));
        escape(0xDC00 + ((cp - 0x10000) & 0x3FF));
      }
      continue;
    }
    ++i;
    if (const std::size_t k = special.find(static_cast<char>(c)); c && k != std::string::npos) {
      out += '\\';
      out += named[k];
    } else if (c < 0x20 || (ensure_ascii && c == 0x7F)) {
      escape(c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

// String.prototype.localeCompare for sort_keys, approximated for ASCII keys as ICU's root
// collation orders them: punctuation, digits, then letters case-blind, lower case first on a tie.
int collation_weight(char c) {
  static const std::string order =
      " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz";
  const std::size_t at = order.find(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  return at == std::string::npos ? 1000 + static_cast<unsigned char>(c) : static_cast<int>(at);
}
bool locale_less(const std::string& a, const std::string& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const int x = collation_weight(a[i]), y = collation_weight(b[i]);
    if (x != y) return x < y;
  }
  if (a.size() != b.size()) return a.size() < b.size();
  const auto diff = std::mismatch(a.begin(), a.end(), b.begin());
  return diff.first != a.end() && *diff.first >= 'a' && *diff.first <= 'z';
}

// ---- values -------------------------------------------------------------------------------------

enum class Type {
  kUndefined,
  kNull,
  kBool,
  kInt,
  kFloat,
  kString,
  kArray,
  kObject,
  kNamespace,
  kFunction
};

struct Value;
class Scope;
struct CallArgs;
using Array = std::vector<Value>;
using Entries = std::vector<std::pair<std::string, Value>>;  // a dict, in insertion order
using Function = std::function<Value(const CallArgs&, Scope&)>;

// A runtime value. Numbers are doubles as in JavaScript; kInt and kFloat differ in how they print.
// Lists, dicts and namespaces are shared by reference; only namespaces are ever changed.
struct Value {
  Type type = Type::kUndefined;
  double number = 0;  // kBool (0 or 1), kInt, kFloat
  int depth = 0;      // how deep lists and dicts nest inside
  std::shared_ptr<const std::string> str;
  std::shared_ptr<Array> array;
  std::shared_ptr<Entries> object;  // kObject, kNamespace
  std::shared_ptr<const Function> function;

  Value() = default;
  Value(Type t, double n) : type(t), number(n) {}
  static Value null() { return {Type::kNull, 0}; }
  static Value boolean(bool b) { return {Type::kBool, b ? 1.0 : 0.0}; }
  static Value integer(double x) { return {Type::kInt, x}; }
  bool is(Type t) const { return type == t; }
  bool is_number() const { return type == Type::kInt || type == Type::kFloat; }
  bool is_numeric() const { return is_number() || type == Type::kBool; }
  bool is_nullish() const { return type == Type::kUndefined || type == Type::kNull; }
  bool is_dict() const { return type == Type::kObject || type == Type::kNamespace; }
  const std::string& text() const { return *str; }
};

struct CallArgs {
  std::vector<Value> positional;
  Entries keywords;
};

Value make_string(std::string s) {
  Value v(Type::kString, 0);
  v.str = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value make_array(Array items) {
  Value v(Type::kArray, 0);
  for (const auto& item : items) v.depth = std::max(v.depth, item.depth);
  if (++v.depth > kMaxValueDepth) fail(Kind::kLimit, kNowhere, "lists and dicts nested too deeply");
  v.array = std::make_shared<Array>(std::move(items));
  return v;
}
Value make_object(Entries entries, Type type = Type::kObject) {
  Value v(type, 0);
  for (const auto& entry : entries) v.depth = std::max(v.depth, entry.second.depth);
  if (type == Type::kNamespace) v.depth = 0;  // namespaces are taken apart after each render
  if (++v.depth > kMaxValueDepth) fail(Kind::kLimit, kNowhere, "lists and dicts nested too deeply");
  v.object = std::make_shared<Entries>(std::move(entries));
  return v;
}
Value make_function(Function f) {
  Value v(Type::kFunction, 0);
  v.function = std::make_shared<const Function>(std::move(f));
  return v;
}

const Value* find_entry(const Entries& entries, const std::string& key) {
  for (const auto& entry : entries) {
    if (entry.first == key) return &entry.second;
  }
  return nullptr;
}
void set_entry(Entries& entries, const std::string& key, Value value) {
  for (auto& entry : entries) {
    if (entry.first == key) return void(entry.second = std::move(value));
  }
  entries.emplace_back(key, std::move(value));
}

std::string type_name(const Value& v) {
  static const char* const names[] = {
      "an undefined value", "none",   "a boolean", "an integer",  "a float",
      "a string",           "a list", "a dict",    "a namespace", "a function"};
  return names[static_cast<int>(v.type)];
}

bool truthy(const Value& v) {
  if (v.is_numeric()) return v.number != 0 && !std::isnan(v.number);
  if (v.is(Type::kString)) return !v.text().empty();
  if (v.is(Type::kArray)) return !v.array->empty();
  if (v.is(Type::kObject)) return !v.object->empty();
  return !v.is_nullish();
}

// JavaScript's === on the underlying values: lists and dicts by identity. @huggingface/jinja's none
// holds JavaScript's undefined, so none and undefined are the same here.
bool strict_equal(const Value& a, const Value& b) {
  if (a.is_nullish() || b.is_nullish()) return a.is_nullish() && b.is_nullish();
  if (a.is_number() && b.is_number()) return a.number == b.number;
  if (a.type != b.type) return false;
  if (a.is(Type::kString)) return a.text() == b.text();
  if (a.is(Type::kBool)) return a.number == b.number;
  return a.array == b.array && a.object == b.object && a.function == b.function;
}

// ---- the parsed template ------------------------------------------------------------------------

enum class ExprKind {
  kLiteral,  // literal
  kName,     // name
  kArray,    // kids: items
  kTuple,    // kids: items
  kDict,     // kids: key, value, key, value...
  kMember,   // kids: object; name: attribute (obj.name)
  kIndex,    // kids: object, key (obj[key], obj.0)
  kSlice,    // kids: object, start, stop, step (null when left out)
  kCall,     // kids: callee, arguments (kKeyword for name=value)
  kFilter,   // kids: operand (null in a filter block), arguments; name; flag: called with ()
  kTest,     // kids: operand; name: test; flag: `is not`
  kUnary,    // kids: operand; name: operator
  kBinary,   // kids: left, right; name: operator
  kTernary,  // kids: condition, if true, if false
  kSelect,   // kids: value, condition (`value if condition` without else)
  kKeyword,  // kids: value; name: keyword (also a macro parameter's default)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  Offset at = kNowhere;
  int height = 1;
  bool flag = false;
  std::string name;
  Value literal;
  std::vector<ExprPtr> kids;
};

enum class NodeKind {
  kText,
  kOutput,
  kIf,
  kFor,
  kSet,
  kSetBlock,
  kMacro,
  kFilterBlock,
  kBreak,
  kContinue
};

// One statement. kIf: if expr, body, orelse (an elif is a nested kIf). kFor: for target in expr
// if condition, body, orelse. kSet: target = expr. kSetBlock: target, body. kMacro: text(params),
// body. kFilterBlock: expr (a kFilter), body.
struct Node {
  NodeKind kind = NodeKind::kText;
  Offset at = kNowhere;
  std::string text;  // kText; kMacro: its name
  ExprPtr expr, target, condition;
  std::vector<ExprPtr> params;
  std::vector<Node> body, orelse;
};

// ---- preprocessing and lexing -------------------------------------------------------------------

// Maps byte offsets of the template source to lines and columns (in characters).
class LineIndex {
 public:
  explicit LineIndex(const std::string& source) : source_(source) {
    for (std::size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\n') starts_.push_back(i + 1);
    }
  }
  std::pair<int, int> at(Offset offset) const {
    const auto line = std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin();
    int column = 1;
    for (std::size_t i = starts_[line - 1]; i < offset && i < source_.size(); ++i) {
      column += static_cast<unsigned char>(source_[i]) >> 6 != 2;
    }
    return {static_cast<int>(line), column};
  }

 private:
  std::string source_;
  std::vector<std::size_t> starts_{0};
};

// Template text with, for each byte, its offset in the original source.
struct Text {
  std::string bytes;
  std::vector<std::size_t> origin;

  void keep(const Text& from, std::size_t begin, std::size_t end) {
    bytes.append(from.bytes, begin, end - begin);
    origin.insert(origin.end(), from.origin.begin() + begin, from.origin.begin() + end);
  }
};

bool at_line_start(const std::string& s, std::size_t i) {
  if (i == 0 || s[i - 1] == '\n' || s[i - 1] == '\r') return true;  // U+2028, U+2029 too:
  return i >= 3 && s.compare(i - 3, 2, "\xE2\x80") == 0 && (s[i - 1] | 1) == '\xA9';
}

// lstrip_blocks: spaces and tabs between a line start and `{%`, `{#` (and `{-`) go.
Text strip_block_indents(const Text& in) {
  Text out;
  const std::string& s = in.bytes;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i;
    while (at_line_start(s, i) && j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
    const bool tag = j > i && s.compare(j, 1, "{") == 0 && j + 1 < s.size() &&
                     (s[j + 1] == '%' || s[j + 1] == '#' || s[j + 1] == '-');
    if (!tag) out.keep(in, i, std::max(j, i + 1));
    i = std::max(j, i + 1);
  }
  return out;
}

// trim_blocks: the newline right after `%}`, `#}` (and `-}`) goes.
Text strip_block_newlines(const Text& in) {
  Text out;
  const std::string& s = in.bytes;
  for (std::size_t i = 0; i < s.size(); ++i) {
    out.keep(in, i, i + 1);
    if (i > 0 && s[i] == '}' && (s[i - 1] == '%' || s[i - 1] == '#' || s[i - 1] == '-') &&
        s.compare(i + 1, 1, "\n") == 0)
      ++i;
  }
  return out;
}

// End of transformers' {% generation %} or {% endgeneration %} at s[i], or 0.
std::size_t generation_tag_end(const std::string& s, std::size_t i, bool& strip_before,
                               bool& strip_after) {
  if (s.compare(i, 2, "{%") != 0) return 0;
  strip_before = s.compare(i + 2, 1, "-") == 0;
  i = skip_spaces(s, i + 2 + strip_before);
  i += s.compare(i, 3, "end") == 0 ? 3 : 0;
  if (s.compare(i, 10, "generation") != 0) return 0;
  i = skip_spaces(s, i + 10);
  strip_after = s.compare(i, 1, "-") == 0;
  return s.compare(i + strip_after, 2, "%}") == 0 ? i + strip_after + 2 : 0;
}

// The generation markers go, with the whitespace that a `-` beside them strips.
Text remove_generation_tags(const Text& in) {
  Text out;
  const std::string& s = in.bytes;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t tag = skip_spaces(s, i);
    bool strip_before = false, strip_after = false;
    const std::size_t end = generation_tag_end(s, tag, strip_before, strip_after);
    if (end == 0) {
      out.keep(in, i, std::max(tag, i + 1));
      i = std::max(tag, i + 1);
      continue;
    }
    const std::size_t after = skip_spaces(s, end);
    if (!strip_before) out.keep(in, i, tag);
    if (!strip_after) out.keep(in, end, after);
    i = after;
  }
  return out;
}

Text preprocess(const std::string& source) {
  Text text{source, std::vector<std::size_t>(source.size())};
  for (std::size_t i = 0; i < source.size(); ++i) text.origin[i] = i;
  if (!source.empty() && source.back() == '\n') {  // one trailing newline goes
    text.bytes.pop_back();
    text.origin.pop_back();
  }
  return remove_generation_tags(strip_block_newlines(strip_block_indents(text)));
}

// kOpen: "{%" or "{{"; kClose: "%}" or "}}"; kSymbol: punctuation and operators; kUnary: a sign
// where an operand is due.
enum class Tok { kText, kComment, kOpen, kClose, kNumber, kString, kName, kSymbol, kUnary };

struct Token {
  Tok type;
  std::string value;
  std::size_t offset;  // in the original source
};

// Splits template text into tokens exactly where @huggingface/jinja's lexer does.
class Lexer {
 public:
  Lexer(const Text& text, std::size_t source_size)
      : text_(text), src_(text.bytes), source_size_(source_size) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) step();
    if (!tokens_.empty() && !last_is({Tok::kClose, Tok::kComment, Tok::kText})) {
      const std::string close = open_tag_ == "{{" ? "}}" : "%}";
      fail(Kind::kSyntax, open_offset_,
           "unclosed tag '" + open_tag_ + "': expected '" + close + "'");
    }
    return std::move(tokens_);
  }

 private:
  std::size_t origin(std::size_t i) const {
    return i < text_.origin.size() ? text_.origin[i] : source_size_;
  }
  [[noreturn]] void error(std::size_t at, const std::string& message) const {
    fail(Kind::kSyntax, origin(at), message);
  }
  bool starts(std::string_view s) const { return src_.compare(pos_, s.size(), s) == 0; }
  void push(Tok type, std::string value, std::size_t at) {
    tokens_.push_back({type, std::move(value), origin(at)});
  }
  bool last_is(std::initializer_list<Tok> types) const {
    return !tokens_.empty() &&
           std::find(types.begin(), types.end(), tokens_.back().type) != types.end();
  }
  bool last_symbol_is(const char* symbol) const {
    return last_is({Tok::kSymbol}) && tokens_.back().value == symbol;
  }

  void step() {
    if (tokens_.empty() || last_is({Tok::kClose, Tok::kComment})) {
      const std::size_t start = pos_;
      while (pos_ < src_.size() && !(starts("{%") || starts("{{") || starts("{#"))) ++pos_;
      if (pos_ > start) return push(Tok::kText, src_.substr(start, pos_ - start), start);
    }
    if (starts("{#")) return comment();
    if (starts("{%-") || starts("{{-")) {
      strip_trailing_whitespace();
      open_tag(src_.substr(pos_, 2));
      pos_ += 3;
      return;
    }
    pos_ = skip_spaces(src_, pos_);
    if (pos_ >= src_.size()) return;
    if (starts("-%}") || starts("-}}")) {
      push(Tok::kClose, src_.substr(pos_ + 1, 2), pos_);
      pos_ = skip_spaces(src_, pos_ + 3);
      return;
    }
    const char c = src_[pos_];
    if ((c == '-' || c == '+') && sign_is_unary()) return number(true);
    if (symbol()) return;
    if (c == '\'' || c == '"') return string_literal();
    if (is_digit(c)) return number(false);
    const std::size_t start = pos_;
    while (pos_ < src_.size() && is_word_byte(src_[pos_])) ++pos_;
    if (pos_ > start) return push(Tok::kName, src_.substr(start, pos_ - start), start);
    next_char(src_, pos_);
    error(start, "unexpected character '" + src_.substr(start, pos_ - start) + "'");
  }

  void strip_trailing_whitespace() {
    if (!last_is({Tok::kText})) return;
    tokens_.back().value = trim_end(tokens_.back().value);
    if (tokens_.back().value.empty()) tokens_.pop_back();
  }

  void open_tag(const std::string& tag) {
    push(Tok::kOpen, tag, pos_);
    if (tag == "{{") brace_depth_ = 0;
    open_tag_ = tag;
    open_offset_ = origin(pos_);
  }

  void comment() {
    const std::size_t start = pos_;
    const bool strip_before = src_.compare(pos_ + 2, 1, "-") == 0;
    pos_ += 2 + strip_before;
    const std::size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) error(start, "unclosed comment '{#': expected '#}'");
    std::string body = src_.substr(pos_, end - pos_);
    const bool strip_after = !body.empty() && body.back() == '-';
    if (strip_before) strip_trailing_whitespace();
    push(Tok::kComment, std::move(body), start);
    pos_ = strip_after ? skip_spaces(src_, end + 2) : end + 2;
  }

  bool sign_is_unary() const {
    return !last_is({Tok::kName, Tok::kNumber, Tok::kString}) && !last_symbol_is(")") &&
           !last_symbol_is("]");
  }

  // Digits with an optional fraction; after a unary sign, the sign alone if no digits follow.
  void number(bool signed_number) {
    const std::size_t start = pos_;
    pos_ += signed_number;
    const auto digits = [this] {
      while (pos_ < src_.size() && is_digit(src_[pos_])) ++pos_;
    };
    digits();
    const bool fraction = pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1]);
    if (pos_ > start + signed_number && fraction && !(!signed_number && last_symbol_is("."))) {
      ++pos_;
      digits();
    }
    const bool sign_only = pos_ == start + 1 && signed_number;
    push(sign_only ? Tok::kUnary : Tok::kNumber, src_.substr(start, pos_ - start), start);
  }

  bool symbol() {
    static constexpr std::string_view symbols[] = {
        "{%", "%}", "{{", "}}", "(", ")", "{", "}", "[",  "]", ",",  ".", ":", "|", "<=",
        ">=", "==", "!=", "<",  ">", "+", "-", "~", "**", "*", "//", "/", "%", "="};
    for (const std::string_view symbol : symbols) {
      if ((symbol == "}}" && brace_depth_ > 0) || !starts(symbol)) continue;
      if (symbol == "{%" || symbol == "{{") {
        open_tag(std::string(symbol));
      } else {
        push(symbol == "%}" || symbol == "}}" ? Tok::kClose : Tok::kSymbol, std::string(symbol),
             pos_);
      }
      brace_depth_ += symbol == "{" ? 1 : symbol == "}" ? -1 : 0;
      pos_ += symbol.size();
      return true;
    }
    return false;
  }

  uint32_t hex_escape(std::size_t length) {
    const std::string hex = src_.substr(pos_, length);
    if (hex.size() != length ||
        hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      error(pos_ - 2, "invalid escape '\\" + src_.substr(pos_ - 1, 1) + hex + "' in a string");
    pos_ += length;
    return static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
  }

  void escape(std::string& out) {
    static const std::string from = "ntrbfv'\"\\", to = "\n\t\r\b\f\v'\"\\";
    const char c = src_[pos_++];
    if (const std::size_t at = from.find(c); at != std::string::npos) return void(out += to[at]);
    if (c != 'x' && c != 'u')
      error(pos_ - 2, std::string("unknown escape '\\") + c + "' in a string");
    uint32_t cp = hex_escape(c == 'x' ? 2 : 4);
    if (cp >= 0xD800 && cp <= 0xDBFF && starts("\\u")) {  // a UTF-16 surrogate pair
      pos_ += 2;
      const uint32_t low = hex_escape(4);
      const bool pair = low >= 0xDC00 && low <= 0xDFFF;
      if (!pair) append_utf8(out, 0xFFFD);
      cp = pair ? 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00) : low;
    }
    append_utf8(out, cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp);  // lone surrogates
  }

  void string_literal() {
    const std::size_t start = pos_;
    const char quote = src_[pos_++];
    std::string value;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      if (src_[pos_] == '\\' && pos_ + 1 < src_.size()) {
        ++pos_;
        escape(value);
      } else {
        value += src_[pos_++];
      }
    }
    if (pos_++ >= src_.size()) error(start, "unterminated string literal");
    push(Tok::kString, std::move(value), start);
  }

  const Text& text_;
  const std::string& src_;
  std::size_t source_size_;
  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  int brace_depth_ = 0;
  std::string open_tag_;
  std::size_t open_offset_ = 0;
};

// ---- parsing ------------------------------------------------------------------------------------

template <typename... Kids>
std::vector<ExprPtr> kids_of(Kids&&... kids) {
  std::vector<ExprPtr> out;
  (out.push_back(std::forward<Kids>(kids)), ...);
  return out;
}

// Recursive descent with @huggingface/jinja's grammar and precedences (lowest first): ternary,
// or, and, not, comparison and membership, + - ~, * / // %, **, is-tests, filters, unary sign,
// calls and member access.
class Parser {
 public:
  Parser(std::vector<Token> tokens, std::size_t source_size)
      : toks_(std::move(tokens)), source_size_(source_size) {}

  std::vector<Node> parse_template() {
    std::vector<Node> nodes;
    while (pos_ < toks_.size()) parse_into(nodes);
    return nodes;
  }

 private:
  // -- tokens
  bool at(Tok type, const char* value = nullptr, std::size_t ahead = 0) const {
    const std::size_t i = pos_ + ahead;
    return i < toks_.size() && toks_[i].type == type && (!value || toks_[i].value == value);
  }
  bool at_name(const char* name, std::size_t ahead = 0) const {
    return at(Tok::kName, name, ahead);
  }
  bool at_symbol(const char* symbol) const { return at(Tok::kSymbol, symbol); }
  bool at_tag(std::initializer_list<const char*> names) const {
    if (!at(Tok::kOpen, "{%")) return false;
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return at_name(n, 1); });
  }
  Offset here() const { return pos_ < toks_.size() ? toks_[pos_].offset : source_size_; }
  [[noreturn]] void error(const std::string& message) const {
    fail(Kind::kSyntax, here(), message);
  }
  std::string found() const {
    if (pos_ >= toks_.size()) return "the end of the template";
    const Token& t = toks_[pos_];
    return t.type == Tok::kText     ? "text"
           : t.type == Tok::kString ? "a string"
                                    : "'" + t.value + "'";
  }
  void expect(Tok type, const char* value) {
    if (!at(type, value)) error(std::string("expected '") + value + "', found " + found());
    ++pos_;
  }
  void expect_end_tag(const char* name) {
    expect(Tok::kOpen, "{%");
    expect(Tok::kName, name);
    expect(Tok::kClose, "%}");
  }
  void check_depth() const {
    try {
      stack_.check(Kind::kSyntax, "the template is nested too deeply");
    } catch (Failure& failure) {
      failure.at = here();
      throw;
    }
  }

  ExprPtr make(ExprKind kind, Offset at, std::vector<ExprPtr> kids = {}, std::string name = {}) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->at = at;
    e->name = std::move(name);
    e->kids = std::move(kids);
    for (const auto& kid : e->kids) e->height = std::max(e->height, kid ? kid->height + 1 : 1);
    if (e->height > kMaxExprHeight) fail(Kind::kSyntax, at, "an expression nested too deeply");
    return e;
  }

  // -- statements
  void parse_into(std::vector<Node>& nodes) {
    Node node;
    node.at = here();
    if (at(Tok::kComment)) return void(++pos_);
    if (at(Tok::kText)) {
      node.text = toks_[pos_++].value;
    } else if (at(Tok::kOpen, "{{")) {
      ++pos_;
      node.kind = NodeKind::kOutput;
      node.expr = parse_expression();
      expect(Tok::kClose, "}}");
    } else if (at(Tok::kOpen, "{%")) {
      ++pos_;
      parse_statement(node);
    } else {
      error("unexpected " + found());
    }
    nodes.push_back(std::move(node));
  }

  std::vector<Node> parse_block(std::initializer_list<const char*> closers, const Node& opener,
                                const char* tag, const char* end_tag) {
    check_depth();
    std::vector<Node> nodes;
    while (!at_tag(closers)) {
      if (pos_ >= toks_.size()) {
        fail(Kind::kSyntax, opener.at,
             std::string("unclosed '") + tag + "': expected {% " + end_tag + " %}");
      }
      parse_into(nodes);
    }
    return nodes;
  }

  void parse_statement(Node& node) {
    if (!at(Tok::kName)) error("expected a tag name after '{%', found " + found());
    const Offset at = here();
    const std::string tag = toks_[pos_++].value;
    if (tag == "if") {
      parse_if(node);
      expect_end_tag("endif");
    } else if (tag == "for") {
      parse_for(node);
      expect_end_tag("endfor");
    } else if (tag == "set") {
      parse_set(node);
    } else if (tag == "macro") {
      parse_macro(node);
    } else if (tag == "filter") {
      node.kind = NodeKind::kFilterBlock;
      node.expr = parse_filter_call(nullptr);
      expect(Tok::kClose, "%}");
      node.body = parse_block({"endfilter"}, node, "filter", "endfilter");
      expect_end_tag("endfilter");
    } else if (tag == "break" || tag == "continue") {
      node.kind = tag == "break" ? NodeKind::kBreak : NodeKind::kContinue;
      expect(Tok::kClose, "%}");
    } else if (tag == "elif" || tag == "else" || tag.rfind("end", 0) == 0) {
      fail(Kind::kSyntax, at, "unexpected tag '" + tag + "': no open block it could close");
    } else {
      static const std::string jinja =
          " call block extends include import from raw with do autoescape ";
      const bool known = jinja.find(" " + tag + " ") != std::string::npos;
      fail(Kind::kSyntax, at, (known ? "unsupported tag '" : "unknown tag '") + tag + "'");
    }
  }

  void parse_if(Node& node) {
    node.kind = NodeKind::kIf;
    node.expr = parse_expression();
    expect(Tok::kClose, "%}");
    node.body = parse_block({"elif", "else", "endif"}, node, "if", "endif");
    if (at_tag({"elif"})) {
      Node elif;
      elif.at = here();
      pos_ += 2;
      parse_if(elif);
      node.orelse.push_back(std::move(elif));
    } else if (at_tag({"else"})) {
      pos_ += 2;
      expect(Tok::kClose, "%}");
      node.orelse = parse_block({"endif"}, node, "if", "endif");
    }
  }

  void parse_for(Node& node) {
    node.kind = NodeKind::kFor;
    node.target = parse_sequence(true);
    check_assignable(*node.target, false);
    if (!at_name("in")) error("expected 'in' after the loop variable, found " + found());
    ++pos_;
    node.expr = parse_expression();
    if (node.expr->kind == ExprKind::kSelect) {  // for x in xs if condition
      node.condition = std::move(node.expr->kids[1]);
      node.expr = std::move(node.expr->kids[0]);
    }
    expect(Tok::kClose, "%}");
    node.body = parse_block({"endfor", "else"}, node, "for", "endfor");
    if (at_tag({"else"})) {
      pos_ += 2;
      expect(Tok::kClose, "%}");
      node.orelse = parse_block({"endfor"}, node, "for", "endfor");
    }
  }

  void check_assignable(const Expr& target, bool member_allowed) const {
    const auto is_name = [](const ExprPtr& kid) { return kid->kind == ExprKind::kName; };
    if (target.kind == ExprKind::kName || (member_allowed && target.kind == ExprKind::kMember) ||
        (target.kind == ExprKind::kTuple &&
         std::all_of(target.kids.begin(), target.kids.end(), is_name)))
      return;
    fail(Kind::kSyntax, target.at, "cannot assign to this: expected names or namespace.attribute");
  }

  void parse_set(Node& node) {
    node.kind = NodeKind::kSet;
    node.target = parse_sequence(false);
    check_assignable(*node.target, true);
    if (at(Tok::kSymbol, "=")) {
      ++pos_;
      node.expr = parse_sequence(false);
      return expect(Tok::kClose, "%}");
    }
    node.kind = NodeKind::kSetBlock;
    expect(Tok::kClose, "%}");
    node.body = parse_block({"endset"}, node, "set", "endset");
    expect_end_tag("endset");
  }

  void parse_macro(Node& node) {
    node.kind = NodeKind::kMacro;
    if (!at(Tok::kName)) error("expected the macro's name, found " + found());
    node.text = toks_[pos_++].value;
    expect(Tok::kSymbol, "(");
    node.params = parse_arguments(true);
    expect(Tok::kClose, "%}");
    ++macro_depth_;
    node.body = parse_block({"endmacro"}, node, "macro", "endmacro");
    --macro_depth_;
    expect_end_tag("endmacro");
  }

  // -- expressions
  ExprPtr parse_sequence(bool primary) {
    const Offset at = here();
    std::vector<ExprPtr> items = kids_of(primary ? parse_primary() : parse_expression());
    while (at_symbol(",")) {
      ++pos_;
      items.push_back(primary ? parse_primary() : parse_expression());
    }
    return items.size() == 1 ? std::move(items[0]) : make(ExprKind::kTuple, at, std::move(items));
  }

  ExprPtr parse_expression() {
    check_depth();
    auto value = parse_binary(1);
    if (!at_name("if")) return value;
    const Offset at = here();
    ++pos_;
    auto condition = parse_binary(1);
    if (!at_name("else"))
      return make(ExprKind::kSelect, at, kids_of(std::move(value), std::move(condition)));
    ++pos_;
    auto otherwise = parse_expression();
    return make(ExprKind::kTernary, at,
                kids_of(std::move(condition), std::move(value), std::move(otherwise)));
  }

  // How tightly the binary operator at the cursor binds (prefix `not` is 3); 0: none there.
  int precedence() const {
    static const std::string comparisons = " == != < > <= >= ", additive = " + - ~ ",
                             multiplicative = " * / // % ";
    if (at_name("or")) return 1;
    if (at_name("and")) return 2;
    if ((at_name("not") && at_name("in", 1)) || at_name("in")) return 4;
    if (!at(Tok::kSymbol)) return 0;
    const std::string op = " " + toks_[pos_].value + " ";
    if (comparisons.find(op) != std::string::npos) return 4;
    if (additive.find(op) != std::string::npos) return 5;
    if (multiplicative.find(op) != std::string::npos) return 6;
    return op == " ** " ? 7 : 0;
  }

  // Binary operators by precedence climbing, all left-associative (`**` too).
  ExprPtr parse_binary(int min_precedence) {
    ExprPtr left;
    if (min_precedence <= 3 && at_name("not")) {
      check_depth();
      const Offset at = here();
      ++pos_;
      left = make(ExprKind::kUnary, at, kids_of(parse_binary(3)), "not");
    } else {
      left = parse_operand();
    }
    for (int p = precedence(); p >= min_precedence && p > 0; p = precedence()) {
      const Offset at = here();
      std::string op = toks_[pos_++].value;
      if (op == "not") op = "not in", ++pos_;
      left = make(ExprKind::kBinary, at, kids_of(std::move(left), parse_binary(p + 1)), op);
    }
    return left;
  }

  // A signed primary with its member accesses and calls, then its filters, then its tests.
  ExprPtr parse_operand() {
    auto operand = parse_unary();
    while (at_symbol("|")) {
      ++pos_;
      operand = parse_filter_call(std::move(operand));
    }
    while (at_name("is")) {
      const Offset at = here();
      const bool negate = at_name("not", 1);
      pos_ += 1 + negate;
      if (!this->at(Tok::kName)) error("expected a test name after 'is', found " + found());
      operand = make(ExprKind::kTest, at, kids_of(std::move(operand)), toks_[pos_++].value);
      operand->flag = negate;
    }
    return operand;
  }

  ExprPtr parse_filter_call(ExprPtr operand) {
    const Offset at = here();
    if (!this->at(Tok::kName)) error("expected a filter name, found " + found());
    std::string name = toks_[pos_++].value;
    std::vector<ExprPtr> kids = kids_of(std::move(operand));
    const bool called = at_symbol("(");
    if (called) {
      ++pos_;
      for (auto& arg : parse_arguments(false)) kids.push_back(std::move(arg));
    }
    auto filter = make(ExprKind::kFilter, at, std::move(kids), std::move(name));
    filter->flag = called;
    return filter;
  }

  ExprPtr parse_unary() {
    if ((at(Tok::kUnary) || at(Tok::kSymbol)) &&
        (toks_[pos_].value == "-" || toks_[pos_].value == "+")) {
      check_depth();
      const Offset at = here();
      std::string op = toks_[pos_++].value;
      return make(ExprKind::kUnary, at, kids_of(parse_unary()), op);
    }
    auto value = parse_members(parse_primary());
    while (at_symbol("(")) {
      const Offset at = here();
      ++pos_;
      std::vector<ExprPtr> kids = kids_of(std::move(value));
      for (auto& arg : parse_arguments(false)) kids.push_back(std::move(arg));
      value = parse_members(make(ExprKind::kCall, at, std::move(kids)));
    }
    return value;
  }

  // After '(': arguments up to and including ')'. Parameters: names, or name=default.
  std::vector<ExprPtr> parse_arguments(bool parameters) {
    std::vector<ExprPtr> args;
    bool keyword_seen = false;
    while (!at_symbol(")")) {
      if (pos_ >= toks_.size()) error("expected ')', found the end of the template");
      if (at_symbol("*") || at_symbol("**"))
        error("argument unpacking with * or ** is not supported");
      const Offset at = here();
      auto arg = parse_expression();
      if (at_symbol("=")) {
        ++pos_;
        if (arg->kind != ExprKind::kName) fail(Kind::kSyntax, at, "expected a name before '='");
        arg = make(ExprKind::kKeyword, at, kids_of(parse_expression()), arg->name);
        keyword_seen = true;
      } else if (keyword_seen) {
        fail(Kind::kSyntax, at, "a positional argument follows a keyword argument");
      }
      if (parameters && arg->kind != ExprKind::kName && arg->kind != ExprKind::kKeyword)
        fail(Kind::kSyntax, at, "expected a parameter name");
      for (const auto& other : args) {
        if (parameters && other->name == arg->name)
          fail(Kind::kSyntax, at, "duplicate parameter '" + arg->name + "'");
      }
      args.push_back(std::move(arg));
      if (at_symbol(",")) ++pos_;
    }
    ++pos_;
    return args;
  }

  ExprPtr parse_members(ExprPtr object) {
    while (at_symbol(".") || at_symbol("[")) {
      const Offset at = here();
      if (toks_[pos_++].value == "[") {
        object = parse_subscript(std::move(object), at);
      } else if (this->at(Tok::kName)) {
        object = make(ExprKind::kMember, at, kids_of(std::move(object)), toks_[pos_++].value);
      } else if (this->at(Tok::kNumber) &&
                 toks_[pos_].value.find_first_not_of("0123456789") == std::string::npos) {
        object = make(ExprKind::kIndex, at, kids_of(std::move(object), parse_primary()));
      } else {
        error("expected a name or an integer after '.', found " + found());
      }
    }
    return object;
  }

  // After '[': an index, or a slice start:stop:step with any part left out.
  ExprPtr parse_subscript(ExprPtr object, Offset at) {
    std::vector<ExprPtr> parts;
    bool slice = false;
    while (!at_symbol("]")) {
      if (pos_ >= toks_.size()) error("expected ']', found the end of the template");
      parts.push_back(at_symbol(":") ? nullptr : parse_expression());
      if (at_symbol(":")) ++pos_, slice = true;
    }
    ++pos_;
    if (parts.empty()) fail(Kind::kSyntax, at, "expected an index or a slice inside '[]'");
    if (!slice) return make(ExprKind::kIndex, at, kids_of(std::move(object), std::move(parts[0])));
    if (parts.size() > 3) fail(Kind::kSyntax, at, "a slice takes at most start:stop:step");
    parts.resize(3);
    parts.insert(parts.begin(), std::move(object));
    return make(ExprKind::kSlice, at, std::move(parts));
  }

  ExprPtr parse_primary() {
    const Offset at = here();
    if (pos_ >= toks_.size()) error("expected an expression, found the end of the template");
    const Token& t = toks_[pos_++];
    const bool symbol = t.type == Tok::kSymbol;
    if (t.type == Tok::kNumber || t.type == Tok::kString) {
      auto e = make(ExprKind::kLiteral, at);
      const bool is_float = t.value.find('.') != std::string::npos;
      std::string value = t.value;
      while (t.type == Tok::kString && this->at(Tok::kString)) value += toks_[pos_++].value;
      e->literal = t.type == Tok::kString
                       ? make_string(std::move(value))
                       : Value(is_float ? Type::kFloat : Type::kInt, parse_decimal(value));
      return e;
    }
    if (t.type == Tok::kName) {
      if (macro_depth_ > 0 && (t.value == "varargs" || t.value == "kwargs" || t.value == "caller"))
        fail(Kind::kSyntax, at, "'" + t.value + "' in a macro is not supported");
      return make(ExprKind::kName, at, {}, t.value);
    }
    if (symbol && t.value == "(") {
      auto e = parse_sequence(false);
      expect(Tok::kSymbol, ")");
      return e;
    }
    if (symbol && t.value == "[") return make(ExprKind::kArray, at, parse_items("]", false));
    if (symbol && t.value == "{") return make(ExprKind::kDict, at, parse_items("}", true));
    --pos_;
    error("expected an expression, found " + found());
  }

  // List items or dict key: value pairs up to and including the closing bracket.
  std::vector<ExprPtr> parse_items(const char* close, bool pairs) {
    std::vector<ExprPtr> items;
    while (!at_symbol(close)) {
      items.push_back(parse_expression());
      if (pairs) {
        expect(Tok::kSymbol, ":");
        items.push_back(parse_expression());
      }
      if (at_symbol(",")) ++pos_;
    }
    ++pos_;
    return items;
  }

  std::vector<Token> toks_;
  std::size_t source_size_;
  std::size_t pos_ = 0;
  int macro_depth_ = 0;
  StackBudget stack_;
};

// ---- evaluation ---------------------------------------------------------------------------------

class Scope {
 public:
  explicit Scope(Scope* parent) : parent_(parent) {}
  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent_) {
      if (auto it = s->vars_.find(name); it != s->vars_.end()) return &it->second;
    }
    return nullptr;
  }
  void set(const std::string& name, Value value) { vars_[name] = std::move(value); }
  bool has_own(const std::string& name) const { return vars_.count(name) > 0; }

 private:
  std::unordered_map<std::string, Value> vars_;
  Scope* parent_;
};

struct LoopControl {
  bool is_break;
};

struct JsonStyle {
  int indent = 0;
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool undefined_as_null = true;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};

const Value* keyword(const CallArgs& args, const std::string& name) {
  return find_entry(args.keywords, name);
}
// The index-th positional argument, else the keyword argument `name`, else `fallback`.
Value argument(const CallArgs& args, std::size_t index, const char* name, Value fallback) {
  if (index < args.positional.size()) return args.positional[index];
  const Value* found = keyword(args, name);
  return found ? *found : fallback;
}

bool is_one_of(const std::string& name, const char* names) {
  return std::string(" ").append(names).append(" ").find(" " + name + " ") != std::string::npos;
}

class Renderer {
 public:
  explicit Renderer(const ChatTemplateOptions& options) : options_(options) {}
  ~Renderer() {
    for (auto& entries : namespaces_) entries->clear();  // breaks namespace reference cycles
  }

  std::string run(const std::vector<Node>& program, const nlohmann::ordered_json& context) {
    if (!context.is_object() && !context.is_null())
      fail(Kind::kRender, kNowhere, "the context must be a JSON object");
    Scope root(nullptr);
    define_globals(root);
    for (const auto& [key, value] : context.items()) {
      if (root.has_own(key))
        fail(Kind::kRender, kNowhere, "context key '" + key + "' clashes with a built-in");
      root.set(key, from_json(value, 0));
    }
    std::string out;
    try {
      render(program, root, out);
    } catch (const LoopControl& control) {
      fail(Kind::kRender, kNowhere,
           control.is_break ? "'break' outside a loop" : "'continue' outside a loop");
    }
    return out;
  }

 private:
  // -- bounds
  [[noreturn]] void over(const char* what, std::size_t bound) const {
    fail(Kind::kLimit, kNowhere, std::string(what) + " (" + std::to_string(bound) + ")");
  }
  void charge(std::size_t bytes) {
    work_ += bytes;
    if (work_ > kWorkFactor * options_.max_output_bytes)
      over("string work over 64 x max_output_bytes", work_);
  }
  void check_size(std::size_t bytes) const {
    if (bytes > options_.max_output_bytes)
      over("a string grew past max_output_bytes", options_.max_output_bytes);
  }
  void check_items(std::size_t items) const {
    if (items > options_.max_iterations)
      over("a list grew past max_iterations", options_.max_iterations);
  }
  void count_iteration() {
    if (++iterations_ > options_.max_iterations)
      over("loops ran past max_iterations", options_.max_iterations);
  }
  void check_depth() const {
    stack_.check(Kind::kLimit, "evaluation nested too deeply (runaway macro recursion?)");
  }
  Value built_string(std::string s) {
    check_size(s.size());
    charge(s.size());
    return make_string(std::move(s));
  }
  Value built_array(Array items) {
    check_items(items.size());
    return make_array(std::move(items));
  }

  // -- context and globals
  Value from_json(const nlohmann::ordered_json& j, int depth) {
    if (depth > kMaxValueDepth / 2)
      fail(Kind::kLimit, kNowhere, "the context is nested too deeply");
    if (j.is_boolean()) return Value::boolean(j.get<bool>());
    if (j.is_number_integer()) return Value::integer(j.get<double>());
    if (j.is_number()) {  // JavaScript numbers: 2.0 is an integer
      const double x = j.get<double>();
      return Value(std::floor(x) == x ? Type::kInt : Type::kFloat, x);
    }
    if (j.is_string()) return make_string(j.get<std::string>());
    if (j.is_array()) {
      Array items;
      for (const auto& item : j) items.push_back(from_json(item, depth + 1));
      return make_array(std::move(items));
    }
    if (!j.is_object()) return j.is_null() ? Value::null() : Value{};
    Entries indexed, named;  // JavaScript lists integer-like keys first, in numeric order
    for (const auto& [key, value] : j.items()) {
      const bool index = !key.empty() && key.size() <= 10 && (key == "0" || key[0] != '0') &&
                         key.find_first_not_of("0123456789") == std::string::npos &&
                         std::stoull(key) < 4294967295ull;
      (index ? indexed : named).emplace_back(key, from_json(value, depth + 1));
    }
    std::stable_sort(indexed.begin(), indexed.end(), [](const auto& a, const auto& b) {
      return std::stoull(a.first) < std::stoull(b.first);
    });
    indexed.insert(indexed.end(), named.begin(), named.end());
    return make_object(std::move(indexed));
  }

  void define_globals(Scope& root) {
    for (const char* name : {"true", "True", "false", "False"})
      root.set(name, Value::boolean(name[0] != 'f' && name[0] != 'F'));
    root.set("none", Value::null());
    root.set("None", Value::null());
    root.set("namespace",
             make_function([this](const CallArgs& args, Scope&) { return make_namespace(args); }));
    root.set("raise_exception", make_function([this](const CallArgs& args, Scope&) -> Value {
               std::string message;  // JavaScript's String(array): items joined by ","
               for (std::size_t i = 0; i < args.positional.size(); ++i)
                 message += (i ? "," : "") + display_text(args.positional[i]);
               fail(Kind::kRaised, kNowhere, message);
             }));
    root.set("range", make_function([this](const CallArgs& args, Scope&) { return range(args); }));
    root.set("strftime_now", make_function([this](const CallArgs& args, Scope&) {
               if (args.positional.empty() || !args.positional[0].is(Type::kString))
                 fail("strftime_now() takes a format string");
               return make_string(strftime_now(args.positional[0].text()));
             }));
  }

  Value make_namespace(const CallArgs& args) {
    if (args.positional.size() > 1) fail("namespace() takes at most one positional argument");
    Entries entries;
    const Value source = args.positional.empty() ? Value::null() : args.positional[0];
    if (source.is(Type::kObject)) entries = *source.object;
    for (std::size_t i = 0; source.is(Type::kArray) && i < source.array->size(); ++i) {
      const Value& pair = (*source.array)[i];
      if (!pair.is(Type::kArray) || pair.array->size() != 2 || !(*pair.array)[0].is(Type::kString))
        fail("namespace() expects [key, value] pairs with string keys");
      set_entry(entries, (*pair.array)[0].text(), (*pair.array)[1]);
    }
    if (!source.is_nullish() && !source.is(Type::kObject) && !source.is(Type::kArray))
      fail("namespace() cannot take " + type_name(source));
    for (const auto& [key, value] : args.keywords) set_entry(entries, key, value);
    Value ns = make_object(std::move(entries), Type::kNamespace);
    namespaces_.push_back(ns.object);
    return ns;
  }

  Value range(const CallArgs& args) {
    const auto& a = args.positional;
    if (a.empty() || a.size() > 3 ||
        !std::all_of(a.begin(), a.end(), [](const Value& v) { return v.is_number(); }))
      fail("range() takes one to three numbers");
    const double start = a.size() > 1 ? a[0].number : 0, stop = a[a.size() > 1].number;
    const double step = a.size() > 2 ? a[2].number : 1;
    if (step == 0) fail("range() step must not be zero");
    check_items(static_cast<std::size_t>(std::clamp(std::ceil((stop - start) / step), 0.0, 1e18)));
    Array items;
    for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
      items.push_back(Value(i == std::floor(i) ? Type::kInt : Type::kFloat, i));
    }
    return make_array(std::move(items));
  }

  // @huggingface/jinja's strftime: %Y %m %d %H %M %b %B %%, English month names.
  std::string strftime_now(const std::string& format) const {
    std::tm t{};
    const std::time_t now = std::time(nullptr);
    if (options_.now) {
      t = options_.now();
    } else {
      localtime_r(&now, &t);
    }
    static const char* const months[] = {"January",   "February", "March",    "April",
                                         "May",       "June",     "July",     "August",
                                         "September", "October",  "November", "December"};
    const std::string month = months[std::clamp(t.tm_mon, 0, 11)];
    const int fields[] = {t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min};
    std::string out;
    for (std::size_t i = 0; i < format.size(); ++i) {
      const char spec = format[i] == '%' && i + 1 < format.size() ? format[i + 1] : 0;
      const std::size_t field = std::string("YmdHM").find(spec);
      if (spec && field != std::string::npos) {
        out += (field > 0 && fields[field] < 10 ? "0" : "") + std::to_string(fields[field]);
      } else if (spec == 'b' || spec == 'B' || spec == '%') {
        out += spec == '%' ? "%" : spec == 'b' ? month.substr(0, 3) : month;
      } else {
        out += format[i];
        continue;
      }
      ++i;
    }
    return out;
  }

  // -- printing
  // RuntimeValue.toString(): what {{ value }} prints. None is never printed there; inside a list
  // it shows as "undefined", the JavaScript value @huggingface/jinja gives it.
  std::string display_text(const Value& v) const {
    if (v.is_nullish()) return "undefined";
    if (v.is(Type::kBool)) return v.number ? "true" : "false";
    if (v.is(Type::kInt)) return js_number(v.number);
    if (v.is(Type::kFloat)) return float_text(v.number);
    if (v.is(Type::kString)) return v.text();
    if (v.is(Type::kFunction)) fail("cannot print a function");
    JsonStyle style;
    style.undefined_as_null = false;
    std::string out;
    append_json(out, v, style, 0);
    return out;
  }

  // The JavaScript value's own toString(), which `+` and `~` concatenate.
  std::string raw_text(const Value& v) const {
    if (v.is(Type::kFloat)) return js_number(v.number);
    if (v.is_dict()) return "[object Map]";
    if (!v.is(Type::kArray)) return display_text(v);
    std::string out;
    for (std::size_t i = 0; i < v.array->size(); ++i)
      out += (i ? "," : "") + display_text((*v.array)[i]);
    return out;
  }

  void append_json(std::string& out, const Value& v, const JsonStyle& style, int depth) const {
    if (depth > kMaxValueDepth)
      fail(Kind::kLimit, kNowhere,
           "a value nested too deeply to print (a namespace inside itself?)");
    check_size(out.size());
    if (v.is_nullish())
      return void(out += v.is(Type::kNull) || style.undefined_as_null ? "null" : "undefined");
    if (v.is(Type::kBool)) return void(out += v.number ? "true" : "false");
    if (v.is_number()) return void(out += std::isfinite(v.number) ? js_number(v.number) : "null");
    if (v.is(Type::kString)) return append_json_string(out, v.text(), style.ensure_ascii);
    if (v.is(Type::kFunction)) fail("cannot convert a function to JSON");
    const std::string unit(style.indent, ' ');
    std::string base = "\n";
    for (int i = 0; i < depth && style.indent > 0; ++i) base += unit;
    const std::string child = base + unit;
    const bool pretty = style.indent > 0;
    std::vector<const std::pair<std::string, Value>*> entries;
    if (v.is_dict()) {
      for (const auto& entry : *v.object) entries.push_back(&entry);
    }
    if (style.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](auto* a, auto* b) { return locale_less(a->first, b->first); });
    }
    const std::size_t count = v.is_dict() ? entries.size() : v.array->size();
    out += v.is_dict() ? '{' : '[';
    for (std::size_t i = 0; i < count; ++i) {
      out += i ? style.item_separator : "";
      if (pretty) out += child;
      if (v.is_dict()) {
        append_json_string(out, entries[i]->first, style.ensure_ascii);
        out += style.key_separator;
      }
      append_json(out, v.is_dict() ? entries[i]->second : (*v.array)[i], style, depth + 1);
    }
    out += pretty && count > 0 ? base : "";
    out += v.is_dict() ? '}' : ']';
  }

  Value to_json(const Value& v, const JsonStyle& style) {
    std::string out;
    append_json(out, v, style, 0);
    return built_string(std::move(out));
  }

  // -- statements
  void render(const std::vector<Node>& nodes, Scope& scope, std::string& out) {
    check_depth();
    for (const Node& node : nodes) {
      try {
        render_node(node, scope, out);
      } catch (Failure& failure) {
        if (failure.at == kNowhere) failure.at = node.at;
        throw;
      }
      check_size(out.size());
    }
  }

  void render_node(const Node& node, Scope& scope, std::string& out) {
    std::string text;
    switch (node.kind) {
      case NodeKind::kText:
        out += node.text;
        return charge(node.text.size());
      case NodeKind::kOutput:
        return print(eval(*node.expr, scope), out);
      case NodeKind::kIf:
        return render(truthy(eval(*node.expr, scope)) ? node.body : node.orelse, scope, out);
      case NodeKind::kFor:
        return render_for(node, scope, out);
      case NodeKind::kSet:
        return assign(*node.target, eval(*node.expr, scope), scope);
      case NodeKind::kSetBlock:
        render(node.body, scope, text);
        return assign(*node.target, make_string(std::move(text)), scope);
      case NodeKind::kMacro:
        return define_macro(node, scope);
      case NodeKind::kFilterBlock:
        render(node.body, scope, text);
        return print(apply_filter(make_string(std::move(text)), *node.expr, scope), out);
      case NodeKind::kBreak:
      case NodeKind::kContinue:
        throw LoopControl{node.kind == NodeKind::kBreak};
    }
  }

  void print(const Value& v, std::string& out) {
    if (v.is_nullish()) return;
    const std::string text = display_text(v);
    out += text;
    charge(text.size());
  }

  void assign(const Expr& target, const Value& value, Scope& scope) {
    if (target.kind == ExprKind::kName) return scope.set(target.name, value);
    if (target.kind == ExprKind::kTuple) {
      if (!value.is(Type::kArray)) fail("cannot unpack " + type_name(value));
      if (value.array->size() != target.kids.size())
        fail(value.array->size() < target.kids.size() ? "too few values to unpack"
                                                      : "too many values to unpack");
      for (std::size_t i = 0; i < target.kids.size(); ++i)
        scope.set(target.kids[i]->name, (*value.array)[i]);
      return;
    }
    const Value object = eval(*target.kids[0], scope);
    if (!object.is(Type::kNamespace))
      fail("cannot set an attribute of " + type_name(object) + ": only of a namespace()");
    set_entry(*object.object, target.name, value);
  }

  Value loop_object(const Array& items, std::size_t i) {
    const double n = static_cast<double>(items.size()), k = static_cast<double>(i);
    return make_object({{"index", Value::integer(k + 1)},
                        {"index0", Value::integer(k)},
                        {"revindex", Value::integer(n - k)},
                        {"revindex0", Value::integer(n - k - 1)},
                        {"first", Value::boolean(i == 0)},
                        {"last", Value::boolean(i + 1 == items.size())},
                        {"length", Value::integer(n)},
                        {"previtem", i > 0 ? items[i - 1] : Value{}},
                        {"nextitem", i + 1 < items.size() ? items[i + 1] : Value{}}});
  }

  // As @huggingface/jinja: items are filtered first; a break or continue drops what its iteration
  // had rendered so far; the else block renders when no iteration ran to its end.
  void render_for(const Node& node, Scope& outer, std::string& out) {
    Scope scope(&outer);
    Value iterable = eval(*node.expr, scope);
    if (iterable.is(Type::kObject)) iterable = keys_of(iterable);
    if (!iterable.is(Type::kArray)) fail("cannot loop over " + type_name(iterable));
    Array items;
    for (const Value& item : *iterable.array) {
      count_iteration();
      Scope item_scope(&scope);
      assign(*node.target, item, item_scope);  // unpacking errors show before any iteration runs
      if (!node.condition || truthy(eval(*node.condition, item_scope))) items.push_back(item);
    }
    bool completed_any = false;
    for (std::size_t i = 0; i < items.size(); ++i) {
      scope.set("loop", loop_object(items, i));
      assign(*node.target, items[i], scope);
      std::string piece;
      try {
        render(node.body, scope, piece);
      } catch (const LoopControl& control) {
        if (control.is_break) break;
        continue;
      }
      out += piece;
      check_size(out.size());
      completed_any = true;
    }
    if (!completed_any) render(node.orelse, scope, out);
  }

  void define_macro(const Node& macro, Scope& scope) {
    scope.set(macro.text, make_function([this, &macro](const CallArgs& args, Scope& caller) {
                Scope local(&caller);
                bind_macro_arguments(macro, args, local);
                std::string out;
                render(macro.body, local, out);
                return make_string(std::move(out));
              }));
  }

  void bind_macro_arguments(const Node& macro, const CallArgs& args, Scope& local) {
    Entries keywords = args.keywords;
    std::vector<const Expr*> defaults;
    for (std::size_t i = 0; i < macro.params.size(); ++i) {
      const Expr& param = *macro.params[i];
      std::optional<Value> value;
      if (i < args.positional.size()) value = args.positional[i];
      const auto named = std::find_if(keywords.begin(), keywords.end(),
                                      [&](const auto& e) { return e.first == param.name; });
      if (!value && named != keywords.end()) {
        value = named->second;
        keywords.erase(named);
      }
      if (!value && param.kind == ExprKind::kKeyword) defaults.push_back(&param);
      local.set(param.name, value.value_or(Value{}));
    }
    const std::string name = "macro '" + macro.text + "'";
    if (!keywords.empty()) fail(name + " takes no keyword argument '" + keywords[0].first + "'");
    if (args.positional.size() > macro.params.size())
      fail(name + " takes not more than " + std::to_string(macro.params.size()) + " argument(s)");
    for (const Expr* param : defaults) local.set(param->name, eval(*param->kids[0], local));
  }

  // -- expressions
  Value eval(const Expr& e, Scope& scope) {
    check_depth();
    try {
      return eval_kind(e, scope);
    } catch (Failure& failure) {
      if (failure.at == kNowhere) failure.at = e.at;
      throw;
    }
  }

  Value eval_kind(const Expr& e, Scope& scope) {
    const auto kid = [&](std::size_t i) { return eval(*e.kids[i], scope); };
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.literal;
      case ExprKind::kName:
        return scope.find(e.name) ? *scope.find(e.name) : Value{};
      case ExprKind::kArray:
      case ExprKind::kTuple: {
        Array items;
        for (std::size_t i = 0; i < e.kids.size(); ++i) items.push_back(kid(i));
        return built_array(std::move(items));
      }
      case ExprKind::kDict:
        return eval_dict(e, scope);
      case ExprKind::kMember:
        return member(kid(0), make_string(e.name));
      case ExprKind::kIndex: {
        const Value object = kid(0);
        return member(object, kid(1));
      }
      case ExprKind::kSlice:
        return slice(e, scope);
      case ExprKind::kCall:
        return call(e, scope);
      case ExprKind::kFilter:
        return apply_filter(kid(0), e, scope);
      case ExprKind::kTest:
        return Value::boolean(test(e.name, kid(0)) != e.flag);
      case ExprKind::kUnary:
        return unary(e.name, kid(0));
      case ExprKind::kBinary:
        return binary(e, scope);
      case ExprKind::kTernary:
        return kid(truthy(kid(0)) ? 1 : 2);
      case ExprKind::kSelect:
        return truthy(kid(1)) ? kid(0) : Value{};
      default:
        fail("a keyword argument outside a call");
    }
  }

  Value eval_dict(const Expr& e, Scope& scope) {
    Entries entries;
    for (std::size_t i = 0; i + 1 < e.kids.size(); i += 2) {
      const Value key = eval(*e.kids[i], scope);
      if (!key.is(Type::kString)) fail("dict keys must be strings, not " + type_name(key));
      set_entry(entries, key.text(), eval(*e.kids[i + 1], scope));
    }
    check_items(entries.size());
    return make_object(std::move(entries));
  }

  CallArgs eval_arguments(const std::vector<ExprPtr>& kids, Scope& scope) {
    CallArgs args;
    for (std::size_t i = 1; i < kids.size(); ++i) {  // kids[0]: the callee or the operand
      if (kids[i]->kind != ExprKind::kKeyword) args.positional.push_back(eval(*kids[i], scope));
    }
    for (std::size_t i = 1; i < kids.size(); ++i) {
      if (kids[i]->kind != ExprKind::kKeyword) continue;
      if (keyword(args, kids[i]->name))
        fail("keyword argument '" + kids[i]->name + "' given twice");
      args.keywords.emplace_back(kids[i]->name, eval(*kids[i]->kids[0], scope));
    }
    return args;
  }

  Value call(const Expr& e, Scope& scope) {
    const CallArgs args = eval_arguments(e.kids, scope);
    const Value callee = eval(*e.kids[0], scope);
    if (callee.is(Type::kFunction)) return (*callee.function)(args, scope);
    const Expr& c = *e.kids[0];
    const bool named = c.kind == ExprKind::kName || c.kind == ExprKind::kMember;
    fail((named ? "'" + c.name + "'" : std::string("this")) + " is not callable: it is " +
         type_name(callee));
  }

  static Value keys_of(const Value& object) {
    Array keys;
    for (const auto& entry : *object.object) keys.push_back(make_string(entry.first));
    return make_array(std::move(keys));
  }
  static Value items_of(const Value& object) {
    Array items;
    for (const auto& [key, value] : *object.object)
      items.push_back(make_array({make_string(key), value}));
    return make_array(std::move(items));
  }

  // obj.name and obj[key]: dict entries first, then the built-in methods of dicts, strings, lists.
  Value member(const Value& object, const Value& key) {
    const bool indexable = object.is(Type::kArray) || object.is(Type::kString);
    if (!key.is(Type::kString) && !(indexable && key.is(Type::kInt)))
      fail("cannot index " + type_name(object) + " with " + type_name(key));
    if (object.is_dict()) {
      if (const Value* found = find_entry(*object.object, key.text())) return *found;
      return object.is(Type::kObject) ? method(object, key.text()) : Value{};
    }
    if (!indexable) return Value{};
    if (key.is(Type::kString)) return method(object, key.text());
    const auto chars =
        object.is(Type::kString) ? characters(object.text()) : std::vector<std::string>{};
    const double n =
        static_cast<double>(object.is(Type::kArray) ? object.array->size() : chars.size());
    const double i = key.number < 0 ? key.number + n : key.number;
    if (i < 0 || i >= n) return Value{};
    return object.is(Type::kArray) ? (*object.array)[std::size_t(i)]
                                   : make_string(chars[std::size_t(i)]);
  }

  // A bound built-in method (or the `length` property) of a string, list or dict.
  Value method(const Value& self, const std::string& name) {
    if (name == "length" && self.is(Type::kString))
      return Value::integer(double(utf16_length(self.text())));
    if (name == "length" && self.is(Type::kArray))
      return Value::integer(double(self.array->size()));
    const bool string =
        self.is(Type::kString) &&
        is_one_of(
            name,
            "upper lower strip lstrip rstrip title capitalize startswith endswith split replace");
    if (!string && !(self.is(Type::kObject) && is_one_of(name, "get items keys values dictsort")))
      return Value{};
    return make_function([this, self, name, string](const CallArgs& args, Scope&) {
      return string ? string_method(self, name, args) : dict_method(self, name, args);
    });
  }

  // Like @huggingface/jinja, strip/lstrip/rstrip take no characters: they strip whitespace.
  Value string_method(const Value& self, const std::string& name, const CallArgs& args) {
    const std::string& s = self.text();
    charge(s.size());
    if (name == "upper" || name == "lower") return built_string(map_case(s, name == "upper"));
    if (name == "strip") return built_string(trim(s));
    if (name == "lstrip") return built_string(trim_start(s));
    if (name == "rstrip") return built_string(trim_end(s));
    if (name == "title") return built_string(title_case(s));
    if (name == "startswith" || name == "endswith")
      return Value::boolean(affix_matches(s, name, args));
    if (name == "split") return split(s, args);
    if (name == "replace") return replace(s, args);
    std::size_t first = 0;  // capitalize: the first character only
    if (!s.empty()) next_char(s, first);
    return built_string(to_upper(s.substr(0, first)) + s.substr(first));
  }

  static bool affix_matches(const std::string& s, const std::string& name, const CallArgs& args) {
    const auto matches = [&](const Value& affix) {
      if (!affix.is(Type::kString)) fail(name + "() takes a string or a list of strings");
      const std::string& a = affix.text();
      return a.size() <= s.size() &&
             s.compare(name == "startswith" ? 0 : s.size() - a.size(), a.size(), a) == 0;
    };
    if (args.positional.empty()) fail(name + "() takes an argument");
    const Value& arg = args.positional[0];
    return arg.is(Type::kArray) ? std::any_of(arg.array->begin(), arg.array->end(), matches)
                                : matches(arg);
  }

  Value split(const std::string& s, const CallArgs& args) {
    const Value sep = argument(args, 0, "", Value::null()),
                limit = argument(args, 1, "", Value::integer(-1));
    if (!sep.is(Type::kString) && !sep.is(Type::kNull))
      fail("split() separator must be a string or none");
    if (!limit.is(Type::kInt)) fail("split() maxsplit must be an integer");
    if (sep.is(Type::kString) && sep.text().empty()) fail("split() separator must not be empty");
    const bool whitespace = sep.is(Type::kNull);
    const std::string text = whitespace ? trim_start(s) : s;
    Array parts;
    std::size_t start = 0;
    while (start < text.size() || (!whitespace && start == text.size())) {
      std::size_t end = whitespace ? start : text.find(sep.text(), start);
      while (whitespace && end < text.size() && !space_at(text, end)) next_char(text, end);
      if (end == std::string::npos ||
          (limit.number != -1 && double(parts.size()) >= limit.number)) {
        parts.push_back(make_string(text.substr(start)));
        break;
      }
      parts.push_back(make_string(text.substr(start, end - start)));
      check_items(parts.size());
      start = whitespace ? skip_spaces(text, end) : end + sep.text().size();
    }
    return built_array(std::move(parts));
  }

  // Python's str.replace(old, new, count); an empty `old` inserts between characters.
  Value replace(const std::string& s, const CallArgs& args) {
    if (args.positional.size() < 2 || !args.positional[0].is(Type::kString) ||
        !args.positional[1].is(Type::kString))
      fail("replace() takes two strings");
    const Value count = argument(args, 2, "count", Value::null());
    if (!count.is(Type::kInt) && !count.is(Type::kNull))
      fail("replace() count must be an integer or none");
    double remaining = count.is(Type::kInt) && count.number >= 0 ? count.number : HUGE_VAL;
    const std::string &from = args.positional[0].text(), &to = args.positional[1].text();
    std::string out;
    std::size_t i = 0;
    for (std::size_t at;
         remaining > 0 && (at = from.empty() ? i : s.find(from, i)) != std::string::npos;
         --remaining) {
      out.append(s, i, at - i).append(to);
      check_size(out.size());
      i = at + from.size();
      if (from.empty() && i == s.size()) return built_string(out);
      if (from.empty()) next_char(s, i), out.append(s, at, i - at);
    }
    return built_string(out.append(s, std::min(i, s.size())));
  }

  Value dict_method(const Value& self, const std::string& name, const CallArgs& args) {
    if (name == "items") return items_of(self);
    if (name == "keys") return keys_of(self);
    if (name == "values") {
      Array values;
      for (const auto& entry : *self.object) values.push_back(entry.second);
      return make_array(std::move(values));
    }
    if (name == "get") {
      if (args.positional.empty() || !args.positional[0].is(Type::kString))
        fail("get() takes a string key");
      if (const Value* found = find_entry(*self.object, args.positional[0].text())) return *found;
      return args.positional.size() > 1 ? args.positional[1] : Value::null();
    }
    const Value case_sensitive = argument(args, 0, "case_sensitive", Value::boolean(false));
    const Value by = argument(args, 1, "by", make_string("key"));
    const Value reverse = argument(args, 2, "reverse", Value::boolean(false));
    if (!case_sensitive.is(Type::kBool) || !reverse.is(Type::kBool))
      fail("dictsort() flags must be booleans");
    if (!by.is(Type::kString) || !is_one_of(by.text(), "key value"))
      fail("dictsort() by must be 'key' or 'value'");
    const std::size_t index = by.text() == "key" ? 0 : 1;
    return sorted(items_of(self), reverse, case_sensitive,
                  [index](const Value& pair) { return (*pair.array)[index]; });
  }

  // Sorting order: numbers (booleans count) with numbers, strings with strings, none with none.
  static int compare(const Value& a, const Value& b, bool case_sensitive) {
    if ((a.is(Type::kNull) && b.is(Type::kNull)) ||
        (a.is(Type::kUndefined) && b.is(Type::kUndefined)))
      return 0;
    if (a.is_numeric() && b.is_numeric())
      return a.number < b.number ? -1 : a.number > b.number ? 1 : 0;
    if (!a.is(Type::kString) || !b.is(Type::kString))
      fail("cannot compare " + type_name(a) + " with " + type_name(b));
    const std::string x = case_sensitive ? a.text() : to_lower(a.text());
    const std::string y = case_sensitive ? b.text() : to_lower(b.text());
    return x < y ? -1 : x > y ? 1 : 0;
  }

  template <typename Key>
  static Value sorted(const Value& list, const Value& reverse, const Value& case_sensitive,
                      Key key) {
    if (!reverse.is(Type::kBool) || !case_sensitive.is(Type::kBool))
      fail("sort flags must be booleans");
    Array items = *list.array;
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      const int order = compare(key(a), key(b), case_sensitive.number != 0);
      return reverse.number ? order > 0 : order < 0;
    });
    return make_array(std::move(items));
  }

  Value slice(const Expr& e, Scope& scope) {
    const Value object = eval(*e.kids[0], scope);
    if (!object.is(Type::kArray) && !object.is(Type::kString))
      fail("cannot slice " + type_name(object));
    std::optional<double> bounds[3];
    for (int k = 0; k < 3; ++k) {
      const Value v = e.kids[k + 1] ? eval(*e.kids[k + 1], scope) : Value{};
      if (!v.is(Type::kInt) && !v.is(Type::kUndefined)) fail("slice bounds must be integers");
      if (v.is(Type::kInt)) bounds[k] = v.number;
    }
    const auto chars =
        object.is(Type::kString) ? characters(object.text()) : std::vector<std::string>{};
    const double n = double(object.is(Type::kArray) ? object.array->size() : chars.size());
    const double step = bounds[2].value_or(1), low = step >= 0 ? 0 : -1,
                 high = step >= 0 ? n : n - 1;
    const auto clamp = [&](double x, double below) {
      return x < below ? std::max(n + x, low) : std::min(x, high);
    };
    const double start = clamp(bounds[0].value_or(step >= 0 ? 0 : n - 1), 0);
    const double stop = clamp(bounds[1].value_or(step >= 0 ? n : -1), low);
    const double direction = step > 0 ? 1 : step < 0 ? -1 : 0;
    Array items;
    std::string text;
    for (double i = start; direction * i < direction * stop; i += step) {
      if (object.is(Type::kArray)) items.push_back((*object.array)[std::size_t(i)]);
      if (object.is(Type::kString)) text += chars[std::size_t(i)];
    }
    return object.is(Type::kArray) ? make_array(std::move(items)) : built_string(std::move(text));
  }

  static Value unary(const std::string& op, const Value& v) {
    if (op == "not") return Value::boolean(!truthy(v));
    if (!v.is_numeric()) fail("unary '" + op + "' cannot apply to " + type_name(v));
    return Value(v.is(Type::kFloat) ? Type::kFloat : Type::kInt, op == "-" ? -v.number : v.number);
  }

  // JavaScript's == on the underlying values.
  bool loose_equal(const Value& a, const Value& b) const {
    if (a.is_nullish() || b.is_nullish()) return a.is_nullish() && b.is_nullish();
    const auto by_reference = [](const Value& v) {
      return v.is(Type::kArray) || v.is_dict() || v.is(Type::kFunction);
    };
    if (by_reference(a) && by_reference(b)) return strict_equal(a, b);
    if (by_reference(a))
      return loose_equal(make_string(a.is(Type::kFunction) ? "function" : raw_text(a)), b);
    if (by_reference(b)) return loose_equal(b, a);
    if (a.is(Type::kString) && b.is(Type::kString)) return a.text() == b.text();
    if (a.is(Type::kString)) return js_to_number(a.text()) == b.number;
    if (b.is(Type::kString)) return a.number == js_to_number(b.text());
    return a.number == b.number;  // numbers and booleans
  }

  static Value arithmetic(const std::string& op, const Value& left, const Value& right) {
    const double a = left.number, b = right.number;
    const Type type = left.is(Type::kFloat) || right.is(Type::kFloat) ? Type::kFloat : Type::kInt;
    if (op == "+") return Value(type, a + b);
    if (op == "-") return Value(type, a - b);
    if (op == "*") return Value(type, a * b);
    if (op == "/") return Value(Type::kFloat, a / b);
    if (op == "//") return Value(type, std::floor(a / b));
    if (op == "%") return Value(type, std::fmod(a, b));
    if (op == "<" || op == ">") return Value::boolean(op == "<" ? a < b : a > b);
    if (op == "<=" || op == ">=") return Value::boolean(op == "<=" ? a <= b : a >= b);
    return Value{};
  }

  static Value power(const Value& left, const Value& right) {
    if (left.number == 0 && right.number < 0) fail("0 cannot be raised to a negative power");
    const double result = std::pow(left.number, right.number);
    if (!std::isfinite(result)) fail("'**' gives no finite real number here");
    const bool is_float = left.is(Type::kFloat) || right.is(Type::kFloat) || right.number < 0;
    return Value(is_float ? Type::kFloat : Type::kInt, result);
  }

  bool contains(const Value& container, const Value& item) {
    if (container.is(Type::kObject)) return find_entry(*container.object, item.text()) != nullptr;
    if (container.is(Type::kArray)) {
      const auto equal = [&](const Value& v) { return strict_equal(v, item); };
      return std::any_of(container.array->begin(), container.array->end(), equal);
    }
    charge(container.text().size());
    return container.text().find(item.text()) != std::string::npos;
  }

  // Binary operators, checked in @huggingface/jinja's order (which decides the odd cases).
  Value binary(const Expr& e, Scope& scope) {
    const std::string& op = e.name;
    const Value left = eval(*e.kids[0], scope);
    if (op == "and") return truthy(left) ? eval(*e.kids[1], scope) : left;
    if (op == "or") return truthy(left) ? left : eval(*e.kids[1], scope);
    const Value right = eval(*e.kids[1], scope);
    if (op == "==" || op == "!=") {
      if (left.is(Type::kString) && right.is(Type::kString))
        charge(std::min(left.text().size(), right.text().size()));
      return Value::boolean(loose_equal(left, right) == (op == "=="));
    }
    const bool membership = op == "in" || op == "not in";
    if (right.is(Type::kUndefined) && membership) return Value::boolean(op == "not in");
    if (left.is_nullish() || right.is_nullish())
      fail("'" + op + "' cannot apply to " + type_name(left.is_nullish() ? left : right));
    if (op == "~") return built_string(raw_text(left) + raw_text(right));
    if (op == "**" && left.is_numeric() && right.is_numeric()) return power(left, right);
    if (left.is_number() && right.is_number()) {
      if (Value v = arithmetic(op, left, right); !v.is(Type::kUndefined)) return v;
    } else if (left.is(Type::kArray) && right.is(Type::kArray)) {
      if (op != "+") fail("'" + op + "' cannot apply to a list and a list");
      Array items = *left.array;
      check_items(items.size() + right.array->size());
      items.insert(items.end(), right.array->begin(), right.array->end());
      return built_array(std::move(items));
    } else if (right.is(Type::kArray) && membership) {
      return Value::boolean(contains(right, left) == (op == "in"));
    }
    if ((left.is(Type::kString) || right.is(Type::kString)) && op == "+")
      return built_string(raw_text(left) + raw_text(right));
    if (left.is(Type::kString) && (right.is(Type::kString) || right.is(Type::kObject)) &&
        membership)
      return Value::boolean(contains(right, left) == (op == "in"));
    fail("'" + op + "' cannot apply to " + type_name(left) + " and " + type_name(right));
  }

  // -- tests
  static bool test(const std::string& name, const Value& v, const Value* other = nullptr) {
    const Type t = v.type;
    if (name == "defined" || name == "undefined")
      return (t == Type::kUndefined) == (name == "undefined");
    if (name == "none") return t == Type::kNull;
    if (name == "boolean" || name == "true" || name == "false")
      return t == Type::kBool && (name == "boolean" || v.number == (name == "true"));
    if (name == "string") return t == Type::kString;
    if (name == "number" || name == "integer")
      return t == Type::kInt || (name == "number" && t == Type::kFloat);
    if (name == "callable") return t == Type::kFunction;
    if (name == "iterable" || name == "sequence")
      return t == Type::kArray || t == Type::kString || (name == "sequence" && t == Type::kObject);
    if (name == "mapping") return t == Type::kObject;
    if (name == "lower" || name == "upper")
      return t == Type::kString && v.text() == map_case(v.text(), name == "upper");
    if (name == "equalto" || name == "eq")
      return other ? strict_equal(v, *other) : t == Type::kUndefined;
    if (name != "odd" && name != "even") fail("unknown test '" + name + "'");
    if (t != Type::kInt) fail("test '" + name + "' needs an integer, not " + type_name(v));
    return (std::fmod(v.number, 2) != 0) == (name == "odd");
  }

  // -- filters
  [[noreturn]] static void filter_mismatch(const std::string& name, const Value& operand) {
    if (!is_one_of(
            name,
            "safe tojson list first last length reverse sort join string unique upper lower title "
            "capitalize trim indent int float abs items bool default selectattr rejectattr map "
            "replace keys values get dictsort"))
      fail("unknown filter '" + name + "'");
    fail("filter '" + name + "' cannot apply to " + type_name(operand));
  }

  Value apply_filter(const Value& operand, const Expr& filter, Scope& scope) {
    const std::string& name = filter.name;
    if (name == "safe") return operand;
    if (!filter.flag) return plain_filter(operand, name);
    const CallArgs args = eval_arguments(filter.kids, scope);
    if (name == "tojson") return tojson_filter(operand, args);
    if (name == "join") return join_filter(operand, args);
    if (name == "int" || name == "float") return number_filter(operand, name, args);
    if (name == "default") {
      const Value fallback = args.positional.empty() ? make_string("") : args.positional[0];
      const Value boolean = argument(args, 1, "boolean", Value::boolean(false));
      if (!boolean.is(Type::kBool)) fail("default() boolean flag must be a boolean");
      return operand.is(Type::kUndefined) || (boolean.number && !truthy(operand)) ? fallback
                                                                                  : operand;
    }
    if (operand.is(Type::kArray) && name == "sort") {
      const Value attribute = argument(args, 2, "attribute", Value::null());
      if (!attribute.is(Type::kString) && !attribute.is(Type::kInt) && !attribute.is(Type::kNull))
        fail("sort() attribute must be a string or an integer");
      const std::string path =
          attribute.is(Type::kString) ? attribute.text() : js_number(attribute.number);
      return sorted(operand, argument(args, 0, "reverse", Value::boolean(false)),
                    argument(args, 1, "case_sensitive", Value::boolean(false)),
                    [&](const Value& item) {
                      return attribute.is(Type::kNull) ? item : attribute_path(item, path);
                    });
    }
    if (operand.is(Type::kArray) && (name == "selectattr" || name == "rejectattr"))
      return select_attribute(operand, filter, args);
    if (operand.is(Type::kArray) && name == "map") return map_attribute(operand, args);
    if (operand.is(Type::kString) && name == "indent") return indent_filter(operand.text(), args);
    if (operand.is(Type::kString) && name == "replace") return replace(operand.text(), args);
    if (operand.is(Type::kObject) && is_one_of(name, "get items keys values dictsort"))
      return dict_method(operand, name, args);
    filter_mismatch(name, operand);
  }

  Value plain_filter(const Value& operand, const std::string& name) {
    if (name == "tojson") return to_json(operand, JsonStyle{});
    if (operand.is(Type::kArray)) return list_filter(operand, name);
    if (operand.is(Type::kString)) return string_filter(operand, name);
    if (operand.is_numeric() && name == "int") return Value::integer(std::floor(operand.number));
    if (operand.is_numeric() && name == "float") return Value(Type::kFloat, operand.number);
    if (operand.is_number() && name == "abs") return Value(operand.type, std::fabs(operand.number));
    if (operand.is_numeric() && name == "string") return make_string(display_text(operand));
    if (operand.is(Type::kBool) && name == "bool") return operand;
    if (operand.is(Type::kObject) && name == "length")
      return Value::integer(double(operand.object->size()));
    if (operand.is(Type::kObject) && is_one_of(name, "get items keys values dictsort"))
      return dict_method(operand, name, {});
    filter_mismatch(name, operand);
  }

  Value list_filter(const Value& operand, const std::string& name) {
    const Array& items = *operand.array;
    if (name == "list") return operand;
    if (name == "first" || name == "last") {  // empty: undefined, where @huggingface/jinja crashes
      return items.empty() ? Value{} : name == "first" ? items.front() : items.back();
    }
    if (name == "length") return Value::integer(double(items.size()));
    if (name == "reverse") return make_array(Array(items.rbegin(), items.rend()));
    if (name == "join") return join_filter(operand, {});
    if (name == "sort") {
      const Value no = Value::boolean(false);
      return sorted(operand, no, no, [](const Value& item) { return item; });
    }
    if (name == "string") {
      JsonStyle style;
      style.undefined_as_null = false;
      return to_json(operand, style);
    }
    if (name != "unique") filter_mismatch(name, operand);
    Array unique;
    for (const Value& item : items) {
      const auto same = [&](const Value& u) {
        const bool both_nan =
            u.is_number() && item.is_number() && std::isnan(u.number) && std::isnan(item.number);
        return strict_equal(u, item) || both_nan;
      };
      if (std::none_of(unique.begin(), unique.end(), same)) unique.push_back(item);
    }
    return make_array(std::move(unique));
  }

  Value string_filter(const Value& operand, const std::string& name) {
    if (name == "length") return Value::integer(double(utf16_length(operand.text())));
    if (is_one_of(name, "upper lower title capitalize")) return string_method(operand, name, {});
    if (name == "trim") return string_method(operand, "strip", {});
    if (name == "indent") return indent_filter(operand.text(), {});
    if (name == "join" || name == "string") return operand;
    if (name == "int" || name == "float") return number_filter(operand, name, {});
    filter_mismatch(name, operand);
  }

  Value tojson_filter(const Value& operand, const CallArgs& args) {
    const auto option = [&](const char* name, Value fallback) {
      const Value* found = keyword(args, name);
      return found ? *found : fallback;
    };
    const Value indent = option("indent", Value::null()),
                separators = option("separators", Value::null());
    const Value ensure_ascii = option("ensure_ascii", Value::boolean(false));
    const Value sort_keys = option("sort_keys", Value::boolean(false));
    if (!(indent.is(Type::kInt) && indent.number >= 0 && indent.number <= 64) &&
        !indent.is(Type::kNull))
      fail("tojson() indent must be an integer in 0..64");
    if (!ensure_ascii.is(Type::kBool) || !sort_keys.is(Type::kBool))
      fail("tojson() flags must be booleans");
    JsonStyle style;
    style.indent = static_cast<int>(indent.number);
    style.ensure_ascii = ensure_ascii.number != 0;
    style.sort_keys = sort_keys.number != 0;
    if (style.indent > 0) style.item_separator = ",";
    if (!separators.is(Type::kNull)) {
      const bool pair = separators.is(Type::kArray) && separators.array->size() == 2 &&
                        (*separators.array)[0].is(Type::kString) &&
                        (*separators.array)[1].is(Type::kString);
      if (!pair) fail("tojson() separators must be two strings");
      style.item_separator = (*separators.array)[0].text();
      style.key_separator = (*separators.array)[1].text();
    }
    return to_json(operand, style);
  }

  Value join_filter(const Value& operand, const CallArgs& args) {
    const Value separator = argument(args, 0, "separator", make_string(""));
    if (!separator.is(Type::kString)) fail("join() separator must be a string");
    if (!operand.is(Type::kString) && !operand.is(Type::kArray)) filter_mismatch("join", operand);
    std::vector<std::string> parts =
        operand.is(Type::kString) ? characters(operand.text()) : std::vector<std::string>{};
    for (std::size_t i = 0; operand.is(Type::kArray) && i < operand.array->size(); ++i) {
      const Value& item = (*operand.array)[i];
      parts.push_back(item.is_nullish() ? "" : raw_text(item));
    }
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      out += (i ? separator.text() : "") + parts[i];
      check_size(out.size());
    }
    return built_string(std::move(out));
  }

  Value number_filter(const Value& operand, const std::string& name, const CallArgs& args) {
    const Type type = name == "int" ? Type::kInt : Type::kFloat;
    if (operand.is(Type::kString)) {
      const double x =
          type == Type::kInt ? js_parse_int(operand.text()) : js_parse_float(operand.text());
      return std::isnan(x) ? argument(args, 0, "default", Value(type, 0)) : Value(type, x);
    }
    if (operand.is_number()) return operand;
    if (operand.is(Type::kBool)) return Value(type, operand.number);
    filter_mismatch(name, operand);
  }

  Value indent_filter(const std::string& s, const CallArgs& args) {
    const Value width = argument(args, 0, "width", Value::integer(4));
    const bool first = truthy(argument(args, 1, "first", Value::boolean(false)));
    const bool blank = truthy(argument(args, 2, "blank", Value::boolean(false)));
    if (!width.is(Type::kInt) || width.number < 0)
      fail("indent() width must be a non-negative integer");
    check_size(static_cast<std::size_t>(std::min(width.number, 1e18)));
    const std::string pad(static_cast<std::size_t>(width.number), ' ');
    std::string out;
    for (std::size_t start = 0, line = 0;; ++line) {
      const std::size_t end = std::min(s.find('\n', start), s.size());
      if ((first || line > 0) && (blank || end > start)) out += pad;
      out.append(s, start, end - start);
      check_size(out.size());
      if (end == s.size()) break;
      out += '\n';
      start = end + 1;
    }
    return built_string(std::move(out));
  }

  // item.a.b.0 for map(attribute=) and sort(attribute=).
  static Value attribute_path(const Value& item, const std::string& path) {
    Value v = item;
    for (std::size_t start = 0; start <= path.size();) {
      const std::size_t end = std::min(path.find('.', start), path.size());
      const std::string part = path.substr(start, end - start);
      const double index = js_parse_int(part);
      if (v.is_dict()) {
        const Value* found = find_entry(*v.object, part);
        v = found ? *found : Value{};
      } else if (v.is(Type::kArray) && index >= 0 && index < double(v.array->size())) {
        v = (*v.array)[std::size_t(index)];
      } else {
        return Value{};
      }
      start = end + 1;
    }
    return v;
  }

  Value select_attribute(const Value& operand, const Expr& filter, const CallArgs& args) {
    for (std::size_t i = 1; i < filter.kids.size(); ++i) {
      if (filter.kids[i]->kind != ExprKind::kLiteral || !filter.kids[i]->literal.is(Type::kString))
        fail(filter.name + "() takes string literals");
    }
    if (args.positional.empty()) fail(filter.name + "() takes an attribute name");
    const std::string test_name = args.positional.size() > 1 ? args.positional[1].text() : "";
    const Value* other = args.positional.size() > 2 ? &args.positional[2] : nullptr;
    Array kept;
    for (const Value& item : *operand.array) {
      if (!item.is_dict()) fail(filter.name + "() applies to a list of dicts");
      const Value* value = find_entry(*item.object, args.positional[0].text());
      const bool passes =
          value && (test_name.empty() ? truthy(*value) : test(test_name, *value, other));
      if (passes == (filter.name == "selectattr")) kept.push_back(item);
    }
    return make_array(std::move(kept));
  }

  Value map_attribute(const Value& operand, const CallArgs& args) {
    const Value* attribute = keyword(args, "attribute");
    if (!attribute || !attribute->is(Type::kString))
      fail("map() is supported only with attribute='name'");
    Array mapped;
    for (const Value& item : *operand.array) {
      if (!item.is_dict()) fail("map(attribute=) applies to a list of dicts");
      const Value v = attribute_path(item, attribute->text());
      mapped.push_back(
          v.is(Type::kUndefined) && keyword(args, "default") ? *keyword(args, "default") : v);
    }
    return make_array(std::move(mapped));
  }

  const ChatTemplateOptions& options_;
  std::size_t iterations_ = 0;
  std::size_t work_ = 0;
  StackBudget stack_;
  std::vector<std::shared_ptr<Entries>> namespaces_;
};

ChatTemplateError to_error(const Failure& failure, const LineIndex& lines) {
  ChatTemplateError error{failure.kind, failure.message};
  if (failure.at == kNowhere) return error;
  std::tie(error.line, error.column) = lines.at(failure.at);
  if (failure.kind != Kind::kRaised) {
    error.message = "line " + std::to_string(error.line) + ", column " +
                    std::to_string(error.column) + ": " + failure.message;
  }
  return error;
}

}  // namespace

struct ChatTemplate::Program {
  LineIndex lines;
  std::vector<Node> nodes;
};

ChatTemplate::ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}

std::variant<ChatTemplate, ChatTemplateError> ChatTemplate::parse(const std::string& source) {
  try {
    LineIndex lines(source);
    try {
      const Text text = preprocess(source);
      auto nodes = Parser(Lexer(text, source.size()).run(), source.size()).parse_template();
      return ChatTemplate(std::make_shared<Program>(Program{std::move(lines), std::move(nodes)}));
    } catch (const Failure& failure) {
      return to_error(failure, lines);
    }
  } catch (const std::exception& e) {
    return ChatTemplateError{Kind::kSyntax, std::string("cannot parse the template: ") + e.what()};
  }
}

std::variant<std::string, ChatTemplateError> ChatTemplate::render(
    const nlohmann::ordered_json& context, const ChatTemplateOptions& options) const {
  if (!program_) return ChatTemplateError{Kind::kRender, "this ChatTemplate was moved from"};
  const LineIndex& lines = program_->lines;
  try {
    return Renderer(options).run(program_->nodes, context);
  } catch (const Failure& failure) {
    return to_error(failure, lines);
  } catch (const std::bad_alloc&) {
    return to_error({Kind::kLimit, kNowhere, "out of memory while rendering the template"}, lines);
  } catch (const std::exception& e) {
    return to_error({Kind::kRender, kNowhere, std::string("cannot render: ") + e.what()}, lines);
  }
}

}  // namespace osd
