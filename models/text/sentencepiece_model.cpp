#include "models/text/sentencepiece_model.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <unordered_map>

#include "models/common/error.hpp"
#include "models/text/bpe.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

namespace {

// ---- protobuf wire format: just enough to walk ModelProto ------------------------------------
class Wire {
 public:
  Wire(std::string_view data, std::string where) : data_(data), where_(std::move(where)) {}
  bool done() const { return pos_ >= data_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint");
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > data_.size() - pos_) fail("length-delimited field runs past the end");
    auto s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  float fixed32_float() {
    if (data_.size() - pos_ < 4) fail("truncated fixed32");
    uint32_t u = 0;
    for (int i = 3; i >= 0; --i)
      u = (u << 8) | static_cast<unsigned char>(data_[pos_ + static_cast<size_t>(i)]);
    pos_ += 4;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0:
        varint();
        break;
      case 1:
        advance(8);
        break;
      case 2:
        bytes();
        break;
      case 5:
        advance(4);
        break;
      default:
        fail("unknown wire type " + std::to_string(wire_type));
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(where_ + ": not a SentencePiece model (" + what + " at byte " +
                std::to_string(pos_) + ")");
  }

 private:
  void advance(size_t n) {
    if (data_.size() - pos_ < n) fail("truncated field");
    pos_ += n;
  }
  std::string_view data_;
  std::string where_;
  size_t pos_ = 0;
};

enum PieceType {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

struct Piece {
  std::string text;
  float score = 0;
  int type = kNormal;
};

struct ModelProto {
  std::vector<Piece> pieces;
  int model_type = 1;  // UNIGRAM by default
  bool byte_fallback = false, treat_whitespace_as_suffix = false;
  int64_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string normalizer_name;
  bool has_trainer_spec = false;
  bool has_charsmap = false, add_dummy_prefix = true, remove_extra_whitespaces = true,
       escape_whitespaces = true;
};

int64_t signed_int32(uint64_t v) {
  return static_cast<int32_t>(static_cast<uint32_t>(v));
}

ModelProto parse(std::string_view data, const std::string& where) {
  ModelProto m;
  Wire top(data, where);
  while (!top.done()) {
    const uint64_t key = top.varint();
    const auto field = key >> 3;
    const auto type = static_cast<uint32_t>(key & 7);
    if (field == 1 && type == 2) {
      Wire w(top.bytes(), where);
      Piece p;
      while (!w.done()) {
        const uint64_t k = w.varint();
        if ((k >> 3) == 1 && (k & 7) == 2)
          p.text = std::string(w.bytes());
        else if ((k >> 3) == 2 && (k & 7) == 5)
          p.score = w.fixed32_float();
        else if ((k >> 3) == 3 && (k & 7) == 0)
          p.type = static_cast<int>(w.varint());
        else
          w.skip(static_cast<uint32_t>(k & 7));
      }
      m.pieces.push_back(std::move(p));
    } else if (field == 2 && type == 2) {
      m.has_trainer_spec = true;
      Wire w(top.bytes(), where);
      while (!w.done()) {
        const uint64_t k = w.varint();
        const auto f = k >> 3;
        if ((k & 7) != 0) {
          w.skip(static_cast<uint32_t>(k & 7));
          continue;
        }
        const uint64_t v = w.varint();
        if (f == 3)
          m.model_type = static_cast<int>(v);
        else if (f == 24)
          m.treat_whitespace_as_suffix = v != 0;
        else if (f == 35)
          m.byte_fallback = v != 0;
        else if (f == 40)
          m.unk_id = signed_int32(v);
        else if (f == 41)
          m.bos_id = signed_int32(v);
        else if (f == 42)
          m.eos_id = signed_int32(v);
        else if (f == 43)
          m.pad_id = signed_int32(v);
      }
    } else if (field == 3 && type == 2) {
      Wire w(top.bytes(), where);
      while (!w.done()) {
        const uint64_t k = w.varint();
        const auto f = k >> 3;
        if (f == 1 && (k & 7) == 2)
          m.normalizer_name = std::string(w.bytes());
        else if (f == 2 && (k & 7) == 2)
          m.has_charsmap = !w.bytes().empty();
        else if (f >= 3 && f <= 5 && (k & 7) == 0) {
          const bool v = w.varint() != 0;
          (f == 3   ? m.add_dummy_prefix
           : f == 4 ? m.remove_extra_whitespaces
                    : m.escape_whitespaces) = v;
        } else {
          w.skip(static_cast<uint32_t>(k & 7));
        }
      }
    } else {
      top.skip(type);
    }
  }
  if (m.pieces.empty()) throw Error(where + ": not a SentencePiece model (no pieces)");
  if (!m.has_trainer_spec)
    throw Error(where + ": not a SentencePiece model (no trainer_spec: truncated?)");
  return m;
}

const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's whitespace

class SentencePieceTokenizer final : public TextTokenizer {
 public:
  SentencePieceTokenizer(ModelProto m, const std::string& where)
      : where_(where), proto_(std::move(m)) {
    if (proto_.model_type != 2)
      throw Error(where + ": SentencePiece model type " + std::to_string(proto_.model_type) +
                  " is not supported (BPE, type 2, as Llama/Mistral use; Unigram is not)");
    if (proto_.has_charsmap ||
        (!proto_.normalizer_name.empty() && proto_.normalizer_name != "identity"))
      throw Error(
          where + ": normalization rule \"" + proto_.normalizer_name +
          "\" needs the precompiled charsmap, which osd does not implement (identity only)");
    if (proto_.treat_whitespace_as_suffix)
      throw Error(where + ": treat_whitespace_as_suffix is not supported");
    // BPE merges from piece scores: any split of a piece into two pieces may merge into it, and a
    // better-scoring result merges first (equal scores: the leftmost pair first).
    std::vector<std::pair<std::string, int64_t>> vocab;
    std::unordered_map<std::string, int64_t> mergeable;
    for (size_t id = 0; id < proto_.pieces.size(); ++id) {
      const auto& p = proto_.pieces[id];
      if (p.text.empty()) throw Error(where + ": piece " + std::to_string(id) + " is empty");
      vocab.emplace_back(p.text, static_cast<int64_t>(id));
      if (p.type == kNormal || p.type == kUserDefined || p.type == kUnused)
        mergeable.emplace(p.text, static_cast<int64_t>(id));
      if (p.type == kUserDefined) user_defined_.push_back(p.text);
      if (p.type == kControl || p.type == kUnknown) control_.push_back(static_cast<int64_t>(id));
      if (p.type == kByte) {
        const bool ok = p.text.size() == 6 && p.text.compare(0, 3, "<0x") == 0 &&
                        p.text[5] == '>' && std::isxdigit(static_cast<unsigned char>(p.text[3])) &&
                        std::isxdigit(static_cast<unsigned char>(p.text[4]));
        if (!ok)
          throw Error(where + ": byte piece " + std::to_string(id) + " is '" + p.text +
                      "', not <0xXX>");
        byte_value_[static_cast<int64_t>(id)] =
            static_cast<char>(std::stoi(p.text.substr(3, 2), nullptr, 16));
      }
    }
    std::sort(user_defined_.begin(), user_defined_.end(),
              [](const auto& a, const auto& b) { return a.size() > b.size(); });
    struct Candidate {
      float score;
      std::string left, right;
    };
    std::vector<Candidate> candidates;
    for (const auto& p : proto_.pieces) {
      if (p.type != kNormal && p.type != kUnused) continue;
      const auto chars = split_chars(p.text);
      for (size_t k = 1; k < chars.size(); ++k) {
        const size_t cut = static_cast<size_t>(chars[k].data() - p.text.data());
        std::string l = p.text.substr(0, cut), r = p.text.substr(cut);
        if (mergeable.count(l) && mergeable.count(r))
          candidates.push_back({p.score, std::move(l), std::move(r)});
      }
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const auto& a, const auto& b) { return a.score > b.score; });
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<int32_t> ranks;  // equal scores share a rank
    merges.reserve(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) {
      const bool same = i > 0 && candidates[i].score == candidates[i - 1].score;
      ranks.push_back(same ? ranks.back() : static_cast<int32_t>(i));
      merges.emplace_back(std::move(candidates[i].left), std::move(candidates[i].right));
    }
    BpeOptions options;
    options.byte_fallback = proto_.byte_fallback;
    if (proto_.unk_id >= 0 && proto_.unk_id < static_cast<int64_t>(proto_.pieces.size()))
      options.unk_token = proto_.pieces[static_cast<size_t>(proto_.unk_id)].text;
    model_ = std::make_unique<BpeModel>(std::move(vocab), merges, options, where, &ranks);
    SpecialTokens s;
    auto valid = [&](int64_t id) {
      return id >= 0 && id < static_cast<int64_t>(proto_.pieces.size()) ? std::optional<int64_t>(id)
                                                                        : std::nullopt;
    };
    s.bos = valid(proto_.bos_id);
    s.eos = valid(proto_.eos_id);
    s.unk = valid(proto_.unk_id);
    s.pad = valid(proto_.pad_id);
    s.add_bos = s.bos.has_value();
    special_ = s;
  }

  std::vector<int64_t> encode(std::string_view raw) const override {
    std::string text = is_valid_utf8(raw) ? std::string(raw) : lossy_utf8(raw);
    if (proto_.remove_extra_whitespaces) text = squeeze_spaces(text);
    if (text.empty()) return {};
    std::string normalized;
    if (proto_.add_dummy_prefix) normalized = proto_.escape_whitespaces ? kSpace : " ";
    for (char c : text) {
      if (c == ' ' && proto_.escape_whitespaces)
        normalized += kSpace;
      else
        normalized += c;
    }
    // User-defined pieces are never split: encode the text between them.
    std::vector<int64_t> ids;
    size_t start = 0, i = 0;
    while (i < normalized.size()) {
      const std::string* match = nullptr;
      for (const auto& u : user_defined_)
        if (normalized.compare(i, u.size(), u) == 0) {
          match = &u;
          break;
        }
      if (!match) {
        i += std::max<size_t>(1, valid_sequence_length(normalized, i));
        continue;
      }
      model_->encode_word(std::string_view(normalized).substr(start, i - start), ids);
      ids.push_back(model_->token_to_id(*match));
      i += match->size();
      start = i;
    }
    model_->encode_word(std::string_view(normalized).substr(start), ids);
    return ids;
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out, bytes;
    auto flush = [&] {
      if (!bytes.empty()) out += lossy_utf8(bytes);
      bytes.clear();
    };
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto id = ids[i];
      if (id < 0 || id >= static_cast<int64_t>(proto_.pieces.size()))
        throw Error(where_ + ": token id " + std::to_string(id) +
                    " is not in the vocabulary (size " + std::to_string(proto_.pieces.size()) +
                    ")");
      const auto& p = proto_.pieces[static_cast<size_t>(id)];
      if (p.type == kByte) {
        bytes += byte_value_.at(id);
        continue;
      }
      flush();
      if (p.type == kControl) continue;  // <s>, </s>: no surface
      if (p.type == kUnknown) {
        out += skip_special ? "" : " \xE2\x81\x87 ";
        continue;
      }
      out += p.text;
    }
    flush();
    std::string text;
    for (size_t p = 0; p < out.size();) {
      if (out.compare(p, kSpace.size(), kSpace) == 0) {
        text += ' ';
        p += kSpace.size();
      } else {
        text += out[p++];
      }
    }
    if (proto_.add_dummy_prefix && !text.empty() && text[0] == ' ') text.erase(0, 1);
    return text;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(proto_.pieces.size()); }
  std::string name() const override { return where_; }
  int64_t token_to_id(std::string_view token) const override { return model_->token_to_id(token); }
  bool is_special(int64_t id) const override {
    return std::find(control_.begin(), control_.end(), id) != control_.end();
  }

 private:
  static std::string squeeze_spaces(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
      out += c;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  }

  std::string where_;
  ModelProto proto_;
  std::unique_ptr<BpeModel> model_;
  std::vector<std::string> user_defined_;
  std::vector<int64_t> control_;
  std::unordered_map<int64_t, char> byte_value_;  // byte pieces, checked at load
};

}  // namespace

std::shared_ptr<TextTokenizer> make_sentencepiece_tokenizer(const std::string& bytes,
                                                            const std::string& where) {
  return std::make_shared<SentencePieceTokenizer>(parse(bytes, where), where);
}

}  // namespace osd::text
