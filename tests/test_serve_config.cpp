// osd-serve's configuration against the torch side: the schema's choices are what the models
// accept, and each key keeps its behaviour (values taken, absurd ones refused with the key named).
// The schema's own tests (did-you-mean, stray arguments, conf/osd.conf, docs/CONFIG.md) are in
// tests/text/test_config_schema.cpp.
#include "tests/test_common.hpp"

#include <unistd.h>

#include <fstream>

#include "models/core/config.hpp"
#include "models/distillation/losses.hpp"
#include "runtime/config_schema.hpp"
#include "runtime/serve_config.hpp"

using namespace osd;

namespace {
std::string load(std::vector<std::string> args, ServeSettings& out) {
  // Only what the test names is read, never the working directory's conf/osd.conf.
  bool names_file = false;
  for (const auto& a : args) names_file = names_file || a.rfind("--config-file=", 0) == 0;
  if (!names_file) args.push_back("--config-file=/dev/null");
  args.insert(args.begin(), "osd-serve");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  ServeConfigLoad loaded;
  auto err = load_serve_config(static_cast<int>(argv.size()), argv.data(), &loaded);
  if (err.empty()) out = loaded.settings;
  return err;
}
std::string write(const std::string& text) {
  static int n = 0;
  std::string path = "/tmp/osd-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".conf";
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST_CASE("config: the schema's losses and dtypes are what the models accept", "[config]") {
  const OptionSpec* loss = find_option("osd.online-loss");
  REQUIRE(loss);
  for (const auto& name : loss->choices) CHECK(parse_distill_loss(name));
  for (const char* name : {"kl", "mse", "ce"}) {
    CHECK_FALSE(parse_distill_loss(name));
    ServeSettings s;
    CHECK(set_option(*loss, name, s) != "");
  }
  const OptionSpec* dtype = find_option("osd.dtype");
  REQUIRE(dtype);
  for (const char* name : {"float32", "bfloat16", "float16", "f32", "fp32", "F32", "bf16", "BF16", "f16", "fp16",
                           "half", "F16", "int8", "float64", "bfloat"}) {
    INFO(name);
    ServeSettings s;
    CHECK(set_option(*dtype, name, s).empty() == parse_dtype(name).has_value());
  }
}

TEST_CASE("configuration errors name the key", "[config][errors]") {
  ServeSettings s;
  CHECK(load({"--osd.k=6"}, s) == "");
  CHECK(s.k == 6);
  CHECK(load({"--osd.bogus=1"}, s).find("bogus") != std::string::npos);
  CHECK(load({"--osd.k=100"}, s).find("osd.k must be in [0, 64]") != std::string::npos);
  CHECK(load({"--config-file=" + write("osd {\n  nope = 1\n}\n")}, s).find("unknown option osd.nope") != std::string::npos);
  CHECK(load({"--config-file=" + write("foo {\n  x = 1\n}\n")}, s).find("unknown option foo.x") != std::string::npos);
  CHECK(load({"--config-file=" + write("osd {\n  k = \"seven\"\n}\n")}, s).find("osd.k must be an integer") != std::string::npos);
  CHECK(load({"--config-file=" + write("osd {\n  max-batch = 0\n}\n")}, s).find("osd.max-batch") != std::string::npos);
  CHECK(load({"--config-file=" + write("osd {\n  adaptive-k = 3\n}\n")}, s).find("true or false") != std::string::npos);
  CHECK(load({"--osd.online=false", "--osd.adaptive-k=false"}, s) == "");
  CHECK_FALSE(s.online.enabled);
  CHECK_FALSE(s.adaptive_k);
  CHECK(load({"--osd.online=maybe"}, s).find("osd.online must be true or false") != std::string::npos);
  CHECK(load({"--osd.online-lr=0"}, s).find("osd.online-lr must be in") != std::string::npos);
  CHECK(load({"--osd.online-lr=0.5"}, s) == "");
  CHECK(s.online.lr == 0.5);
  CHECK(load({"--osd.online-loss=kl"}, s).find("osd.online-loss must be one of fkl | rkl | jsd | tvd") != std::string::npos);
  CHECK(load({"--osd.online-guard-margin=2"}, s).find("osd.online-guard-margin") != std::string::npos);
  CHECK(load({"--osd.online-guard-margin=-0.05"}, s) == "");
  CHECK(load({"--osd.online-rollback-margin=-0.1"}, s).find("osd.online-rollback-margin") !=
        std::string::npos);
  CHECK(load({"--osd.online-rollback-margin=0.2"}, s) == "");
  CHECK(s.online.rollback_margin == Approx(0.2));
  CHECK(load({"--osd.online-max-duty=0"}, s).find("osd.online-max-duty") != std::string::npos);
  CHECK(load({"--osd.online-max-duty=0.25"}, s) == "");
  CHECK(s.online.max_duty == Approx(0.25));
  CHECK(load({"--osd.online-distiller-multiprocessors=-1"}, s)
            .find("osd.online-distiller-multiprocessors") != std::string::npos);
  CHECK(load({"--osd.online-distiller-multiprocessors=16"}, s) == "");
  CHECK(s.online.distiller_multiprocessors == 16);
  CHECK(!s.online.serve_beside_distillers);  // the default
  CHECK(load({"--osd.online-serve-beside-distillers=sometimes"}, s)
            .find("osd.online-serve-beside-distillers must be true or false") != std::string::npos);
  CHECK(load({"--osd.online-serve-beside-distillers=true"}, s) == "");
  CHECK(s.online.serve_beside_distillers);
  CHECK(s.online.guard_z == 2.0);  // the default
  CHECK(load({"--osd.online-guard-z=-1"}, s).find("osd.online-guard-z") != std::string::npos);
  CHECK(load({"--osd.online-guard-z=0"}, s) == "");
  CHECK(s.online.guard_z == 0.0);
  CHECK(s.online.autocast);  // the default
  CHECK(load({"--osd.online-autocast=yes please"}, s)
            .find("osd.online-autocast must be true or false") != std::string::npos);
  CHECK(load({"--osd.online-autocast=false"}, s) == "");
  CHECK(!s.online.autocast);
  CHECK(s.online.replay_requests);  // the default
  CHECK(load({"--osd.online-replay-requests=2"}, s)
            .find("osd.online-replay-requests must be true or false") != std::string::npos);
  CHECK(load({"--osd.online-replay-requests=false"}, s) == "");
  CHECK(!s.online.replay_requests);
  CHECK(s.online.held_backoff == 4);  // the default
  CHECK(load({"--osd.online-held-backoff=5"}, s).find("osd.online-held-backoff") !=
        std::string::npos);
  CHECK(load({"--osd.online-held-backoff=2"}, s) == "");
  CHECK(s.online.held_backoff == 2);
  CHECK(s.online.backoff_duty);  // the default
  CHECK(load({"--osd.online-backoff-duty=sometimes"}, s)
            .find("osd.online-backoff-duty must be true or false") != std::string::npos);
  CHECK(load({"--osd.online-backoff-duty=false"}, s) == "");
  CHECK(!s.online.backoff_duty);
  CHECK(s.online.record_prompt_positions == 0);  // the default
  CHECK(load({"--osd.online-record-prompt=-3"}, s).find("osd.online-record-prompt") !=
        std::string::npos);
  CHECK(load({"--osd.online-record-prompt=256"}, s) == "");
  CHECK(s.online.record_prompt_positions == 256);
  CHECK(s.online.min_heldout == 256);  // the default
  CHECK(load({"--osd.online-min-heldout=0"}, s).find("osd.online-min-heldout") !=
        std::string::npos);
  CHECK(load({"--osd.online-min-heldout=8"}, s) == "");
  CHECK(s.online.min_heldout == 8);
  CHECK(s.warm_attention_plans);  // the default
  CHECK(load({"--osd.warm-attention-plans=maybe"}, s)
            .find("osd.warm-attention-plans must be true or false") != std::string::npos);
  CHECK(load({"--osd.warm-attention-plans=false"}, s) == "");
  CHECK(!s.warm_attention_plans);
}

TEST_CASE("HTTP keys: an address is HOST:PORT, off by default", "[config][http]") {
  ServeSettings s;
  REQUIRE(load({}, s) == "");
  CHECK(s.http.empty());
  CHECK(s.chat_template == "auto");
  CHECK(load({"--osd.http=127.0.0.1:8000", "--osd.http-threads=8"}, s) == "");
  CHECK(s.http == "127.0.0.1:8000");
  CHECK(s.http_threads == 8);
  CHECK(load({"--osd.http=8000"}, s).find("osd.http: '8000' is not HOST:PORT") != std::string::npos);
  CHECK(load({"--osd.http=localhost:99999"}, s).find("the port must be in [0, 65535]") != std::string::npos);
  CHECK(load({"--osd.http=localhost:80a"}, s).find("is not HOST:PORT") != std::string::npos);
  CHECK(load({"--osd.http-max-body-bytes=10"}, s).find("osd.http-max-body-bytes must be in") != std::string::npos);
  std::string host, why;
  int port = -1;
  CHECK(parse_host_port("[::1]:0", &host, &port, &why));
  CHECK(host == "::1");
  CHECK(port == 0);
}
