# `vid2mp3 convert` on a corpus the ffmpeg command line makes in the test's
# own directory; every MP3 is checked with ffprobe.
add_executable(test_convert ${CMAKE_CURRENT_LIST_DIR}/test_convert.c)
target_link_libraries(test_convert PRIVATE testharness)
add_test(NAME integration/convert COMMAND test_convert $<TARGET_FILE:vid2mp3>)
set_tests_properties(integration/convert PROPERTIES TIMEOUT 300)
