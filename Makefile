# The two commands a user needs: `make run` and `make test`. Both install missing
# Debian packages (scripts/setup-deps), configure, and build first.
BUILD ?= build
JOBS  ?= $(shell nproc)
MODIFF = $(BUILD)/apps/modiff/modiff

.PHONY: all setup configure build run test test-sanitize bench clean

all: build

setup:
	@bash scripts/setup-deps

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: setup $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(MODIFF) run

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite built with AddressSanitizer and UndefinedBehaviorSanitizer (docs/security.md; not in CI: it
# builds everything again and runs about three times slower). Leak checking is off: LibTorch and HDF5 keep
# process-lifetime caches that LeakSanitizer would report.
SANITIZE_BUILD ?= build-sanitize
test-sanitize: setup
	cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMODIFF_SANITIZE=ON
	cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	cd $(SANITIZE_BUILD) && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 3000

bench: build
	$(MODIFF) bench env

clean:
	rm -rf $(BUILD)
