# Thin wrapper around CMake/CTest. Every target runs the setup script first, so a fresh Debian
# machine needs nothing but `make` (main job) and `make test` (all tests, plus ASan/UBSan).
JOBS    ?= $(shell nproc)
BUILD   ?= build
CMAKE_FLAGS ?=

.PHONY: all setup build test check test-asan demo bench fuzz clean format data

all: build

setup:
	@scripts/setup.sh

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Release build tests, then the same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test: check test-asan

check: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: setup
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCARAMBA_SANITIZE=ON -DCARAMBA_CUDA=OFF \
	  -DCMAKE_C_FLAGS_DEBUG="-O1 -g"
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  CARAMBA_SANITIZED=1 ctest --output-on-failure -j $(JOBS) -LE slow

# The project's main job: train the demo model on the Brown corpus (see README, docs/training.md):
# tokenize data/brown.txt into bytes once, then train presets/demo.yml (runs/brown/scratch/).
demo: build data
	@test -s data/brown-bytes.npy || $(BUILD)/caramba prepare-data --tokenizer bytes \
	  --docs blank-line --input data/brown.txt --output data/brown-bytes.npy
	$(BUILD)/caramba run presets/demo.yml

data: setup
	@scripts/get-data.sh

bench: build
	@scripts/setup.sh --bench
	@bench/run-all.sh $(BUILD)

# Bounded libFuzzer runs of every fuzz target (clang, ASan + UBSan).
FUZZ_SECONDS ?= 60
fuzz: setup
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCARAMBA_FUZZ=ON -DCARAMBA_CUDA=OFF \
	  -DCMAKE_C_FLAGS_DEBUG="-O1 -g"
	cmake --build build-fuzz -j $(JOBS) --target $$(cd fuzz && ls fuzz_*.c | sed 's/\.c$$//' | tr '\n' ' ')
	@for f in fuzz/fuzz_*.c; do n=$$(basename $$f .c); mkdir -p build-fuzz/corpus-$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    build-fuzz/corpus-$$n fuzz/seeds/$$n 2>&1 | grep -E '^(#[0-9]+[[:space:]]+DONE|==[0-9]+==ERROR|SUMMARY|Done)' ; done

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf build build-asan build-fuzz
