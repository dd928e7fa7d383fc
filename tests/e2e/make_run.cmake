# `make run` as the README describes it: scripts/run.sh (the Makefile's
# recipe) started in the background on a fresh DATA_DIR and free ports,
# driven with the curl commands its banner prints, stopped with Ctrl-C
# (SIGINT to its process group), then started again on the same data.
# VID2MP3_BUILD_DIR is this build: run.sh only builds the vid2mp3 target
# there (a no-op here), never reconfigures it.
add_test(NAME e2e/make-run
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/make_run_test.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
set_tests_properties(e2e/make-run PROPERTIES TIMEOUT 600)
