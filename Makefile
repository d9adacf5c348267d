# The two commands a newcomer needs: `make run` and `make test`.
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 400000
FUZZ_SEED ?= 1
JOBS ?= $(shell nproc)
LISTEN ?= 127.0.0.1:8080
DATA_DIR ?= ./pigeon-data

.PHONY: deps peers build build-asan build-tsan build-fuzz run test test-release test-asan test-tsan test-fuzz bench format format-check clean

deps:
	@bash scripts/install-deps.sh

# uWebSockets (uWS.js through Node) for `pigeon-bench --uws`, the CPU line's peer:
# from the npm registry, pinned and hash-checked. Only tests and benchmarks need it.
peers: deps
	@node tools/uws_relay/install.mjs

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPIGEON_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

build-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIGEON_TSAN=ON >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)

# The libFuzzer targets (fuzz/), with clang, ASan and UBSan.
build-fuzz: deps
	@CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIGEON_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_client_frame fuzz_ws_frame fuzz_http_request

run: build
	$(BUILD)/pigeond --listen $(LISTEN) --data-dir $(DATA_DIR)

test-release: build peers
	cd $(BUILD) && ctest --output-on-failure -j 2

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: build-asan peers
	bash scripts/test-sanitized.sh asan $(ASAN_BUILD)

# The same tests under ThreadSanitizer: a connection's state may be run by its
# network thread or by the committer (borrowed turns, docs/architecture.md).
test-tsan: build-tsan peers
	bash scripts/test-sanitized.sh tsan $(TSAN_BUILD)

# What clients send (frames, WebSocket bytes, HTTP requests), fuzzed from the
# seeds in fuzz/corpus: FUZZ_RUNS inputs per target from mutation seed
# FUZZ_SEED (the same inputs on every machine), at most FUZZ_SECONDS each.
test-fuzz: build-fuzz
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_RUNS) $(FUZZ_SEED)

test: format-check test-release test-asan test-tsan test-fuzz

# Microbenchmarks and load scenarios (takes a few minutes; results in bench/results/).
# bench/run.sh fetches uWebSockets itself (as `make peers`).
bench: build
	BUILD=$(BUILD) bash bench/run.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

# Fails on any source file that `make format` would change.
format-check: deps
	@clang-format --dry-run --Werror $$(git ls-files '*.cc' '*.h') && echo "clang-format: clean"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
