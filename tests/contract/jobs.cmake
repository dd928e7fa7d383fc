add_executable(test_jobs_contract ${CMAKE_CURRENT_LIST_DIR}/test_jobs.c)
target_link_libraries(test_jobs_contract PRIVATE testharness)
add_test(NAME contract/jobs/sqlite COMMAND test_jobs_contract sqlite)
add_test(NAME contract/jobs/mongo COMMAND test_jobs_contract mongo)
set_tests_properties(contract/jobs/sqlite contract/jobs/mongo PROPERTIES TIMEOUT 300)
# mongo restarts the shared server: nothing else may use it meanwhile
set_tests_properties(contract/jobs/mongo PROPERTIES RESOURCE_LOCK mongo)
