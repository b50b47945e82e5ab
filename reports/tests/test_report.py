"""Tests of reports/ota-report on a run database built by hand, and (when the
build is there) on one written by ota-sim.

    /usr/bin/python3 -m pytest -q reports/tests
"""
import html
import html.parser
import json
import math
import os
import re
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
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, started_ms INTEGER, finished_ms "
    "INTEGER, command TEXT, agent TEXT);"
    "CREATE TABLE IF NOT EXISTS trials(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
    " case_id TEXT, scenario TEXT, scenario_file TEXT, fault TEXT, trigger TEXT, seed INTEGER,"
    " device_id TEXT, outcome TEXT, detail TEXT, final_version TEXT, final_slot TEXT,"
    " final_report TEXT, final_state TEXT, fired INTEGER, passes INTEGER, calls INTEGER,"
    " equivalent_to TEXT, started_ms INTEGER, duration_ms INTEGER, recover_ms INTEGER,"
    " reproduce TEXT, state_lines TEXT, target TEXT, logs TEXT, crash_model TEXT, blocks TEXT);"
    "CREATE TABLE IF NOT EXISTS invariants(trial_id INTEGER REFERENCES trials(id), name TEXT,"
    " ok INTEGER, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS trials_run ON trials(run_id);"
    "CREATE TABLE IF NOT EXISTS run_gaps(run_id INTEGER REFERENCES runs(id), kind TEXT,"
    " subject TEXT, detail TEXT);"
    "CREATE TABLE IF NOT EXISTS fleet_runs(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES"
    " runs(id), name TEXT, file TEXT, seed INTEGER, ok INTEGER, rollout_state TEXT,"
    " stats TEXT, failed TEXT, rerun TEXT);"
    "CREATE TABLE IF NOT EXISTS fleet_samples(fleet_id INTEGER REFERENCES fleet_runs(id),"
    " t_ms INTEGER, rollout TEXT, stage INTEGER, counts TEXT);"
    "CREATE TABLE IF NOT EXISTS fleet_devices(fleet_id INTEGER REFERENCES fleet_runs(id),"
    " device TEXT, type TEXT, grp TEXT, version TEXT, state TEXT, outcome TEXT, bytes INTEGER,"
    " downtime_ms INTEGER, recovery_ms INTEGER, updates INTEGER, rollbacks INTEGER,"
    " cuts INTEGER, checks TEXT);"
    "CREATE INDEX IF NOT EXISTS fleet_devices_run ON fleet_devices(fleet_id);"
)
# The same without the fleet tables: a database written before fleet runs.
SCHEMA_NO_FLEET = SCHEMA[:SCHEMA.index("CREATE TABLE IF NOT EXISTS fleet_runs")]

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


def table_rows(md):
    """The rows of summary.md's tables: first cell -> the other cells."""
    return {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
            for l in md.splitlines() if l.startswith("| ") and "---" not in l}


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
    assert sorted(os.listdir(out)) == ["report.html", "reproduce.txt", "summary.md", "trials.jsonl"]

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
    rows = table_rows(md)
    assert rows["agent-crash"][:3] == ["3", "0", "0"]
    assert rows["agent-crash"][4] == "100.0% (rule of three)"
    assert rows["power-cut"][:4] == ["4", "2", "0", "5"]
    assert "Clopper-Pearson" in rows["power-cut"][4]
    assert rows["eio"][:3] == ["0", "0", "1"]
    assert "**9 pass, 4 fail, 1 error, 0 not run**" in md  # equivalents of the failed point fail too
    assert cases["fail_state"] in md and cases["error"] in md
    assert repro("powerloss", "power-cut", "state:SWITCHING", 4) in md


def test_reproduce_txt(rundb, tmp_path):
    """reproduce.txt: every failed trial's command (fail and error, executed ones first),
    each after the # line that names it; the passes have none."""
    db, cases = rundb
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    lines = (out / "reproduce.txt").read_text().splitlines()
    assert lines[0].startswith("# ota-sim run 2: the reproduce commands of its 5 failed trials")
    named = [l[2:].split(": ")[0] for l in lines[1::2]]
    cmds = lines[2::2]
    assert len(named) == len(cmds) == 5 and all(c and not c.startswith("#") for c in cmds)
    assert cases["fail_state"] in named and cases["error"] in named
    assert repro("powerloss", "power-cut", "state:SWITCHING", 4) in cmds
    assert all(" run " in c and c.endswith("--keep") for c in cmds)
    equiv = [i for i, l in enumerate(lines[1::2]) if "(equivalent to " in l]
    assert equiv and min(equiv) > max(i for i, l in enumerate(lines[1::2])
                                       if "(equivalent to " not in l)


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
    assert sorted(os.listdir(out)) == ["report.html", "reproduce.txt", "summary.md", "trials.jsonl"]


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
    rows = table_rows(md)
    assert rows["power-cut"][:3] == ["1", "0", "0"]  # n, failures, errors
    assert 'badge not-run' in (out / "report.html").read_text()


def test_environment_is_neither_a_pass_nor_the_agents_failure(tmp_path):
    """A QEMU trial whose guest lost its network on the trial and on its retry
    (verdict environment, sim/src/qenv.c): shown as such, apart from the
    failure rate and the harness errors, never counted as a pass; its reproduce
    command is listed (the trial wants running again)."""
    path = str(tmp_path / "runs.db")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO runs VALUES(1, ?, ?, 'ota-sim run x --target qemu', '/b/ota-agent')",
                (T0, T0 + 1000))
    add_trial(con, 1, "app", "power-cut", "state:SWITCHING", "pass", 1)
    why = ("twice: attempt 1: environment: the guest's network never came up (power-on 1: "
           "ota-net: no usb0 or eth0 after 20 s)")
    env = add_trial(con, 1, "app", "power-cut", "state:INSTALLING", "environment", 2,
                    bad=("expected-outcome",), detail=why)
    con.commit()
    con.close()
    out = tmp_path / "out"
    r = run_report("--db", path, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 pass, 0 fail, 0 error, 0 not run, 1 environment" in r.stdout
    md = (out / "summary.md").read_text()
    assert "## ota-sim run 1: ENVIRONMENT" in md
    assert "**1 pass, 0 fail, 0 error, 0 not run, 1 environment**" in md
    rows = table_rows(md)
    assert rows["power-cut"][:3] == ["1", "0", "0"]  # n, failures, errors
    # the case is listed with its verdict and the reason, not the checks it could not judge
    assert ("**%s** environment" % env) in md and "ota-net: no usb0 or eth0" in md
    page = (out / "report.html").read_text()
    assert '<span class="badge environment">1 environment</span>' in page
    assert '<span class="badge environment">environment</span>' in page
    assert "#%s" % env in (out / "reproduce.txt").read_text().replace("# ", "#")


def test_schema_copy_is_rundb_c():
    """SCHEMA above is the SQL of sim/src/rundb.c (its string literals)."""
    import re
    src = open(os.path.join(SRC, "sim", "src", "rundb.c"), encoding="utf-8").read()
    body = src[src.index("static const char schema[] ="):]
    body = body[:body.index('";') + 2]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    assert "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body)) == SCHEMA


def test_old_database_without_fleet_tables(tmp_path):
    path = str(tmp_path / "runs.db")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA_NO_FLEET)
    con.execute("INSERT INTO runs VALUES(1, ?, ?, 'ota-sim run x', '/b/agent/ota-agent')",
                (T0, T0 + 1000))
    add_trial(con, 1, "good", "none", "start", "pass", 1)
    con.commit()
    con.close()
    out = tmp_path / "out"
    r = run_report("--db", path, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["report.html", "reproduce.txt", "summary.md", "trials.jsonl"]
    assert "Fleet" not in (out / "report.html").read_text()


# ------------------------------------------------------------ fleet runs

H = 3600000
FLEET_STATS = {
    "name": "canary-test", "devices": 10, "online": 9, "rollout_state": "paused",
    "rollout_reason": "stage 1: 2 of 4 devices failed (more than 10%): paused", "stage": 1,
    "on_target": 4, "bad_installed": 3, "rolled_back": 2, "bricked": 1, "inconsistent": 0,
    "stuck": 0, "never_checked_in": 1, "requests": 4321, "passes": 77, "steps": 999,
    "bytes_down": 7 << 20, "power_cuts": 2, "agent_crashes": 0, "cut_chances": 200,
    "srv_faults_applied": 5,
    "faults": "server rule 0 (status 503): 5 of 50 matches, rate 10% <ok>\npower cuts: 2 of 200",
    "downtime_mean_ms": 42000.0, "downtime_p95_ms": 61000.0, "bytes_mean": 734003.2,
    "bytes_max": 2097152.0, "recovered": 2, "recovery_mean_ms": 30000.0,
    "recovery_p95_ms": 45000.0, "virtual_ms": 4 * H, "rollout_ms": 2 * H, "wall_s": 1.25,
    "cpu_user_s": 0.5, "cpu_sys_s": 0.25, "srv_cpu_s": 0.75, "peak_rss_kib": 20480,
    "srv_peak_rss_kib": 10240, "bytes_per_idle_device": 3000,
}
FLEET_RERUN = "ota-sim fleet scenarios/fleet/canary-test.yaml --seed 9 --devices 10"
# (t_ms, rollout, stage, states, versions): start at 1 h, stage 1 at 2 h, paused at 3 h
FLEET_SAMPLES = [
    (0, "", 0, {"IDLE": 10}, {"1.0.0": 10}),
    (1 * H, "running", 0, {"IDLE": 8, "DOWNLOADING": 2}, {"1.0.0": 10}),
    (2 * H, "running", 1, {"IDLE": 6, "HEALTH_CHECK": 2, "ROLLING_BACK": 2},
     {"1.0.0": 6, "2.0.0": 4}),
    (3 * H, "paused", 1, {"IDLE": 10}, {"1.0.0": 5, "2.0.0": 4, "other": 1}),
    (4 * H, "paused", 1, {"IDLE": 10}, {"1.0.0": 5, "2.0.0": 4, "other": 1}),
]
# counts.rollout of the samples from the start (the server's metrics: by_state
# and stages; 9 of the 10 devices targeted, in a canary of 3 and a stage of 6)
FLEET_ROLLOUT = {
    1 * H: {"pending": 7, "in_progress": 2},
    2 * H: {"pending": 4, "in_progress": 1, "success": 2, "failure": 2},
    3 * H: {"pending": 3, "success": 4, "failure": 1, "rolled_back": 1},
    4 * H: {"pending": 3, "success": 4, "failure": 1, "rolled_back": 1},
}
# their bands bottom up: settled, in flight, failed, not offered yet
FLEET_ROLLOUT_BANDS = ["success", "in_progress", "failure", "rolled_back", "pending"]


def rollout_counts(by_state, stages=(3, 6)):
    every = dict.fromkeys(["pending", "offered", "in_progress", "success", "failure",
                           "timed_out", "skipped", "rollback_ordered", "rolled_back",
                           "rollback_failed", "standby", "activated"], 0)
    every.update(by_state)
    return {"by_state": every, "stages": [{"devices": n} for n in stages]}


# (type, group, outcome) of the 10 devices
FLEET_DEVICES = ([("rpi4", "eu", "on_target")] * 3 + [("cm4", "us", "on_target")] +
                 [("cm4", "us", "rolled_back")] * 2 + [("cm4", "eu", "bricked")] +
                 [("rpi4", "us", "other_version")] * 2 + [("rpi4", "eu", "offline")])


def add_fleet(con, run_id, seed, ok, state, failed="", stats=None, samples=(), devices=(),
              name="canary-test", rollout=None):
    con.execute("INSERT INTO runs VALUES(?, ?, ?, ?, 'otacore (in-process fleet)')",
                (run_id, T0 + run_id, T0 + run_id + 5,
                 "ota-sim fleet scenarios/fleet/%s.yaml --seed %d" % (name, seed)))
    st = dict(stats or FLEET_STATS, seed=seed, rollout_state=state, name=name)
    cur = con.execute(
        "INSERT INTO fleet_runs(run_id, name, file, seed, ok, rollout_state, stats, failed, rerun)"
        " VALUES(?,?,?,?,?,?,?,?,?)",
        (run_id, name, "scenarios/fleet/%s.yaml" % name, seed, ok, state, json.dumps(st), failed,
         "ota-sim fleet scenarios/fleet/%s.yaml --seed %d --devices 10" % (name, seed)))
    fid = cur.lastrowid
    for t, ro, stage, states, versions in samples:
        counts = {"states": states, "versions": versions, "down": 0, "in_pass": 0}
        if rollout and t in rollout:
            counts["rollout"] = rollout[t]
        con.execute("INSERT INTO fleet_samples VALUES(?,?,?,?,?)",
                    (fid, t, ro, stage, json.dumps(counts)))
    for i, (typ, grp, outcome) in enumerate(devices):
        con.execute("INSERT INTO fleet_devices VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (fid, "d%06d" % i, typ, grp, "1.0.0", "IDLE", outcome, 1 << 20, 60000, -1,
                     1, 0, 0, "bootable" if outcome == "bricked" else ""))
    return fid


@pytest.fixture
def fleetdb(tmp_path):
    """Runs 1-3: fleet runs of canary-test with seeds 7, 8, 9 (completed, paused,
    paused); run 3 has the samples and the devices (and failed two
    expectations); run 4 is another fleet file with seed 9."""
    path = str(tmp_path / "runs.db")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    add_fleet(con, 1, 7, 1, "completed")
    add_fleet(con, 2, 8, 1, "paused")
    add_fleet(con, 3, 9, 0, "paused",
              failed="bricked_max: 1 devices bricked, at most 0 allowed\n"
                     "bad_installed_max_percent: 30.00% of 10 ran a bad release, at most 2% <x>",
              samples=FLEET_SAMPLES, devices=FLEET_DEVICES,
              rollout={t: rollout_counts(v) for t, v in FLEET_ROLLOUT.items()})
    # another fleet (other name): not one of canary-test's seeds
    add_fleet(con, 4, 9, 1, "completed", name="other-fleet")
    con.commit()
    con.close()
    return path


def svg_of(raw, label):
    i = raw.index('aria-label="%s"' % label)
    return raw[i:raw.index("</svg>", i)]


def chart_bands(svg, h=240):
    """({key: [(x, devices)]}, top): a stacked chart's bands read back from
    its polygons (upper edge minus lower edge, through the y scale that its
    axis label gives), one value per sample drawn."""
    import re
    f = report.fleetreport
    top = int(re.search(r'text-anchor="end">(\d+)</text>', svg).group(1))
    ph = h - f.MT - f.MB
    out = {}
    for key, pts in re.findall(r'class="band" data-key="([^"]+)" points="([^"]+)"', svg):
        pts = [tuple(float(v) for v in p.split(",")) for p in pts.split()]
        n = len(pts) // 2
        out[key] = [(up[0], (lo[1] - up[1]) * top / ph)
                    for up, lo in zip(pts[:n], pts[n:][::-1])]
    return out, top


def band_at(band, x):
    """The value of a band at chart x (None when it has no point there)."""
    for bx, v in band:
        if abs(bx - x) < 0.06:
            return v
    return None


def chart_x(t, t0=0, t1=4 * H):
    f = report.fleetreport
    return f.ML + (t - t0) * (900 - f.ML - f.MR) / (t1 - t0)


def test_fleet_only_run(fleetdb, tmp_path):
    import re
    out = tmp_path / "out"
    r = run_report("--db", fleetdb, "--run", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "fleet canary-test seed 9: FAILED, rollout paused" in r.stdout
    assert sorted(os.listdir(out)) == ["fleets.jsonl", "report.html", "reproduce.txt",
                                       "summary.md", "trials.jsonl"]
    assert (out / "trials.jsonl").read_text() == ""
    p = parse_html(out / "report.html")
    assert not p.errors, p.errors[:5]
    assert p.stack == []
    assert "script" not in p.tags
    text = "".join(p.text)
    # no trial sections for a run without trials
    assert "State × fault matrix" not in text and "Persistence points" not in text
    # header: name, seed, verdict, end state and reason, failed expectations, rerun
    assert "canary-test" in text and "seed 9" in text and "FAILED" in text
    assert FLEET_STATS["rollout_reason"] in text
    assert "bricked_max: 1 devices bricked, at most 0 allowed" in text
    assert "at most 2% <x>" in text  # escaped, shown as text
    assert FLEET_RERUN in p.codes
    raw = (out / "report.html").read_text()

    # one band per state present, bottom up in state-machine order
    states = svg_of(raw, "devices per agent state over virtual time")
    assert re.findall(r'class="band" data-key="([^"]+)"', states) == [
        "IDLE", "DOWNLOADING", "HEALTH_CHECK", "ROLLING_BACK"]
    versions = svg_of(raw, "devices per version over virtual time")
    assert re.findall(r'class="band" data-key="([^"]+)"', versions) == ["1.0.0", "2.0.0", "other"]
    # the server's view: one band per rollout state with a device, in band
    # order, drawn from the rollout's start; at each sample the bands are the
    # sample's by_state and add up to the 9 devices the rollout targets
    rollout = svg_of(raw, "devices by rollout state over virtual time")
    bands, top = chart_bands(rollout)
    assert list(bands) == FLEET_ROLLOUT_BANDS
    assert top == 9
    for t, by in FLEET_ROLLOUT.items():
        for k, band in bands.items():
            assert band_at(band, chart_x(t)) == pytest.approx(by.get(k, 0), abs=0.1), (t, k)
        assert sum(band_at(b, chart_x(t)) for b in bands.values()) == pytest.approx(9, abs=0.1)
    assert all(band_at(b, chart_x(0)) is None for b in bands.values())  # not started yet
    assert ">pending 3<" in rollout and ">rolled_back 1<" in rollout  # legend: the last sample
    assert "the server's view" in text and "sampled between the runner's passes" in text
    # markers where the samples say: start at 1 h, stage 1 at 2 h, paused at 3 h
    for svg in (rollout, states, versions):
        ms = re.findall(r'class="marker" data-kind="(\w+)" data-t-ms="(\d+)" x1="([\d.]+)"', svg)
        assert [(k, int(t)) for k, t, _ in ms] == [("start", H), ("stage", 2 * H),
                                                   ("end", 3 * H)]
        for _, t, x in ms:
            assert float(x) == pytest.approx(chart_x(int(t)), abs=0.06)
        assert ">stage 1<" in svg and ">paused<" in svg
    # the top of the stack at 2 h is all 10 devices: the ROLLING_BACK band's upper edge
    band = re.search(r'data-key="ROLLING_BACK" points="([^"]+)"', states).group(1).split()
    assert band[2] == "%.1f,%.1f" % (chart_x(2 * H), report.fleetreport.MT)

    # spread of the bad release
    assert "ran the bad release" in text and "30.00%" in text

    # per-group outcomes: each "by" adds up to the device count, counts per outcome
    rows = re.findall(r'<tr data-by="(\w+)"><td>\w+</td><td>([^<]+)</td>(.*?)</tr>', raw)
    cols = report.fleetreport.OUTCOMES
    for by in ("type", "group"):
        tab = {v: [int(x) for x in re.findall(r">(\d+)</td>", cells)]
               for b, v, cells in rows if b == by}
        assert sum(r[-1] for r in tab.values()) == len(FLEET_DEVICES)
        for r in tab.values():
            assert sum(r[:-1]) == r[-1]
        for i, o in enumerate(cols):
            assert sum(r[i] for r in tab.values()) == sum(1 for d in FLEET_DEVICES if d[2] == o)
    types = {v: [int(x) for x in re.findall(r">(\d+)</td>", c)] for b, v, c in rows if b == "type"}
    assert types["cm4"][cols.index("bricked")] == 1 and types["cm4"][-1] == 4

    # figures and faults
    assert "mean 42.0 s, p95 61.0 s" in text
    assert "server rule 0 (status 503): 5 of 50 matches, rate 10% <ok>" in text
    assert "4321 requests" in text and "peak RSS runner 20.00 MiB" in text

    # seeds: 7, 8, 9 of canary-test (not other-fleet's 9), 2 of 3 stopped
    seeds = raw[raw.index('<table class="seeds">'):]
    seeds = seeds[:seeds.index("</table>")]
    assert seeds.count("<tr") == 4
    lo, hi = report.fleetreport.wilson(2, 3)
    assert "2 of 3" in text and "66.67%" in text
    assert "20.77%" in text and "93.85%" in text

    md = (out / "summary.md").read_text()
    assert "## ota-sim run 3: FAILED" in md
    assert "### Fleet canary-test (seed 9): FAILED" in md
    assert FLEET_RERUN in md
    assert "| type | cm4 | 1 | 2 | 0 | 1 | 0 | 0 | 0 | 4 |" in md
    assert "seeds 7, 8, 9: stopped in 2 of 3 runs" in md
    assert "- the server's view at the end: success 4, failure 1, rolled_back 1, pending 3" in md

    recs = [json.loads(l) for l in (out / "fleets.jsonl").read_text().splitlines()]
    assert len(recs) == 1
    rec = recs[0]
    assert rec["ok"] is False and rec["rerun"] == FLEET_RERUN and rec["seed"] == 9
    assert rec["stats"]["bad_installed"] == 3
    assert rec["rollout_targeted"] == 9 and rec["rollout_by_state"]["pending"] == 3
    assert sum(rec["rollout_by_state"].values()) == 9
    assert [(m["kind"], m["t_ms"]) for m in rec["markers"]] == [
        ("start", H), ("stage", 2 * H), ("end", 3 * H)]
    assert sum(r["total"] for r in rec["outcomes_by_group"].values()) == 10
    assert rec["seeds"]["stopped"] == 2 and rec["seeds"]["finished"] == 3
    assert rec["seeds"]["wilson95"] == pytest.approx([lo, hi])


def test_fleet_and_trials_in_one_run(fleetdb, tmp_path):
    """A run with trials keeps its trial report and gets the fleet section after it."""
    con = sqlite3.connect(fleetdb)
    with con:
        add_trial(con, 3, "good", "none", "start", "pass", 1)
    con.close()
    out = tmp_path / "out"
    r = run_report("--db", fleetdb, "--run", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    p = parse_html(out / "report.html")
    assert not p.errors and p.stack == []
    text = "".join(p.text)
    assert text.index("State × fault matrix") < text.index("Fleet runs")
    assert FLEET_RERUN in p.codes
    md = (out / "summary.md").read_text()
    assert "| fault | n |" in md and "### Fleet canary-test (seed 9)" in md


def test_fleet_run_without_samples_or_devices(fleetdb, tmp_path):
    """Seed 7's row has no samples and no devices (an interrupted run has no
    stats either): the page still renders."""
    con = sqlite3.connect(fleetdb)
    with con:
        con.execute("UPDATE fleet_runs SET stats=NULL, ok=NULL WHERE run_id=1")
    con.close()
    out = tmp_path / "out"
    r = run_report("--db", fleetdb, "--run", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    p = parse_html(out / "report.html")
    assert not p.errors and p.stack == []
    text = "".join(p.text)
    assert "incomplete" in text and "No samples recorded." in text


def test_agent_state_chart_only_when_devices_are_busy(fleetdb, tmp_path):
    """Seed 8's run: 1 of 40 devices (2.5%) is ever in a state other than
    IDLE at a sample: no agent-state chart, a line that says so; at 2 of 40
    (5%) the chart is back."""
    def page(busy):
        con = sqlite3.connect(fleetdb)
        with con:
            fid = con.execute("SELECT id FROM fleet_runs WHERE run_id=2").fetchone()[0]
            con.execute("DELETE FROM fleet_samples WHERE fleet_id=?", (fid,))
            for t, states in ((0, {"IDLE": 40}), (H, {"IDLE": 40 - busy, "DOWNLOADING": busy}),
                              (2 * H, {"IDLE": 40})):
                con.execute("INSERT INTO fleet_samples VALUES(?,?,?,?,?)",
                            (fid, t, "running" if t else "", 0,
                             json.dumps({"states": states, "versions": {"1.0.0": 40}})))
        con.close()
        out = tmp_path / ("out%d" % busy)
        r = run_report("--db", fleetdb, "--run", "2", "--out", str(out))
        assert r.returncode == 0, r.stderr
        p = parse_html(out / "report.html")
        assert not p.errors and p.stack == []
        return (out / "report.html").read_text(), "".join(p.text)

    raw, text = page(1)
    assert 'aria-label="devices per agent state over virtual time"' not in raw
    assert "at most 1 of 40 devices (2.50%) were in another state" in text
    assert "DOWNLOADING 1 at 1.00 h" in text
    assert 'aria-label="devices per version over virtual time"' in raw
    assert "No rollout states recorded" in text  # these samples have no counts.rollout
    raw, text = page(2)
    states = svg_of(raw, "devices per agent state over virtual time")
    assert 'data-key="DOWNLOADING"' in states and "at most" not in text


def test_rollout_states_that_miss_the_target_are_not_drawn(fleetdb, tmp_path):
    """A merged shard run sums every shard's read of the one server: its
    rollout states add up to more devices than the rollout targets. The page
    says so instead of drawing them."""
    con = sqlite3.connect(fleetdb)
    with con:
        fid = con.execute("SELECT id FROM fleet_runs WHERE run_id=3").fetchone()[0]
        con.execute("UPDATE fleet_runs SET stats=json_set(stats, '$.shards', 2) WHERE id=?",
                    (fid,))
        counts = json.loads(con.execute("SELECT counts FROM fleet_samples WHERE fleet_id=? AND"
                                        " t_ms=?", (fid, 2 * H)).fetchone()[0])
        counts["rollout"]["by_state"]["pending"] += 9
        con.execute("UPDATE fleet_samples SET counts=? WHERE fleet_id=? AND t_ms=?",
                    (json.dumps(counts), fid, 2 * H))
    con.close()
    out = tmp_path / "out"
    r = run_report("--db", fleetdb, "--run", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    raw = (out / "report.html").read_text()
    assert 'aria-label="devices by rollout state over virtual time"' not in raw
    text = "".join(parse_html(out / "report.html").text)
    assert ("Not drawn: at 2.00 h the rollout states add up to 18 devices, not the 9 the "
            "rollout targets (this run was merged from 2 shards") in text


@pytest.mark.parametrize("k,n,lo,hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634),
                                       (2, 3, 0.2077, 0.9385), (10, 10, 0.7225, 1.0)])
def test_wilson_known_values(k, n, lo, hi):
    w = report.fleetreport.wilson(k, n)
    assert w[0] == pytest.approx(lo, abs=1e-4) and w[1] == pytest.approx(hi, abs=1e-4)
    assert report.fleetreport.wilson(0, 0) == (None, None)


@pytest.mark.skipif(not OTA_SIM or not os.access(OTA_SIM, os.X_OK),
                    reason="set OTA_BUILD_DIR to a build with sim/ota-sim")
def test_real_fleet_run(tmp_path):
    """Two small real fleet runs (a staged good release; a bad one over 3
    seeds): bands, markers and tables follow the database's rows."""
    import re
    work = str(tmp_path / "work")
    for args in (["scenarios/fleet/good-canary-staged.yaml", "--devices", "30"],
                 ["scenarios/fleet/bad-health-canary-pause.yaml", "--devices", "40",
                  "--seeds", "3"]):
        sim = subprocess.run([OTA_SIM, "fleet", *args, "-q", "--work", work], cwd=SRC,
                             capture_output=True, text=True, timeout=120)
        assert sim.returncode in (0, 1), sim.stdout + sim.stderr
    wil = re.search(r"Wilson interval ([\d.]+)%\.\.([\d.]+)%", sim.stdout)
    db = os.path.join(work, "runs.db")  # ota-sim fleet writes WORK/runs.db
    con = sqlite3.connect(db)
    fleets = con.execute("SELECT id, run_id, name, rerun FROM fleet_runs ORDER BY id").fetchall()
    assert [f[2] for f in fleets] == ["good-canary-staged"] + ["bad-health-canary-pause"] * 3
    samples = con.execute("SELECT t_ms, rollout, stage, counts FROM fleet_samples"
                          " WHERE fleet_id=? ORDER BY t_ms", (fleets[0][0],)).fetchall()
    ndev = con.execute("SELECT count(*) FROM fleet_devices WHERE fleet_id=?",
                       (fleets[0][0],)).fetchone()[0]
    con.close()
    assert ndev == 30

    out = tmp_path / "good"
    r = run_report("--db", db, "--run", str(fleets[0][1]), "--out", str(out))
    assert r.returncode == 0, r.stderr
    p = parse_html(out / "report.html")
    assert not p.errors and p.stack == []
    assert fleets[0][3] in p.codes
    raw = (out / "report.html").read_text()
    present, busy = set(), 0
    for s in samples:
        st = json.loads(s[3])["states"]
        present.update(st)
        busy = max(busy, sum(st.values()) - st.get("IDLE", 0))
    # the agent-state chart only when 5% of the devices were busy at a sample
    label = 'aria-label="devices per agent state over virtual time"'
    assert (label in raw) == (busy >= 0.05 * ndev)
    if label in raw:
        states = svg_of(raw, "devices per agent state over virtual time")
        assert sorted(re.findall(r'class="band" data-key="([^"]+)"', states)) == sorted(present)
    rollout = svg_of(raw, "devices by rollout state over virtual time")
    stage_at = [s[0] for a, s in zip(samples, samples[1:]) if s[2] != a[2]]
    assert len(stage_at) == 2  # canary -> 50% -> 100%
    ms = re.findall(r'class="marker" data-kind="(\w+)" data-t-ms="(\d+)"', rollout)
    assert [int(t) for k, t in ms if k == "stage"] == stage_at
    assert [k for k, t in ms][-1] == "end" and ">completed<" in rollout
    rows = re.findall(r'<tr data-by="(\w+)">.*?<td class="num">(\d+)</td></tr>', raw)
    for by in ("type", "group"):
        assert sum(int(n) for b, n in rows if b == by) == 30

    out = tmp_path / "bad"
    r = run_report("--db", db, "--out", str(out))  # the latest: the third seed
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "fleets.jsonl").read_text())
    assert [g["seed"] for g in rec["seeds"]["runs"]] == [3, 4, 5]
    assert any(m["kind"] == "end" for m in rec["markers"]) or rec["rollout_state"] == "running"
    lo, hi = rec["seeds"]["wilson95"]
    if wil:  # the runner's own interval over the same seeds
        assert 100 * lo == pytest.approx(float(wil.group(1)), abs=0.051)
        assert 100 * hi == pytest.approx(float(wil.group(2)), abs=0.051)


@pytest.fixture(scope="module")
def paused_fleet(tmp_path_factory):
    """A real fleet: bad-health-canary-pause.yaml with 200 devices (about a
    second), its database and its report."""
    if not OTA_SIM or not os.access(OTA_SIM, os.X_OK):
        pytest.skip("set OTA_BUILD_DIR to a build with sim/ota-sim")
    tmp = tmp_path_factory.mktemp("paused")
    db = str(tmp / "x.db")
    sim = subprocess.run([OTA_SIM, "fleet", "scenarios/fleet/bad-health-canary-pause.yaml",
                          "--devices", "200", "--db", db, "--work", str(tmp / "work"), "-q"],
                         cwd=SRC, capture_output=True, text=True, timeout=120)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    out = tmp / "out"
    r = run_report("--db", db, "--out", str(out))
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(db)
    fid, rerun, state = con.execute("SELECT id, rerun, rollout_state FROM fleet_runs").fetchone()
    samples = [(t, ro, json.loads(c)) for t, ro, c in con.execute(
        "SELECT t_ms, rollout, counts FROM fleet_samples WHERE fleet_id=? ORDER BY t_ms, rowid",
        (fid,))]
    outcomes = dict(con.execute("SELECT device, outcome FROM fleet_devices WHERE fleet_id=?",
                                (fid,)))
    con.close()
    assert state == "paused"
    return {"tmp": tmp, "out": out, "rerun": rerun, "samples": samples, "outcomes": outcomes,
            "raw": (out / "report.html").read_text()}


def test_real_fleet_rollout_state_chart(paused_fleet):
    """The rollout-state chart of a real paused fleet: its bands are the
    server's by_state of every sample after the start, they add up at each
    sample to the devices its stages target, the pause is marked where the
    samples first show it."""
    f = report.fleetreport
    samples, raw = paused_fleet["samples"], paused_fleet["raw"]
    svg = svg_of(raw, "devices by rollout state over virtual time")
    bands, top = chart_bands(svg)
    drawn = [(t, c["rollout"]) for t, _, c in samples if "rollout" in c]
    assert drawn
    every = sorted({k for _, ro in drawn for k, v in ro["by_state"].items() if v})
    assert sorted(bands) == every
    assert list(bands) == [k for k in f.ROLLOUT_STATES if k in every]
    t0, t1 = samples[0][0], samples[-1][0]
    for t, ro in drawn:
        x = chart_x(t, t0, t1)
        targeted = sum(st["devices"] for st in ro["stages"])
        assert targeted == 200
        assert sum(band_at(b, x) for b in bands.values()) == pytest.approx(targeted, abs=0.2), t
        for k, b in bands.items():
            assert band_at(b, x) == pytest.approx(ro["by_state"][k], abs=0.2), (t, k)
    assert top == 200
    # the pause: an end marker at the first sample that shows it
    paused_at = next(t for t, ro, _ in samples if ro == "paused")
    ms = re.findall(r'class="marker" data-kind="(\w+)" data-t-ms="(\d+)" x1="([\d.]+)"', svg)
    assert ("end", str(paused_at)) in [(k, t) for k, t, _ in ms]
    x = float(next(x for k, t, x in ms if k == "end"))
    assert x == pytest.approx(chart_x(paused_at, t0, t1), abs=0.06)
    assert ">paused<" in svg


def test_real_fleet_page_is_self_contained(paused_fleet):
    """No external URL anywhere in the page: no src/href off the page, no
    url(), no @import, no http(s):// or protocol-relative reference."""
    raw = paused_fleet["raw"]
    p = parse_html(paused_fleet["out"] / "report.html")
    assert not p.errors and p.stack == []
    assert "script" not in p.tags
    assert not re.search(r"https?:|url\(|@import|(src|href)=\"//", raw, re.I)


def test_real_fleet_rerun_is_the_real_command(paused_fleet):
    """The rerun shown is fleet_runs.rerun, and running it (with another
    database) reproduces the run: the same end state and device outcomes."""
    rerun = paused_fleet["rerun"]
    shown = re.findall(r'<pre class="repro"><code>(.*?)</code></pre>', paused_fleet["raw"], re.S)
    assert [html.unescape(x) for x in shown] == [rerun]
    assert rerun.startswith("ota-sim fleet scenarios/fleet/bad-health-canary-pause.yaml")
    db = str(paused_fleet["tmp"] / "rerun.db")
    args = rerun.split()[1:] + ["--db", db, "--work", str(paused_fleet["tmp"] / "work"), "-q"]
    sim = subprocess.run([OTA_SIM, *args], cwd=SRC, capture_output=True, text=True, timeout=120)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    con = sqlite3.connect(db)
    fid, state = con.execute("SELECT id, rollout_state FROM fleet_runs").fetchone()
    outcomes = dict(con.execute("SELECT device, outcome FROM fleet_devices WHERE fleet_id=?",
                                (fid,)))
    con.close()
    assert state == "paused" and outcomes == paused_fleet["outcomes"]


def test_no_stale_fleets_jsonl(fleetdb, tmp_path):
    """A trial run written over a fleet run's report leaves no fleets.jsonl."""
    con = sqlite3.connect(fleetdb)
    with con:
        con.execute("INSERT INTO runs VALUES(5, ?, ?, 'ota-sim run x', '/b/agent/ota-agent')",
                    (T0, T0 + 1000))
        add_trial(con, 5, "good", "none", "start", "pass", 1)
    con.close()
    out = tmp_path / "out"
    assert run_report("--db", fleetdb, "--run", "3", "--out", str(out)).returncode == 0
    assert (out / "fleets.jsonl").exists()
    assert run_report("--db", fleetdb, "--out", str(out)).returncode == 0
    assert sorted(os.listdir(out)) == ["report.html", "reproduce.txt", "summary.md", "trials.jsonl"]


def test_real_fleet_version_chart(paused_fleet):
    """The fleet's version curves: at every sample each version's band is
    the count the runner recorded (counts.versions), and the bands add up to
    the 200 devices."""
    samples, raw = paused_fleet["samples"], paused_fleet["raw"]
    bands, top = chart_bands(svg_of(raw, "devices per version over virtual time"), h=170)
    versions = sorted({v for _, _, c in samples for v in c["versions"]})
    assert sorted(bands) == versions and len(versions) >= 2
    t0, t1 = samples[0][0], samples[-1][0]
    for t, _, c in samples:
        x = chart_x(t, t0, t1)
        for v, b in bands.items():
            assert band_at(b, x) == pytest.approx(c["versions"].get(v, 0), abs=0.3), (t, v)
        assert sum(c["versions"].values()) == 200


def test_real_fleet_states_what_it_does_not_model(paused_fleet):
    """ota-sim fleet records what the fleet runner declares it does not
    model (otasim_fleet_gaps, sim/src/fleet_record.c); the page says it."""
    con = sqlite3.connect(str(paused_fleet["tmp"] / "x.db"))
    rows = con.execute("SELECT kind, subject, detail FROM run_gaps").fetchall()
    con.close()
    src = open(os.path.join(SRC, "sim", "src", "fleet_record.c")).read()
    decl = src[src.index("otasim_fleet_gaps[] = {"):]
    decl = decl[:decl.index("NULL,")]
    assert len(rows) == decl.count('",\n') >= 3
    assert {(k, s) for k, s, _ in rows} == {("not-modelled", "fleet")}
    raw = paused_fleet["raw"]
    assert '<ul class="not-modelled" data-tier="fleet">' in raw
    for _, _, d in rows:
        assert "<li>%s</li>" % html.escape(d, quote=True) in raw
    assert "Crash model" not in raw and "Skipped on this tier" not in raw


# ------------------------------------------------------ block-level crash states

STATE_CHECKS = ["fs-consistent", "bootenv-readable", "one-active-slot", "active-slot-complete",
                "lkg-untouched", "db-integrity"]
BOOT_CHECKS = INVARIANTS + ["predicted-outcome"]


def block_repro(profile, point):
    return "%s blocks check --recording /rec/app-update-%s --point %d" % (SIM, profile, point)


def add_block_state(con, run_id, profile, unit, point, last, outcome, during, pred, shared=0,
                    eq_point=None, bad=()):
    """One row of ota-sim --mode blocks for the crash points point..last (the
    columns as sim/src/qblocks.c writes them)."""
    rng = "%d" % point if last == point else "%d-%d" % (point, last)
    case = "blocks/%s/app-update/%s@%s" % (profile, unit, rng)
    eq = "" if eq_point is None else "blocks/%s/app-update/%s@%d" % (profile, unit, eq_point)
    detail = ("; ".join("%s: %s broken" % (b, b) for b in bad) if bad else
              "predicted: runs %s from slot %s, agent in %s" % pred)
    b = {"kind": "state", "point": point, "last": last, "pos": point * 2, "unit": unit,
         "during": during, "shared": shared,
         "shared_with": point if eq_point is None else eq_point, "slot": 0,
         "recording": "/rec/app-update-%s" % profile}
    cur = con.execute(
        "INSERT INTO trials(run_id, case_id, scenario, scenario_file, fault, trigger, seed,"
        " device_id, outcome, detail, final_version, final_slot, final_report, final_state, fired,"
        " passes, calls, equivalent_to, started_ms, duration_ms, recover_ms, reproduce,"
        " state_lines, target, logs, crash_model, blocks)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, case, "app-update", "scenarios/blocks/app-update.yaml", "power-cut",
         "block-%s:%s" % (unit, rng), 1, "blk-1", outcome, detail, pred[0], pred[1], "",
         pred[2], 1, 0, 0, eq, 0, 0, 0, block_repro(profile, point), "", "qemu", "",
         "blocks-" + unit, json.dumps(b)))
    for name in STATE_CHECKS:
        con.execute("INSERT INTO invariants VALUES(?,?,?,?)",
                    (cur.lastrowid, name, int(name not in bad),
                     "%s broken" % name if name in bad else "fine"))
    return case


def add_block_boot(con, run_id, profile, unit, point, during, pred, bad=()):
    case = "blocks/%s/app-update/boot@%d" % (profile, point)
    b = {"kind": "boot", "point": point, "pos": point * 2, "unit": unit, "booted": True,
         "during": during, "predicted": {"point": point, "outcome": "pass", "version": pred[0],
                                         "app_slot": pred[1], "state": pred[2], "slot": 0}}
    outcome = "fail" if bad else "pass"
    cur = con.execute(
        "INSERT INTO trials(run_id, case_id, scenario, scenario_file, fault, trigger, seed,"
        " device_id, outcome, detail, final_version, final_slot, final_report, final_state, fired,"
        " passes, calls, equivalent_to, started_ms, duration_ms, recover_ms, reproduce,"
        " state_lines, target, logs, crash_model, blocks)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, case, "app-update", "scenarios/blocks/app-update.yaml", "power-cut",
         "block-%s:%d booted" % (unit, point), 1, "blk-1", outcome,
         "; ".join(bad), "2.0.0", "b", "success", "IDLE", 1, 1, 30, "", T0 + 5000 + point,
         20000, 4000 + point, block_repro(profile, point) + " --out state.raw && "
         "images/run-qemu --profile %s --image state.raw --overlay" % profile, GOOD, "qemu",
         "/w/boot-%d/console-1.log" % point, "blocks-" + unit, json.dumps(b)))
    for name in BOOT_CHECKS:
        con.execute("INSERT INTO invariants VALUES(?,?,?,?)",
                    (cur.lastrowid, name, int(name not in bad),
                     "%s: booted otherwise" % name if name in bad else "fine"))
    return case


OLD = ("1.0.0", "a", "IDLE")
MID = ("2.0.0", "b", "SWITCHING")
NEW = ("2.0.0", "b", "IDLE")
# raspi3b, a point per write, 0..9: (point, last, outcome, during, prediction, shared, eq, bad)
RASPI_STATES = [
    (0, 0, "pass", "BOOT", OLD, 0, None, ()),
    (1, 1, "fail", "BOOT", OLD, 0, None, ("fs-consistent",)),
    (2, 4, "fail", "BOOT", OLD, 2, 1, ("fs-consistent",)),
    (5, 5, "pass", "INSTALLING", MID, 0, None, ()),
    (6, 8, "pass", "INSTALLING", MID, 1, 5, ()),
    (9, 9, "pass", "COMMITTING", NEW, 0, None, ()),
]
# booted: 0 (a trial that failed, as predicted), 5 (passed), 9 (a predicted-outcome mismatch)
RASPI_BOOTS = [(0, "BOOT", OLD, ("bootable",)), (5, "INSTALLING", MID, ()),
               (9, "COMMITTING", NEW, ("predicted-outcome",))]


def make_blocksdb(path):
    """Run 1: one ordinary trial, the block-level states of one app update on
    raspi3b (10 write points, 3 booted) and on virt (4 flush points). Also
    used by tests/browser."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO runs VALUES(1, ?, ?, 'ota-sim run --target qemu --mode blocks',"
                " '/b/agent/ota-agent')", (T0, T0 + 90000))
    add_trial(con, 1, "good", "none", "start", "pass", 1)
    for p, last, o, during, pred, shared, eq, bad in RASPI_STATES:
        add_block_state(con, 1, "raspi3b", "write", p, last, o, during, pred, shared, eq, bad)
    for p, during, pred, bad in RASPI_BOOTS:
        add_block_boot(con, 1, "raspi3b", "write", p, during, pred, bad)
    add_block_state(con, 1, "virt", "flush", 0, 0, "pass", "BOOT", OLD)
    add_block_state(con, 1, "virt", "flush", 1, 3, "pass", "DOWNLOADING", OLD, 2, 0)
    con.execute("INSERT INTO run_gaps VALUES(1, 'not-modelled', 'qemu', 'QEMU never tears a "
                "write')")
    con.commit()
    con.close()
    return path


@pytest.fixture
def blocksdb(tmp_path):
    return make_blocksdb(str(tmp_path / "runs.db"))


def blocks_report(blocksdb, tmp_path):
    out = tmp_path / "out"
    r = run_report("--db", blocksdb, "--out", str(out))
    assert r.returncode == 0, r.stderr
    raw = (out / "report.html").read_text(encoding="utf-8")
    return out, raw, parse_html(out / "report.html")


def attrs(tag_text):
    return dict(re.findall(r'([a-z-]+)="([^"]*)"', tag_text))


def strip_svg(raw, update):
    m = re.search(r'<svg class="blk-strip"[^>]*data-update="%s".*?</svg>' % re.escape(update), raw,
                  re.S)
    assert m, update
    return m.group(0)


def test_blocks_section_counts(blocksdb, tmp_path):
    out, raw, p = blocks_report(blocksdb, tmp_path)
    assert not p.errors, p.errors[:5]
    assert p.stack == []
    assert len(p.ids) == len(set(p.ids)) and p.hrefs <= set(p.ids)
    assert "script" not in p.tags
    text = "".join(p.text)
    assert "Block-level crash states" in text and "blocks" in p.ids
    # the unit each board used, said
    assert "raspi3b / app-update \u2014 a crash point after each write \u2014 the SD card never " \
           "flushes" in text
    assert "virt / app-update \u2014 a crash point after each flush" in text
    assert "not executed checks" in text
    counts = {}
    for m in re.finditer(r'<table class="blk-counts" data-update="([^"]+)">(.*?)</table>', raw,
                         re.S):
        counts[m.group(1)] = {a: int(n) for a, n in re.findall(
            r'<tr[^>]*data-count="([^"]+)"><td>[^<]*</td><td class="num">(\d+)</td>', m.group(2))}
    assert counts["blocks-raspi3b-app-update-write"] == {
        "crash points": 10, "judged": 4, "sharing a result": 6, "not read": 3,
        "same reading": 3, "failed": 4, "distinct predicted outcomes": 3, "booted": 3,
        "booted failed": 2, "predicted-outcome mismatches": 1}
    assert counts["blocks-virt-app-update-flush"] == {
        "crash points": 4, "judged": 1, "sharing a result": 3, "not read": 0,
        "same reading": 3, "failed": 0, "distinct predicted outcomes": 1, "booted": 0,
        "booted failed": 0, "predicted-outcome mismatches": 0}


def test_blocks_strip_cells(blocksdb, tmp_path):
    _, raw, _ = blocks_report(blocksdb, tmp_path)
    svg = strip_svg(raw, "blocks-raspi3b-app-update-write")
    cells = sorted((attrs(m) for m in re.findall(r'<rect class="blk-cell"[^>]*>', svg)),
                   key=lambda a: int(a["data-point"]))
    want = [(p, last, o, shared) for p, last, o, _, _, shared, _, _ in RASPI_STATES]
    assert [(int(a["data-point"]), int(a["data-last"]), a["data-verdict"], int(a["data-shared"]))
            for a in cells] == want
    # x is the crash point index: a run spans its width, the cells tile the bar in order
    unit = float(cells[0]["width"])
    for a, b in zip(cells, cells[1:]):
        assert float(a["x"]) + float(a["width"]) == pytest.approx(float(b["x"]), abs=0.02)
    for a, (p, last, *_rest) in zip(cells, RASPI_STATES):
        assert float(a["width"]) == pytest.approx(unit * (last - p + 1), abs=0.02)
    # colour by verdict, shared rows lighter
    fills = {(a["data-verdict"], a["data-shared"] != "0"): a["fill"] for a in cells}
    assert fills == {("pass", False): "#3aa655", ("fail", False): "#c62828",
                     ("fail", True): "#f3b0b0", ("pass", True): "#a9d8b3"}
    # the console's agent state under it, as segments
    during = [(a["data-during"], int(a["data-point"]), int(a["data-last"]))
              for a in map(attrs, re.findall(r'<rect class="blk-during"[^>]*>', svg))]
    assert during == [("BOOT", 0, 4), ("INSTALLING", 5, 8), ("COMMITTING", 9, 9)]
    assert ">INSTALLING</text>" in svg
    # the booted points, a failed boot and a mismatch apart
    boots = {int(a["data-point"]): a["data-boot"]
             for a in map(attrs, re.findall(r'<path[^>]*class="blk-boot"[^>]*>', svg))}
    assert boots == {0: "fail", 5: "pass", 9: "mismatch"}
    # failed cells link to their entry
    assert '<a href="#f-blocks-raspi3b-app-update-write-1"><rect class="blk-cell"' in svg
    virt = strip_svg(raw, "blocks-virt-app-update-flush")
    assert len(re.findall(r'<rect class="blk-cell"', virt)) == 2
    assert "blk-boot" not in virt


def test_blocks_failed_states_and_reproduce(blocksdb, tmp_path):
    out, raw, p = blocks_report(blocksdb, tmp_path)
    text = "".join(p.text)
    # the failed state's detail and its reproduce command, in the block section
    sec = raw[raw.index('<h2 id="blocks">'):raw.index("<h2>Time to recover")]
    assert 'id="f-blocks-raspi3b-app-update-write-1"' in sec
    assert "fs-consistent: fs-consistent broken" in sec
    assert block_repro("raspi3b", 1) in p.codes
    # the run of points sharing its failed result listed under it, with its own command
    assert block_repro("raspi3b", 2) in p.codes and "1 more row sharing this failed result" \
        " (3 points)" in text
    # the state rows are not trials: the header, the rate table, the matrix, the failures
    fails = raw[raw.index('<h2 id="failures">'):]
    assert "write@1" not in fails and "blocks/raspi3b/app-update/boot@9" in fails
    assert "4 failed block-level crash states (crash points)" in fails
    assert "<td>Trials</td><td>4: 4 executed, 0 equivalent" in raw
    matrix = raw[raw.index("State &times; fault matrix"):raw.index("<h2>Persistence points")]
    assert "booted block states" in matrix and "block-write:" not in matrix
    assert report.rates_by_fault(report.load(blocksdb)[1])["power-cut"]["n"] == 3
    # recover and trials over time: the 3 boots and the ordinary trial only
    assert raw.count('data-start-ms="') == 4
    # gaps: the crash models, counted in states judged (no boot, no shared state)
    assert "blocks-write (crash states judged: 4)" in text
    assert "blocks-flush (crash states judged: 1)" in text
    # summary.md: the counts per update and the failed state's command
    md = (out / "summary.md").read_text()
    assert "### Block-level crash states" in md and "FAILED" in md.splitlines()[0]
    rows = table_rows(md)
    assert rows["raspi3b/app-update"] == ["each write", "10", "4", "6 (3 / 3)", "4", "3", "3",
                                          "2", "1"]
    assert rows["virt/app-update"] == ["each flush", "4", "1", "3 (0 / 3)", "0", "1", "0", "0",
                                       "0"]
    assert block_repro("raspi3b", 1) in md
    assert "**4 pass, 0 fail" not in md and "**2 pass, 2 fail, 0 error" in md
    # reproduce.txt keeps the block states' commands; trials.jsonl the blocks column
    rep = (out / "reproduce.txt").read_text()
    assert "and 2 failed block-level crash states" in rep.splitlines()[0]
    assert block_repro("raspi3b", 1) in rep.splitlines()
    recs = [json.loads(l) for l in (out / "trials.jsonl").read_text().splitlines()]
    assert recs[0]["blocks"] is None
    shared = next(r for r in recs if r["case_id"] == "blocks/raspi3b/app-update/write@2-4")
    assert shared["blocks"]["last"] == 4 and shared["blocks"]["shared"] == 2


def test_blocks_rows_before_runs_of_points(tmp_path):
    """Rows written before a run of points shared one row: no "last", each
    point its own row; the section still counts points."""
    t = {"case_id": "blocks/raspi3b/app-update/write@7", "trigger": "block-write:7",
         "crash_model": "blocks-write", "equivalent_to": "blocks/raspi3b/app-update/write@5",
         "blocks": json.dumps({"kind": "state", "point": 7, "pos": 7, "unit": "write",
                               "during": "BOOT", "shared": 1, "shared_with": 5}),
         "outcome": "pass", "scenario": "app-update", "invariants": []}
    u = report.blocks.analyse([t])[0]
    assert (u["points"], u["not_read"], u["cells"][0]["last"]) == (1, 1, 7)


def test_no_blocks_section_without_block_rows(rundb, tmp_path):
    db, _ = rundb
    out = tmp_path / "out"
    assert run_report("--db", db, "--out", str(out)).returncode == 0
    raw = (out / "report.html").read_text(encoding="utf-8")
    assert "Block-level crash states" not in raw and "blk-strip" not in raw
    md = (out / "summary.md").read_text()
    assert "Block-level" not in md and "block-level" not in md
    assert "block-level" not in (out / "reproduce.txt").read_text()
