# Thin wrapper over CMake/CTest: the verbs users expect.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all test scenario image report demo bench bench-server clean

all:
	cmake -S . -B $(BUILD) -DOTA_SANITIZE=ON -DOTA_FAULT_POINTS=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The test build: ASan+UBSan and named fault points. Unit tests (googletest)
# and end-to-end tests (pytest), all through CTest.
test: all
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

demo: all
	OTA_BUILD=$(BUILD) ci/demo

bench:
	ci/bench-agent

bench-server:
	ci/bench-server

scenario:
	@echo "make scenario: not yet - the simulator (sim/, issue 4) is not built yet." >&2; exit 2

image:
	@echo "make image: not yet - the QEMU images (images/, issue 5) are not built yet." >&2; exit 2

report:
	@echo "make report: not yet - reports come with the simulator (issue 4)." >&2; exit 2

clean:
	rm -rf $(BUILD)
