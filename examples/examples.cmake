# The examples (examples/README.md): short programs a user copies, each built here and run briefly
# as a test. Included at the end of the top CMakeLists.txt (it needs osd_executable() and, for the
# tests, include(CTest) from the tests section).

# A user-written router as a pipeline stage: picks each request's draft route from its prompt.
osd_executable(osd-example-keyword-router examples/keyword_router.cpp)

# A ZeroMQ client for osd-serve: cppzmq and nlohmann-json only, no torch, builds in seconds.
add_executable(osd-example-zmq-client examples/zmq_client.cpp)
target_link_libraries(osd-example-zmq-client PRIVATE cppzmq nlohmann_json::nlohmann_json)

if(OSD_BUILD_TESTS)
  add_test(NAME example.keyword_router COMMAND osd-example-keyword-router)
  # The ZeroMQ clients (examples/zmq_client.cpp, examples/client.py) against osd-serve on the
  # default models. The Python one needs python3-zmq: without it the test is skipped (exit 77).
  foreach(client cpp python)
    add_test(NAME example.zmq_client_${client} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/examples_clients.sh
             ${CMAKE_CURRENT_BINARY_DIR} ${CMAKE_CURRENT_SOURCE_DIR} ${client})
  endforeach()
  set_tests_properties(example.zmq_client_python PROPERTIES SKIP_RETURN_CODE 77)
endif()
