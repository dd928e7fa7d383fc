# The converter consuming its queue, embedded (files, SQLite) and
# distributed (GridFS, MongoDB jobs, RabbitMQ), with kill -9 at each phase.
add_executable(test_converter ${CMAKE_CURRENT_LIST_DIR}/test_converter.c)
target_link_libraries(test_converter PRIVATE testharness)
add_test(NAME integration/converter/embedded COMMAND test_converter $<TARGET_FILE:vid2mp3> embedded)
add_test(NAME integration/converter/distributed
         COMMAND test_converter $<TARGET_FILE:vid2mp3> distributed)
set_tests_properties(integration/converter/embedded integration/converter/distributed
                     PROPERTIES TIMEOUT 900)
set_tests_properties(integration/converter/distributed PROPERTIES RESOURCE_LOCK "mongo;rabbitmq")
