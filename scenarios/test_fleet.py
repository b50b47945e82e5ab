"""Fleet runs (ota-sim fleet, docs/fleet.md): every fleet file of
scenarios/fleet/ must meet its own expectations (small fleets in CI: the
100,000-device file runs with 500 here, whole in `make bench-fleet`); a run
whose expectation fails exits 1 and prints the command that reruns it; and
over seeds, how often a canary catches a bad release matches the closed form
1 - (1 - p)^n.

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest scenarios/test_fleet.py
"""
import json
import math
import os
import re

import pytest

from conftest import HERE, sim

FLEET_DIR = os.path.join(HERE, "fleet")
CI_DEVICES = {"good-100k.yaml": 500}


def fleet_files():
    return sorted(f for f in os.listdir(FLEET_DIR) if f.endswith(".yaml"))


def run_fleet(path, work, *extra, timeout=900):
    out = os.path.join(work, os.path.basename(path) + ".json")
    p = sim("fleet", path, "-q", "--work", work, "--json", out, *extra, timeout=timeout)
    stats = None
    if os.path.exists(out):
        with open(out) as f:
            stats = json.load(f)
        os.unlink(out)
    return p, stats


@pytest.mark.parametrize("name", fleet_files())
def test_fleet_file_meets_its_expectations(name, work):
    extra = []
    if name in CI_DEVICES:
        extra = ["--devices", str(CI_DEVICES[name])]
    p, st = run_fleet(os.path.join(FLEET_DIR, name), work, *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    assert st and st["ok"], p.stdout
    # work was done: every online device checked in, the releases moved
    assert st["requests"] >= st["online"], p.stdout
    assert st["passes"] >= st["devices"], p.stdout


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = """
name: {name}
seed: 2
duration: 12h
devices: {{count: {count}, poll_interval: 1h, poll_jitter: 5m, health_window: 30s}}
releases:
  - {{version: "1.0.0", size: 64KiB, factory: true, rollback: true}}
  - {{version: "2.0.0", size: 64KiB{bad}}}
rollout:
  release: "2.0.0"
  previous: "1.0.0"
  definition: {{strategy: staged, stages: [{stages}], auto_pause: true}}
expect: {{{expect}}}
"""


def test_a_failed_expectation_exits_1_and_says_how_to_rerun(tmp_path, work):
    # a bad release (health fails on every device) that the file expects to
    # complete: the run must fail, name the expectation and the rerun command
    path = write(tmp_path, "lies.yaml", GOOD.format(
        name="lies", count=20, bad=", bad: {mode: health, probability: 1}",
        stages="{percent: 100, failure_threshold: 50}", expect="rollout: completed"))
    p, st = run_fleet(path, work)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "rollout: ended 'paused'" in p.stdout, p.stdout
    assert re.search(r"rerun: ota-sim fleet \S*lies.yaml --seed 2", p.stdout), p.stdout
    assert st and not st["ok"]
    # and what was found is true: every device that took 2.0.0 rolled back
    assert st["bad_installed"] > 0 and st["rolled_back"] == st["bad_installed"], st
    assert st["bricked"] == 0 and st["inconsistent"] == 0, st


def test_a_bad_fleet_file_is_refused_with_the_key(tmp_path, work):
    path = write(tmp_path, "typo.yaml", GOOD.format(
        name="typo", count=20, bad="", stages="{percent: 100}", expect="rollout: completed")
        .replace("poll_jitter", "poll_jiter"))
    p, _ = run_fleet(path, work)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "unknown key 'poll_jiter'" in p.stderr


def test_canary_catch_rate_matches_the_closed_form(tmp_path, work):
    # a 10-device canary (the only stage: the rest is never offered), a
    # release that fails on each device with probability p: the rollout
    # pauses exactly when one of the 10 fails. Over K seeds the share of
    # paused runs estimates 1 - (1 - p)^10; its 95% Wilson interval (printed
    # by --seeds) must hold the closed form.
    p_dev, n, k = 0.1, 10, 30
    path = write(tmp_path, "canary.yaml", GOOD.format(
        name="canary", count=15, bad=f", bad: {{mode: health, probability: {p_dev}}}",
        stages=f"{{batch_size: {n}, failure_threshold: 0}}", expect=""))
    p = sim("fleet", path, "-q", "--work", work, "--seeds", str(k), timeout=1800)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"over (\d+) seeds: the rollout stopped in (\d+) \(([\d.]+)%, 95% Wilson "
                  r"interval ([\d.]+)%\.\.([\d.]+)%\)", p.stdout)
    assert m, p.stdout
    assert int(m.group(1)) == k
    closed = 1 - (1 - p_dev) ** n
    lo, hi = float(m.group(4)) / 100, float(m.group(5)) / 100
    assert lo <= closed <= hi, f"closed form {closed:.3f} outside [{lo:.3f}, {hi:.3f}]\n{p.stdout}"
    # and not vacuous: the interval is narrower than half the range
    assert hi - lo < 0.5 and int(m.group(2)) > 0, p.stdout


def test_a_slow_link_takes_its_virtual_time(tmp_path, work):
    # 1 MiB at 64 KiB/s is 16 virtual seconds on each device's link: with a
    # 30 s health window an offer-to-commit under 40 s holds only without it
    text = GOOD.format(name="links", count=10, bad="", stages="{percent: 100}",
                       expect="committed_within: 40s, rollout: completed").replace(
                           "size: 64KiB}", "size: 1MiB}")
    fast = write(tmp_path, "fast.yaml", text)
    slow = write(tmp_path, "slow.yaml", text.replace("health_window: 30s", "health_window: 30s, "
                                                      "bandwidth: 64KiB"))
    p, st = run_fleet(fast, work)
    assert p.returncode == 0, p.stdout + p.stderr
    p, st = run_fleet(slow, work)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "committed_within: the slowest of 10 commits took" in p.stdout, p.stdout


def test_server_delays_run_on_the_virtual_clock(tmp_path, work):
    # 30% of the check-ins held 20 s by the server's fault plan: on real time
    # that would be minutes; on the virtual clock the runner sees the server
    # hold them (sleepers) and moves time, so the run stays short, and every
    # delay was applied at its rate
    text = GOOD.format(name="delays", count=20, bad="", stages="{percent: 100}",
                       expect="rollout: completed") + """faults:
  server:
    seed: 3
    rules:
      - id: slow-checkin
        match: {path: /api/v1/devices/*/checkin, probability: 0.3}
        fault: {kind: delay, ms: 20000}
"""
    p, st = run_fleet(write(tmp_path, "delays.yaml", text), work, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert st["srv_faults_applied"] >= 5, st
    assert "ok server rule slow-checkin (delay)" in st["faults"], st["faults"]
    assert st["wall_s"] < 60, st
