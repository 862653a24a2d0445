// The skip mechanism itself (OSD_SKIP, tests/test_common.hpp). These cases are hidden ("[.]":
// never run by CTest or a plain osd-tests run); tests/skip_cli.sh runs them by name and checks
// the process's exit code.
#include "tests/test_common.hpp"

TEST_CASE("skip selftest: a case that cannot run here is skipped", "[.][skip-selftest]") {
  OSD_SKIP("stand-in reason " << 42);
  FAIL("OSD_SKIP returned into the test");  // never reached
}

TEST_CASE("skip selftest: a failure before a skip stays a failure", "[.][skip-selftest]") {
  CHECK(1 == 2);  // fails on purpose
  OSD_SKIP("too late: an assertion already failed");
}
