#define CATCH_CONFIG_RUNNER
#include "tests/test_common.hpp"
#include "models/core/tensor_util.hpp"

namespace {
// Counts failed assertions, so that OSD_SKIP never turns a test that already failed into a skip.
struct FailedAssertionCounter : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  bool assertionEnded(const Catch::AssertionStats& stats) override {
    if (!stats.assertionResult.isOk()) ++osd::test::failed_assertions();
    return true;
  }
};
}  // namespace
CATCH_REGISTER_LISTENER(FailedAssertionCounter)

int main(int argc, char** argv) {
  osd::init_torch_threads();
  Catch::Session session;
  // --skip-exit-code N: a test that cannot run here ends the process with N (CTest: Skipped).
  using namespace Catch::clara;
  auto cli = session.cli() |
             Opt(osd::test::skip_exit_code(), "code")["--skip-exit-code"](
                 "exit with this code when a test case is skipped (OSD_SKIP); 0: warn and go on");
  session.cli(cli);
  const int rc = session.applyCommandLine(argc, argv);
  if (rc != 0) return rc;
  return session.run();
}
