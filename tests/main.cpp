#define CATCH_CONFIG_RUNNER
#include "tests/test_common.hpp"
#include "models/core/tensor_util.hpp"

int main(int argc, char** argv) {
  osd::init_torch_threads();
  return Catch::Session().run(argc, argv);
}
