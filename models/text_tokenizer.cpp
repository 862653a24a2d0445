#include "models/text_tokenizer.hpp"

#ifdef OSD_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

#include "models/error.hpp"
#include "models/files.hpp"

namespace osd {
namespace {

class ByteTokenizer final : public TextTokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids;
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string s;
    for (auto t : ids)
      if (t >= 0 && t < 256) s += static_cast<char>(t);
    return s;
  }
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "bytes"; }
};

#ifdef OSD_WITH_SENTENCEPIECE
class SentencePieceTokenizer final : public TextTokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    const auto status = sp_.Load(path);
    if (!status.ok()) throw Error(path + ": not a SentencePiece model: " + status.ToString());
  }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) throw Error(path_ + ": cannot encode: " + status.ToString());
    return std::vector<int64_t>(ids.begin(), ids.end());
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> v(ids.begin(), ids.end());
    std::string out;
    const auto status = sp_.Decode(v, &out);
    if (!status.ok()) throw Error(path_ + ": cannot decode: " + status.ToString());
    return out;
  }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::string name() const override { return "sentencepiece:" + path_; }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};
#endif

}  // namespace

bool sentencepiece_available() {
#ifdef OSD_WITH_SENTENCEPIECE
  return true;
#else
  return false;
#endif
}

std::shared_ptr<const TextTokenizer> load_text_tokenizer(const std::string& spec) {
  if (spec == "bytes") return std::make_shared<ByteTokenizer>();
  std::string path = spec;
  if (files::exists(spec + "/tokenizer.model")) path = spec + "/tokenizer.model";
  if (!files::exists(path))
    throw Error(spec +
                ": no such tokenizer (\"bytes\", a .model file or a folder with tokenizer.model)");
#ifdef OSD_WITH_SENTENCEPIECE
  return std::make_shared<SentencePieceTokenizer>(path);
#else
  // Debian's libsentencepiece carries protobuf-lite symbols that clash with libtorch's
  // libprotobuf when both are loaded (a crash at load time, seen 2026-11-26), so it is not
  // linked; native tokenizers are issue 3's.
  throw Error(path + ": SentencePiece models are not supported yet (only \"bytes\"; issue 3)");
#endif
}

}  // namespace osd
