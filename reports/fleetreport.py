"""The fleet section of ota-report: fleet runs (`ota-sim fleet`, docs/fleet.md)
from the tables fleet_runs, fleet_samples and fleet_devices of the run
database (sim/src/rundb.c). Python 3 standard library only.
"""

import html
import json
import math
import pathlib
import sqlite3

# Agent states in state-machine order (as report.AGENT_STATES, plus the
# blue-green wait): the bands of the stacked chart, bottom up.
STATES = [
    "IDLE", "CHECKING", "DOWNLOADING", "VERIFYING", "INSTALLING", "STANDBY", "SWITCHING",
    "REBOOTING", "HEALTH_CHECK", "COMMITTING", "ROLLING_BACK",
]
STATE_COLOURS = {
    "IDLE": "#9aa5b1", "CHECKING": "#7fb3d5", "DOWNLOADING": "#5d9cec", "VERIFYING": "#48c9b0",
    "INSTALLING": "#f5b041", "STANDBY": "#d4ac0d", "SWITCHING": "#eb984e",
    "REBOOTING": "#af7ac5", "HEALTH_CHECK": "#58d68d", "COMMITTING": "#27ae60",
    "ROLLING_BACK": "#e74c3c",
}
# The server's per-device rollout states (docs/protocol.md "Status and
# metrics", by_state of GET /api/v1/rollouts/{id}/metrics, kept by the runner
# in each sample as counts.rollout): bands bottom up, settled first, then in
# flight, then failed or undone, then the devices not offered yet on top.
ROLLOUT_STATES = [
    "success", "activated", "standby", "in_progress", "offered", "failure", "timed_out",
    "rollback_ordered", "rolled_back", "rollback_failed", "skipped", "pending",
]
ROLLOUT_COLOURS = {
    "success": "#27ae60", "activated": "#1e8449", "standby": "#d4ac0d",
    "in_progress": "#5d9cec", "offered": "#aed6f1", "failure": "#e74c3c",
    "timed_out": "#922b21", "rollback_ordered": "#c39bd3", "rolled_back": "#8e44ad",
    "rollback_failed": "#4a235a", "skipped": "#7f8c8d", "pending": "#d5d8dc",
}
# The agent-state chart is drawn only when, at some sample, at least this
# share of the devices was in a state other than IDLE (samples are taken
# between passes, when nearly every device is idle).
AGENT_CHART_MIN_SHARE = 0.05
PALETTE = ["#4a78c2", "#e67e22", "#2e9d5b", "#c0392b", "#8e44ad", "#16a085", "#7f8c8d",
           "#d4ac0d", "#34495e", "#e84393"]
# fleet_devices.outcome (sim/include/otasim/rundb.h), in table order
OUTCOMES = ["on_target", "rolled_back", "other_version", "bricked", "inconsistent", "stuck",
            "offline"]
BAD_OUTCOMES = {"bricked", "inconsistent", "stuck"}
# rollout states that end or stop a rollout: marked on the charts
END_STATES = ("paused", "completed", "rolled_back", "failed")
# a rollout that ended in one of these "stopped" (ota-sim fleet --seeds)
STOPPED = ("paused", "failed", "rolled_back")
FLEET_COLUMNS = ["id", "run_id", "name", "file", "seed", "ok", "rollout_state", "failed",
                 "rerun"]
Z95 = 1.959963984540054


def e(x):
    return html.escape("" if x is None else str(x), quote=True)


def wilson(k, n, z=Z95):
    """Two-sided Wilson score interval for k successes in n trials."""
    if n <= 0:
        return None, None
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _json(text):
    try:
        obj = json.loads(text or "")
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


# --------------------------------------------------------------------- input


def load(db_path, run_id):
    """The fleet runs of run run_id (a list of dicts: the fleet_runs columns,
    'stats' parsed, 'samples' and 'devices' lists, 'seeds' the fleet runs of
    the whole database with the same name and device count). [] when the
    database has no fleet tables (older databases)."""
    p = pathlib.Path(db_path)
    con = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"fleet_runs", "fleet_samples", "fleet_devices"} <= tables:
            return []
        every = []
        for r in con.execute("SELECT %s, stats FROM fleet_runs ORDER BY id" %
                             ", ".join(FLEET_COLUMNS)):
            f = dict(r)
            f["stats"] = _json(f["stats"])
            every.append(f)
        fleets = [f for f in every if f["run_id"] == run_id]
        for f in fleets:
            f["samples"] = []
            for s in con.execute("SELECT t_ms, rollout, stage, counts FROM fleet_samples"
                                 " WHERE fleet_id=? ORDER BY t_ms, rowid", (f["id"],)):
                s = dict(s)
                s["counts"] = _json(s["counts"])
                f["samples"].append(s)
            f["devices"] = [dict(d) for d in con.execute(
                "SELECT device, type, grp, version, state, outcome, bytes, downtime_ms,"
                " recovery_ms, updates, rollbacks, cuts, checks FROM fleet_devices"
                " WHERE fleet_id=? ORDER BY rowid", (f["id"],))]
            n = device_count(f)
            f["seeds"] = [g for g in every if g["name"] == f["name"] and
                          device_count(g) == n]
        return fleets
    finally:
        con.close()


def device_count(f):
    n = f["stats"].get("devices")
    if isinstance(n, int):
        return n
    return len(f.get("devices") or []) or None


# ------------------------------------------------------------------ analysis


def ordered_states(samples):
    seen = set()
    for s in samples:
        seen.update(s["counts"].get("states", {}) or {})
    return [x for x in STATES if x in seen] + sorted(seen - set(STATES))


def ordered_versions(samples):
    out = []
    for s in samples:
        for v in s["counts"].get("versions", {}) or {}:
            if v not in out:
                out.append(v)
    return out


def rollout_by_state(s):
    """The server's devices per rollout state at sample s, or None (before
    the rollout started, or a database written before counts.rollout)."""
    ro = s["counts"].get("rollout")
    by = ro.get("by_state") if isinstance(ro, dict) else None
    return by if isinstance(by, dict) else None


def rollout_targeted(s):
    """The devices the server's rollout targets at sample s: the sum of its
    stages' sizes (None when the sample has no stages)."""
    ro = s["counts"].get("rollout")
    stages = ro.get("stages") if isinstance(ro, dict) else None
    if not isinstance(stages, list) or not stages:
        return None
    return sum(x.get("devices", 0) for x in stages if isinstance(x, dict))


def rollout_samples(samples):
    return [s for s in samples if rollout_by_state(s) is not None]


def ordered_rollout_states(samples):
    """The rollout states with a device at some sample, in band order."""
    seen = set()
    for s in samples:
        seen.update(k for k, v in (rollout_by_state(s) or {}).items() if v)
    return [x for x in ROLLOUT_STATES if x in seen] + sorted(seen - set(ROLLOUT_STATES))


def agent_busy(samples):
    """(peak, total, t_ms, states): the most devices in a state other than
    IDLE at one sample, the device count then, when, and their states."""
    best = (0, 0, None, {})
    for s in samples:
        st = s["counts"].get("states") or {}
        busy = {k: v for k, v in st.items() if k != "IDLE" and v}
        n = sum(busy.values())
        if n > best[0]:
            best = (n, sum(st.values()), s["t_ms"], busy)
    return best


def markers(samples):
    """(t_ms, label, kind) where the rollout starts, changes stage, or ends
    (paused, completed, rolled_back, failed), as the samples say: at the
    first sample that shows the change."""
    out = []
    prev = None
    for s in samples:
        ro, st = s["rollout"] or "", s["stage"]
        if prev is not None:
            pro, pst = prev
            if ro != pro and ro == "running" and not pro:
                out.append((s["t_ms"], "start", "start"))
            elif ro != pro and ro in END_STATES:
                out.append((s["t_ms"], ro, "end"))
            elif ro != pro and ro:
                out.append((s["t_ms"], ro, "state"))
            if st != pst and ro:
                out.append((s["t_ms"], "stage %d" % st, "stage"))
        elif ro in END_STATES:
            out.append((s["t_ms"], ro, "end"))
        prev = (ro, st)
    return out


def outcome_table(devices, key):
    """{key value: {outcome: n, 'total': n}} over the devices."""
    out = {}
    for d in devices:
        row = out.setdefault(d[key] or "-", dict.fromkeys(OUTCOMES, 0))
        o = d["outcome"] or "-"
        row[o] = row.get(o, 0) + 1
        row["total"] = row.get("total", 0) + 1
    return dict(sorted(out.items()))


def outcome_columns(devices):
    extra = sorted({d["outcome"] or "-" for d in devices} - set(OUTCOMES))
    return OUTCOMES + extra


def seed_summary(f):
    """The runs of this fleet file (same name, same device count) in the
    database: (rows, k stopped, n finished, (lo, hi) 95% Wilson)."""
    rows = f["seeds"]
    done = [g for g in rows if g["rollout_state"]]
    k = sum(1 for g in done if g["rollout_state"] in STOPPED)
    return rows, k, len(done), wilson(k, len(done))


def verdict(f):
    if f["ok"] is None:
        return "incomplete"
    return "ok" if f["ok"] else "FAILED"


def failed_lines(f):
    return [x for x in (f["failed"] or "").splitlines() if x.strip()]


def pct(k, n):
    return "%.2f%%" % (100.0 * k / n) if n else "n/a"


def hours(ms):
    return "%.2f h" % (ms / 3600000.0) if isinstance(ms, (int, float)) else "n/a"


def fmt_ms(ms):
    if not isinstance(ms, (int, float)):
        return "n/a"
    return "%.1f s" % (ms / 1000.0) if ms < 120000 else "%.2f h" % (ms / 3600000.0)


def fmt_bytes(b):
    if not isinstance(b, (int, float)):
        return "n/a"
    if b >= 1 << 20:
        return "%.2f MiB" % (b / float(1 << 20))
    if b >= 1 << 10:
        return "%.1f KiB" % (b / 1024.0)
    return "%d B" % b


def spread(f):
    st = f["stats"]
    n = st.get("devices") or len(f["devices"])
    counts = {o: 0 for o in OUTCOMES}
    for d in f["devices"]:
        counts[d["outcome"]] = counts.get(d["outcome"], 0) + 1
    return {
        "devices": n, "online": st.get("online"),
        "bad_installed": st.get("bad_installed"),
        "bad_installed_percent": (100.0 * st["bad_installed"] / n
                                  if n and isinstance(st.get("bad_installed"), int) else None),
        "rolled_back": st.get("rolled_back"), "on_target": st.get("on_target"),
        "bricked": st.get("bricked"), "inconsistent": st.get("inconsistent"),
        "stuck": st.get("stuck"), "never_checked_in": st.get("never_checked_in"),
    }


# ----------------------------------------------------------------------- SVG

ML, MR, MT, MB = 48, 150, 22, 30  # margins: left axis, right legend, top labels, bottom axis


def svg_stacked(samples, keys, getter, colours, label, w=900, h=240, every=None,
                legend_last=False):
    """A stacked area chart of devices per key by virtual time (hours), with
    the rollout's markers as labelled vertical lines. One <polygon
    class="band" data-key=K> per key present. samples are the ones drawn;
    every (default: samples) gives the time axis and the markers, so charts
    of one fleet share their x axis. legend_last: the legend shows each
    key's count at the last sample drawn."""
    every = every or samples
    if not samples:
        return '<p class="note">No samples recorded.</p>'
    t0, t1 = every[0]["t_ms"], every[-1]["t_ms"]
    span = max(1, t1 - t0)
    top = max(1, max(sum((getter(s) or {}).values()) for s in samples))
    pw, ph = w - ML - MR, h - MT - MB

    def x(t):
        return ML + (t - t0) * pw / span

    def y(v):
        return MT + ph - v * ph / top

    out = []
    base = [0] * len(samples)
    for i, k in enumerate(keys):
        vals = [(getter(s) or {}).get(k, 0) for s in samples]
        upper = [b + v for b, v in zip(base, vals)]
        pts = ["%.1f,%.1f" % (x(s["t_ms"]), y(u)) for s, u in zip(samples, upper)]
        pts += ["%.1f,%.1f" % (x(s["t_ms"]), y(b)) for s, b in reversed(list(zip(samples, base)))]
        out.append('<polygon class="band" data-key="%s" points="%s" fill="%s" stroke="none">'
                   "<title>%s: up to %d devices</title></polygon>" % (
                       e(k), " ".join(pts), colours(k, i), e(k), max(vals)))
        base = upper
    # axes: y 0 and top, x in hours
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>' % (
        ML, MT + ph, ML + pw, MT + ph))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>' % (ML, MT, ML, MT + ph))
    out.append('<text x="%d" y="%d" font-size="10" text-anchor="end">%d</text>' % (
        ML - 4, MT + 4, top))
    out.append('<text x="%d" y="%d" font-size="10" text-anchor="end">0</text>' % (
        ML - 4, MT + ph + 4))
    span_h = span / 3600000.0
    step = next((s for s in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 96, 168)
                 if span_h / s <= 12), 24 * math.ceil(span_h / 288))
    tick = 0.0
    while tick <= span_h + 1e-9:
        tx = x(t0 + tick * 3600000.0)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555"/>'
                   '<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%g</text>' % (
                       tx, MT + ph, tx, MT + ph + 4, tx, MT + ph + 15, tick))
        tick += step
    out.append('<text x="%d" y="%d" font-size="10" text-anchor="middle">virtual time (h)</text>' %
               (ML + pw // 2, h - 3))
    # markers
    for j, (t, lab, kind) in enumerate(markers(every)):
        mx = x(t)
        colour = {"end": "#c62828", "stage": "#1d232a", "start": "#2e7d32"}.get(kind, "#7a4b00")
        out.append('<line class="marker" data-kind="%s" data-t-ms="%d" x1="%.1f" y1="%d" '
                   'x2="%.1f" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="4 3"/>' % (
                       kind, t, mx, MT - 4, mx, MT + ph, colour))
        out.append('<text x="%.1f" y="%d" font-size="10" fill="%s">%s<title>%s at %s</title>'
                   "</text>" % (mx + 2, MT - 8 + 10 * (j % 2), colour, e(lab), e(lab),
                                e(hours(t))))
    # legend
    last = getter(samples[-1]) or {}
    for i, k in enumerate(keys):
        ly = MT + 14 * i
        name = "%s %d" % (k, last.get(k, 0)) if legend_last else k
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/>'
                   '<text x="%d" y="%d" font-size="%d">%s</text>' % (
                       w - MR + 10, ly, colours(k, i), w - MR + 24, ly + 9,
                       10 if legend_last else 11, e(name)))
    return ('<svg class="fleet-chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="%s">%s</svg>' % (w, h, w, h, e(label), "".join(out)))


def state_colour(k, i):
    return STATE_COLOURS.get(k, PALETTE[i % len(PALETTE)])


def rollout_colour(k, i):
    return ROLLOUT_COLOURS.get(k, PALETTE[i % len(PALETTE)])


def version_colour(k, i):
    return PALETTE[i % len(PALETTE)]


# ---------------------------------------------------------------------- HTML


def html_fleet(f):
    st = f["stats"]
    anchor = "fleet-%d" % f["id"]
    v = verdict(f)
    cls = {"ok": "pass", "FAILED": "fail"}.get(v, "error")
    out = ['<div class="fleet" id="%s">' % anchor,
           '<h3>%s &mdash; seed %s <span class="badge %s">%s</span></h3>' % (
               e(f["name"]), e(f["seed"]), cls, e(v))]
    rows = [
        ("File", "<code>%s</code>" % e(f["file"])),
        ("Devices", "%s (%s online, %s never checked in)" % (
            e(st.get("devices")), e(st.get("online")), e(st.get("never_checked_in")))),
        ("Rollout", "<b>%s</b> at stage %s after %s (%s of virtual time covered)" % (
            e(f["rollout_state"] or st.get("rollout_state") or "-"), e(st.get("stage")),
            e(hours(st.get("rollout_ms"))), e(hours(st.get("virtual_ms"))))),
        ("Reason", e(st.get("rollout_reason") or "")),
    ]
    out.append('<table class="kv">')
    for name, val in rows:
        out.append("<tr><td>%s</td><td>%s</td></tr>" % (e(name), val))
    out.append("</table>")
    fl = failed_lines(f)
    if fl:
        out.append("<p><b>Failed expectations:</b></p><ul>%s</ul>" % "".join(
            '<li class="fail">%s</li>' % e(x) for x in fl))
    out.append("<b>Rerun:</b>")
    out.append('<pre class="repro"><code>%s</code></pre>' % e(f["rerun"] or st.get("rerun")))
    out.append(html_charts(f["samples"], f["stats"].get("shards")))
    out.append(html_spread(f))
    out.append(html_outcomes(f))
    out.append(html_figures(f))
    out.append(html_seeds(f))
    out.append("</div>")
    return "\n".join(out)


def rollout_mismatch(samples):
    """The first rollout sample whose states do not add up to the devices the
    rollout targets, as (t_ms, sum, targeted), or None."""
    for s in samples:
        n = rollout_targeted(s)
        total = sum(rollout_by_state(s).values())
        if n is not None and total != n:
            return s["t_ms"], total, n
    return None


def html_charts(samples, shards=None):
    """The rollout-state chart (the server's view), the version chart and the
    agent-state chart (only when it shows more than idle devices)."""
    out = ["<h4>Devices by rollout state (the server's view)</h4>"]
    rs = rollout_samples(samples)
    bad = rollout_mismatch(rs)
    if bad:
        # a database that does not hold the server's figures as they were
        # (ota-sim fleet-merge before this round summed every shard's read)
        out.append('<p class="note">Not drawn: at %s the rollout states add up to %d devices, '
                   "not the %d the rollout targets%s.</p>" % (
                       e(hours(bad[0])), bad[1], bad[2],
                       " (this run was merged from %s shards by an ota-sim that summed each "
                       "shard's read of the server's counts)" % e(shards)
                       if isinstance(shards, int) and shards > 1 else ""))
    elif rs:
        n = rollout_targeted(rs[-1])
        out.append('<p class="note small">The server\'s state of each device the rollout targets'
                   "%s (<code>by_state</code> of the rollout's metrics, read at each sample): "
                   "<i>pending</i> devices were not offered the release yet.</p>" % (
                       " (%d)" % n if n is not None else ""))
        out.append(svg_stacked(rs, ordered_rollout_states(rs), rollout_by_state, rollout_colour,
                               "devices by rollout state over virtual time", every=samples,
                               legend_last=True))
    else:
        out.append('<p class="note">No rollout states recorded (the rollout never started, or '
                   "the database predates them).</p>")
    out.append("<h4>Devices per version</h4>")
    out.append('<p class="note small">The version each device runs (its active slot), '
               "counted by the runner at each sample.</p>")
    out.append(svg_stacked(samples, ordered_versions(samples),
                           lambda s: s["counts"].get("versions"), version_colour,
                           "devices per version over virtual time", h=170))
    peak, total, t, busy = agent_busy(samples)
    if samples:
        out.append("<h4>Devices per agent state</h4>")
    if total and peak >= AGENT_CHART_MIN_SHARE * total:
        out.append('<p class="note small">The agent\'s state of each device, sampled between '
                   "the runner's passes: a device mid-update mostly shows as IDLE.</p>")
        out.append(svg_stacked(samples, ordered_states(samples),
                               lambda s: s["counts"].get("states"), state_colour,
                               "devices per agent state over virtual time"))
    elif samples:
        out.append('<p class="note small agent-states">The agent\'s states are sampled between '
                   "the runner's passes, when nearly every device is IDLE: at most %d of %d "
                   "devices (%s) were in another state at a sample%s, below the %d%% share "
                   "that gets the chart.</p>" % (
                       peak, total, pct(peak, total),
                       e(" (%s at %s)" % (", ".join("%s %d" % kv for kv in sorted(busy.items())),
                                          hours(t))) if peak else "",
                       round(100 * AGENT_CHART_MIN_SHARE)))
    ms = markers(samples)
    if ms:
        out.append('<p class="note small">Markers (first sample showing the change): %s.</p>'
                   % e(", ".join("%s at %s" % (lab, hours(t)) for t, lab, _ in ms)))
    return "\n".join(out)


def html_spread(f):
    sp = spread(f)
    n = sp["devices"]
    rows = [("ran the bad release", sp["bad_installed"],
             pct(sp["bad_installed"], n) if isinstance(sp["bad_installed"], int) else "n/a",
             "of all devices"),
            ("rolled back", sp["rolled_back"], "", ""),
            ("on the target", sp["on_target"],
             pct(sp["on_target"], sp["online"]) if isinstance(sp["on_target"], int) else "",
             "of online devices")]
    for k in ("bricked", "inconsistent", "stuck"):
        rows.append((k, sp[k], pct(sp[k], sp["online"]) if isinstance(sp[k], int) else "",
                     "of online devices"))
    out = ["<h4>Spread of the bad release</h4>",
           '<table><tr><th></th><th class="num">devices</th><th class="num">share</th>'
           "<th>denominator</th></tr>"]
    for name, k, share, den in rows:
        bad = name in BAD_OUTCOMES and isinstance(k, int) and k > 0
        out.append('<tr%s><td>%s</td><td class="num">%s</td><td class="num">%s</td><td>%s</td>'
                   "</tr>" % (' class="fail"' if bad else "", e(name), e(k), e(share), e(den)))
    out.append("</table>")
    return "\n".join(out)


def html_outcomes(f):
    devs = f["devices"]
    if not devs:
        return '<p class="note">No per-device rows recorded.</p>'
    cols = outcome_columns(devs)
    out = ["<h4>Outcomes per device type and group</h4>",
           '<table class="outcomes"><tr><th>by</th><th>value</th>%s<th class="num">total</th>'
           "</tr>" % "".join('<th class="num">%s</th>' % e(c) for c in cols)]
    for label, key in (("type", "type"), ("group", "grp")):
        for val, row in outcome_table(devs, key).items():
            cells = []
            for c in cols:
                n = row.get(c, 0)
                cls = "num"
                if n and c in BAD_OUTCOMES:
                    cls += " fail"
                cells.append('<td class="%s">%d</td>' % (cls, n))
            out.append('<tr data-by="%s"><td>%s</td><td>%s</td>%s<td class="num">%d</td></tr>' % (
                label, label, e(val), "".join(cells), row["total"]))
    out.append("</table>")
    return "\n".join(out)


def figures(f):
    st = f["stats"]
    cpu = None
    if isinstance(st.get("cpu_user_s"), (int, float)) and isinstance(st.get("cpu_sys_s"),
                                                                    (int, float)):
        cpu = st["cpu_user_s"] + st["cpu_sys_s"]
    return [
        ("downtime per update", "mean %s, p95 %s" % (fmt_ms(st.get("downtime_mean_ms")),
                                                    fmt_ms(st.get("downtime_p95_ms")))),
        ("bytes per device", "mean %s, max %s (total %s)" % (
            fmt_bytes(st.get("bytes_mean")), fmt_bytes(st.get("bytes_max")),
            fmt_bytes(st.get("bytes_down")))),
        ("recovery after a failure", "%s recovered: mean %s, p95 %s" % (
            st.get("recovered", "n/a"), fmt_ms(st.get("recovery_mean_ms")),
            fmt_ms(st.get("recovery_p95_ms")))),
        ("fault draws", "%s power cuts (%s chances), %s agent crashes, %s server faults applied"
         % (st.get("power_cuts", "n/a"), st.get("cut_chances", "n/a"),
            st.get("agent_crashes", "n/a"), st.get("srv_faults_applied", "n/a"))),
        ("work", "%s requests, %s passes, %s core steps" % (
            st.get("requests", "n/a"), st.get("passes", "n/a"), st.get("steps", "n/a"))),
        ("wall / CPU", "wall %s s; runner CPU %s s; server CPU %s s" % (
            _num(st.get("wall_s")), _num(cpu), _num(st.get("srv_cpu_s")))),
        ("memory", "peak RSS runner %s, server %s; %s per idle device" % (
            fmt_bytes(_kib(st.get("peak_rss_kib"))), fmt_bytes(_kib(st.get("srv_peak_rss_kib"))),
            fmt_bytes(st.get("bytes_per_idle_device")))),
    ]


def _num(x):
    return "%.2f" % x if isinstance(x, (int, float)) else "n/a"


def _kib(x):
    return x * 1024 if isinstance(x, (int, float)) else None


def html_figures(f):
    out = ["<h4>Figures</h4>", '<table class="kv">']
    for name, val in figures(f):
        out.append("<tr><td>%s</td><td>%s</td></tr>" % (e(name), e(val)))
    out.append("</table>")
    faults = [x for x in (f["stats"].get("faults") or "").splitlines() if x.strip()]
    if faults:
        out.append("<b>Faults seen to fire</b> (against their configured rates):")
        out.append('<pre class="small">%s</pre>' % e("\n".join(faults)))
    return "\n".join(out)


def html_seeds(f):
    rows, k, n, (lo, hi) = seed_summary(f)
    out = ["<h4>Seeds of this fleet (%s, %s devices) in the database</h4>" % (
        e(f["name"]), e(device_count(f)))]
    out.append('<table class="seeds"><tr><th class="num">run</th><th class="num">seed</th>'
               '<th>verdict</th><th>rollout</th><th class="num">ran the bad release</th></tr>')
    for g in rows:
        cls = ' class="fail"' if g["ok"] == 0 else ""
        me = " (this one)" if g["id"] == f["id"] else ""
        out.append('<tr%s><td class="num">%s</td><td class="num">%s%s</td><td>%s</td><td>%s</td>'
                   '<td class="num">%s</td></tr>' % (
                       cls, e(g["run_id"]), e(g["seed"]), e(me), e(verdict(g)),
                       e(g["rollout_state"] or "-"), e(g["stats"].get("bad_installed", ""))))
    out.append("</table>")
    if n:
        out.append("<p>The rollout stopped (paused, failed or rolled back) in <b>%d of %d</b> "
                   "runs: %s, 95%% Wilson interval %s &ndash; %s.</p>" % (
                       k, n, pct(k, n), pct(lo, 1), pct(hi, 1)))
    return "\n".join(out)


FLEET_CSS = """
.fleet{background:#fff;border:1px solid #d5d9e0;border-left:5px solid #4a78c2;padding:6px 12px;
 margin:12px 0;border-radius:3px}
h4{font-size:14px;margin:14px 0 4px}
"""


def render_html(fleets):
    if not fleets:
        return ""
    out = ["<h2>Fleet runs</h2>"]
    out += [html_fleet(f) for f in fleets]
    return "\n".join(out)


# ------------------------------------------------------------------ Markdown


def render_summary(fleets):
    out = []
    for f in fleets:
        st = f["stats"]
        sp = spread(f)
        out += ["### Fleet %s (seed %s): %s" % (f["name"], f["seed"], verdict(f)), ""]
        for x in failed_lines(f):
            out.append("- failed: %s" % x)
        out += [
            "- rollout **%s** at stage %s after %s: %s" % (
                f["rollout_state"] or "-", st.get("stage"), hours(st.get("rollout_ms")),
                st.get("rollout_reason") or ""),
            "- %s devices (%s online): ran the bad release %s (%s of all), rolled back %s; "
            "bricked %s, inconsistent %s, stuck %s" % (
                sp["devices"], sp["online"], sp["bad_installed"],
                "%.2f%%" % sp["bad_installed_percent"]
                if sp["bad_installed_percent"] is not None else "n/a",
                sp["rolled_back"], sp["bricked"], sp["inconsistent"], sp["stuck"]),
        ]
        rs = rollout_samples(f["samples"])
        if rs:
            by = rollout_by_state(rs[-1])
            out.append("- the server's view at the end: %s" % ", ".join(
                "%s %d" % (k, by.get(k, 0)) for k in ordered_rollout_states(rs[-1:])))
        out += ["- %s: %s" % (name, val) for name, val in figures(f)]
        rows, k, n, (lo, hi) = seed_summary(f)
        if n > 1:
            out.append("- seeds %s: stopped in %d of %d runs (%s, 95%% Wilson %s - %s)" % (
                ", ".join(str(g["seed"]) for g in rows), k, n, pct(k, n), pct(lo, 1),
                pct(hi, 1)))
        out += ["", "```", f["rerun"] or "", "```", ""]
        if f["devices"]:
            cols = outcome_columns(f["devices"])
            out += ["| by | value | %s | total |" % " | ".join(cols),
                    "|---|---|%s---:|" % ("---:|" * len(cols))]
            for label, key in (("type", "type"), ("group", "grp")):
                for val, row in outcome_table(f["devices"], key).items():
                    out.append("| %s | %s | %s | %d |" % (
                        label, str(val).replace("|", "\\|"),
                        " | ".join(str(row.get(c, 0)) for c in cols), row["total"]))
            out.append("")
    return "\n".join(out) + ("\n" if out else "")


# --------------------------------------------------------------------- JSON


def render_jsonl(fleets):
    """One record per fleet run: the fleet_runs columns, stats, the markers,
    the outcome tables and the seeds of the same fleet."""
    lines = []
    for f in fleets:
        rows, k, n, (lo, hi) = seed_summary(f)
        rec = {c: f[c] for c in FLEET_COLUMNS}
        rec["ok"] = None if f["ok"] is None else bool(f["ok"])
        rec["stats"] = f["stats"]
        rec["samples"] = len(f["samples"])
        rs = rollout_samples(f["samples"])
        rec["rollout_by_state"] = rollout_by_state(rs[-1]) if rs else None
        rec["rollout_targeted"] = rollout_targeted(rs[-1]) if rs else None
        rec["markers"] = [{"t_ms": t, "label": lab, "kind": kind}
                          for t, lab, kind in markers(f["samples"])]
        rec["outcomes_by_type"] = outcome_table(f["devices"], "type")
        rec["outcomes_by_group"] = outcome_table(f["devices"], "grp")
        rec["seeds"] = {"runs": [{"fleet_id": g["id"], "run_id": g["run_id"], "seed": g["seed"],
                                  "rollout_state": g["rollout_state"]} for g in rows],
                        "stopped": k, "finished": n, "wilson95": [lo, hi]}
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    return "".join(lines)
