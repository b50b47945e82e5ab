"""Inline SVG plots of ota-report's trial section (no scripts, no fetches):
the recovery time distribution per state (or trigger) and the trials over
the run's wall time. Python 3 standard library only.

Every mark carries its figures as data-* attributes (data-state, data-ms,
data-case, data-start-ms, data-duration-ms, data-outcome) so that a test can
read the plot back and compare it with the run database.
"""

import html
import math

OUTCOME_COLOURS = {"pass": "#3aa655", "fail": "#c62828", "error": "#e69500",
                   "not-run": "#8888bb", "environment": "#5b8fa8"}


def e(x):
    return html.escape("" if x is None else str(x), quote=True)


def nice_step(span, ticks=6):
    """A round tick step (1, 2 or 5 times a power of ten) for span."""
    if span <= 0:
        return 1
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_ms_short(ms):
    if ms >= 1000:
        s = ms / 1000.0
        return ("%.0f s" % s) if s == int(s) else ("%.1f s" % s)
    return "%d ms" % ms


def x_axis(x0, x1, y, span, unit_fmt=fmt_ms_short):
    """Ticks and labels from 0 to span (ms) between pixels x0 and x1."""
    step = nice_step(span)
    out = ['<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888"/>' % (x0, y, x1, y)]
    v = 0
    while v <= span * 1.0001:
        x = x0 + (x1 - x0) * (v / span if span else 0)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888"/>'
                   '<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#444">%s'
                   "</text>" % (x, y, x, y + 4, x, y + 15, e(unit_fmt(v))))
        v += step
    return "".join(out)


def recovery_by_state(trials, row_of, row_key, is_equiv):
    """{row: [(recover_ms, case_id, outcome)]} of executed trials with a
    recovery time, rows in matrix order, each ascending."""
    out = {}
    for t in trials:
        if is_equiv(t) or t["recover_ms"] is None or t["recover_ms"] < 0:
            continue
        out.setdefault(row_of(t["trigger"]), []).append(
            (t["recover_ms"], t["case_id"], t["outcome"]))
    return {k: sorted(v) for k, v in sorted(out.items(), key=lambda kv: row_key(kv[0]))}


def svg_recovery_by_state(rows, w=900, row_h=26, left=170, right=110):
    """One row per state: a dot per trial at its recovery time (coloured by
    outcome), the median as a bar; one shared axis from 0 to the slowest."""
    if not rows:
        return ""
    top = max(v[-1][0] for v in rows.values()) or 1
    span = nice_step(top) * math.ceil(top / nice_step(top))
    x0, x1 = left, w - right
    h = row_h * len(rows) + 30
    out = []
    for i, (row, vals) in enumerate(rows.items()):
        y = i * row_h
        ms = [v[0] for v in vals]
        n = len(ms)
        med = ms[n // 2] if n % 2 else (ms[n // 2 - 1] + ms[n // 2]) / 2.0
        out.append('<g class="rec-row" data-state="%s" data-n="%d" data-median-ms="%g">' % (
            e(row), n, med))
        if i % 2 == 0:
            out.append('<rect x="0" y="%d" width="%d" height="%d" fill="#f1f3f6"/>' % (
                y, w, row_h))
        out.append('<text x="4" y="%d" font-size="11" fill="#111">%s</text>' % (
            y + row_h // 2 + 4, e(row)))
        for j, (v, case, outcome) in enumerate(vals):
            x = x0 + (x1 - x0) * v / span
            dy = ((j % 5) - 2) * 3  # a little spread so equal times stay visible
            out.append('<circle class="rec" cx="%.1f" cy="%d" r="4" fill="%s" fill-opacity="0.75" '
                       'data-ms="%d" data-case="%s"><title>%s: %s, %s</title></circle>' % (
                           x, y + row_h // 2 + dy, OUTCOME_COLOURS.get(outcome, "#e69500"),
                           v, e(case), e(case), e(fmt_ms_short(v)), e(outcome)))
        xm = x0 + (x1 - x0) * med / span
        out.append('<line class="median" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#111" '
                   'stroke-width="2"/>' % (xm, y + 3, xm, y + row_h - 3))
        out.append('<text x="%d" y="%d" font-size="11" fill="#333">n=%d, median %s</text>' % (
            x1 + 8, y + row_h // 2 + 4, n, e(fmt_ms_short(int(med)))))
        out.append("</g>")
    out.append(x_axis(x0, x1, row_h * len(rows) + 2, span))
    return ('<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="recovery time per state">%s</svg>' % (w, h, w, h, "".join(out)))


def lanes(bars):
    """Greedy lanes for (start, end, ...) bars sorted by start: a bar goes
    into the first lane free at its start. Returns the lane of each bar."""
    ends, out = [], []
    for b in bars:
        for i, end in enumerate(ends):
            if end <= b[0]:
                ends[i] = b[1]
                out.append(i)
                break
        else:
            ends.append(b[1])
            out.append(len(ends) - 1)
    return out


def trial_bars(trials, is_equiv):
    """(start_ms, end_ms, case_id, outcome, duration_ms) of executed trials
    with a start time, by start."""
    out = []
    for t in trials:
        if is_equiv(t) or t["started_ms"] is None:
            continue
        d = max(0, t["duration_ms"] or 0)
        out.append((t["started_ms"], t["started_ms"] + d, t["case_id"], t["outcome"], d))
    return sorted(out)


def svg_trials_over_time(bars, run_start=None, w=900, lane_h=14, left=60, right=20):
    """A bar per executed trial from its start to its end on the run's wall
    clock, coloured by outcome, in as many lanes as ran at once."""
    if not bars:
        return ""
    t0 = min(run_start or bars[0][0], bars[0][0])
    span = max(b[1] for b in bars) - t0 or 1
    span = nice_step(span) * math.ceil(span / nice_step(span))
    ln = lanes(bars)
    n = max(ln) + 1
    x0, x1 = left, w - right
    h = n * lane_h + 32
    out = ['<text x="4" y="%d" font-size="10" fill="#444">%d at once</text>' % (
        n * lane_h // 2 + 4, n) if n > 1 else ""]
    for (s, end, case, outcome, d), lane in zip(bars, ln):
        x = x0 + (x1 - x0) * (s - t0) / span
        bw = max(1.5, (x1 - x0) * d / span)
        out.append('<rect class="trial" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
                   'data-case="%s" data-outcome="%s" data-start-ms="%d" data-duration-ms="%d">'
                   "<title>%s: %s, +%s for %s</title></rect>" % (
                       x, lane * lane_h + 1, bw, lane_h - 2,
                       OUTCOME_COLOURS.get(outcome, "#e69500"), e(case), e(outcome), s, d,
                       e(case), e(outcome), e(fmt_ms_short(s - t0)), e(fmt_ms_short(d))))
    out.append(x_axis(x0, x1, n * lane_h + 4, span))
    return ('<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="trials over time">%s</svg>' % (w, h, w, h, "".join(out)))


def svg_histogram(vals, bins=16, w=220, h=44):
    if not vals:
        return ""
    lo, hi = vals[0], vals[-1]
    width = (hi - lo) / bins if hi > lo else 1.0
    counts = [0] * bins
    for v in vals:
        i = int((v - lo) / width) if hi > lo else 0
        counts[min(i, bins - 1)] += 1
    top = max(counts)
    bw = w / bins
    rects = []
    for i, c in enumerate(counts):
        if not c:
            continue
        bh = max(1.0, (h - 2) * c / top)
        rects.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a78c2">'
                     "<title>%s&#8211;%s ms: %d</title></rect>" % (
                         i * bw + 0.5, h - bh, bw - 1, bh, int(lo + i * width),
                         int(lo + (i + 1) * width), c))
    return ('<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="histogram">'
            '<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#888"/>%s</svg>' % (
                w, h + 1, w, h + 1, h, w, h, "".join(rects)))
