# The notifier consuming MP3_QUEUE: to the outbox, and to the real SMTP
# server of scripts/test-services.sh (STARTTLS, AUTH, injected 4xx/5xx)
# with embedded and with distributed (MongoDB jobs, RabbitMQ) stores.
add_executable(test_notifier ${CMAKE_CURRENT_LIST_DIR}/test_notifier.c)
target_link_libraries(test_notifier PRIVATE testharness)
foreach(mode outbox smtp distributed)
  add_test(NAME integration/notifier/${mode} COMMAND test_notifier $<TARGET_FILE:vid2mp3> ${mode})
endforeach()
set_tests_properties(integration/notifier/outbox integration/notifier/smtp
                     integration/notifier/distributed PROPERTIES TIMEOUT 600)
# the SMTP suites stop and start the one SMTP server
set_tests_properties(integration/notifier/smtp PROPERTIES RESOURCE_LOCK smtp)
set_tests_properties(integration/notifier/distributed PROPERTIES RESOURCE_LOCK "mongo;rabbitmq;smtp")
