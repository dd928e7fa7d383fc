# cover_extract (DESIGN §6) on media the ffmpeg command-line tool makes in
# the test's own directory; the JPEGs it returns are checked with ffprobe.
add_executable(test_cover ${CMAKE_CURRENT_LIST_DIR}/test_cover.c)
target_link_libraries(test_cover PRIVATE testharness)
add_test(NAME integration/cover COMMAND test_cover)
set_tests_properties(integration/cover PROPERTIES TIMEOUT 300)
