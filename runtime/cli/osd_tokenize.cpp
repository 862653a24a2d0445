// osd-tokenize: debug prompts with the tokenizer osd will use.
//   echo "Hello world" | osd-tokenize --tokenizer path/to/tokenizer.json     -> [9906,1917,198]
//   echo "[9906,1917]" | osd-tokenize --tokenizer CHECKPOINT_DIR --decode     -> Hello world
// --tokenizer takes a tokenizer.json, a SentencePiece .model, a checkpoint folder, or "bytes".
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <iterator>

#include "models/common/error.hpp"
#include "models/text/text_tokenizer.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "osd-tokenize: text on stdin -> token ids as a JSON array (or --decode: ids -> text)"};
  std::string spec;
  bool decode = false, prompt = false, skip_special = false, tokens = false, info = false;
  app.add_option("--tokenizer", spec,
                 "tokenizer.json, tokenizer .model, checkpoint folder, or bytes")
      ->required();
  app.add_flag("--decode", decode, "read a JSON array of ids, print the text");
  app.add_flag("--prompt", prompt, "add bos/eos as the model expects (tokenizer_config.json)");
  app.add_flag("--skip-special", skip_special, "with --decode: leave special tokens out");
  app.add_flag("--tokens", tokens, "also print each id's text, one per line, to stderr");
  app.add_flag("--info", info, "print vocabulary size and special ids as JSON, then exit");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto tok = osd::load_text_tokenizer(spec);
    if (info) {
      const auto& s = tok->special_tokens();
      auto opt = [](const std::optional<int64_t>& v) {
        return v ? nlohmann::json(*v) : nlohmann::json();
      };
      std::cout << nlohmann::json{{"tokenizer", tok->name()}, {"vocab_size", tok->vocab_size()},
                                  {"bos", opt(s.bos)},        {"eos", opt(s.eos)},
                                  {"unk", opt(s.unk)},        {"pad", opt(s.pad)},
                                  {"add_bos", s.add_bos}}
                       .dump()
                << "\n";
      return 0;
    }
    const std::string input((std::istreambuf_iterator<char>(std::cin)),
                            std::istreambuf_iterator<char>());
    if (decode) {
      nlohmann::json ids;
      try {
        ids = nlohmann::json::parse(input);
      } catch (const nlohmann::json::exception& e) {
        throw osd::Error(std::string("stdin: expected a JSON array of token ids: ") + e.what());
      }
      if (!ids.is_array()) throw osd::Error("stdin: expected a JSON array of token ids");
      std::vector<int64_t> v;
      for (const auto& id : ids) {
        if (!id.is_number_integer())
          throw osd::Error("stdin: every id must be an integer, got " + id.dump());
        v.push_back(id.get<int64_t>());
      }
      std::cout << tok->decode(v, skip_special);
      return 0;
    }
    const auto ids = prompt ? tok->encode_prompt(input) : tok->encode(input);
    std::cout << nlohmann::json(ids).dump() << "\n";
    if (tokens)
      for (auto id : ids)
        std::cerr << id << "\t" << nlohmann::json(tok->decode({id})).dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "osd-tokenize: " << e.what() << "\n";
    return 1;
  }
}
