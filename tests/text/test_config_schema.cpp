// osd-serve's configuration schema: every option declared once, and from it the command line,
// the config file, the errors, --help and docs/CONFIG.md. Errors are one line that names the
// option and the fix; conf/osd.conf loads and holds every option at its default; the defaults
// are the embedding API's.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "runtime/config_doc.hpp"
#include "runtime/config_file.hpp"
#include "runtime/config_schema.hpp"
#include "runtime/serve_config.hpp"

namespace osd::test {
namespace {

std::string load(std::vector<std::string> args, ServeSettings* out, ServeAction* action = nullptr) {
  args.insert(args.begin(), "osd-serve");
  // No conf/osd.conf in the working directory: only what the test names is read.
  if (std::find_if(args.begin(), args.end(), [](const std::string& a) { return a.rfind("--config-file", 0) == 0; }) ==
      args.end())
    args.push_back("--config-file=/dev/null");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  ServeConfigLoad loaded;
  const std::string err = load_serve_config(static_cast<int>(argv.size()), argv.data(), &loaded);
  if (err.empty()) *out = loaded.settings;
  if (action) *action = loaded.action;
  return err;
}

std::string write(const std::string& text) {
  static int n = 0;
  std::string path = "/tmp/osd-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".conf";
  std::ofstream(path) << text;
  return path;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("config: an unknown option names the nearest one", "[config]") {
  ServeSettings s;
  CHECK(load({"--osd.kk=6"}, &s) == "unknown option --osd.kk (did you mean --osd.k?)");
  CHECK(load({"--osd.max-bach=4"}, &s) == "unknown option --osd.max-bach (did you mean --osd.max-batch?)");
  CHECK(load({"--osd.onlin-lr=0.1"}, &s) == "unknown option --osd.onlin-lr (did you mean --osd.online-lr?)");
  // Without the group: the group is part of the name.
  CHECK(load({"--max-batch=4"}, &s) == "unknown option --max-batch (did you mean --osd.max-batch?)");
  // Nothing near: the list is in --help.
  CHECK(load({"--osd.completely-different=1"}, &s) ==
        "unknown option --osd.completely-different (osd-serve --help lists the options)");
  CHECK(load({"--=5"}, &s) == "unknown option -- (osd-serve --help lists the options)");
  CHECK(load({"--osd.xyz=5"}, &s) == "unknown option --osd.xyz (osd-serve --help lists the options)");
  CHECK(nearest_option_name("osd.draft-devise") == "osd.draft-device");
  CHECK(nearest_option_name("") == "");
  // The same in a config file, with its line.
  const auto file = write("osd {\n  k = 3\n  max-bach = 4\n}\n");
  CHECK(load({"--config-file=" + file}, &s) == file + ":3: unknown option osd.max-bach (did you mean osd.max-batch?)");
  CHECK(load({"--config-file=" + write("foo {\n  x = 1\n}\n")}, &s).find(":2: unknown option foo.x") != std::string::npos);
}

TEST_CASE("config: stray arguments are refused", "[config]") {
  ServeSettings s;
  CHECK(load({"osd.k=100"}, &s) == "stray argument 'osd.k=100': options start with -- (did you mean --osd.k=100?)");
  CHECK(load({"osd.kk=5"}, &s) == "stray argument 'osd.kk=5': options start with -- (did you mean --osd.k=5?)");
  CHECK(load({"--osd.k=2", "hello"}, &s) ==
        "stray argument 'hello': osd-serve takes no positional arguments, only --NAME=VALUE options (osd-serve "
        "--help lists them)");
  CHECK(load({"-osd.k=3"}, &s) == "unknown option -osd.k=3 (did you mean --osd.k=3?)");
  CHECK(load({""}, &s).find("stray empty argument") == 0);
  // A value must be in the same argument; `--osd.k 6` would leave 6 behind.
  CHECK(load({"--osd.k", "6"}, &s) == "--osd.k needs a value: --osd.k=VALUE with VALUE in [0, 64]");
  CHECK(load({"--config-file"}, &s) == "--config-file needs a path: --config-file=PATH");
}

TEST_CASE("config: values out of range or of the wrong type name what is accepted", "[config]") {
  ServeSettings s;
  CHECK(load({"--osd.k=100"}, &s) == "osd.k must be in [0, 64] (got 100)");
  CHECK(load({"--osd.k=six"}, &s) == "osd.k must be an integer in [0, 64] (got 'six')");
  CHECK(load({"--osd.k="}, &s) == "osd.k must be an integer in [0, 64] (got '')");
  CHECK(load({"--osd.k=4.5"}, &s) == "osd.k must be an integer in [0, 64] (got '4.5')");
  CHECK(load({"--osd.online-lr=0"}, &s) == "osd.online-lr must be in [1e-09, 1.0] (got 0)");
  CHECK(load({"--osd.online-max-duty=2"}, &s) == "osd.online-max-duty must be in [0.001, 1.0] (got 2)");
  CHECK(load({"--osd.online-guard-margin=nan"}, &s).find("osd.online-guard-margin must be a number in [-1.0, 1.0]") == 0);
  CHECK(load({"--osd.online=maybe"}, &s) == "osd.online must be true or false (got 'maybe')");
  CHECK(load({"--osd.sampling=greedy"}, &s) == "osd.sampling must be one of coupled | rejection (got 'greedy')");
  CHECK(load({"--osd.online-loss=kl"}, &s) == "osd.online-loss must be one of fkl | rkl | jsd | tvd (got 'kl')");
  CHECK(load({"--osd.dtype=int8"}, &s) == "osd.dtype must be one of float32 | bfloat16 | float16 (got 'int8')");
  CHECK(load({"--osd.dtype=bf16"}, &s) == "");  // the short names models/core/config.cpp takes
  CHECK(s.dtype == "bf16");
  CHECK(load({"--osd.device=gpu"}, &s) == "osd.device must be cpu, cuda or cuda:N (got 'gpu')");
  CHECK(load({"--osd.device=cuda:1"}, &s) == "");
  CHECK(load({"--osd.draft-device=cuda:x"}, &s).find("osd.draft-device must be cpu, cuda or cuda:N") == 0);
  CHECK(load({"--osd.http=8000"}, &s) == "osd.http: '8000' is not HOST:PORT (e.g. 127.0.0.1:8000)");
  CHECK(load({"--osd.http=localhost:99999"}, &s).find("the port must be in [0, 65535]") != std::string::npos);
  CHECK(load({"--scheduler.policy=fifo"}, &s) == "scheduler.policy must be one of sharing | stealing (got 'fifo')");
  // In a file: the line, then the same message.
  const auto file = write("osd {\n  k = \"seven\"\n}\n");
  CHECK(load({"--config-file=" + file}, &s) == file + ":2: osd.k must be an integer in [0, 64] (got 'seven')");
  CHECK(load({"--config-file=" + write("osd {\n  max-batch = 0\n}\n")}, &s).find(":2: osd.max-batch must be in [1, 4096]") !=
        std::string::npos);
  // Nothing is half-applied: a failed load leaves the caller's settings alone.
  s = ServeSettings{};
  CHECK(load({"--osd.max-batch=8", "--osd.k=100"}, &s) != "");
  CHECK(s.max_batch == ServeSettings{}.max_batch);
}

TEST_CASE("config: values are set from the file, then the command line", "[config]") {
  ServeSettings s;
  const auto file = write("; a comment\nosd {\n  k = 3\n  max-batch = 8 ; trailing comment\n  online = false\n"
                          "  target = \"tiny\"\n  online-lr = 1\n}\nscheduler {\n  max-threads = 2\n"
                          "  policy = 'stealing'\n}\nosd.draft = \"tiny-draft\"\n");
  REQUIRE(load({"--config-file=" + file, "--osd.k=5", "--osd.online"}, &s) == "");
  CHECK(s.k == 5);  // the command line wins
  CHECK(s.max_batch == 8);
  CHECK(s.online.enabled);  // a boolean alone is true
  CHECK(s.target == "tiny");
  CHECK(s.draft == "tiny-draft");
  CHECK(s.online.lr == 1.0);  // an integer is a real
  CHECK(s.scheduler_threads == 2);
  CHECK(s.scheduler_policy == "stealing");
  REQUIRE(load({"--osd.adaptive-k=false", "--osd.online-guard-margin=-0.05", "--osd.endpoint=tcp://*:7000"}, &s) == "");
  CHECK_FALSE(s.adaptive_k);
  CHECK(s.online.guard_margin == Approx(-0.05));
  CHECK(s.endpoint == "tcp://*:7000");
  CHECK(load({"--config-file=/nonexistent/osd.conf"}, &s) == "cannot read the config file /nonexistent/osd.conf");
}

TEST_CASE("config: a malformed file says where", "[config]") {
  std::string why;
  CHECK_FALSE(parse_config_text("osd {\n  k = 3\n", &why));
  CHECK(why == "3: a group is not closed: '}' missing at the end of the file");
  CHECK_FALSE(parse_config_text("osd {\n  k 3\n}\n", &why));
  CHECK(why == "2: expected '=' or '{' after 'k'");
  CHECK_FALSE(parse_config_text("osd {\n  target = \"tiny\n}\n", &why));
  CHECK(why == "2: a string is not closed on its line");
  CHECK_FALSE(parse_config_text("}\n", &why));
  CHECK(why == "1: '}' without an open group");
  CHECK_FALSE(parse_config_text("osd { routes = [1, 2] }", &why));
  CHECK(why == "1: lists are not supported here");
  const auto ok = parse_config_text("a { b { c = \"x\\\"y\" } }\nd.e = 4, f = true", &why);
  REQUIRE(ok);
  REQUIRE(ok->size() == 3);
  CHECK((*ok)[0].name == "a.b.c");
  CHECK((*ok)[0].value == "x\"y");
  CHECK((*ok)[1].name == "d.e");
  CHECK((*ok)[1].line == 2);
  CHECK((*ok)[2].value == "true");
}

TEST_CASE("config: conf/osd.conf loads and lists every osd option at its default", "[config]") {
  const std::string path = std::string(OSD_SOURCE_DIR) + "/conf/osd.conf";
  ServeSettings s;
  REQUIRE(load({"--config-file=" + path}, &s) == "");
  std::string why;
  const auto entries = parse_config_text(read(path), &why);
  REQUIRE(entries);
  std::set<std::string> listed;
  for (const auto& e : *entries) {
    INFO(e.name);
    const OptionSpec* option = find_option(e.name);
    REQUIRE(option);
    CHECK(e.value == option_default_text(*option));
    listed.insert(e.name);
  }
  for (const auto& o : serve_options()) {
    INFO(o.name);
    if (o.group() == "osd") CHECK(listed.count(o.name) == 1);
    CHECK(option_value_text(o, s) == option_default_text(o));
  }
}

TEST_CASE("config: the defaults are the embedding API's", "[config]") {
  const ServeSettings s;
  const RuntimeOptions r;
  const ZmqServerOptions z;
  const HttpServerOptions h;
  CHECK(s.k == r.k);
  CHECK(s.adaptive_k == r.adaptive_k);
  CHECK(s.k_max == r.k_max);
  CHECK(s.groups == r.groups);
  CHECK(s.prefill_chunk == r.prefill_chunk);
  CHECK((s.sampling == "coupled") == (r.sampling == SpecSampling::coupled));
  CHECK((s.sampling == "rejection") == (r.sampling == SpecSampling::rejection));
  CHECK(s.max_batch == r.max_batch);
  CHECK(s.max_len == r.max_len);
  CHECK(s.warm_attention_plans == r.warm_attention_plans);
  CHECK(s.max_in_flight == r.max_in_flight);
  CHECK(s.max_new_tokens == r.max_new_tokens_limit);
  CHECK(s.max_id_bytes == r.max_id_bytes);
  CHECK(s.max_id_bytes == static_cast<int64_t>(z.max_id_bytes));
  CHECK(s.max_restarts == r.max_restarts);
  CHECK(s.scheduler_threads == r.threads);
  CHECK(s.scheduler_policy == r.scheduler);
  CHECK(s.max_frame_bytes == static_cast<int64_t>(z.max_frame_bytes));
  CHECK(s.endpoint == z.endpoint);
  CHECK(s.metrics_endpoint == z.metrics_endpoint);
  CHECK(s.max_clients == z.max_clients);
  CHECK(s.client_send_hwm == z.client_send_hwm);
  CHECK(s.heartbeat_ms == z.heartbeat_ms);
  CHECK(s.max_metrics_connections == z.max_metrics_connections);
  CHECK(s.metrics_idle_ms == z.metrics_idle_ms);
  CHECK(s.max_pending_stats == z.max_pending_stats);
  CHECK(s.http_max_body_bytes == static_cast<int64_t>(h.max_body_bytes));
  CHECK(s.http_threads == h.threads);
  CHECK(s.http_timeout_s == h.io_timeout_s);
  // Online distillation: every option as the runtime's, except that serving switches it on.
  OnlineOptions expected = r.online;
  CHECK_FALSE(expected.enabled);
  CHECK(s.online.enabled);
  ServeSettings with_runtime_online;
  with_runtime_online.online = expected;
  with_runtime_online.online.enabled = true;
  for (const auto& o : serve_options()) {
    INFO(o.name);
    CHECK(option_value_text(o, with_runtime_online) == option_default_text(o));
  }
  // Every default is accepted by its own option.
  for (const auto& o : serve_options()) {
    INFO(o.name);
    ServeSettings t;
    CHECK(set_option(o, option_default_text(o), t) == "");
  }
}

TEST_CASE("config: the settings reach the runtime's and the front end's options", "[config]") {
  ServeSettings s;
  REQUIRE(load({"--osd.k=7", "--osd.adaptive-k=false", "--osd.k-max=9", "--osd.groups=3", "--osd.max-batch=5",
                "--osd.max-len=300", "--osd.prefill-chunk=64", "--osd.sampling=rejection", "--osd.max-in-flight=9",
                "--osd.max-new-tokens=100", "--osd.max-id-bytes=77", "--osd.max-restarts=6",
                "--osd.warm-attention-plans=false", "--scheduler.max-threads=3", "--scheduler.policy=stealing",
                "--osd.online-lr=0.01", "--osd.online-state-dir=/tmp/x", "--osd.endpoint=tcp://*:1",
                "--osd.metrics-endpoint=tcp://*:2", "--osd.max-frame-bytes=4096", "--osd.max-clients=11",
                "--osd.client-send-hwm=12", "--osd.heartbeat-ms=13", "--osd.max-metrics-connections=14",
                "--osd.metrics-idle-ms=15", "--osd.max-pending-stats=16"},
               &s) == "");
  const RuntimeOptions r = runtime_options(s);
  CHECK(r.k == 7);
  CHECK_FALSE(r.adaptive_k);
  CHECK(r.k_max == 9);
  CHECK(r.groups == 3);
  CHECK(r.max_batch == 5);
  CHECK(r.max_len == 300);
  CHECK(r.prefill_chunk == 64);
  CHECK(r.sampling == SpecSampling::rejection);
  CHECK(r.max_in_flight == 9);
  CHECK(r.max_new_tokens_limit == 100);
  CHECK(r.max_id_bytes == 77);
  CHECK(r.max_restarts == 6);
  CHECK_FALSE(r.warm_attention_plans);
  CHECK(r.threads == 3);
  CHECK(r.scheduler == "stealing");
  CHECK(r.online.enabled);
  CHECK(r.online.lr == 0.01);
  CHECK(r.online.state_dir == "/tmp/x");
  const ZmqServerOptions z = zmq_server_options(s);
  CHECK(z.endpoint == "tcp://*:1");
  CHECK(z.metrics_endpoint == "tcp://*:2");
  CHECK(z.max_frame_bytes == 4096);
  CHECK(z.max_id_bytes == 77);
  CHECK(z.max_clients == 11);
  CHECK(z.client_send_hwm == 12);
  CHECK(z.heartbeat_ms == 13);
  CHECK(z.max_metrics_connections == 14);
  CHECK(z.metrics_idle_ms == 15);
  CHECK(z.max_pending_stats == 16);
  CHECK(runtime_options(ServeSettings{}).sampling == SpecSampling::coupled);
}

TEST_CASE("config: every option is declared once and documented", "[config]") {
  std::set<std::string> names;
  for (const auto& o : serve_options()) {
    INFO(o.name);
    CHECK(names.insert(o.name).second);
    CHECK(std::regex_match(o.name, std::regex("(osd|scheduler)\\.[a-z0-9-]+")));
    CHECK(o.help.size() > 10);
  }
  CHECK(names.size() >= 70);
  const std::string help = serve_help_text();
  for (const auto& o : serve_options()) CHECK(help.find("--" + o.name + "=") != std::string::npos);
  CHECK(help.find("--osd.k=integer  [default: 4]  [0, 64]") != std::string::npos);
  ServeSettings s;
  ServeAction action = ServeAction::serve;
  CHECK(load({"--osd.k=100", "--help"}, &s, &action) == "");  // help wins over a bad value
  CHECK(action == ServeAction::print_help);
  CHECK(load({"--print-config-doc"}, &s, &action) == "");
  CHECK(action == ServeAction::print_config_doc);
}

TEST_CASE("config: docs/CONFIG.md is the generated text", "[config]") {
  const std::string path = std::string(OSD_SOURCE_DIR) + "/docs/CONFIG.md";
  INFO("regenerate with scripts/gen-config-doc.sh");
  CHECK(read(path) == config_markdown());
}

TEST_CASE("config: every OSD_ environment variable read in the tree is documented", "[config]") {
  std::set<std::string> documented;
  for (const auto& e : environment_variables()) documented.insert(e.name);
  std::set<std::string> read_somewhere;
  const std::regex getenv_call("getenv\\(\"(OSD_[A-Z0-9_]+)\"\\)|(?:manual_requested|setting)\\(\"(OSD_[A-Z0-9_]+)\"");
  for (const char* folder : {"models", "actors", "runtime", "tests", "examples"}) {
    const auto root = std::filesystem::path(OSD_SOURCE_DIR) / folder;
    if (!std::filesystem::exists(root)) continue;
    for (const auto& f : std::filesystem::recursive_directory_iterator(root)) {
      const auto ext = f.path().extension().string();
      if (ext != ".cpp" && ext != ".hpp" && ext != ".cu" && ext != ".cuh") continue;
      const std::string text = read(f.path().string());
      for (std::sregex_iterator it(text.begin(), text.end(), getenv_call), end; it != end; ++it)
        read_somewhere.insert((*it)[1].matched ? (*it)[1].str() : (*it)[2].str());
    }
  }
  CHECK(read_somewhere.size() >= 10);  // the scan finds them
  for (const auto& name : read_somewhere) {
    INFO(name << " is read but not in runtime/config_doc.cpp's table");
    CHECK(documented.count(name) == 1);
  }
  for (const auto& name : documented) {
    INFO(name << " is documented but read nowhere");
    CHECK(read_somewhere.count(name) == 1);
  }
}

}  // namespace osd::test
