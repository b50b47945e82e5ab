"""ota-report: turn one run of the simulator's run database into an HTML page,
a Markdown summary and a JSON record per trial.

Python 3 standard library only. The input contract is the schema written by
sim/src/rundb.c (tables runs, trials, invariants); see reports/README.md.
"""

import argparse
import datetime
import html
import json
import math
import os
import pathlib
import sqlite3
import sys

import blocks
import fleetreport
import gaps
import plots
from plots import svg_histogram

# Agent states in state-machine order (agent/ and sim/src/scenario.c): the
# rows of the state x fault matrix come in this order, other triggers after.
AGENT_STATES = [
    "IDLE", "CHECKING", "DOWNLOADING", "VERIFYING", "INSTALLING", "SWITCHING",
    "REBOOTING", "HEALTH_CHECK", "COMMITTING", "ROLLING_BACK",
]
# Fault kinds in the order of otasim_fault_kind_names (sim/src/scenario.c).
FAULT_KINDS = [
    "none", "power-cut", "agent-crash", "disk-full", "eio", "partition",
    "clock-jump", "corrupt-bootenv", "service-crash", "cancel",
]
CONFIDENCE = 0.95

TRIAL_COLUMNS = [
    "id", "run_id", "case_id", "scenario", "scenario_file", "fault", "trigger",
    "seed", "device_id", "outcome", "detail", "final_version", "final_slot",
    "final_report", "final_state", "fired", "passes", "calls", "equivalent_to",
    "started_ms", "duration_ms", "recover_ms", "reproduce", "state_lines",
]
# Columns of newer databases (the QEMU tier): read when present, else "".
OPTIONAL_COLUMNS = ["target", "logs", "crash_model", "blocks"]


class ReportError(Exception):
    """A problem with the input (bad database, no such run): exit status 2."""


# ---------------------------------------------------------------- statistics


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def reg_inc_beta(a, b, x):
    """Regularized incomplete beta I_x(a, b) for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
           + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def upper_bound(k, n, confidence=CONFIDENCE):
    """One-sided upper confidence bound on a failure rate from k failures in
    n trials, and the method used. k == 0: the rule of three (3/n, the 95%
    bound to within 2%). k > 0: exact Clopper-Pearson, the p at which
    P(X <= k) = 1 - confidence, i.e. the confidence quantile of
    Beta(k + 1, n - k), found by bisection on the incomplete beta."""
    if n <= 0:
        return None, "no trials"
    if k <= 0:
        return min(1.0, 3.0 / n), "rule of three"
    if k >= n:
        return 1.0, "Clopper-Pearson"
    lo, hi = k / n, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if reg_inc_beta(k + 1, n - k, mid) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0, "Clopper-Pearson"


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_vals:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_vals)))
    return sorted_vals[min(rank, len(sorted_vals)) - 1]


def median(sorted_vals):
    n = len(sorted_vals)
    if n == 0:
        return None
    if n % 2:
        return sorted_vals[n // 2]
    return (sorted_vals[n // 2 - 1] + sorted_vals[n // 2]) / 2.0


# --------------------------------------------------------------------- input


def load(db_path, run_id=None):
    """Read one run (the latest if run_id is None): (run dict, trial dicts
    in id order, each with an 'invariants' list)."""
    p = pathlib.Path(db_path)
    if not p.is_file():
        raise ReportError("%s: no such file" % db_path)
    try:
        con = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise ReportError("%s: %s" % (db_path, e))
    con.row_factory = sqlite3.Row
    try:
        if run_id is None:
            row = con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                raise ReportError("%s: no runs in the database" % db_path)
        else:
            row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                ids = [r[0] for r in con.execute("SELECT id FROM runs ORDER BY id")]
                raise ReportError("%s: no run %d (runs: %s)" % (
                    db_path, run_id, ", ".join(map(str, ids)) or "none"))
        run = dict(row)
        have = {r[1] for r in con.execute("PRAGMA table_info(trials)")}
        cols = TRIAL_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in have]
        trials = [dict(r) for r in con.execute(
            "SELECT %s FROM trials WHERE run_id=? ORDER BY id" % ", ".join(cols), (run["id"],))]
        for t in trials:
            for c in OPTIONAL_COLUMNS:
                t[c] = t.get(c) or ""
        by_id = {t["id"]: t for t in trials}
        for t in trials:
            t["invariants"] = []
        for r in con.execute(
                "SELECT i.trial_id, i.name, i.ok, i.detail FROM invariants i"
                " JOIN trials t ON t.id = i.trial_id WHERE t.run_id=? ORDER BY i.rowid",
                (run["id"],)):
            t = by_id.get(r["trial_id"])
            if t is not None:
                t["invariants"].append({"name": r["name"], "ok": bool(r["ok"]),
                                        "detail": r["detail"] or ""})
        run["_gaps"] = gaps.load(con, run["id"])
    except sqlite3.Error as e:
        raise ReportError("%s: not a run database: %s" % (db_path, e))
    finally:
        con.close()
    return run, trials


# ------------------------------------------------------------------ analysis


def is_equiv(t):
    return bool(t.get("equivalent_to"))


def is_block_state(t):
    """A block-level crash state (ota-sim --mode blocks): judged on the host or
    sharing another state's result, no trial ran. Shown in its own section and
    not counted as a trial by the others; a booted state is a trial."""
    return blocks.is_state(t)


def trial_rows(trials):
    """The rows that are trials: all but the block-level crash states."""
    return [t for t in trials if not blocks.is_state(t)]


def is_point(t):
    return (t.get("trigger") or "").startswith("point:")


def point_no(t):
    try:
        return int(t["trigger"].split(":", 1)[1])
    except (ValueError, IndexError):
        return 0


def row_of(trigger):
    """Matrix row of a trigger: the agent state, or the kind of trigger."""
    trigger = trigger or "start"
    if trigger.startswith("state:"):
        return trigger[6:].split("#", 1)[0]
    if trigger.startswith("point:"):
        return "persistence points"
    if trigger.startswith("fault-point:"):
        return "fault point " + trigger[12:]
    if trigger.startswith("block-") and trigger.endswith(" booted"):
        return "booted block states"
    return trigger


def row_key(row):
    if row in AGENT_STATES:
        return (0, AGENT_STATES.index(row), row)
    if row == "start":
        return (1, 0, row)
    if row == "persistence points":
        return (3, 0, row)
    if row == "booted block states":
        return (3, 1, row)
    return (2, 0, row)


def fault_key(kind):
    return (FAULT_KINDS.index(kind), kind) if kind in FAULT_KINDS else (len(FAULT_KINDS), kind)


def summarize(trials):
    """Counts used by the header and the summary: of the trials (block-level
    crash states apart: block_* and block_fail, counted in crash points)."""
    bt = blocks.totals(blocks.analyse(trials))
    trials = trial_rows(trials)
    s = {"block_points": bt["points"], "block_judged": bt["judged"],
         "block_shared": bt["shared"], "block_fail": bt["failed"] + bt["errors"],
         "block_booted": bt["booted"],
"trials": len(trials), "pass": 0, "fail": 0, "error": 0, "not-run": 0, "environment": 0,
         "executed": 0,
         "equivalent": 0, "points": 0, "points_run": 0, "points_equiv": 0,
         "point_classes": 0}
    for t in trials:
        s[outcome_class(t["outcome"])] += 1
        if is_equiv(t):
            s["equivalent"] += 1
        else:
            s["executed"] += 1
        if is_point(t):
            s["points"] += 1
            if is_equiv(t):
                s["points_equiv"] += 1
            else:
                s["points_run"] += 1
    s["point_classes"] = s["points_run"]
    return s


def environment_count(s):
    """", N environment" when a trial had that verdict (the summary lines of runs
    without one stay as they were)."""
    return ", %d environment" % s["environment"] if s["environment"] else ""


def rates_by_fault(trials):
    """Per fault kind over executed trials (equivalent points copy another
    trial's result, so they add no independent evidence): n = pass + fail,
    k = fail; harness errors, trials not run (the agent lacks what the
    case needs, e.g. named fault points) and environment verdicts (a QEMU
    guest lost its network, twice: the agent was not judged) are counted apart."""
    out = {}
    for t in trial_rows(trials):
        r = out.setdefault(t["fault"], {"n": 0, "k": 0, "errors": 0, "not_run": 0,
                                        "environment": 0,
                                        "equivalent": 0, "failed_equivalent": 0})
        if is_equiv(t):
            r["equivalent"] += 1
            if t["outcome"] != "pass":
                r["failed_equivalent"] += 1
            continue
        if t["outcome"] == "pass":
            r["n"] += 1
        elif t["outcome"] == "fail":
            r["n"] += 1
            r["k"] += 1
        elif t["outcome"] == "not-run":
            r["not_run"] += 1
        elif t["outcome"] == "environment":
            r["environment"] += 1
        else:
            r["errors"] += 1
    for r in out.values():
        r["bound"], r["method"] = upper_bound(r["k"], r["n"])
    return dict(sorted(out.items(), key=lambda kv: fault_key(kv[0])))


def recover_by_fault(trials):
    """recover_ms of executed trials per fault kind, ascending."""
    out = {}
    for t in trial_rows(trials):
        if is_equiv(t) or t["recover_ms"] is None or t["recover_ms"] < 0:
            continue
        out.setdefault(t["fault"], []).append(t["recover_ms"])
    return {k: sorted(v) for k, v in sorted(out.items(), key=lambda kv: fault_key(kv[0]))}


def parse_states(text):
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = {"raw": line}
        if not isinstance(obj, dict):
            obj = {"raw": line}
        out.append(obj)
    return out


def fmt_bound(bound, method):
    if bound is None:
        return "n/a"
    return "%s (%s)" % (fmt_pct(bound), method)


def fmt_pct(x):
    if x is None:
        return "n/a"
    v = 100.0 * x
    return "%.3g%%" % v if v < 10 else "%.1f%%" % v


def fmt_ms(ms):
    if ms is None:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def fmt_dur(ms):
    if ms is None:
        return ""
    if ms < 1000:
        return "%d ms" % ms
    if ms < 120000:
        return "%.1f s" % (ms / 1000.0)
    return "%dm%02ds" % (ms // 60000, (ms // 1000) % 60)


# ---------------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
 color:#1d232a;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccd;
 padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre.repro{background:#1d232a;color:#e8ecf1;padding:8px 10px;border-radius:4px;white-space:pre-wrap;
 word-break:break-all;user-select:all;margin:4px 0 10px}
.kv td:first-child{font-weight:600;background:#eef0f4;white-space:nowrap}
.pass{background:#d7f2dc}.fail{background:#f7c9c9}.error{background:#fbe2b8}.empty{background:#f3f3f3;color:#999}
.mixed{background:#f9d8a8}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.not-run{background:#e4e4f4}.badge.not-run{color:#333366}.environment{background:#dde8ee}.badge.environment{color:#1f4e66}.badge.pass{color:#155d27}.badge.fail{color:#8a1111}.badge.error{color:#7a4b00}
.cell{text-align:center;white-space:nowrap}
.strip{display:flex;flex-wrap:wrap;gap:1px;margin:4px 0 8px;max-width:1150px}
.strip span{display:block;width:9px;height:18px}
.s-run{background:#3aa655}.s-eq{background:#a9d8b3}.s-fail{background:#c62828}
.s-eqfail{background:repeating-linear-gradient(45deg,#c62828 0 2px,#f3b0b0 2px 4px)}
.s-err{background:#e69500}
.legend span{display:inline-block;width:12px;height:12px;vertical-align:-2px;margin:0 4px 0 12px}
.note{color:#555;font-size:13px}
.failure{background:#fff;border:1px solid #e3b5b5;border-left:5px solid #c62828;padding:6px 12px;
 margin:12px 0;border-radius:3px}
details>summary{cursor:pointer;margin:6px 0}
svg{vertical-align:middle}
.small{font-size:12px}
"""


def e(x):
    return html.escape("" if x is None else str(x), quote=True)


def outcome_class(o):
    """pass, fail, not-run (a case this agent cannot run: not its failure,
    not the harness's), environment (a QEMU guest lost its network on the
    trial and its retry: not the agent's failure, not a pass), or error (the
    harness broke)."""
    return o if o in ("pass", "fail", "not-run", "environment") else "error"


def badge(o):
    return '<span class="badge %s">%s</span>' % (outcome_class(o), e(o))


def anchor(case_id):
    return "f-" + "".join(c if c.isalnum() else "-" for c in case_id)


def html_header(run, trials, s):
    rates = rates_by_fault(trials)
    n = sum(r["n"] for r in rates.values())
    k = sum(r["k"] for r in rates.values())
    bound, method = upper_bound(k, n)
    dur = (run["finished_ms"] - run["started_ms"]) if run["finished_ms"] and run["started_ms"] else None
    status = ("fail" if s["fail"] or s["block_fail"] else "error" if s["error"] else
              "environment" if s["environment"] else "pass")
    rows = [
        ("Run", "#%s &nbsp; %s" % (e(run["id"]), badge(status))),
        ("Command", "<code>%s</code>" % e(run["command"])),
        ("Agent", "<code>%s</code>" % e(run["agent"])),
        ("Started", e(fmt_ms(run["started_ms"]))),
        ("Finished", e(fmt_ms(run["finished_ms"])) + (" (%s)" % e(fmt_dur(dur)) if dur is not None
                                                     else "not recorded (run interrupted?)")),
        ("Trials", "%d: %d executed, %d equivalent (result of an executed one)" % (
            s["trials"], s["executed"], s["equivalent"])),
        ("Outcomes", '<span class="badge pass">%d pass</span> <span class="badge fail">%d fail</span>'
         ' <span class="badge error">%d error</span> <span class="badge not-run">%d not run</span>'
         ' <span class="badge environment">%d environment</span>' % (
             s["pass"], s["fail"], s["error"], s["not-run"], s["environment"])),
        ("Crash points", "%d persistence points: %d run, %d equivalent to a run one "
         "(same durable state, same server view)" % (s["points"], s["points_run"],
                                                     s["points_equiv"])),
        ("Failure rate", "%d of %d executed trials; 95%% upper bound %s" % (
            k, n, e(fmt_bound(bound, method)))),
    ]
    if s["block_points"]:
        rows.insert(-1, ("Block-level crash states", (
            '%d crash points: %d judged on the host, %d sharing a result (not executed checks), '
            '%d failed; %d booted (trials) &mdash; <a href="#blocks">see the section</a>' % (
                s["block_points"], s["block_judged"], s["block_shared"], s["block_fail"],
                s["block_booted"]))))
    out = ['<table class="kv">']
    for name, val in rows:
        out.append("<tr><td>%s</td><td>%s</td></tr>" % (e(name), val))
    out.append("</table>")
    out.append('<p class="note">Bounds are one-sided 95%: with 0 failures in n trials the rule of '
               "three (3/n); with k &gt; 0 the exact Clopper-Pearson bound. Rates count executed "
               "trials (pass + fail); equivalent points and harness errors are shown apart.</p>")
    return "\n".join(out)


def html_matrix(trials):
    cells, kinds, rows = {}, set(), set()
    for t in trial_rows(trials):
        r = row_of(t["trigger"])
        rows.add(r)
        kinds.add(t["fault"])
        c = cells.setdefault((r, t["fault"]), {"pass": 0, "fail": 0, "error": 0, "not-run": 0,
                                               "environment": 0, "eq": 0})
        c[outcome_class(t["outcome"])] += 1
        if is_equiv(t):
            c["eq"] += 1
    kinds = sorted(kinds, key=fault_key)
    out = ["<table><tr><th>state / trigger \\ fault</th>%s</tr>" % "".join(
        '<th class="cell">%s</th>' % e(k) for k in kinds)]
    for r in sorted(rows, key=row_key):
        out.append("<tr><th>%s</th>" % e(r))
        for k in kinds:
            c = cells.get((r, k))
            if not c:
                out.append('<td class="cell empty">&middot;</td>')
                continue
            cls = "pass"
            if c["fail"]:
                cls = "fail"
            elif c["error"]:
                cls = "error"
            elif c["environment"]:
                cls = "environment"
            elif c["not-run"] and not c["pass"]:
                cls = "not-run"
            txt = "%d&#10003; %d&#10007;" % (c["pass"], c["fail"])
            if c["error"]:
                txt += " %d err" % c["error"]
            if c["not-run"]:
                txt += " %d not run" % c["not-run"]
            if c["environment"]:
                txt += " %d env" % c["environment"]
            title = "%s x %s: %d pass, %d fail, %d error, %d of them equivalent" % (
                r, k, c["pass"], c["fail"], c["error"], c["eq"])
            out.append('<td class="cell %s" title="%s">%s</td>' % (cls, e(title), txt))
        out.append("</tr>")
    out.append("</table>")
    out.append('<p class="note">Cells: passed &#10003; / failed &#10007; trials (including '
               "equivalent persistence points). Hover for details.</p>")
    return "\n".join(out)


def html_scenarios(trials):
    groups = {}
    for t in trials:
        groups.setdefault(t["scenario"], []).append(t)
    out = []
    for name in sorted(groups):
        bstates = [t for t in groups[name] if is_block_state(t)]
        ts = [t for t in groups[name] if not is_block_state(t)]
        nf = sum(1 for t in ts if t["outcome"] != "pass")
        nbf = sum(1 for t in bstates if t["outcome"] != "pass")
        plain = [t for t in ts if not is_point(t)]
        pts = [t for t in ts if is_point(t)]
        out.append("<details%s><summary><b>%s</b> &mdash; <code>%s</code>: %d trials%s, %s"
                   "</summary>" % (
                       " open" if nf or nbf else "", e(name),
                       e(groups[name][0]["scenario_file"]), len(ts),
                       " and %d block-level crash state rows" % len(bstates) if bstates else "",
                       badge("%d not passed" % (nf + nbf)) if nf or nbf else badge("pass")))
        out.append("<table><tr><th>case</th><th>fault</th><th>trigger</th><th>outcome</th>"
                   "<th>final version / slot</th><th>report</th><th>state</th><th>fired</th>"
                   '<th class="num">recover</th><th class="num">duration</th></tr>')
        for t in plain:
            cid = e(t["case_id"])
            if t["outcome"] != "pass":
                cid = '<a href="#%s">%s</a>' % (anchor(t["case_id"]), cid)
            out.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s / %s</td>"
                       '<td>%s</td><td>%s</td><td>%s</td><td class="num">%s</td>'
                       '<td class="num">%s</td></tr>' % (
                           cid, e(t["fault"]), e(t["trigger"]), badge(t["outcome"]),
                           e(t["final_version"]), e(t["final_slot"]), e(t["final_report"]),
                           e(t["final_state"]), "yes" if t["fired"] else "no",
                           e(fmt_dur(t["recover_ms"])), e(fmt_dur(t["duration_ms"]))))
        if pts:
            nrun = sum(1 for t in pts if not is_equiv(t))
            pf = sum(1 for t in pts if t["outcome"] != "pass")
            out.append('<tr><td colspan="10">%d persistence points of %s: %d run, %d equivalent, '
                       '%d not passed &mdash; <a href="#strip-%s">see the strip</a></td></tr>' % (
                           len(pts), e(pts[0]["fault"]), nrun, len(pts) - nrun, pf,
                           anchor(name + "-" + pts[0]["fault"])))
        for u in blocks.analyse(bstates):
            out.append('<tr><td colspan="10">%d block-level crash states of %s (a crash point '
                       "after each %s): %d judged, %d sharing a result, %d failed &mdash; "
                       '<a href="#%s">see the strip</a></td></tr>' % (
                           u["points"], e(u["profile"]), e(u["unit"]), u["judged"], u["shared"],
                           u["failed"] + u["errors"], e(blocks.uid(u))))
        out.append("</table></details>")
    return "\n".join(out)


def html_strips(trials):
    groups = {}
    for t in trials:
        if is_point(t):
            groups.setdefault((t["scenario"], t["fault"]), []).append(t)
    if not groups:
        return '<p class="note">No persistence-point enumeration in this run.</p>'
    out = ['<p class="legend small">one cell per persistence point:'
           '<span class="s-run"></span>run, passed<span class="s-eq"></span>equivalent, passed'
           '<span class="s-fail"></span>run, failed<span class="s-eqfail"></span>equivalent to a failed'
           ' one<span class="s-err"></span>error</p>']
    for (scen, fault), ts in sorted(groups.items()):
        ts.sort(key=point_no)
        nrun = sum(1 for t in ts if not is_equiv(t))
        nf = sum(1 for t in ts if t["outcome"] != "pass")
        out.append('<h3 id="strip-%s">%s &mdash; %s: %d points, %d run, %d equivalent, %d failed</h3>' % (
            anchor(scen + "-" + fault), e(scen), e(fault), len(ts), nrun, len(ts) - nrun, nf))
        cells = []
        for t in ts:
            eq, o = is_equiv(t), outcome_class(t["outcome"])
            if o == "pass":
                cls = "s-eq" if eq else "s-run"
            elif o == "fail":
                cls = "s-eqfail" if eq else "s-fail"
            else:
                cls = "s-err"
            title = "point %d: %s%s" % (point_no(t), t["outcome"],
                                         (", equivalent to " + t["equivalent_to"]) if eq else ", run")
            cell = '<span class="%s" title="%s"></span>' % (cls, e(title))
            if o != "pass":
                cell = '<a href="#%s">%s</a>' % (anchor(t["equivalent_to"] if eq else t["case_id"]),
                                                 cell)
            cells.append(cell)
        out.append('<div class="strip">%s</div>' % "".join(cells))
    return "\n".join(out)


def html_recover(trials):
    rec = recover_by_fault(trials)
    if not rec:
        return '<p class="note">No recovery times recorded.</p>'
    out = ['<table><tr><th>fault</th><th class="num">n</th><th class="num">min</th>'
           '<th class="num">median</th><th class="num">p95</th><th class="num">max</th>'
           "<th>distribution (min &rarr; max)</th></tr>"]
    for kind, vals in rec.items():
        out.append('<tr><td>%s</td><td class="num">%d</td><td class="num">%s</td>'
                   '<td class="num">%s</td><td class="num">%s</td><td class="num">%s</td>'
                   "<td>%s</td></tr>" % (
                       e(kind), len(vals), fmt_dur(vals[0]), fmt_dur(int(median(vals))),
                       fmt_dur(percentile(vals, 95)), fmt_dur(vals[-1]), svg_histogram(vals)))
    out.append("</table>")
    out.append('<p class="note">recover_ms: from the fault (or the start, without one) until the '
               "device settled; executed trials only; p95 is nearest-rank.</p>")
    out.append("<h3>Per state (or trigger) of the fault</h3>")
    out.append(plots.svg_recovery_by_state(
        plots.recovery_by_state(trial_rows(trials), row_of, row_key, is_equiv)))
    out.append('<p class="note">A dot per executed trial (green passed, red failed, orange '
               "error), the bar its row's median; the rows are the matrix's.</p>")
    return "\n".join(out)


def html_timeline(states):
    if not states:
        return '<p class="note">No agent state lines recorded.</p>'
    t0 = next((s.get("ts") for s in states if isinstance(s.get("ts"), (int, float))), None)
    out = ['<table class="small"><tr><th class="num">t</th><th>from &rarr; to</th><th>status</th>'
           "<th>version</th><th>slot</th><th>resumes</th><th>reason</th></tr>"]
    for s in states:
        if "raw" in s:
            out.append('<tr><td></td><td colspan="6"><code>%s</code></td></tr>' % e(s["raw"]))
            continue
        ts = s.get("ts")
        rel = "+%d ms" % (ts - t0) if isinstance(ts, (int, float)) and t0 is not None else ""
        cls = ""
        if s.get("status") == "failure" or s.get("to") == "ROLLING_BACK":
            cls = ' class="error"'
        out.append('<tr%s><td class="num">%s</td><td>%s &rarr; <b>%s</b></td><td>%s</td><td>%s</td>'
                   '<td>%s</td><td class="num">%s</td><td>%s</td></tr>' % (
                       cls, e(rel), e(s.get("from")), e(s.get("to")), e(s.get("status")),
                       e(s.get("version")), e(s.get("slot")), e(s.get("resumes")),
                       e(s.get("reason"))))
    out.append("</table>")
    return "\n".join(out)


STATE_COLOURS = {
    "IDLE": "#9aa5b1", "CHECKING": "#7fb3d5", "DOWNLOADING": "#5d9cec", "VERIFYING": "#48c9b0",
    "INSTALLING": "#f5b041", "SWITCHING": "#eb984e", "REBOOTING": "#af7ac5",
    "HEALTH_CHECK": "#58d68d", "COMMITTING": "#27ae60", "ROLLING_BACK": "#e74c3c",
}


def svg_timeline(states, w=900, h=26):
    """The agent's states as one bar: a segment per state, its width its time."""
    pts = [(s.get("ts"), s.get("to")) for s in states
           if isinstance(s.get("ts"), (int, float)) and s.get("to")]
    if len(pts) < 2:
        return ""
    t0, t1 = pts[0][0], pts[-1][0]
    span = max(1, t1 - t0)
    tail = span * 0.04  # the last state has no end: a short stub
    scale = w / (span + tail)
    rects = []
    for i, (ts, st) in enumerate(pts):
        end = pts[i + 1][0] if i + 1 < len(pts) else t1 + tail
        x, wd = (ts - t0) * scale, max(1.0, (end - ts) * scale)
        label = "%s from +%d ms" % (st, ts - t0)
        rects.append('<rect x="%.1f" y="0" width="%.1f" height="%d" fill="%s" stroke="#fff" '
                     'stroke-width="0.5"><title>%s</title></rect>' % (
                         x, wd, h, STATE_COLOURS.get(st, "#bbb"), e(label)))
        if wd > 7 * len(st):
            rects.append('<text x="%.1f" y="%d" font-size="10" fill="#111">%s</text>' % (
                x + 3, h // 2 + 4, e(st)))
    return ('<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="agent state timeline">%s</svg>'
            '<div class="small note">0 ms &rarr; +%d ms</div>' % (w, h, w, h, "".join(rects), span))


def html_failures(trials):
    bt = blocks.totals(blocks.analyse([t for t in trials if is_block_state(t)]))
    nb = bt["failed"] + bt["errors"]
    note = ('<p class="note">%d failed block-level crash states (crash points) are listed in '
            '<a href="#blocks">Block-level crash states</a>.</p>' % nb) if nb else ""
    failed = [t for t in trial_rows(trials) if t["outcome"] != "pass"]
    if not failed:
        return note + '<p>No failed trials.</p>'
    eq_of = {}
    for t in failed:
        if is_equiv(t):
            eq_of.setdefault(t["equivalent_to"], []).append(t)
    out = [note] if note else []
    run_failed = {x["case_id"] for x in failed if not is_equiv(x)}
    for t in failed:
        if is_equiv(t) and t["equivalent_to"] in run_failed:
            continue  # listed under the trial it is equivalent to
        out.append('<div class="failure" id="%s">' % anchor(t["case_id"]))
        out.append("<h3>%s %s</h3>" % (badge(t["outcome"]), e(t["case_id"])))
        out.append('<p>scenario <code>%s</code>, fault %s at %s, seed %s, device %s, fired: %s; '
                   "final %s on slot %s, report %s, state %s; recover %s</p>" % (
                       e(t["scenario_file"]), e(t["fault"]), e(t["trigger"]), e(t["seed"]),
                       e(t["device_id"]), "yes" if t["fired"] else "no", e(t["final_version"]),
                       e(t["final_slot"]), e(t["final_report"]), e(t["final_state"]),
                       e(fmt_dur(t["recover_ms"]))))
        if is_equiv(t):
            out.append('<p class="note">Result copied from the equivalent point %s.</p>' %
                       e(t["equivalent_to"]))
        if t["detail"]:
            out.append("<p><b>Detail:</b> %s</p>" % e(t["detail"]))
        bad = [i for i in t["invariants"] if not i["ok"]]
        if bad:
            out.append("<table><tr><th>failed invariant</th><th>detail</th></tr>")
            for i in bad:
                out.append("<tr class=\"fail\"><td>%s</td><td>%s</td></tr>" % (
                    e(i["name"]), e(i["detail"])))
            out.append("</table>")
        elif t["invariants"]:
            out.append('<p class="note">All %d invariants held.</p>' % len(t["invariants"]))
        out.append("<b>Reproduce:</b>")
        out.append('<pre class="repro"><code>%s</code></pre>' % e(t["reproduce"]))
        if t["logs"]:
            out.append("<b>Serial console</b> (a log per power-on):")
            out.append('<pre class="repro"><code>%s</code></pre>' % e(t["logs"].strip()))
        states = parse_states(t["state_lines"])
        out.append("<b>Agent states</b> (%d lines, time from the first):" % len(states))
        out.append(svg_timeline(states))
        out.append("<details%s><summary>state lines</summary>%s</details>" % (
            "" if is_equiv(t) else " open", html_timeline(states)))
        more = eq_of.get(t["case_id"], [])
        if more:
            out.append("<details><summary>%d equivalent persistence points with the same result"
                       "</summary>" % len(more))
            for m in more:
                out.append('<p id="%s" class="small">%s</p><pre class="repro"><code>%s</code></pre>' % (
                    anchor(m["case_id"]), e(m["case_id"]), e(m["reproduce"])))
            out.append("</details>")
        out.append("</div>")
    return "\n".join(out)


def html_fleet_header(run):
    """The header of a run with fleet runs only (no trials). No duration:
    ota-sim fleet sets runs.finished_ms when it opens the run; the fleet's
    wall time is in its figures."""
    rows = [("Run", "#%s" % e(run["id"])), ("Command", "<code>%s</code>" % e(run["command"])),
            ("Agent", "<code>%s</code>" % e(run["agent"])),
            ("Started", e(fmt_ms(run["started_ms"])))]
    return '<table class="kv">%s</table>' % "".join(
        "<tr><td>%s</td><td>%s</td></tr>" % (e(n), v) for n, v in rows)


def render_html(run, trials, fleets=()):
    """The page; fleets (fleetreport.load) add the fleet section, and a run
    with fleet runs only shows no trial sections; a run with block-level
    crash states gets their section after the persistence points."""
    s = summarize(trials)
    bups = blocks.analyse(trials)
    rates = rates_by_fault(trials)
    rate_rows = []
    for kind, r in rates.items():
        rate_rows.append('<tr%s><td>%s</td><td class="num">%d</td><td class="num">%d</td>'
                         '<td class="num">%d</td><td class="num">%d</td><td class="num">%s</td>'
                         "<td>%s</td></tr>" % (
                             ' class="fail"' if r["k"] else (' class="error"' if r["errors"] else ""),
                             e(kind),
                             r["n"], r["k"], r["errors"], r["equivalent"],
                             fmt_pct(r["k"] / r["n"]) if r["n"] else "n/a",
                             e(fmt_bound(r["bound"], r["method"]))))
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>ota-sim run %s</title><style>%s</style></head><body><main>" % (
            e(run["id"]), CSS + (fleetreport.FLEET_CSS if fleets else "") +
            (blocks.CSS if bups else "")),
        "<h1>ota-hil simulator report &mdash; run %s</h1>" % e(run["id"]),
    ]
    tail = [
        '<p class="note">Generated by reports/ota-report from the run database.</p>',
        "</main></body></html>",
    ]
    if fleets and not trials:
        return "\n".join(head + [html_fleet_header(run), "<h2>What this run does not show</h2>",
                                 gaps.render_html(gaps.analyse([], *run.get("_gaps", (False, []))),
                                                  trials=False),
                                 fleetreport.render_html(fleets)] + tail) + "\n"
    parts = head + [
        html_header(run, trials, s),
        "<h2>What this run does not show</h2>",
        gaps.render_html(gaps.analyse(trials, *run.get("_gaps", (False, [])))),
        "<h2>Failure rate per fault kind</h2>",
        '<table><tr><th>fault</th><th class="num">n</th><th class="num">failures</th>'
        '<th class="num">errors</th><th class="num">equivalent</th><th class="num">rate</th>'
        "<th>95% upper bound</th></tr>" + "".join(rate_rows) + "</table>",
        "<h2>State &times; fault matrix</h2>",
        html_matrix(trials),
        "<h2>Persistence points</h2>",
        html_strips(trials),
        blocks.render_html(bups),
        "<h2>Time to recover</h2>",
        html_recover(trials),
        "<h2>Trials over time</h2>",
        plots.svg_trials_over_time(plots.trial_bars(trial_rows(trials), is_equiv),
                                   run["started_ms"]) or
        '<p class="note">No trial start times recorded.</p>',
        '<p class="note">A bar per executed trial from its start to its end (wall clock from the '
        "run's start), green passed, red failed, orange error; trials that ran at once are in "
        "lanes of their own. Equivalent points ran no trial and are not drawn.</p>",
        "<h2>Scenarios</h2>",
        html_scenarios(trials),
        "<h2 id=\"failures\">Failures</h2>",
        html_failures(trials),
    ]
    if fleets:
        parts.append(fleetreport.render_html(fleets))
    parts += tail
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ Markdown


def md_cell(x):
    return str("" if x is None else x).replace("|", "\\|").replace("\n", " ")


def render_summary(run, trials, max_failed=30, fleets=()):
    if fleets and not trials:
        ok = all(f["ok"] for f in fleets)
        return "\n".join([
            "## ota-sim run %s: %s" % (run["id"], "passed" if ok else "FAILED"), "",
            "`%s`" % (run["command"] or "").replace("`", "'"), "",
            gaps.render_md(gaps.analyse([], *run.get("_gaps", (False, []))), trials=False),
            fleetreport.render_summary(fleets)])
    s = summarize(trials)
    rates = rates_by_fault(trials)
    n = sum(r["n"] for r in rates.values())
    k = sum(r["k"] for r in rates.values())
    bound, method = upper_bound(k, n)
    status = ("FAILED" if s["fail"] or s["block_fail"] else "ERRORS" if s["error"] else
              "ENVIRONMENT" if s["environment"] else "passed")
    out = [
        "## ota-sim run %s: %s" % (run["id"], status),
        "",
        "`%s`" % (run["command"] or "").replace("`", "'"),
        "",
        "- agent: `%s`" % run["agent"],
        "- %d trials (%d executed, %d equivalent): **%d pass, %d fail, %d error, %d not run%s**" % (
            s["trials"], s["executed"], s["equivalent"], s["pass"], s["fail"], s["error"],
            s["not-run"], environment_count(s)),
        "- persistence points: %d (%d run, %d equivalent)" % (
            s["points"], s["points_run"], s["points_equiv"]),
    ] + ([
        "- block-level crash states: %d crash points (%d judged on the host, %d sharing a "
        "result), %d failed; %d booted" % (
            s["block_points"], s["block_judged"], s["block_shared"], s["block_fail"],
            s["block_booted"])] if s["block_points"] else []) + [
        "- failure rate: %d/%d executed trials, 95%% upper bound %s" % (
            k, n, fmt_bound(bound, method)),
        "",
        "| fault | n | failures | errors | equivalent | 95% upper bound |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for kind, r in rates.items():
        out.append("| %s | %d | %d | %d | %d | %s |" % (
            md_cell(kind), r["n"], r["k"], r["errors"], r["equivalent"],
            md_cell(fmt_bound(r["bound"], r["method"]))))
    out += ["",
            "_One-sided 95% bounds over executed trials: rule of three (3/n) for 0 failures, "
            "Clopper-Pearson otherwise._", "",
            gaps.render_md(gaps.analyse(trials, *run.get("_gaps", (False, []))))]
    bmd = blocks.render_md(blocks.analyse(trials))
    if bmd:
        out.append(bmd)
    # executed failures first; equivalent points repeat their representative
    tr = trial_rows(trials)  # failed block-level states: in their section above
    failed = ([t for t in tr if t["outcome"] != "pass" and not is_equiv(t)] +
              [t for t in tr if t["outcome"] != "pass" and is_equiv(t)])
    if failed:
        out += ["### Failed cases (%d)" % len(failed), ""]
        for t in failed[:max_failed]:
            bad = [i for i in t["invariants"] if not i["ok"]]
            why = "; ".join("%s: %s" % (i["name"], i["detail"]) for i in bad) or t["detail"] or ""
            if t["outcome"] == "environment":  # its checks judged no agent: the detail says why
                why = t["detail"] or why
            if len(why) > 300:
                why = why[:297] + "..."
            eq = " (equivalent to `%s`)" % t["equivalent_to"] if is_equiv(t) else ""
            out += ["- **%s** %s%s — %s" % (md_cell(t["case_id"]), t["outcome"], eq, md_cell(why)),
                    "  ```", "  %s" % t["reproduce"], "  ```"]
            out += ["  serial log: `%s`" % l for l in t["logs"].split()]
        if len(failed) > max_failed:
            out.append("- ... and %d more: see report.html or trials.jsonl" % (
                len(failed) - max_failed))
        out.append("")
    if fleets:
        out.append(fleetreport.render_summary(fleets))
    return "\n".join(out) + "\n"


def jsonl_value(t, c):
    """A column's value in trials.jsonl: blocks (JSON text) as its object, null
    when empty (the text itself if it is not JSON)."""
    if c != "blocks":
        return t[c]
    if not t[c]:
        return None
    try:
        return json.loads(t[c])
    except ValueError:
        return t[c]


def render_jsonl(trials):
    return "".join(json.dumps({c: jsonl_value(t, c)
                               for c in TRIAL_COLUMNS + OPTIONAL_COLUMNS + ["invariants"]},
                              ensure_ascii=False, sort_keys=False) + "\n" for t in trials)


def render_reproduce(run, trials):
    """reproduce.txt: one command a line per failed trial (fail, error or environment; executed trials
    first, then the equivalent points), each after a # line naming it; comments only when
    nothing failed. The interface CI keeps as an artifact (docs/ci.md)."""
    bad = [t for t in trials if t["outcome"] in ("fail", "error", "environment")]
    bad = [t for t in bad if not is_equiv(t)] + [t for t in bad if is_equiv(t)]
    nb = sum(1 for t in bad if is_block_state(t))
    out = ["# ota-sim run %s: the reproduce commands of its %d failed trials%s (docs/ci.md)" % (
        run["id"], len(bad) - nb, " and %d failed block-level crash states" % nb if nb else "")]
    for t in bad:
        why = " ".join((t["detail"] or "").split())
        if len(why) > 200:
            why = why[:197] + "..."
        eq = " (equivalent to %s)" % t["equivalent_to"] if is_equiv(t) else ""
        out += ["# %s: %s%s: %s" % (t["case_id"], t["outcome"], eq, why), t["reproduce"] or ""]
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------- output


def write_atomic(path, text):
    """Temp file, fsync, rename, fsync of the directory."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp.%d" % (os.path.basename(path), os.getpid()))
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_report(db, out_dir, run_id=None):
    """Write report.html, summary.md, trials.jsonl, reproduce.txt (and fleets.jsonl when
    the run has fleet runs) into out_dir; returns (run, trials, fleets).
    Raises ReportError on bad input, OSError on output."""
    run, trials = load(db, run_id)
    try:
        fleets = fleetreport.load(db, run["id"])
    except sqlite3.Error as ex:
        raise ReportError("%s: bad fleet tables: %s" % (db, ex))
    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "trials.jsonl"), render_jsonl(trials))
    if fleets:
        write_atomic(os.path.join(out_dir, "fleets.jsonl"), fleetreport.render_jsonl(fleets))
    elif os.path.exists(os.path.join(out_dir, "fleets.jsonl")):
        os.unlink(os.path.join(out_dir, "fleets.jsonl"))  # another run's, written before
    write_atomic(os.path.join(out_dir, "summary.md"), render_summary(run, trials, fleets=fleets))
    write_atomic(os.path.join(out_dir, "reproduce.txt"), render_reproduce(run, trials))
    write_atomic(os.path.join(out_dir, "report.html"), render_html(run, trials, fleets))
    return run, trials, fleets


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="ota-report",
        description="Report on one run of the simulator's run database: report.html, "
                    "summary.md, trials.jsonl and reproduce.txt in DIR.")
    ap.add_argument("--db", required=True, metavar="FILE", help="run database (ota-sim --db)")
    ap.add_argument("--run", type=int, metavar="ID", help="run id (default: the latest)")
    ap.add_argument("--out", required=True, metavar="DIR", help="output directory")
    a = ap.parse_args(argv)
    try:
        run, trials, fleets = write_report(a.db, a.out, a.run)
    except ReportError as ex:
        print("ota-report: %s" % ex, file=sys.stderr)
        return 2
    except OSError as ex:
        print("ota-report: %s: %s" % (ex.filename or a.out, ex.strerror or ex), file=sys.stderr)
        return 1
    s = summarize(trials)
    print("ota-report: run %d: %d trials, %d pass, %d fail, %d error, %d not run%s%s -> %s" % (
        run["id"], s["trials"], s["pass"], s["fail"], s["error"], s["not-run"], environment_count(s),
        ("; %d block-level crash points, %d failed" % (s["block_points"], s["block_fail"]))
        if s["block_points"] else "", os.path.join(a.out, "report.html")))
    for f in fleets:
        print("ota-report: fleet %s seed %s: %s, rollout %s" % (
            f["name"], f["seed"], fleetreport.verdict(f), f["rollout_state"] or "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
