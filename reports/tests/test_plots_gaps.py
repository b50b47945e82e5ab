"""Tests of the report's plots (reports/plots.py, the fleet's version curves)
and of its gaps section (reports/gaps.py) against the run database: hand-made
ones, and (when the build is there) ones written by ota-sim.

    /usr/bin/python3 -m pytest -q reports/tests
"""
import html
import os
import re
import sqlite3
import subprocess

import pytest

from test_report import (OTA_SIM, SCHEMA, SRC, T0, add_trial, report,  # noqa: F401
                         run_report, rundb, svg_of)


def db_row(trigger):
    """The matrix row of a trigger, as the database spells it."""
    if trigger.startswith("state:"):
        return trigger[6:].split("#")[0]
    if trigger.startswith("point:"):
        return "persistence points"
    return trigger


def check_plots(db, run_id, raw):
    """The two trial plots of page raw against the trials table: a dot per
    executed trial with a recovery time in its state's row, a bar per
    executed trial with its start, duration and outcome."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT case_id, trigger, outcome, started_ms, duration_ms, recover_ms"
                       " FROM trials WHERE run_id=? AND coalesce(equivalent_to, '')=''",
                       (run_id,)).fetchall()
    con.close()
    want = {}
    for case, trig, _, _, _, rec in rows:
        if rec is not None and rec >= 0:
            want.setdefault(db_row(trig), []).append((case, rec))
    svg = svg_of(raw, "recovery time per state")
    got = {}
    for state, body in re.findall(r'<g class="rec-row" data-state="([^"]+)"[^>]*>(.*?)</g>', svg):
        got[html.unescape(state)] = [(html.unescape(c), int(ms)) for ms, c in re.findall(
            r'data-ms="(\d+)" data-case="([^"]+)"', body)]
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}
    # rows in the matrix's order: agent states first, in state-machine order
    order = [report.AGENT_STATES.index(s) for s in got if s in report.AGENT_STATES]
    assert order == sorted(order)
    for state, body in re.findall(r'data-state="([^"]+)" data-n="(\d+)"', svg):
        assert int(body) == len(want[html.unescape(state)])
    bars = re.findall(r'<rect class="trial"[^>]*data-case="([^"]+)" data-outcome="([^"]+)" '
                      r'data-start-ms="(\d+)" data-duration-ms="(\d+)"',
                      svg_of(raw, "trials over time"))
    assert sorted((html.unescape(c), o, int(s), int(d)) for c, o, s, d in bars) == sorted(
        (c, o, s, max(0, d or 0)) for c, _, o, s, d, _ in rows if s is not None)


def test_plots_match_the_database(rundb, tmp_path):
    db, _ = rundb
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    raw = (out / "report.html").read_text()
    check_plots(db, 2, raw)
    # the hand-made run: 2 + 1 + 1 dots in the agent states' rows (a crash at
    # DOWNLOADING, an eio at DOWNLOADING, ...), the equivalent points none
    svg = svg_of(raw, "recovery time per state")
    assert 'data-state="DOWNLOADING" data-n="2"' in svg
    assert 'data-state="persistence points" data-n="3"' in svg


def test_lanes_hold_overlapping_trials_apart():
    bars = [(0, 10), (5, 15), (10, 20), (12, 13)]
    assert report.plots.lanes(bars) == [0, 1, 0, 2]


def gaps_db(tmp_path, gaps_rows, with_table=True, target="native"):
    path = str(tmp_path / "gaps.db")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA if with_table else SCHEMA.replace(
        "CREATE TABLE IF NOT EXISTS run_gaps(run_id INTEGER REFERENCES runs(id), kind TEXT,"
        " subject TEXT, detail TEXT);", ""))
    con.execute("INSERT INTO runs VALUES(1, ?, ?, 'ota-sim run x', '/b/agent/ota-agent')",
                (T0, T0 + 1000))
    add_trial(con, 1, "cut", "power-cut", "state:SWITCHING", "pass", 1)
    add_trial(con, 1, "cut", "power-cut", "state:INSTALLING", "pass", 2)
    add_trial(con, 1, "fp", "power-cut", "fault-point:after-rename", "not-run", 3,
              detail="not run: the agent was built without named fault points")
    con.execute("UPDATE trials SET target=?", (target,))
    con.execute("UPDATE trials SET crash_model='reorder' WHERE seed=2")
    for row in gaps_rows:
        con.execute("INSERT INTO run_gaps VALUES(1, ?, ?, ?)", row)
    con.commit()
    con.close()
    return path


def test_gaps_state_crash_model_skips_and_tier(tmp_path):
    db = gaps_db(tmp_path, [
        ("not-modelled", "native", "No kernel <here>."),
        ("skipped", "disk-full/disk-full@state:INSTALLING", "fault disk-full needs the native tier"),
    ])
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    raw = (out / "report.html").read_text()
    g = raw[raw.index('<div class="gaps">'):raw.index("</div>", raw.index('<div class="gaps">'))]
    # both crash models used, with their counts; the third one named as not exercised
    assert 'data-crash-model="minimal"><b>minimal</b> (power cuts made: 1)' in g
    assert 'data-crash-model="reorder"><b>reorder</b> (power cuts made: 1)' in g
    assert "Not exercised in this run: <b>torn</b>" in g
    assert "<code>disk-full/disk-full@state:INSTALLING</code></td><td>fault disk-full needs" in g
    assert "<li>No kernel &lt;here&gt;.</li>" in g and "native tier does not model" in g
    assert "1: not run: the agent was built without named fault points" in g
    md = (out / "summary.md").read_text()
    assert "- skipped on this tier: 1 case(s)" in md
    assert "- the native tier does not model: No kernel <here>." in md
    assert "- crash models not exercised: torn" in md


def test_gaps_of_a_qemu_run_and_of_an_old_database(tmp_path):
    db = gaps_db(tmp_path, [], target="qemu")
    run, trials = report.load(db)
    page = report.render_html(run, trials)
    # a QEMU power cut is QEMU's, whatever crash_model says; the tier said nothing
    assert 'data-crash-model="qemu"><b>QEMU power cut</b> (power cuts made: 2)' in page
    assert "Not exercised in this run" not in page
    assert "<b>Not recorded:</b> what the qemu tier does not model." in page
    old = tmp_path / "old"
    old.mkdir()
    db = gaps_db(old, [], with_table=False)
    run, trials = report.load(db)
    page = report.render_html(run, trials)
    assert "this run database was written before ota-sim recorded skipped cases and what its " \
        "tiers do not model" in page
    assert "Skipped on this tier" not in page


def test_real_run_records_its_tier_gaps(tmp_path):
    if not OTA_SIM or not os.access(OTA_SIM, os.X_OK):
        pytest.skip("set OTA_BUILD_DIR to a build with sim/ota-sim")
    db = str(tmp_path / "runs.db")
    sim = subprocess.run([OTA_SIM, "run", "scenarios/power-loss-switching.yaml",
                          "scenarios/app-update-good.yaml", "-q", "--db", db,
                          "--work", str(tmp_path / "work")],
                         cwd=SRC, capture_output=True, text=True, timeout=55)
    assert sim.returncode == 0, sim.stderr
    con = sqlite3.connect(db)
    rows = con.execute("SELECT kind, subject FROM run_gaps WHERE run_id=1").fetchall()
    con.close()
    assert rows and all(r == ("not-modelled", "native") for r in rows)
    # the declarations in sim/src/qtrial.c, as ota-sim wrote them
    qtrial = open(os.path.join(SRC, "sim", "src", "qtrial.c")).read()
    native = qtrial[qtrial.index("native_gaps[]"):qtrial.index("qemu_gaps[]")]
    assert len(rows) == native.count("\",\n") + native.count("\",\r\n")
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    raw = (out / "report.html").read_text()
    assert 'data-crash-model="minimal"><b>minimal</b> (power cuts made: 1)' in raw
    assert raw.count("<li>", raw.index('data-tier="native"')) >= len(rows)
    check_plots(db, 1, raw)



def test_real_qemu_run_records_the_cases_it_skips(tmp_path):
    """ota-sim on the QEMU tier skips what it cannot run (disk-full, eio)
    before it boots anything: the run database gets a skipped row per case
    with the reason, and qtrial.c's qemu list; the report states both. (The
    image is not opened when every case is skipped: an empty directory and
    a stand-in video-app pass the tier's setup.)"""
    if not OTA_SIM or not os.access(OTA_SIM, os.X_OK):
        pytest.skip("set OTA_BUILD_DIR to a build with sim/ota-sim")
    (tmp_path / "img").mkdir()
    (tmp_path / "app").mkdir()
    app = tmp_path / "app" / "video-app"
    app.write_text("#!/bin/sh\nexit 0\n")
    app.chmod(0o755)
    db = str(tmp_path / "runs.db")
    sim = subprocess.run([OTA_SIM, "run", "scenarios/disk-full-during-install.yaml",
                          "scenarios/eio-during-download.yaml", "--target", "qemu", "--image",
                          str(tmp_path / "img"), "-q", "--db", db, "--work", str(tmp_path / "w")],
                         cwd=SRC, capture_output=True, text=True, timeout=55,
                         env=dict(os.environ, OTASIM_APP_DIR_AARCH64=str(tmp_path / "app")))
    assert sim.returncode == 0, sim.stderr
    con = sqlite3.connect(db)
    rows = con.execute("SELECT kind, subject, detail FROM run_gaps WHERE run_id=1").fetchall()
    con.close()
    skipped = [(s, d) for k, s, d in rows if k == "skipped"]
    assert skipped == [("disk-full-during-install/disk-full@state:INSTALLING",
                        "fault disk-full needs the native tier"),
                       ("eio-during-download/eio@state:DOWNLOADING",
                        "fault eio needs the native tier")]
    assert {s for k, s, _ in rows if k == "not-modelled"} == {"qemu"}
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    raw = (out / "report.html").read_text()
    assert "Skipped on this tier</b> (2 cases it cannot run" in raw
    assert "<code>eio-during-download/eio@state:DOWNLOADING</code></td><td>fault eio needs" in raw
    assert 'data-tier="qemu"' in raw and "the native tier does not model" not in raw
    assert "Not recorded" not in raw
