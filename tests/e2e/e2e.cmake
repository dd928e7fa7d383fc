# End to end, both topologies: one `vid2mp3 all` (embedded backends, and a
# mix), and
# auth + gateway + converter + notifier on the real servers of
# scripts/test-services.sh, with kill -9, SIGTERM and server outages.
add_executable(test_e2e ${CMAKE_CURRENT_LIST_DIR}/test_e2e.c)
target_link_libraries(test_e2e PRIVATE testharness)
add_test(NAME e2e/embedded COMMAND test_e2e $<TARGET_FILE:vid2mp3> embedded)
add_test(NAME e2e/mixed COMMAND test_e2e $<TARGET_FILE:vid2mp3> mixed)
add_test(NAME e2e/distributed COMMAND test_e2e $<TARGET_FILE:vid2mp3> distributed)
set_tests_properties(e2e/embedded e2e/mixed e2e/distributed PROPERTIES TIMEOUT 900)
# `all` with SQLite users but RabbitMQ, GridFS and SMTP: other suites stop those
set_tests_properties(e2e/mixed PROPERTIES RESOURCE_LOCK "rabbitmq;mongo;smtp")
# stops and restarts RabbitMQ, MariaDB and the SMTP server; reads GridFS
set_tests_properties(e2e/distributed PROPERTIES RESOURCE_LOCK "mariadb;rabbitmq;mongo;smtp")
