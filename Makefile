# Thin wrappers; the work is in scripts/ and CMake.
.PHONY: all build run test bench format clean

all: build

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$$(nproc)

# Build and start `vid2mp3 all` with the embedded defaults (data in ./data).
run:
	scripts/run.sh

# Install dependencies, start the test servers, run every suite twice
# (normal and sanitizer builds), stop the servers.
test:
	scripts/test.sh

bench:
	bench/run-all.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan
