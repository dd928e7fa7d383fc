# The web page in a real browser: Debian's Chromium driven by playwright-core
# (pinned in tests/browser/package-lock.json; scripts/test.sh runs npm ci)
# against `vid2mp3 all` on free loopback ports. Screenshots of each step go
# to browser-out/ in the build directory. Fails, never skips, without
# Chromium or the npm packages.
find_program(NODE_EXECUTABLE node REQUIRED)
add_test(NAME e2e/browser
         COMMAND ${NODE_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/browser/run.mjs
                 $<TARGET_FILE:vid2mp3> ${CMAKE_BINARY_DIR}/browser-out)
set_tests_properties(e2e/browser PROPERTIES TIMEOUT 600)
