# Segment-parallel encoding (issue 10) against the single pass, through
# transcode() on a corpus the ffmpeg command-line tool makes in the test's
# own directory: sample counts, SNR overall and at every join, size,
# decoder errors, the Xing header. About 45 s; the timeout leaves room for
# the sanitizer build and a busy machine.
add_executable(test_segments ${CMAKE_CURRENT_LIST_DIR}/test_segments.c)
target_link_libraries(test_segments PRIVATE testharness m)
add_test(NAME integration/segments COMMAND test_segments)
set_tests_properties(integration/segments PROPERTIES TIMEOUT 600)
