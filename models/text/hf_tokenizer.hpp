#pragma once
// A Hugging Face tokenizer.json: added tokens, normalizer, pre-tokenizer, BPE model, decoder,
// applied as the reference implementations do (Rust `tokenizers`, @huggingface/tokenizers).
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

#include "models/text/text_tokenizer.hpp"

namespace osd::text {

class BpeModel;

// `tokenizer`: tokenizer.json; `config`: tokenizer_config.json or null. Errors name `where`.
std::shared_ptr<TextTokenizer> make_hf_tokenizer(const nlohmann::json& tokenizer,
                                                 const nlohmann::json& config,
                                                 const std::string& where);

// GPT-2's files: encoder.json (token -> id) and vocab.bpe (merges), as the equivalent
// tokenizer.json.
nlohmann::json gpt2_tokenizer_json(const std::string& encoder_json_path,
                                   const std::string& merges_path);

}  // namespace osd::text
