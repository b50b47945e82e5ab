"""Tests of reports/ota-report on a run database built by hand, and (when the
build is there) on one written by ota-sim.

    /usr/bin/python3 -m pytest -q reports/tests
"""
import html.parser
import json
import math
import os
import sqlite3
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPORTS = os.path.dirname(HERE)
SRC = os.path.dirname(REPORTS)
SCRIPT = os.path.join(REPORTS, "ota-report")
sys.path.insert(0, REPORTS)
import report  # noqa: E402

# The contract: the schema of sim/src/rundb.c, copied verbatim. If rundb.c
# changes it, change it here too (and the report if a column moved).
SCHEMA = (
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, started_ms INTEGER, finished_ms "
    "INTEGER, command TEXT, agent TEXT);"
    "CREATE TABLE IF NOT EXISTS trials(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
    " case_id TEXT, scenario TEXT, scenario_file TEXT, fault TEXT, trigger TEXT, seed INTEGER,"
    " device_id TEXT, outcome TEXT, detail TEXT, final_version TEXT, final_slot TEXT,"
    " final_report TEXT, final_state TEXT, fired INTEGER, passes INTEGER, calls INTEGER,"
    " equivalent_to TEXT, started_ms INTEGER, duration_ms INTEGER, recover_ms INTEGER,"
    " reproduce TEXT, state_lines TEXT, target TEXT, logs TEXT);"
    "CREATE TABLE IF NOT EXISTS invariants(trial_id INTEGER REFERENCES trials(id), name TEXT,"
    " ok INTEGER, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS trials_run ON trials(run_id);"
)

T0 = 1795455700000
SIM = "/b/sim/ota-sim"
INVARIANTS = ["settled", "one-active-slot", "bootable", "expected-outcome"]


def state_lines(*hops):
    out = []
    for i, (frm, to, status) in enumerate(hops):
        out.append(json.dumps({"ts": T0 + 1000 + 250 * i, "from": frm, "to": to,
                               "update": "rel-2", "version": "2.0.0", "kind": "app",
                               "slot": "b", "status": status, "resumes": 0, "reason": ""}))
    return "\n".join(out) + "\n"


GOOD = state_lines(("IDLE", "CHECKING", "in_progress"), ("CHECKING", "DOWNLOADING", "in_progress"),
                   ("DOWNLOADING", "SWITCHING", "in_progress"),
                   ("SWITCHING", "COMMITTING", "in_progress"), ("COMMITTING", "IDLE", "success"))
BAD = state_lines(("IDLE", "CHECKING", "in_progress"), ("CHECKING", "SWITCHING", "in_progress"),
                  ("SWITCHING", "ROLLING_BACK", "in_progress"),
                  ("ROLLING_BACK", "IDLE", "failure"))


def repro(scen, fault, trig, seed):
    return "%s run scenarios/%s.yaml --fault %s --trigger %s --seed %d --keep" % (
        SIM, scen, fault, trig, seed)


def add_trial(con, run_id, scen, fault, trig, outcome, seed, eq="", bad=(), detail="",
              recover=500, lines=GOOD):
    case = scen if fault == "none" and trig == "start" else "%s/%s@%s" % (scen, fault, trig)
    cur = con.execute(
        "INSERT INTO trials(run_id, case_id, scenario, scenario_file, fault, trigger, seed,"
        " device_id, outcome, detail, final_version, final_slot, final_report, final_state, fired,"
        " passes, calls, equivalent_to, started_ms, duration_ms, recover_ms, reproduce,"
        " state_lines) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, case, scen, "scenarios/%s.yaml" % scen, fault, trig, seed, "sim-%d" % seed,
         outcome, detail, "2.0.0", "b", "success", "IDLE", 1, 2, 40, eq, T0 + seed * 100,
         1500 + seed, recover, repro(scen, fault, trig, seed), lines))
    tid = cur.lastrowid
    for name in INVARIANTS:
        ok = name not in bad
        con.execute("INSERT INTO invariants VALUES(?,?,?,?)",
                    (tid, name, int(ok), "fine" if ok else "broken: %s <detail>" % name))
    return case


@pytest.fixture
def rundb(tmp_path):
    """Two runs; run 2 (the latest) has 14 trials: 2 fail, 1 error, 6 equivalent."""
    path = str(tmp_path / "runs.db")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO runs VALUES(1, ?, ?, 'ota-sim run old', '/b/agent/ota-agent')",
                (T0 - 99999, T0 - 9999))
    add_trial(con, 1, "old", "none", "start", "pass", 1)
    con.execute("INSERT INTO runs VALUES(2, ?, ?, 'ota-sim matrix -j 2', '/b/agent/ota-agent')",
                (T0, T0 + 60000))
    cases = {}
    seed = 1
    for trig in ("state:DOWNLOADING", "state:SWITCHING", "state:HEALTH_CHECK"):
        add_trial(con, 2, "crashes", "agent-crash", trig, "pass", seed, recover=300 + 100 * seed)
        seed += 1
    cases["fail_state"] = add_trial(con, 2, "powerloss", "power-cut", "state:SWITCHING", "fail",
                                    seed, bad=("one-active-slot",), lines=BAD)
    seed += 1
    add_trial(con, 2, "good", "none", "start", "pass", seed)
    seed += 1
    cases["error"] = add_trial(con, 2, "harness", "eio", "state:DOWNLOADING", "error", seed,
                               detail="server did not start")
    seed += 1
    # persistence points 1..8: 1 run, 2-3 equivalent to 1, 4 run and failed,
    # 5-6 equivalent to 4 (failed too), 7 run, 8 equivalent to 7
    rep = ""
    for n in range(1, 9):
        trig = "point:%d" % n
        if n in (1, 4, 7):
            rep = "pts/power-cut@" + trig
            failed = n == 4
            add_trial(con, 2, "pts", "power-cut", trig, "fail" if failed else "pass", seed,
                      bad=("bootable",) if failed else (), lines=BAD if failed else GOOD)
            if failed:
                cases["fail_point"] = rep
        else:
            add_trial(con, 2, "pts", "power-cut", trig, "fail" if rep.endswith(":4") else "pass",
                      seed, eq=rep, bad=("bootable",) if rep.endswith(":4") else ())
        seed += 1
    con.commit()
    con.close()
    return path, cases


def run_report(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=60)


class Parser(html.parser.HTMLParser):
    """Collects the text, the text of <code> elements, and checks nesting."""
    VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "line"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.text, self.codes, self.errors = [], [], [], []
        self.tags = set()
        self.ids, self.hrefs = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "code":
            self.codes.append("")
        for k, v in attrs:
            if k == "id":
                self.ids.append(v)
            if k == "href" and v and v.startswith("#"):
                self.hrefs.add(v[1:])
            if k in ("src", "href") and v and not v.startswith("#"):
                self.errors.append("external reference %s=%s" % (k, v))

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unbalanced </%s> in %s" % (tag, self.stack[-3:]))
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if "code" in self.stack:
            self.codes[-1] += data


def parse_html(path):
    p = Parser()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    p.close()
    return p


# --------------------------------------------------------------- statistics


def cp_upper_by_cdf(k, n, conf=0.95):
    """Independent check: bisection on the binomial CDF, P(X <= k; n, p) = 1 - conf."""
    def cdf(p):
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(mid) > 1 - conf:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_bound_zero_failures_is_rule_of_three():
    b, method = report.upper_bound(0, 100)
    assert b == pytest.approx(0.03)
    assert method == "rule of three"
    assert report.upper_bound(0, 1)[0] == 1.0
    assert report.upper_bound(0, 0)[0] is None


@pytest.mark.parametrize("k,n", [(1, 10), (3, 50), (2, 1000), (9, 10), (40, 100)])
def test_bound_clopper_pearson_matches_binomial_cdf(k, n):
    b, method = report.upper_bound(k, n)
    assert method == "Clopper-Pearson"
    assert b == pytest.approx(cp_upper_by_cdf(k, n), abs=1e-7)
    assert k / n < b < 1


def test_bound_one_in_ten_known_value():
    # 1 - (0.05)^(1/10) is the bound for 0/10; for 1/10 the one-sided 95% CP bound is 0.3942
    assert report.upper_bound(1, 10)[0] == pytest.approx(0.39416, abs=1e-4)
    assert report.upper_bound(10, 10)[0] == 1.0


def test_percentiles():
    v = list(range(1, 101))
    assert report.percentile(v, 95) == 95
    assert report.median(v) == 50.5
    assert report.median([7]) == 7


# ------------------------------------------------------------------ outputs


def test_outputs_latest_run(rundb, tmp_path):
    db, cases = rundb
    out = tmp_path / "out"
    r = run_report("--db", db, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["report.html", "summary.md", "trials.jsonl"]

    p = parse_html(out / "report.html")
    assert not p.errors, p.errors[:5]
    assert p.stack == []
    assert len(p.ids) == len(set(p.ids)) and p.hrefs <= set(p.ids)
    text = "".join(p.text)
    assert "svg" in p.tags and "script" not in p.tags and "link" not in p.tags
    assert "run 2" in text and "ota-sim matrix -j 2" in text
    for c in (cases["fail_state"], cases["fail_point"], cases["error"]):
        assert c in text
    # the reproduce commands of failed trials, copyable, and the failed invariant's detail
    assert repro("powerloss", "power-cut", "state:SWITCHING", 4) in p.codes
    assert any(c.startswith(SIM + " run scenarios/pts.yaml --fault power-cut --trigger point:4")
               for c in p.codes)
    assert "broken: one-active-slot <detail>" in text
    # state timeline relative to the first line
    assert "+0 ms" in text and "+750 ms" in text and "ROLLING_BACK" in text
    # bounds: power-cut has 2 failures in 4 executed trials (points 1, 4, 7 + the state one)
    b, _ = report.upper_bound(2, 4)
    assert report.fmt_pct(b) in text
    assert "rule of three" in text and "Clopper-Pearson" in text
    # the persistence strip: one cell per point
    with open(out / "report.html", encoding="utf-8") as f:
        raw = f.read()
    assert raw.count('title="point ') == 8
    assert "s-eqfail" in raw and "s-eq" in raw and "s-fail" in raw


def test_summary_table(rundb, tmp_path):
    db, cases = rundb
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    md = (out / "summary.md").read_text()
    assert "| fault | n | failures | errors | equivalent | 95% upper bound |" in md
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
            for l in md.splitlines() if l.startswith("| ") and "---" not in l}
    assert rows["agent-crash"][:3] == ["3", "0", "0"]
    assert rows["agent-crash"][4] == "100.0% (rule of three)"
    assert rows["power-cut"][:4] == ["4", "2", "0", "5"]
    assert "Clopper-Pearson" in rows["power-cut"][4]
    assert rows["eio"][:3] == ["0", "0", "1"]
    assert "**9 pass, 4 fail, 1 error, 0 not run**" in md  # equivalents of the failed point fail too
    assert cases["fail_state"] in md and cases["error"] in md
    assert repro("powerloss", "power-cut", "state:SWITCHING", 4) in md


def test_trials_jsonl(rundb, tmp_path):
    db, _ = rundb
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 14
    recs = [json.loads(l) for l in lines]
    assert all(r["run_id"] == 2 for r in recs)
    assert set(recs[0]) == set(report.TRIAL_COLUMNS) | set(report.OPTIONAL_COLUMNS) | {"invariants"}
    assert all(len(r["invariants"]) == len(INVARIANTS) for r in recs)
    failed = [r for r in recs if r["outcome"] == "fail" and not r["equivalent_to"]]
    assert {i["name"] for r in failed for i in r["invariants"] if not i["ok"]} == {
        "one-active-slot", "bootable"}


def test_serial_logs_of_qemu_trials(rundb, tmp_path):
    """A QEMU trial's console logs (one per power-on) reach the failure sections."""
    db, _ = rundb
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE trials SET target='qemu', logs=? WHERE run_id=2 AND outcome='fail'",
                    ("/w/case-3/qemu/console-1.log\n/w/case-3/qemu/console-2.log\n",))
    con.close()
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    md = (out / "summary.md").read_text()
    assert "serial log: `/w/case-3/qemu/console-2.log`" in md
    assert "/w/case-3/qemu/console-1.log" in (out / "report.html").read_text()
    recs = [json.loads(l) for l in (out / "trials.jsonl").read_text().splitlines()]
    assert {r["target"] for r in recs if r["outcome"] == "fail"} == {"qemu"}


def test_explicit_run_and_errors(rundb, tmp_path):
    db, _ = rundb
    out = tmp_path / "old"
    r = run_report("--db", db, "--run", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert len((out / "trials.jsonl").read_text().splitlines()) == 1
    assert "No failed trials" in (out / "report.html").read_text()

    r = run_report("--db", db, "--run", "7", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no run 7" in r.stderr
    assert not (tmp_path / "x").exists()
    r = run_report("--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run_report("--db", db)
    assert r.returncode == 2 and "--out" in r.stderr
    empty = tmp_path / "empty.db"
    sqlite3.connect(str(empty)).executescript(SCHEMA)
    r = run_report("--db", str(empty), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no runs" in r.stderr
    notdb = tmp_path / "not.db"
    notdb.write_text("hello, this is not sqlite at all " * 40)
    r = run_report("--db", str(notdb), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not a run database" in r.stderr


def test_rewrite_leaves_no_temp_files(rundb, tmp_path):
    db, _ = rundb
    out = tmp_path / "out"
    for _ in range(2):
        assert run_report("--db", db, "--out", str(out)).returncode == 0
    assert sorted(os.listdir(out)) == ["report.html", "summary.md", "trials.jsonl"]


# ------------------------------------------------------------ a real run


BUILD = os.environ.get("OTA_BUILD_DIR", "")
OTA_SIM = os.path.join(BUILD, "sim", "ota-sim") if BUILD else ""


@pytest.mark.skipif(not OTA_SIM or not os.access(OTA_SIM, os.X_OK),
                    reason="set OTA_BUILD_DIR to a build with sim/ota-sim")
def test_real_run(tmp_path):
    db = str(tmp_path / "runs.db")
    files = ["scenarios/app-update-good.yaml", "scenarios/bad-signature.yaml",
             "scenarios/corrupt-bootenv.yaml"]
    sim = subprocess.run([OTA_SIM, "run", *files, "-q", "-j", "2", "--db", db,
                          "--work", str(tmp_path / "work")],
                         cwd=SRC, capture_output=True, text=True, timeout=55)
    assert sim.returncode in (0, 1), sim.stderr
    out = tmp_path / "out"
    r = run_report("--db", db, "--out", str(out))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(l) for l in (out / "trials.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(r["invariants"] for r in recs)
    p = parse_html(out / "report.html")
    assert not p.errors and p.stack == []
    text = "".join(p.text)
    for rec in recs:
        assert rec["scenario"] in text
    assert "| fault | n |" in (out / "summary.md").read_text()


def test_summary_caps_the_failed_list(rundb):
    db, cases = rundb
    run, trials = report.load(db)
    md = report.render_summary(run, trials, max_failed=2)
    assert "### Failed cases (5)" in md
    assert "and 3 more" in md
    assert cases["fail_state"] in md  # executed failures come first


def test_not_run_is_neither_a_failure_nor_a_harness_error(tmp_path):
    """A case the agent cannot run (built without named fault points) is
    counted as not run: not in the failure rate, not as an error."""
    path = str(tmp_path / "runs.db")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO runs VALUES(1, ?, ?, 'ota-sim run x', '/b/agent/ota-agent')",
                (T0, T0 + 1000))
    add_trial(con, 1, "pts", "power-cut", "state:SWITCHING", "pass", 1)
    add_trial(con, 1, "fp", "power-cut", "fault-point:env.save", "not-run", 2,
              detail="the agent was built without named fault points")
    con.commit()
    con.close()
    out = tmp_path / "out"
    r = run_report("--db", path, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 pass, 0 fail, 0 error, 1 not run" in r.stdout
    md = (out / "summary.md").read_text()
    assert "**1 pass, 0 fail, 0 error, 1 not run**" in md
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
            for l in md.splitlines() if l.startswith("| ") and "---" not in l}
    assert rows["power-cut"][:3] == ["1", "0", "0"]  # n, failures, errors
    assert 'badge not-run' in (out / "report.html").read_text()
