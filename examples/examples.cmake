# The examples (examples/README.md): short programs a user copies, each built here and run briefly
# as a test. Included at the end of the top CMakeLists.txt (it needs osd_executable() and, for the
# tests, include(CTest) from the tests section).

# A user-written router as a pipeline stage: picks each request's draft route from its prompt.
osd_executable(osd-example-keyword-router examples/keyword_router.cpp)

if(OSD_BUILD_TESTS)
  add_test(NAME example.keyword_router COMMAND osd-example-keyword-router)
endif()
