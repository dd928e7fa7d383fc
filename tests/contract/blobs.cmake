add_executable(test_blobs_contract ${CMAKE_CURRENT_LIST_DIR}/test_blobs.c)
target_link_libraries(test_blobs_contract PRIVATE testharness)
add_test(NAME contract/blobs/fs COMMAND test_blobs_contract fs)
add_test(NAME contract/blobs/gridfs COMMAND test_blobs_contract gridfs)
set_tests_properties(contract/blobs/fs contract/blobs/gridfs PROPERTIES TIMEOUT 900)
# another suite restarts the shared server, and gc with a threshold of 0
# would take other suites' uploads in progress: nothing else uses it meanwhile
set_tests_properties(contract/blobs/gridfs PROPERTIES RESOURCE_LOCK mongo)

# bench/storage.sh's and bench/upload.sh's programs: not tests
add_executable(storage_bench ${CMAKE_SOURCE_DIR}/bench/storage_bench.c)
target_link_libraries(storage_bench PRIVATE vid2mp3core)
add_executable(blob_put ${CMAKE_SOURCE_DIR}/bench/blob_put.c)
target_link_libraries(blob_put PRIVATE vid2mp3core)
