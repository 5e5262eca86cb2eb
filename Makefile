# The two commands a user needs: `make run` and `make test`. Both install missing
# Debian packages (scripts/setup-deps), configure, and build first.
BUILD ?= build
JOBS  ?= $(shell nproc)
MODIFF = $(BUILD)/apps/modiff/modiff

.PHONY: all setup configure build run test bench clean

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

bench: build
	$(MODIFF) bench env

clean:
	rm -rf $(BUILD)
