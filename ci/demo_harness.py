"""Part 2 of `make demo` (ci/demo): the harness at work.

1. One power cut: `ota-sim run scenarios/power-loss-switching.yaml` cuts the
   power of a simulated device right after the agent made SWITCHING durable;
   the device's tree is rebuilt as the crash model leaves it, the device boots
   again and the agent must finish the update. Printed from the run database:
   the states before and after the cut, the recovery time and every invariant.
2. A short matrix: a seeded sample of `ota-sim matrix --list` (the state x
   fault matrix and the persistence points), with ota-sim's own progress line.
3. The HTML report of that matrix run (reports/ota-report), its path and the
   command that opens it.

Everything goes to OUT (default BUILD/demo, made afresh): runs.db, the case
list, JUnit, report/. Exit status: 0 when every trial passed."""

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time


def parse(argv):
    ap = argparse.ArgumentParser(prog="ci/demo", description="the README's main job (make demo)")
    ap.add_argument("--harness-only", action="store_true",
                    help="part 2 only: the power cut, the matrix sample and the report")
    ap.add_argument("--sample", type=int, default=120, metavar="N",
                    help="matrix cases to run, a seeded sample (default 120)")
    ap.add_argument("--seed", type=int, default=14, help="the sample's seed (default 14)")
    ap.add_argument("--scenario", metavar="FILE",
                    help="the power cut's scenario (default scenarios/power-loss-switching.yaml)")
    ap.add_argument("--out", metavar="DIR", help="run database, JUnit, report (default BUILD/demo)")
    return ap.parse_args(argv)


def heading(text):
    print(f"\n== {text}", flush=True)


def rel(path):
    """path as the user typed it: relative to the current dir when below it."""
    r = os.path.relpath(path)
    return path if r.startswith("..") else r


def last_trial(db):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        t = con.execute("SELECT * FROM trials ORDER BY id DESC LIMIT 1").fetchone()
        inv = con.execute("SELECT name, ok, detail FROM invariants WHERE trial_id = ?",
                          (t["id"],)).fetchall() if t else []
    finally:
        con.close()
    return t, inv


def show_states(t):
    """The agent's state lines, the power cut where the agent resumed after it."""
    lines = [json.loads(x) for x in (t["state_lines"] or "").splitlines() if x.strip()]
    t0 = lines[0]["ts"] if lines else 0
    resumes = 0
    boot = 1
    print(f"   boot {boot}: the device runs its factory release; the agent's update pass:")
    for ev in lines:
        if ev["resumes"] > resumes:
            boot += 1
            print(f"   ** POWER CUT ({t['trigger']}): every process of the device killed; its tree\n"
                  f"      rebuilt from the write journal as the crash model '{t['crash_model']}' "
                  "leaves it\n      (what the agent did not make durable is lost)")
            print(f"   boot {boot}: bootloader, app service; the agent finds {ev['from']} in its "
                  f"journal and resumes:")
        resumes = ev["resumes"]
        what = f"{ev['version']} slot {ev['slot']}" if ev["version"] else ""
        print(f"   {ev['ts'] - t0:>+7} ms  {ev['from']:>12} -> {ev['to']:<12} {ev['status']:<11} "
              f"{what}{'  ' + ev['reason'] if ev['reason'] else ''}")


def power_cut(sim, scenario, db, env):
    heading(f"2. the harness: a power cut at SWITCHING ({rel(scenario)})")
    r = subprocess.run([sim, "run", scenario, "--db", db, "-q"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    t, inv = last_trial(db)
    if t is None:
        print(r.stdout, end="")
        print(f"   ota-sim exit {r.returncode}: no trial in {db}")
        return False
    show_states(t)
    rec = f"recovered {t['recover_ms']} ms after the cut" if t["recover_ms"] is not None else ""
    print(f"   final: version {t['final_version']}, slot {t['final_slot']}, report "
          f"{t['final_report']}, state {t['final_state']}; {t['passes']} agent passes; {rec}")
    held = [i["name"] for i in inv if i["ok"]]
    broken = [i for i in inv if not i["ok"]]
    print(f"   invariants held ({len(held)} of {len(inv)}): {', '.join(held)}")
    for i in broken:
        print(f"   invariant FAILED: {i['name']}: {i['detail']}")
    print(f"   trial: {t['outcome']}" + (f" ({t['detail']})" if t["detail"] else ""))
    if t["outcome"] != "pass":
        print(f"   reproduce: {t['reproduce']}")
    return r.returncode == 0 and t["outcome"] == "pass"


def sample(ids, n, seed):
    """n case indexes, seeded, spread over the kinds of case: one group per
    scenario, fault and kind of trigger (states, persistence points, ...),
    drawn from in turn, so that the states are not drowned by the points."""
    rnd = random.Random(seed)
    groups = {}
    for i, cid in enumerate(ids):
        scen, _, rest = cid.partition("/")
        fault, _, trig = rest.partition("@")
        groups.setdefault((scen, fault, trig.split(":")[0]), []).append(i)
    pools = [rnd.sample(v, len(v)) for _, v in sorted(groups.items())]
    pick = []
    while len(pick) < min(n, len(ids)):
        for pool in pools:
            if pool and len(pick) < n:
                pick.append(pool.pop())
    return sorted(pick)


def matrix(sim, out, db, n, seed, env):
    cases_all = os.path.join(out, "matrix-all-cases.txt")
    cases = os.path.join(out, "matrix-cases.txt")
    r = subprocess.run([sim, "matrix", "--list", "--db", db], env=env, capture_output=True,
                       text=True)
    ids = r.stdout.split()
    if r.returncode != 0 or not ids:
        heading("3. a short matrix")
        print(r.stderr, end="")
        print(f"   ota-sim matrix --list: exit {r.returncode}")
        return False
    with open(cases_all, "w") as f:
        f.write("\n".join(ids) + "\n")
    pick = sample(ids, n, seed)
    with open(cases, "w") as f:
        f.write("".join(ids[i] + "\n" for i in pick))
    heading(f"3. a short matrix: {len(pick)} of its {len(ids)} cases, seeded sample "
            f"(--seed {seed}, spread over scenarios, faults and triggers), each trial checked by the "
            "invariants")
    print(f"   {rel(sim)} matrix --cases-from {rel(cases)}", flush=True)
    r = subprocess.run([sim, "matrix", "--cases-from", cases, "--db", db, "--junit",
                        os.path.join(out, "matrix.xml")], env=env)
    con = sqlite3.connect(db)
    try:
        run_id = con.execute("SELECT max(id) FROM runs").fetchone()[0]
        rows = con.execute(
            "SELECT scenario, fault, CASE WHEN trigger LIKE 'point:%' THEN 'persistence points' "
            "WHEN trigger LIKE 'state:%' THEN 'states' ELSE trigger END AS at, "
            "sum(outcome = 'pass'), count(*) FROM trials WHERE run_id = ? "
            "GROUP BY scenario, fault, at ORDER BY scenario, fault, at", (run_id,)).fetchall()
    finally:
        con.close()
    for scen, fault, at, ok, total in rows:
        print(f"   {scen:<27} {fault:<12} at {at:<19} {ok:>3} of {total:>3} passed")
    print(f"   ota-sim exit {r.returncode}" + ("" if r.returncode == 0 else
                                               " (0 all passed, 1 a trial failed, 5 harness error)"))
    return r.returncode == 0


def report(src, out, db):
    heading("4. the report")
    dest = os.path.join(out, "report")
    r = subprocess.run(["/usr/bin/python3", os.path.join(src, "reports", "ota-report"), "--db", db,
                        "--out", dest], capture_output=True, text=True)
    page = os.path.join(dest, "report.html")
    if r.returncode != 0 or not os.path.exists(page):
        print(r.stderr, end="")
        print(f"   ota-report exit {r.returncode}")
        return False
    print(f"   {rel(page)}  (state x fault matrix, persistence-point strips, timelines, "
          "95% bounds)")
    print(f"   {rel(os.path.join(dest, 'summary.md'))}, {rel(os.path.join(dest, 'trials.jsonl'))}")
    print(f"   open it:  xdg-open {rel(page)}")
    print(f"   (no desktop here: python3 -m http.server -b 127.0.0.1 -d {rel(dest)} 8000, then "
          "http://127.0.0.1:8000/report.html)")
    return True


def run(opts, src, build):
    sim = os.path.join(build, "sim", "ota-sim")
    out = os.path.abspath(opts.out or os.path.join(build, "demo"))
    scenario = opts.scenario or os.path.join(src, "scenarios", "power-loss-switching.yaml")
    if not os.path.exists(sim):
        print(f"ci/demo: {sim} is not built (make demo builds it)", file=sys.stderr)
        return 1
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    db = os.path.join(out, "runs.db")
    env = dict(os.environ)
    t0 = time.monotonic()
    results = [("power cut at SWITCHING recovered", power_cut(sim, scenario, db, env))]
    results.append(("matrix sample passed", matrix(sim, out, db, opts.sample, opts.seed, env)))
    results.append(("report written", report(src, out, db)))
    failed = [name for name, ok in results if not ok]
    print(f"\n(part 2: {time.monotonic() - t0:.1f} s)")
    print("harness " + ("passed: " + "; ".join(n for n, _ in results) if not failed
                        else "FAILED: not " + "; not ".join(failed)))
    return 1 if failed else 0
