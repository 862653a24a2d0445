// osd-http-tests: the HTTP face's request and response formats and the Prometheus text, without
// libtorch or sockets (builds in seconds).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
