"""The HTML report opened in a real headless browser (Debian's chromium,
driven by playwright-core from npm: check-report.js), on a run database made
by the build's ota-sim: five scenario files on the mutant agent
success-before-commit (one trial fails: service-health-500), and a 30-device
fleet run. The page must render without console errors and fetch nothing but
itself; the figures it shows must be the database's.

    cd reports/tests/browser && npm ci      # once (ci/install-deps does it)
    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest -q reports/tests/browser

Screenshots (CI artifacts): OTA_BUILD_DIR/reports/browser/report.png and
fleet.png (the pages themselves beside them).
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPORTS = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.dirname(REPORTS)
sys.path.insert(0, REPORTS)
import report  # noqa: E402

BUILD = os.environ.get("OTA_BUILD_DIR", "")
SIM = os.path.join(BUILD, "sim", "ota-sim")
MUTANT = os.path.join(BUILD, "agent", "ota-agent-mutant-success-before-commit")
CHROMIUM = os.environ.get("OTA_CHROMIUM", "/usr/bin/chromium")
SCENARIOS = ["scenarios/app-update-good.yaml", "scenarios/service-health-500.yaml",
             "scenarios/agent-crash-states.yaml", "scenarios/power-loss-switching.yaml",
             "scenarios/bad-signature.yaml"]
FAILING = "service-health-500"  # the mutant reports success before the health check


def missing():
    if not BUILD or not os.access(SIM, os.X_OK) or not os.access(MUTANT, os.X_OK):
        return "set OTA_BUILD_DIR to a build with sim/ota-sim and the mutant agents"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        return "playwright-core not installed: npm ci in reports/tests/browser (ci/install-deps)"
    if not shutil.which("node") or not os.access(CHROMIUM, os.X_OK):
        return "node or %s missing: ci/install-deps" % CHROMIUM
    return None


def open_in_browser(html_path, shot):
    r = subprocess.run(["node", os.path.join(HERE, "check-report.js"),
                        "file://" + str(html_path), str(shot), "--browser", CHROMIUM],
                       cwd=HERE, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    why = missing()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("browser")
    db = str(tmp / "runs.db")
    sim = subprocess.run([SIM, "run", *SCENARIOS, "--agent", MUTANT, "-q", "-j", "2",
                          "--db", db, "--work", str(tmp / "work")],
                         cwd=SRC, capture_output=True, text=True, timeout=60)
    assert sim.returncode == 1, sim.stdout + sim.stderr  # one trial fails
    fleet = subprocess.run([SIM, "fleet", "scenarios/fleet/good-canary-staged.yaml",
                            "--devices", "30", "-q", "--db", db, "--work", str(tmp / "fwork")],
                           cwd=SRC, capture_output=True, text=True, timeout=60)
    assert fleet.returncode == 0, fleet.stdout + fleet.stderr
    art = os.path.join(BUILD, "reports", "browser")
    os.makedirs(art, exist_ok=True)
    out = {"db": db}
    for name, run in (("report", 1), ("fleet", 2)):
        d = tmp / name
        assert report.main(["--db", db, "--run", str(run), "--out", str(d)]) == 0
        shutil.copy(d / "report.html", os.path.join(art, name + ".html"))
        out[name] = open_in_browser(d / "report.html", os.path.join(art, name + ".png"))
        out[name + "_page"] = str(d / "report.html")
        out[name + "_shot"] = os.path.join(art, name + ".png")
    return out


def clean_load(facts, page):
    assert facts["status"] == 200
    assert facts["pageErrors"] == []
    assert [m for m in facts["console"] if m["type"] in ("error", "warning")] == []
    assert facts["failed"] == []
    # no fetch at all but the page itself
    assert facts["requests"] == ["file://" + page]
    assert facts["externalRefs"] == []


def test_page_loads_clean(pages):
    for name in ("report", "fleet"):
        clean_load(pages[name], pages[name + "_page"])
        assert os.path.getsize(pages[name + "_shot"]) > 10000


def expected_matrix(db):
    """{(row, fault): (pass, fail)} straight from the trials table."""
    con = sqlite3.connect(db)
    out = {}
    for trig, fault, outcome in con.execute(
            "SELECT trigger, fault, outcome FROM trials WHERE run_id=1"):
        row = trig[6:].split("#")[0] if trig.startswith("state:") else trig
        p, f = out.get((row, fault), (0, 0))
        out[(row, fault)] = (p + (outcome == "pass"), f + (outcome == "fail"))
    con.close()
    return out


def test_matrix_has_one_cell_per_case_with_the_database_counts(pages):
    m = pages["report"]["matrix"]
    want = expected_matrix(pages["db"])
    shown = {}
    for r in m["rows"]:
        assert len(r["cells"]) == len(m["faults"])
        for fault, c in zip(m["faults"], r["cells"]):
            assert c["visible"]
            if c["text"] == "\u00b7":
                continue
            assert (r["row"], fault) not in shown
            p, f = c["text"].split()[:2]
            shown[(r["row"], fault)] = (int(p.rstrip("\u2713")), int(f.rstrip("\u2717")))
    assert shown == want
    assert sum(f for _, f in want.values()) == 1


def test_failure_has_timeline_and_reproduce_command(pages):
    fails = pages["report"]["failures"]
    assert [f["id"] for f in fails] == ["f-" + FAILING]
    f = fails[0]
    con = sqlite3.connect(pages["db"])
    repro, lines = con.execute("SELECT reproduce, state_lines FROM trials WHERE case_id=?",
                               (FAILING,)).fetchone()
    con.close()
    assert f["reproduce"] == repro and " run scenarios/%s.yaml " % FAILING in repro
    n = len([x for x in lines.splitlines() if x.strip()])
    assert f["stateRows"] == n and f["timelineSegments"] == n
    assert f["timelineSize"][0] > 100 and f["timelineSize"][1] > 10


def test_bounds_are_shown(pages):
    facts = pages["report"]
    run, trials = report.load(pages["db"], 1)
    rates = report.rates_by_fault(trials)
    assert [r["fault"] for r in facts["bounds"]["rows"]] == list(rates)
    for r in facts["bounds"]["rows"]:
        x = rates[r["fault"]]
        assert r["bound"] == report.fmt_bound(x["bound"], x["method"])
    assert "95% upper bound" in facts["overallBound"]
    assert "1 of 10 executed trials" in facts["overallBound"]


def svg(facts, label):
    found = [s for s in facts["svgs"] if s["label"] == label]
    assert found, label
    return found[0]


def test_plots_render_with_content(pages):
    facts = pages["report"]
    for label in ("recovery time per state", "trials over time", "agent state timeline",
                  "histogram"):
        s = svg(facts, label)
        assert s["marks"] > 0 and s["size"][0] > 100 and s["size"][1] > 20, s
        assert s["bbox"][0] > 50 and s["bbox"][1] > 20, s
    assert len(svg(facts, "recovery time per state")["data"]) == 10
    assert len(svg(facts, "trials over time")["data"]) == 10
    fleet = pages["fleet"]
    for label in ("devices by rollout state over virtual time",
                  "devices per version over virtual time"):
        s = svg(fleet, label)
        assert s["marks"] > 0 and s["bbox"][0] > 100 and s["bbox"][1] > 50, s
        assert s["data"], s  # a band per state or version


def test_gaps_are_stated(pages):
    g = pages["report"]["gaps"]
    assert "minimal (power cuts made: 1)" in g
    assert "Not exercised in this run: reorder" in g
    assert "Skipped on this tier: no case." in g
    assert "What the native tier does not model" in g
    assert "What the fleet tier does not model" in pages["fleet"]["gaps"]


def test_block_level_strips_render(tmp_path):
    """The block-level section of a hand-made run (tests/test_report.py's
    make_blocksdb: raspi3b write points and virt flush points, a failed state,
    three boots) in the browser: a clean load, every cell of each strip drawn
    with a width in proportion to its points, failed cells visible and
    linked, the segments and boot marks drawn. Needs no build."""
    if not shutil.which("node") or not os.access(CHROMIUM, os.X_OK):
        pytest.skip("node or %s missing: ci/install-deps" % CHROMIUM)
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        pytest.skip("playwright-core not installed: npm ci in reports/tests/browser")
    sys.path.insert(0, os.path.dirname(HERE))
    from test_report import make_blocksdb, block_repro  # noqa: E402
    db = make_blocksdb(str(tmp_path / "runs.db"))
    assert report.main(["--db", db, "--out", str(tmp_path / "out")]) == 0
    page = tmp_path / "out" / "report.html"
    shot = os.path.join(BUILD, "reports", "browser", "blocks.png") if BUILD else str(
        tmp_path / "blocks.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    facts = open_in_browser(page, shot)
    clean_load(facts, str(page))
    strips = {s["update"]: s for s in facts["blockStrips"]}
    assert sorted(strips) == ["blocks-raspi3b-app-update-write", "blocks-virt-app-update-flush"]
    raspi = strips["blocks-raspi3b-app-update-write"]
    assert raspi["size"][0] > 500 and raspi["size"][1] > 40
    cells = sorted(raspi["cells"], key=lambda c: int(c["point"]))
    assert [(c["point"], c["last"], c["verdict"]) for c in cells] == [
        ("0", "0", "pass"), ("1", "1", "fail"), ("2", "4", "fail"), ("5", "5", "pass"),
        ("6", "8", "pass"), ("9", "9", "pass")]
    one = cells[0]["size"][0]
    assert one > 20  # 10 points over the bar
    for c in cells:
        n = int(c["last"]) - int(c["point"]) + 1
        assert abs(c["size"][0] - n * one) < 1.0 and c["size"][1] > 10, c
        assert c["linked"] == (c["verdict"] != "pass")
    assert [d["during"] for d in raspi["during"]] == ["BOOT", "INSTALLING", "COMMITTING"]
    assert all(d["size"][0] > 0 for d in raspi["during"])
    assert sorted((b["point"], b["boot"]) for b in raspi["boots"]) == [
        ("0", "fail"), ("5", "pass"), ("9", "mismatch")]
    assert all(b["size"][0] > 4 and b["size"][1] > 4 for b in raspi["boots"])
    fails = {f["id"]: f["reproduce"] for f in facts["blockFailures"]}
    assert fails == {"f-blocks-raspi3b-app-update-write-1": block_repro("raspi3b", 1)}
