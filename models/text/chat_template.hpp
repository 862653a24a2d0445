#pragma once
// A Hugging Face chat template: the Jinja `chat_template` of a checkpoint's tokenizer_config.json,
// rendered byte for byte as @huggingface/jinja (the renderer of transformers.js) renders it, with
// trim_blocks and lstrip_blocks on as transformers sets them. It covers the Jinja that chat
// templates use; anything else is a ChatTemplateError naming the construct and its line, never a
// crash. A hostile template is bounded: output size, loop iterations, string work and nesting.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <variant>

namespace osd {

/// Why a chat template could not be parsed or rendered.
struct ChatTemplateError {
  enum class Kind {
    kSyntax,  ///< parse: malformed template text, or a tag this renderer does not support
    kRender,  ///< render: an operation the values do not allow (unknown filter, wrong type...)
    kRaised,  ///< render: the template called raise_exception(message)
    kLimit,   ///< render: output size, iterations, string work or nesting over its bound
  };
  Kind kind = Kind::kSyntax;
  /// kRaised: the template's own message, verbatim. Otherwise "line L, column C: what went wrong"
  /// (without the prefix when the place is not known).
  std::string message;
  int line = 0;    ///< 1-based line in the template source; 0 when not known
  int column = 0;  ///< 1-based column, in characters; 0 when not known
};

/// Options for one render: the bounds a hostile template runs into, and the clock behind
/// strftime_now().
struct ChatTemplateOptions {
  /// The longest string any step may build, the rendered text included. String work in total
  /// (bytes built, compared or searched) is capped at 64 times this.
  std::size_t max_output_bytes = std::size_t{16} << 20;
  /// Loop iterations in one render, all loops together; also the longest list a step may build.
  std::size_t max_iterations = std::size_t{1} << 20;
  /// The local time strftime_now() formats; empty: the system clock.
  std::function<std::tm()> now;
};

/// A parsed chat template. Parse once, render many times: it is immutable, cheap to copy, and
/// safe to render from several threads at once. Errors are values; nothing throws. Parsing and
/// rendering recurse on at most about 512 KiB of the calling thread's stack, then report kSyntax
/// or kLimit ("nested too deeply").
class ChatTemplate {
 public:
  /// Parses `source`, the chat_template string. Errors are kSyntax, with the line and column.
  static std::variant<ChatTemplate, ChatTemplateError> parse(const std::string& source);

  /// Renders with each key of `context` as a variable: "messages", "add_generation_prompt",
  /// "bos_token", "eos_token", "tools", ... Pass an ordered_json: key order shows in `tojson` and
  /// `items` output, as in Python and JavaScript (a nlohmann::json converts implicitly, with its
  /// keys sorted).
  std::variant<std::string, ChatTemplateError> render(
      const nlohmann::ordered_json& context, const ChatTemplateOptions& options = {}) const;

 private:
  struct Program;
  explicit ChatTemplate(std::shared_ptr<const Program> program);
  std::shared_ptr<const Program> program_;
};

}  // namespace osd
