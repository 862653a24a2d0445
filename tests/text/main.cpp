// osd-text-tests: tokenizers and file formats, without libtorch (builds in seconds).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
