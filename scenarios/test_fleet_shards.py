"""Fleet runs across machines (docs/fleet.md "Fleet runs across machines"),
on one machine: the server side (`ota-sim fleet FILE --serve-only --parties
2`) and two shards (`ota-sim fleet FILE --shard I/2 --server URL
--admin-token T`) run as three background processes against one ota-server
whose virtual clock the two shards share (--clock-parties 2); `ota-sim
fleet-merge` makes the shards' databases one fleet run.

What must hold: the merged run is the unsharded run of the same seed,
device for device. Every device's wake times depend only on its index, its
own pass count (the poll jitter's draw) and the seed, and the shared clock
makes every device act at the same virtual times as in one process, with
the server's rollout ticked at the same times.

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest scenarios/test_fleet_shards.py
"""
import json
import os
import sqlite3
import subprocess
import time

from conftest import SIM, sim

SMALL = """
name: shards-small
seed: 7
duration: 12h
devices: {count: 40, poll_interval: 1h, poll_jitter: 10m, health_window: 30s,
          types: {rpi3b: 0.7, rpi4: 0.3}, groups: {eu: 1, us: 1}}
releases:
  - {version: "1.0.0", size: 64KiB, factory: true, rollback: true}
  - {version: "2.0.0", size: 64KiB, bad: {mode: health, probability: 0.2, fail_after: 10s}}
rollout:
  release: "2.0.0"
  previous: "1.0.0"
  definition: {strategy: staged, auto_pause: true, report_timeout_ms: 7200000,
               stages: [{percent: 10, failure_threshold: 60}, {percent: 100, failure_threshold: 60}]}
expect: {bricked_max: 0, inconsistent_max: 0, stuck_max: 0, rollout: completed}
"""

DEVICE_COLS = ("device, type, grp, version, state, outcome, bytes, downtime_ms, recovery_ms, "
               "updates, rollbacks, cuts, checks")


def last_run(db):
    con = sqlite3.connect(db)
    try:
        fid, ok, state, stats = con.execute(
            "SELECT id, ok, rollout_state, stats FROM fleet_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        devices = {r[0]: r for r in con.execute(
            f"SELECT {DEVICE_COLS} FROM fleet_devices WHERE fleet_id = ?", (fid,))}
        samples = [(t, json.loads(c)) for t, c in con.execute(
            "SELECT t_ms, counts FROM fleet_samples WHERE fleet_id = ? ORDER BY t_ms", (fid,))]
    finally:
        con.close()
    return {"ok": ok, "state": state, "stats": json.loads(stats), "devices": devices,
            "samples": samples}


def start(*args, log):
    return subprocess.Popen([SIM, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT)


def test_two_shards_on_one_server_merge_to_the_unsharded_run(tmp_path, work):
    fleet = tmp_path / "small.yaml"
    fleet.write_text(SMALL)
    fleet = str(fleet)
    one = str(tmp_path / "one.db")
    p = sim("fleet", fleet, "-q", "--work", work, "--db", one, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr

    info = str(tmp_path / "info.json")
    serve = start("fleet", fleet, "--serve-only", "--parties", "2", "--info", info,
                  "--work", work, log=str(tmp_path / "serve.log"))
    shards = []
    try:
        deadline = time.time() + 120
        while not os.path.exists(info):
            assert serve.poll() is None, open(tmp_path / "serve.log").read()
            assert time.time() < deadline, "the server side did not come up"
            time.sleep(0.05)
        with open(info) as f:
            srv = json.load(f)
        for i in range(2):
            shards.append(start("fleet", fleet, "-q", "--shard", f"{i}/2", "--server", srv["url"],
                                "--admin-token", srv["admin_token"], "--pubkey", srv["pubkey"],
                                "--work", work, "--db", str(tmp_path / f"s{i}.db"),
                                log=str(tmp_path / f"s{i}.log")))
        for i, s in enumerate(shards):
            assert s.wait(300) == 0, open(tmp_path / f"s{i}.log").read()
        # every shard left the clock: the server side stops by itself
        assert serve.wait(60) == 0, open(tmp_path / "serve.log").read()
    finally:
        for proc in shards + [serve]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    parts = [last_run(str(tmp_path / f"s{i}.db")) for i in range(2)]
    # each shard ran its own slice: i % 2 == I
    for i, part in enumerate(parts):
        assert part["devices"] and all(int(d[1:]) % 2 == i for d in part["devices"])

    merged_db = str(tmp_path / "merged.db")
    p = sim("fleet-merge", merged_db, str(tmp_path / "s0.db"), str(tmp_path / "s1.db"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "verdict recomputed" in p.stdout, p.stdout
    merged, alone = last_run(merged_db), last_run(one)

    # device for device, the unsharded run's outcomes. Bytes apart: each run
    # packs its own releases (a tar.gz: its size varies by a few bytes with
    # the files' times), so a device's bytes only agree within a few bytes.
    assert set(merged["devices"]) == set(alone["devices"])

    def same(a, b):
        return a[:6] + a[7:] == b[:6] + b[7:] and abs(a[6] - b[6]) <= 64 * max(1, a[9])

    diff = {d: (alone["devices"][d], merged["devices"][d]) for d in alone["devices"]
            if not same(alone["devices"][d], merged["devices"][d])}
    assert not diff, "\n".join(f"{d}: alone {a}\n          merged {m}" for d, (a, m) in diff.items())
    # the outcomes are not all alike (the comparison means something)
    outcomes = {r[5] for r in alone["devices"].values()}
    assert {"on_target", "rolled_back"} <= outcomes, outcomes
    assert merged["ok"] == alone["ok"] == 1
    assert merged["state"] == alone["state"] == "completed"
    for k in ("devices", "online", "on_target", "bad_installed", "rolled_back", "bricked",
              "inconsistent", "stuck", "never_checked_in", "passes"):
        assert merged["stats"][k] == alone["stats"][k], k
        assert merged["stats"][k] == sum(part["stats"][k] for part in parts), k
    assert merged["stats"]["bytes_down"] == sum(part["stats"]["bytes_down"] for part in parts)
    for k in ("downtime_mean_ms", "downtime_p95_ms", "recovered"):
        assert merged["stats"][k] == alone["stats"][k], k
    assert merged["stats"]["rerun"] == alone["stats"]["rerun"]
    # the time series: the shards sampled at the same virtual times; summed
    # (each shard as it ended, past its end), the unsharded run's: the
    # devices per state and per version. The runs' last samples are at their
    # ends, which differ (each run ends a settling time after it saw the
    # rollout end).
    m_at = dict(merged["samples"])
    times = [t for t, _ in alone["samples"][:-1]]
    assert set(times) <= set(m_at)
    for t, a in alone["samples"]:
        if t in m_at:
            assert (m_at[t]["states"], m_at[t]["versions"]) == (a["states"], a["versions"]), t
    # the server's rollout figures are the fleet's in every shard's sample:
    # taken once, not summed (they add up to the devices the rollout targets)
    for t, c in merged["samples"]:
        by_state = c.get("rollout", {}).get("by_state")
        if by_state:
            assert sum(by_state.values()) == 40, (t, by_state)


def test_merging_other_runs_is_refused(tmp_path, work):
    fleet = tmp_path / "small.yaml"
    fleet.write_text(SMALL.replace("count: 40", "count: 6"))
    dbs = []
    for seed in (7, 8):
        db = str(tmp_path / f"seed{seed}.db")
        p = sim("fleet", str(fleet), "-q", "--work", work, "--db", db, "--seed", str(seed),
                timeout=300)
        assert p.returncode in (0, 1), p.stdout + p.stderr
        dbs.append(db)
    p = sim("fleet-merge", str(tmp_path / "m.db"), *dbs)
    assert p.returncode == 5 and "not shards of one run" in p.stderr, p.stdout + p.stderr


def test_a_shard_refuses_a_server_with_other_parties(tmp_path, work):
    # a clock with a party too many would wait for it forever: the shard
    # checks the count before its devices start
    fleet = tmp_path / "small.yaml"
    fleet.write_text(SMALL.replace("count: 40", "count: 6"))
    info = str(tmp_path / "info.json")
    serve = start("fleet", str(fleet), "--serve-only", "--parties", "3", "--info", info,
                  "--work", work, log=str(tmp_path / "serve.log"))
    try:
        deadline = time.time() + 120
        while not os.path.exists(info):
            assert serve.poll() is None and time.time() < deadline
            time.sleep(0.05)
        with open(info) as f:
            srv = json.load(f)
        p = sim("fleet", str(fleet), "-q", "--shard", "0/2", "--server", srv["url"],
                "--admin-token", srv["admin_token"], "--work", work, timeout=120)
        assert p.returncode == 5, p.stdout + p.stderr
        assert "has 3 parties, this run has 2 shards" in p.stderr, p.stderr
    finally:
        serve.terminate()
        assert serve.wait(30) == 0


def fake_shard(path, fleet_file, shard, stats, devices, samples, ok=1, failed=""):
    """A shard's run database as ota-sim fleet writes it (rundb.c's schema)."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE runs(id INTEGER PRIMARY KEY, started_ms INTEGER, finished_ms INTEGER,"
        " command TEXT, agent TEXT);"
        "CREATE TABLE fleet_runs(id INTEGER PRIMARY KEY, run_id INTEGER, name TEXT, file TEXT,"
        " seed INTEGER, ok INTEGER, rollout_state TEXT, stats TEXT, failed TEXT, rerun TEXT);"
        "CREATE TABLE fleet_samples(fleet_id INTEGER, t_ms INTEGER, rollout TEXT, stage INTEGER,"
        " counts TEXT);"
        "CREATE TABLE fleet_devices(fleet_id INTEGER, device TEXT, type TEXT, grp TEXT,"
        " version TEXT, state TEXT, outcome TEXT, bytes INTEGER, downtime_ms INTEGER,"
        " recovery_ms INTEGER, updates INTEGER, rollbacks INTEGER, cuts INTEGER, checks TEXT);")
    st = {"name": "fake", "seed": 3, "rollout_state": "completed", "rerun":
          f"ota-sim fleet {fleet_file} --seed 3 --shard {shard}/2", **stats}
    con.execute("INSERT INTO fleet_runs VALUES(1, 1, 'fake', ?, 3, ?, 'completed', ?, ?, ?)",
                (fleet_file, ok, json.dumps(st), failed, st["rerun"]))
    for d, outcome in devices:
        con.execute("INSERT INTO fleet_devices VALUES(1, ?, 'rpi4', 'eu', '2.0.0', 'IDLE', ?,"
                    " 1000, 30000, -1, 1, 0, 0, '')", (d, outcome))
    for t, idle in samples:
        con.execute("INSERT INTO fleet_samples VALUES(1, ?, 'running', 0, ?)",
                    (t, json.dumps({"states": {"IDLE": idle}, "down": 0})))
    con.commit()
    con.close()


def test_the_merged_verdict_is_recomputed_on_the_fleet(tmp_path):
    # each shard has one bricked device and passes bricked_max: 1; the fleet
    # has two and fails it. A shard's per-device failure (committed_within)
    # fails the fleet too. Samples: a shard that ended earlier counts as it
    # ended.
    fleet = tmp_path / "fake.yaml"
    fleet.write_text(SMALL.replace("name: shards-small", "name: fake").replace(
        "expect: {bricked_max: 0,", "expect: {bricked_max: 1,"))
    counts = {"devices": 2, "online": 2, "on_target": 1, "bricked": 1, "inconsistent": 0,
              "stuck": 0, "bad_installed": 0, "virtual_ms": 100}
    fake_shard(str(tmp_path / "a.db"), str(fleet), 0, counts,
               [("d000000", "on_target"), ("d000002", "bricked")], [(0, 2), (60000, 2)])
    fake_shard(str(tmp_path / "b.db"), str(fleet), 1, dict(counts, virtual_ms=200),
               [("d000001", "on_target"), ("d000003", "bricked")],
               [(0, 2), (60000, 1), (120000, 2)], ok=0,
               failed="committed_within: the slowest of 1 commits took 7.00 h\n")
    out = str(tmp_path / "m.db")
    p = sim("fleet-merge", out, str(tmp_path / "a.db"), str(tmp_path / "b.db"))
    assert p.returncode == 1, p.stdout + p.stderr
    m = last_run(out)
    assert m["ok"] == 0
    assert m["stats"]["verdict"] == "recomputed"
    assert m["stats"]["bricked"] == 2 and m["stats"]["devices"] == 4
    assert m["stats"]["rerun"] == f"ota-sim fleet {fleet} --seed 3"
    failed = m["stats"]["failed"]
    assert "bricked_max: 2 devices bricked, at most 1" in failed, failed
    assert "shard 1: committed_within" in failed, failed
    assert len(m["devices"]) == 4
    assert [(t, c["states"]["IDLE"]) for t, c in m["samples"]] == [(0, 4), (60000, 3),
                                                                      (120000, 4)]
    # Without the fleet file: the shards' verdicts combined.
    fleet.unlink()
    p = sim("fleet-merge", str(tmp_path / "m2.db"), str(tmp_path / "a.db"),
            str(tmp_path / "b.db"))
    assert p.returncode == 1, p.stdout + p.stderr
    m = last_run(str(tmp_path / "m2.db"))
    assert m["stats"]["verdict"] == "combined"
    assert "bricked_max" not in m["stats"]["failed"]
    assert "shard 1: committed_within" in m["stats"]["failed"]
