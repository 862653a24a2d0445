#pragma once
// SentencePiece .model files (a protobuf ModelProto), read natively: Debian's libsentencepiece
// links a protobuf runtime that crashes at load next to libtorch's, so osd parses the few fields
// it needs itself (pieces, scores, types; trainer model_type, byte_fallback, special ids;
// normalizer add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces) and encodes BPE
// models as libsentencepiece does (merge the adjacent pair whose union has the best score).
#include <memory>
#include <string>

#include "models/text/text_tokenizer.hpp"

namespace osd::text {

// Throws osd::Error naming `where` on a malformed file, a Unigram/word/char model, or a
// normalization rule other than identity (those need the precompiled charsmap).
std::shared_ptr<TextTokenizer> make_sentencepiece_tokenizer(const std::string& bytes,
                                                            const std::string& where);

}  // namespace osd::text
