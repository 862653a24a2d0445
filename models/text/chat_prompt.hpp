#pragma once
// The prompt of a chat: OpenAI-style messages rendered by the model's chat template, as Hugging
// Face's apply_chat_template(messages, add_generation_prompt=True) renders them (with the
// tokenizer's bos_token and eos_token strings), then tokenised the way transformers does it:
// without adding special tokens, since the template writes bos itself.
//
// Where the template comes from (osd.chat-template):
//   "auto"   the checkpoint's: chat_template.jinja in the tokenizer's folder, else
//            tokenizer_config.json's "chat_template" (a string, or a list of named templates:
//            "default"); a checkpoint without one gets the plain template
//   "plain"  osd's plain template: one "role: content" line per message, then "assistant:"
//            (its text is tokenised as a prompt: bos added when the tokenizer adds one)
//   "none"   no chat: /v1/chat/completions answers 400
//   a path   a Jinja file
// A template osd cannot parse leaves chat unavailable, with the reason, rather than failing the
// server: completions still work.
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "models/text/chat_template.hpp"
#include "models/text/text_tokenizer.hpp"

namespace osd {

// osd's plain chat template (Jinja).
extern const char* const kPlainChatTemplate;

class ChatPrompt {
 public:
  // `tokenizer_dir`: the folder of the tokenizer's files ("" when there is none, e.g. bytes).
  // Throws osd::Error when a named template file cannot be read.
  static ChatPrompt load(const std::string& setting, const std::string& tokenizer_dir,
                         std::shared_ptr<const TextTokenizer> tokenizer);

  bool available() const { return tmpl_ != nullptr; }
  // Why chat is unavailable, and how to configure a template.
  const std::string& unavailable_reason() const { return reason_; }
  // "checkpoint", "plain", the file's path, or "none".
  const std::string& source() const { return source_; }

  // The rendered text, or the template's error (ChatTemplateError::message; kRaised is the
  // template's own message, e.g. "Conversation roles must alternate user/assistant/...").
  std::variant<std::string, ChatTemplateError> render(const nlohmann::ordered_json& messages) const;
  // The prompt's token ids.
  std::variant<std::vector<int64_t>, ChatTemplateError> tokens(const nlohmann::ordered_json& messages) const;

 private:
  std::shared_ptr<const ChatTemplate> tmpl_;
  std::shared_ptr<const TextTokenizer> tokenizer_;
  std::string source_ = "none", reason_, bos_, eos_;
  bool add_special_ = false;  // the plain template: tokenise as a prompt (bos as the tokenizer adds it)
};

}  // namespace osd
