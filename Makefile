# Thin wrapper over CMake/CTest: the verbs users expect.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all test test-qemu-full test-release check-tools scenario matrix fleet image report demo bench bench-server bench-sim bench-fleet bench-qemu bench-compare clean fuzz fuzz-ci fuzz-goals

all:
	cmake -S . -B $(BUILD) -DOTA_SANITIZE=ON -DOTA_FAULT_POINTS=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The test build: ASan+UBSan and named fault points. Unit tests (googletest)
# and end-to-end tests (pytest), all through CTest.
# A CTest entry in which a test could not run is listed as Skipped, not passed; why is
# in CTest's log: printed here (SKIPPED lines of ci/pytest/ota_ctest.py, pytest-qemu).
SKIP_REASONS = grep -hE '^(SKIPPED |pytest-qemu(-[a-z]+)? not run|fuzz-run not run)' Testing/Temporary/LastTest.log \
	  | sed '1i did not run (Skipped above):' | sed '2,$$s/^/  /' || true
test: all
	cd $(BUILD) && { ctest --output-on-failure -j$(JOBS); rc=$$?; $(SKIP_REASONS); exit $$rc; }

# The QEMU tier's full set (make test runs its smoke set, one test of each kind: scenarios/conftest.py
# marks the others qemu_full): every QEMU test file, each test.
test-qemu-full: all
	cd $(BUILD) && OTA_QEMU_FULL=1 ctest -R '^pytest-qemu' --output-on-failure -j$(JOBS)

# The unit tests (googletest, CTest label "unit") in a plain optimized build, as users
# build it: RelWithDebInfo, no sanitizers, no fault points. Timing and optimizer
# differences show here and not under ASan. CI runs it beside make test.
BUILD_RELEASE ?= build-release
test-release:
	cmake -S . -B $(BUILD_RELEASE) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTA_SANITIZE=OFF \
	  -DOTA_FAULT_POINTS=OFF -DOTA_MUTANTS=OFF >/dev/null
	cmake --build $(BUILD_RELEASE) -j$(JOBS)
	cd $(BUILD_RELEASE) && ctest -L unit --output-on-failure -j$(JOBS)

# Every program the build and tests call comes from a package the install scripts name.
check-tools:
	ci/check-tools

# The README's main job (ci/demo): a device updated v1 -> v2, a bad release rolled back,
# then the harness at work (a power cut at SWITCHING, a short matrix, the HTML report).
# Builds only what it needs, in a Release build of its own (build-demo/: no sanitizers,
# no mutants; named fault points on, as the matrix's fault-point cases need them); the
# build's output goes to build-demo/build.log. ARGS passes options to ci/demo (--help).
BUILD_DEMO ?= build-demo
DEMO_TARGETS = ota-agent ota-pack ota-server ota-sim ota-sim-svc otasim-interpose video-app \
	video-app-v2 video-app-v3 $(foreach f,crash-on-start crash-after health-500 hang \
	health-500-quirk,video-app-v2-$(f))
demo:
	@echo "building what the demo needs in $(BUILD_DEMO)/ (Release; log: $(BUILD_DEMO)/build.log)"
	@mkdir -p $(BUILD_DEMO)
	@t0=$$(date +%s); { cmake -S . -B $(BUILD_DEMO) -DCMAKE_BUILD_TYPE=Release -DOTA_SANITIZE=OFF \
	  -DOTA_FAULT_POINTS=ON -DOTA_MUTANTS=OFF && \
	  cmake --build $(BUILD_DEMO) -j$(JOBS) --target $(DEMO_TARGETS); } >$(BUILD_DEMO)/build.log 2>&1 \
	  || { tail -n 30 $(BUILD_DEMO)/build.log; echo "make demo: the build failed: $(BUILD_DEMO)/build.log" >&2; exit 1; }; \
	  echo "built in $$(( $$(date +%s) - t0 )) s"
	OTA_BUILD=$(BUILD_DEMO) ci/demo $(ARGS)

# Fuzzing (docs/fuzzing.md): the libFuzzer targets in a clang-14 ASan + UBSan build of their
# own (build-fuzz/), each run for FUZZ_SECONDS (FUZZ_TARGETS: some only); prints executions
# and time per target. fuzz-ci: each briefly (20 s), as CI's CTest entry fuzz-brief does.
# fuzz-goals: each to issue 15's goal (10 M executions for a fast target, 20 CPU-minutes for a
# slow one; about 3 hours of CPU for all), recorded in build-fuzz/fuzz-record.tsv.
# The corpora are replayed as ordinary tests in every build (CTest label fuzz-replay).
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	JOBS=$(JOBS) ci/fuzz-run --build $(BUILD_FUZZ) --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-ci:
	JOBS=$(JOBS) ci/fuzz-run --build $(BUILD_FUZZ) --seconds 20 $(FUZZ_TARGETS)
fuzz-goals:
	JOBS=$(JOBS) ci/fuzz-run --build $(BUILD_FUZZ) --goals $(FUZZ_TARGETS)

bench:
	ci/bench-agent

bench-server:
	ci/bench-server

# One scenario file: make scenario NAME=power-loss-switching. TARGET=qemu runs it
# in the QEMU Raspberry Pi 3B (PROFILE=virt for the fast board; the image is
# built first, cached). ARGS passes options to ota-sim.
NAME ?=
TARGET ?= native
PROFILE ?= raspi3b
scenario: all
	@test -n "$(NAME)" || { echo "usage: make scenario NAME=<scenarios/NAME.yaml> [TARGET=native|qemu]" >&2; exit 2; }
	@case "$(TARGET)" in native|qemu) ;; *) echo "make scenario: TARGET=native or qemu" >&2; exit 2 ;; esac
ifeq ($(TARGET),qemu)
	$(BUILD)/sim/ota-sim run scenarios/$(NAME).yaml --target qemu --profile $(PROFILE) \
	  --image $$(images/make-image | tail -n1) --junit $(BUILD)/scenario-$(subst /,-,$(NAME))-qemu.xml $(ARGS)
else
	$(BUILD)/sim/ota-sim run scenarios/$(NAME).yaml --junit $(BUILD)/scenario-$(subst /,-,$(NAME)).xml $(ARGS)
endif

# The whole state x fault matrix and the persistence-point enumeration.
# TARGET=qemu: the matrix's state cases and every scenario file the QEMU tier
# can run, in the QEMU Raspberry Pi 3B (PROFILE=virt: app cases on the fast board).
# TARGET=qemu MODE=blocks: block-level crash states (docs/blocks.md) of the updates in
# scenarios/blocks/ on PROFILE (PROFILE=all: raspi3b then virt), 20 booted states per update.
MODE ?= trials
matrix: all
ifeq ($(TARGET)-$(MODE),qemu-blocks)
	@img=$$(images/make-image | tail -n1) && for p in $(if $(filter all,$(PROFILE)),raspi3b virt,$(PROFILE)); do \
	  $(BUILD)/sim/ota-sim matrix --target qemu --mode blocks --profile $$p --image $$img \
	    --qemu-timeout 3600 --junit $(BUILD)/matrix-qemu-blocks-$$p.xml $(ARGS) || exit $$?; done
else ifeq ($(TARGET),qemu)
	$(BUILD)/sim/ota-sim matrix --with-scenarios scenarios --target qemu --profile $(PROFILE) \
	  --image $$(images/make-image | tail -n1) --junit $(BUILD)/matrix-qemu.xml $(ARGS)
else
	$(BUILD)/sim/ota-sim matrix -j $(JOBS) --junit $(BUILD)/matrix.xml $(ARGS)
endif

bench-sim:
	ci/bench-sim

# A fleet run (docs/fleet.md): make fleet NAME=bad-health-canary-pause [ARGS="--devices 10000"].
# In a Release build (build-bench/): fleets are large, sanitizers slow them ~5x.
BUILD_FLEET ?= build-bench
fleet:
	@test -n "$(NAME)" || { echo "usage: make fleet NAME=<scenarios/fleet/NAME.yaml> [ARGS=...]" >&2; exit 2; }
	cmake -S . -B $(BUILD_FLEET) -DCMAKE_BUILD_TYPE=Release -DOTA_SANITIZE=OFF -DOTA_FAULT_POINTS=ON \
	  -DOTA_MUTANTS=OFF >/dev/null
	cmake --build $(BUILD_FLEET) -j$(JOBS) --target ota-sim ota-server ota-pack
	$(BUILD_FLEET)/sim/ota-sim fleet scenarios/fleet/$(NAME).yaml $(ARGS)

# 1,000, 10,000 and 100,000 devices, bench-server beside it (sim/bench/README.md), and the
# calibration with CALIBRATE devices (docs/fleet.md "Calibration"; CALIBRATE=0: none).
CALIBRATE ?= 500
bench-fleet:
	ci/bench-fleet --calibrate $(CALIBRATE) $(ARGS)

# make bench-qemu [BASELINE=REV]: the QEMU tier's figures beside those of REV (default: the tree
# before issue 16), built once into build-bench/baseline-REV/; BASELINE= runs today's alone.
BASELINE ?= 4b3f757
bench-qemu:
	ci/bench-qemu $(if $(BASELINE),--baseline-rev $(BASELINE)) $(ARGS)

# make bench-compare BEFORE=REV [AFTER=REV]: bench, bench-server and bench-sim of two revisions,
# one right after the other (ci/bench-compare).
bench-compare:
	ci/bench-compare $(BEFORE) $(AFTER)

# The QEMU Raspberry Pi 3B SD image (cached): images/out/<hash>, also images/out/latest-empty.
image:
	images/make-image

# HTML + Markdown + JSON-lines report of the latest run in the run database
# (DB=FILE for another; ota-sim's default is BUILD/sim-work/runs.db).
DB ?= $(BUILD)/sim-work/runs.db
report:
	/usr/bin/python3 reports/ota-report --db $(DB) --out $(BUILD)/report

clean:
	rm -rf $(BUILD)
