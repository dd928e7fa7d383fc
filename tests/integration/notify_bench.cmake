# The notifier bench's helper (bench/notify.sh runs it; not a test): makes
# done jobs and publishes their outcome messages in a DATA_DIR's SQLite
# stores, recording when each publish committed.
add_executable(notify_bench ${CMAKE_SOURCE_DIR}/bench/notify_bench.c)
target_link_libraries(notify_bench PRIVATE vid2mp3core)
