# The gateway against both storage and queue backends: embedded (files,
# SQLite), `vid2mp3 all` (the same, one process) and distributed (GridFS, MongoDB jobs, RabbitMQ, tokens checked by
# the auth service).
add_executable(test_gateway ${CMAKE_CURRENT_LIST_DIR}/test_gateway.c)
target_link_libraries(test_gateway PRIVATE testharness)
# web_page compares what is served with the repository's files
target_compile_definitions(test_gateway PRIVATE VID2MP3_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME integration/gateway/embedded COMMAND test_gateway $<TARGET_FILE:vid2mp3> embedded)
add_test(NAME integration/gateway/distributed
         COMMAND test_gateway $<TARGET_FILE:vid2mp3> distributed)
add_test(NAME integration/gateway/all COMMAND test_gateway $<TARGET_FILE:vid2mp3> all)
set_tests_properties(integration/gateway/embedded integration/gateway/distributed
                     integration/gateway/all PROPERTIES TIMEOUT 600)
# it stops and restarts the shared RabbitMQ and MongoDB-wire servers
set_tests_properties(integration/gateway/distributed PROPERTIES RESOURCE_LOCK "mongo;rabbitmq")
