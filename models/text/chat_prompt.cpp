#include "models/text/chat_prompt.hpp"

#include "models/common/error.hpp"
#include "models/common/files.hpp"

namespace osd {

const char* const kPlainChatTemplate =
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

namespace {

// "<s>" or {"content": "<s>", ...}, as tokenizer_config.json writes special tokens.
std::string token_string(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return {};
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

// The checkpoint's template source, "" when it has none.
std::string checkpoint_template(const std::string& dir, const nlohmann::json& config) {
  if (dir.empty()) return {};
  if (files::exists(dir + "/chat_template.jinja")) return files::read_all(dir + "/chat_template.jinja");
  if (!config.is_object() || !config.contains("chat_template")) return {};
  const auto& t = config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array())  // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
    for (const auto& named : t)
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string())
        return named["template"].get<std::string>();
  return {};
}

}  // namespace

ChatPrompt ChatPrompt::load(const std::string& setting, const std::string& tokenizer_dir,
                            std::shared_ptr<const TextTokenizer> tokenizer) {
  ChatPrompt p;
  p.tokenizer_ = std::move(tokenizer);
  const std::string how =
      " Set osd.chat-template to a Jinja file, or to \"plain\" for osd's role: content template.";
  if (setting == "none") {
    p.reason_ = "chat is off on this server (osd.chat-template is none); use /v1/completions." + how;
    return p;
  }
  if (!p.tokenizer_) {
    p.reason_ = "chat needs a tokenizer (osd.tokenizer is none)";
    return p;
  }
  const std::string config_path = tokenizer_dir.empty() ? "" : tokenizer_dir + "/tokenizer_config.json";
  const nlohmann::json config =
      !config_path.empty() && files::exists(config_path) ? files::read_json(config_path) : nlohmann::json();
  std::string source;
  if (setting == "auto") {
    source = checkpoint_template(tokenizer_dir, config);
    p.source_ = source.empty() ? "plain" : "checkpoint";
    if (source.empty()) source = kPlainChatTemplate;
  } else if (setting == "plain") {
    source = kPlainChatTemplate;
    p.source_ = "plain";
  } else {
    if (!files::exists(setting) || files::is_dir(setting))
      throw Error("osd.chat-template: " + setting + ": no such file (auto, plain, none, or a Jinja file)");
    source = files::read_all(setting);
    p.source_ = setting;
  }
  p.add_special_ = p.source_ == "plain";
  // bos/eos strings: tokenizer_config.json's, else the text of the tokenizer's special ids.
  const auto& special = p.tokenizer_->special_tokens();
  auto text_of = [&](const std::optional<int64_t>& id) -> std::string {
    if (!id) return {};
    try {
      return p.tokenizer_->decode({*id}, false);
    } catch (const std::exception&) {
      return {};
    }
  };
  p.bos_ = token_string(config, "bos_token");
  if (p.bos_.empty()) p.bos_ = text_of(special.bos);
  p.eos_ = token_string(config, "eos_token");
  if (p.eos_.empty()) p.eos_ = text_of(special.eos);
  auto parsed = ChatTemplate::parse(source);
  if (auto* e = std::get_if<ChatTemplateError>(&parsed)) {
    p.reason_ = "osd cannot render the " +
                (p.source_ == "checkpoint" ? std::string("checkpoint's chat template") : "chat template " + p.source_) +
                ": " + e->message + "." + how;
    return p;
  }
  p.tmpl_ = std::make_shared<const ChatTemplate>(std::get<ChatTemplate>(std::move(parsed)));
  return p;
}

std::variant<std::string, ChatTemplateError> ChatPrompt::render(const nlohmann::ordered_json& messages) const {
  if (!tmpl_) return ChatTemplateError{ChatTemplateError::Kind::kRender, reason_, 0, 0};
  nlohmann::ordered_json context = {{"messages", messages},
                                    {"add_generation_prompt", true},
                                    {"bos_token", bos_},
                                    {"eos_token", eos_}};
  return tmpl_->render(context);
}

std::variant<std::vector<int64_t>, ChatTemplateError> ChatPrompt::tokens(
    const nlohmann::ordered_json& messages) const {
  auto text = render(messages);
  if (auto* e = std::get_if<ChatTemplateError>(&text)) return *e;
  const auto& s = std::get<std::string>(text);
  return add_special_ ? tokenizer_->encode_prompt(s) : tokenizer_->encode(s);
}

}  // namespace osd
