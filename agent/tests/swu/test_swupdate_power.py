"""Debian 12's swupdate (2022.12) under the simulator's power model
(docs/swupdate.md, "Under the power model"): `swupdate -B uboot -i os.swu -e
ota,b` runs with libotasim-interpose.so preloaded on a device tree ROOT
(slots ROOT/disks/rootA and rootB, env ROOT/boot/uboot.env); then, for every
counted call N of its journal, it runs again with OTASIM_CRASH_AT=N and the
tree is rebuilt as a power cut there leaves it (`ota-sim rebuild`, the
simulator's own replay). Needs OTA_BUILD_DIR with ota-pack, ota-sim and
libotasim-interpose.so; skipped where no mount namespace can be made."""

import os
import re
import shutil
import subprocess

import pytest

from swu_helpers import make_cert, need_tools, otadev, pack, succeeded, swupdate_uboot, uboot_env

OLD_ENV = {"boot_part": "A", "bootcount": "0", "bootlimit": "3", "upgrade_available": "0"}
LINE = re.compile(r"^\s*(\d+) (\S+)\s+(\S+)")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def journal_lines(sim, journal):
    out = subprocess.run([sim, "journal", journal], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def records(lines):
    """(seq, op, path) of each record `ota-sim journal` printed."""
    return [(int(m[1]), m[2], m[3]) for m in map(LINE.match, lines) if m]


class Device:
    """A device tree at a fixed path (the .swu and fw_env.config name its
    files), put back from a pristine copy before each run."""

    def __init__(self, d):
        self.d, self.root = d, os.path.join(d, "root")
        self.sim = otadev.binary("sim", "ota-sim")
        self.lib = otadev.binary("sim", "libotasim-interpose.so")
        self.slot_a = os.path.join(self.root, "disks", "rootA")
        self.slot_b = os.path.join(self.root, "disks", "rootB")
        self.env = os.path.join(self.root, "boot", "uboot.env")
        self.journal = os.path.join(d, "journal")
        os.makedirs(os.path.dirname(self.slot_a))
        os.makedirs(os.path.dirname(self.env))
        self.cert, key = make_cert(d, "signer")
        self.image = os.path.join(d, "rootfs.img")
        with open(self.image, "wb") as f:
            f.write(os.urandom(300_001))
        with open(self.slot_a, "wb") as f:
            f.write(os.urandom(300_001))  # the running system
        with open(self.slot_b, "wb") as f:
            f.write(b"B" * 4096)  # what slot B held before
        self.swu = os.path.join(d, "os.swu")
        p = pack(self.swu, self.cert, key, self.image,
                 extra=["--slot-a-device", self.slot_a, "--slot-b-device", self.slot_b])
        assert p.returncode == 0, p.stderr
        made, _ = uboot_env(d, OLD_ENV)
        shutil.move(made, self.env)
        self.cfg = os.path.join(d, "fw_env.config")
        with open(self.cfg, "w") as f:
            f.write(f"{self.env} 0x0 0x4000\n")
        self.pristine = os.path.join(d, "pristine")
        shutil.copytree(self.root, self.pristine)
        self.slot_a_bytes, self.slot_b_old = read(self.slot_a), read(self.slot_b)

    def run(self, crash_at=None, wrap=()):
        """swupdate under the interposer on a fresh tree: (exit status, log)."""
        shutil.rmtree(self.root)
        shutil.copytree(self.pristine, self.root)
        if os.path.exists(self.journal):
            os.unlink(self.journal)
        prefix = list(wrap) + ["env", f"LD_PRELOAD={self.lib}", f"OTASIM_ROOT={self.root}",
                               f"OTASIM_JOURNAL={self.journal}"]
        if crash_at is not None:
            prefix.append(f"OTASIM_CRASH_AT={crash_at}")
        got = swupdate_uboot(self.d, self.swu, self.cert, self.cfg, "-e", "ota,b", prefix=prefix)
        if got is None:
            pytest.skip("no mount namespace here (unshare -m / -rm): cannot give swupdate its "
                        "own /etc/fw_env.config")
        return got

    def printenv(self):
        """(values, stderr, exit status) of fw_printenv on the tree's env."""
        p = subprocess.run(["fw_printenv", "-c", self.cfg], capture_output=True, text=True)
        values = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
        return values, p.stderr, p.returncode


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    """The uncut run (journal, open trace) and, per counted call N, the tree a
    power cut after N leaves: {n: (env, fw_printenv's stderr and status,
    slot A's bytes unchanged, slot B holds the image)}."""
    need_tools()
    dev = Device(str(tmp_path_factory.mktemp("swupower")))
    strace = shutil.which("strace")
    trace = os.path.join(dev.d, "opens.txt")
    wrap = [strace, "-f", "-qq", "-e", "trace=open,openat,creat", "-o", trace] if strace else []
    rc, log = dev.run(wrap=wrap)
    if wrap and not succeeded(rc, log):
        os.unlink(trace) if os.path.exists(trace) else None
        rc, log = dev.run()  # strace cannot trace here (no ptrace): without the open trace
    assert succeeded(rc, log), log
    lines = journal_lines(dev.sim, dev.journal)
    full = {"lines": lines, "recs": records(lines), "log": log,
            "opens": open(trace).read() if os.path.exists(trace) else None,
            "slot_b": read(dev.slot_b), "env": dev.printenv()[0]}
    calls = int(re.match(r"(\d+) counted calls", lines[-1])[1])
    points = {}
    for n in range(1, calls + 1):
        rc, log = dev.run(crash_at=n)
        assert rc == -9, f"cut after call {n}: swupdate was not killed ({rc})\n{log}"
        p = subprocess.run([dev.sim, "rebuild", dev.root, dev.journal], capture_output=True,
                           text=True)
        assert p.returncode == 0, f"cut after call {n}: {p.stderr}"
        env, err, status = dev.printenv()
        points[n] = (env, err, status, read(dev.slot_a) == dev.slot_a_bytes,
                     read(dev.slot_b) == read(dev.image))
    return {"dev": dev, "full": full, "calls": calls, "points": points}


def test_journal_sees_the_slot_and_env_writes_and_nothing_unmodelled(cuts):
    dev, full = cuts["dev"], cuts["full"]
    assert full["slot_b"] == read(dev.image), full["log"]
    assert full["env"]["boot_part"] == "B" and full["env"]["upgrade_available"] == "1"
    recs = full["recs"]
    ops = {(op, path) for _, op, path in recs}
    assert ("write", dev.slot_b) in ops, full["lines"]
    assert ("write", dev.env) in ops and ("fsync", dev.env) in ops, full["lines"]
    assert not [line for line in full["lines"] if "unmodelled" in line], full["lines"]
    assert not [r for r in recs if r[2] == dev.slot_a], full["lines"]
    assert cuts["calls"] >= 3


def test_slot_a_is_never_opened_for_writing(cuts):
    dev, full = cuts["dev"], cuts["full"]
    if full["opens"] is None:
        pytest.skip("no strace: only the journal and slot A's bytes are checked")
    opened = [line for line in full["opens"].splitlines() if f'"{dev.slot_a}"' in line]
    assert not [line for line in opened if "O_WRONLY" in line or "O_RDWR" in line], opened
    # the trace saw the run: slot B was opened for writing
    assert [line for line in full["opens"].splitlines()
            if f'"{dev.slot_b}"' in line and "O_RDWR" in line]


def test_every_power_cut_leaves_the_old_or_the_whole_new_env(cuts):
    seen = set()
    for n, (env, err, status, _, _) in cuts["points"].items():
        assert status == 0 and not err.strip(), f"cut after call {n}: {err}"
        old = env.get("boot_part") == "A" and env.get("upgrade_available") == "0"
        new = (env.get("boot_part") == "B" and env.get("upgrade_available") == "1"
               and env.get("bootcount") == "0")
        assert old or new, f"cut after call {n}: a mixed env {env}"
        assert env.get("bootlimit") == "3", f"cut after call {n}: {env}"
        seen.add("old" if old else "new")
    assert seen == {"old", "new"}  # the cuts span the switch


def test_slot_a_is_unchanged_at_every_power_cut(cuts):
    assert [n for n, p in cuts["points"].items() if not p[3]] == []


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="SWUpdate 2022.12's raw handler never fsyncs slot B "
                   "(open O_RDWR, write, close): a cut after the env selects B leaves B's old "
                   "bytes (docs/swupdate.md, Under the power model)")
def test_slot_b_is_durable_once_the_env_selects_it(cuts):
    stale = [n for n, (env, _, _, _, b_new) in cuts["points"].items()
             if env.get("boot_part") == "B" and not b_new]
    assert stale == []
