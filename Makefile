# Thin wrapper over CMake/CTest: the verbs users expect.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all test scenario matrix image report demo bench bench-server bench-sim clean

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

# One scenario file on the native simulator: make scenario NAME=power-loss-switching
# (TARGET=qemu is the QEMU tier, not built yet). ARGS passes options to ota-sim.
NAME ?=
TARGET ?= native
scenario: all
	@test -n "$(NAME)" || { echo "usage: make scenario NAME=<scenarios/NAME.yaml>" >&2; exit 2; }
	@test "$(TARGET)" = native || { echo "make scenario: TARGET=$(TARGET): only the native tier is built (the QEMU tier is issue 5)" >&2; exit 2; }
	$(BUILD)/sim/ota-sim run scenarios/$(NAME).yaml --junit $(BUILD)/scenario-$(NAME).xml $(ARGS)

# The whole state x fault matrix and the persistence-point enumeration.
matrix: all
	$(BUILD)/sim/ota-sim matrix -j $(JOBS) --junit $(BUILD)/matrix.xml $(ARGS)

bench-sim:
	ci/bench-sim

image:
	@echo "make image: not yet - the QEMU images (images/, issue 5) are not built yet." >&2; exit 2

# HTML + Markdown + JSON-lines report of the latest run in the run database
# (DB=FILE for another; ota-sim's default is BUILD/sim-work/runs.db).
DB ?= $(BUILD)/sim-work/runs.db
report:
	/usr/bin/python3 reports/ota-report --db $(DB) --out $(BUILD)/report

clean:
	rm -rf $(BUILD)
