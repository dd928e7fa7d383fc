# Contract suite for the queue interface (src/queue/queue.h), and the queue
# bench program (bench/queue.sh runs it; not a test).

add_executable(test_queue_contract ${CMAKE_CURRENT_LIST_DIR}/test_queue.c)
target_link_libraries(test_queue_contract PRIVATE testharness)
add_test(NAME contract/queue/sqlite COMMAND test_queue_contract sqlite)
add_test(NAME contract/queue/amqp COMMAND test_queue_contract amqp)
set_tests_properties(contract/queue/amqp PROPERTIES RESOURCE_LOCK rabbitmq)
set_tests_properties(contract/queue/sqlite contract/queue/amqp PROPERTIES TIMEOUT 600)

add_executable(queue_bench ${CMAKE_SOURCE_DIR}/bench/queue_bench.c)
target_link_libraries(queue_bench PRIVATE vid2mp3core)
