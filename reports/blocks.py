"""Block-level crash states for ota-report (issue 16, docs/blocks.md): the rows
`ota-sim run --target qemu --mode blocks` writes into the run database, one
section per run (HTML and Markdown), shown only when the run has such rows.

A block row is a trial row whose crash_model is "blocks-write" or
"blocks-flush" (trigger "block-<unit>:..."); its `blocks` column (JSON) says
what it is: a crash state ({"kind":"state", "point", "last", "shared", ...},
judged on the host, or sharing the result of the state it is equivalent to)
or a booted state ({"kind":"boot", "point", "predicted", ...}, a real boot of
that state). Python 3 standard library only.
"""

import html
import json

from plots import nice_step

UNITS = {
    "write": "each write \u2014 the SD card never flushes (no cache, no flush command: every "
             "completed write is on the card, in order)",
    "flush": "each flush \u2014 virtio-blk has a volatile write cache; the disk as the writes up "
             "to each flush (or FUA) leave it",
}
BOARD_UNIT = {"raspi3b": "write", "virt": "flush"}
SHARED = {0: "judged", 1: "nothing the device uses changed (not read)",
          2: "read, same reading as the previous state"}
COLOURS = {"pass": "#3aa655", "pass-shared": "#a9d8b3", "fail": "#c62828",
           "fail-shared": "#f3b0b0", "error": "#e69500", "error-shared": "#f8d59a"}
DURING_COLOURS = {
    "BOOT": "#c9ced6", "IDLE": "#9aa5b1", "CHECKING": "#7fb3d5", "DOWNLOADING": "#5d9cec",
    "VERIFYING": "#48c9b0", "INSTALLING": "#f5b041", "SWITCHING": "#eb984e",
    "REBOOTING": "#af7ac5", "HEALTH_CHECK": "#58d68d", "COMMITTING": "#27ae60",
    "ROLLING_BACK": "#e74c3c",
}
CSS = """
.blk-strip text{font:10px system-ui,sans-serif}
.blk-legend span{display:inline-block;width:12px;height:12px;vertical-align:-2px;margin:0 4px 0 12px}
"""


def e(x):
    return html.escape("" if x is None else str(x), quote=True)


def anchor(case_id):
    return "f-" + "".join(c if c.isalnum() else "-" for c in case_id)


def is_block(t):
    return ((t.get("crash_model") or "").startswith("blocks-") or
            (t.get("trigger") or "").startswith("block-"))


def info(t):
    """The row's blocks column as a dict (read once, kept on the row); {} when
    it is not a block row. Old rows (before runs of points shared one row)
    have no "last": a row is then its own point."""
    if "_blocks" in t:
        return t["_blocks"]
    b = {}
    if is_block(t):
        try:
            b = json.loads(t.get("blocks") or "{}")
        except ValueError:
            b = {}
        if not isinstance(b, dict):
            b = {}
        trig = t.get("trigger") or ""
        if "kind" not in b:
            b["kind"] = "boot" if trig.endswith(" booted") else "state"
        if "unit" not in b:
            b["unit"] = trig[6:].split(":", 1)[0] if trig.startswith("block-") else (
                (t.get("crash_model") or "blocks-").split("-", 1)[1])
        if "point" not in b:
            try:
                rng = trig.split(":", 1)[1].split()[0]
                b["point"] = int(rng.split("-")[0])
                if "-" in rng:
                    b["last"] = int(rng.split("-")[1])
            except (IndexError, ValueError):
                b["point"] = 0
        b.setdefault("last", b["point"])
        b.setdefault("shared", 1 if t.get("equivalent_to") else 0)
        b.setdefault("during", "")
    t["_blocks"] = b
    return b


def is_state(t):
    """A block-level crash state (judged on the host or sharing a result): no
    trial ran; not counted as one by the other sections."""
    return is_block(t) and info(t).get("kind") != "boot"


def is_boot(t):
    return is_block(t) and info(t).get("kind") == "boot"


def profile_of(t):
    parts = (t.get("case_id") or "").split("/")
    if len(parts) >= 4 and parts[0] == "blocks":
        return parts[1]
    return "?"


def update_key(t):
    return (profile_of(t), t.get("scenario") or "", info(t)["unit"])


def prediction(t):
    return (t.get("final_version") or "", t.get("final_slot") or "", t.get("final_state") or "")


def mismatch(t):
    return any(i["name"] == "predicted-outcome" and not i["ok"] for i in t.get("invariants", []))


def analyse(trials):
    """Per update (profile, scenario, unit): counts, the strip's cells and
    segments, the booted points, the failed states. [] without block rows."""
    ups = {}
    for t in trials:
        if is_block(t):
            ups.setdefault(update_key(t), {"states": [], "boots": []})[
                "boots" if is_boot(t) else "states"].append(t)
    out = []
    for (profile, scen, unit), g in sorted(ups.items()):
        states = sorted(g["states"], key=lambda t: info(t)["point"])
        boots = sorted(g["boots"], key=lambda t: info(t)["point"])
        u = {"profile": profile, "scenario": scen, "unit": unit,
             "unit_text": UNITS.get(unit, unit),
             "board_unit": BOARD_UNIT.get(profile),
             "rows": len(states), "points": 0, "judged": 0, "shared": 0, "not_read": 0,
             "same_reading": 0, "failed": 0, "failed_judged": 0, "failed_shared": 0,
             "errors": 0, "predictions": {}, "cells": [], "during": [], "failures": [],
             "boots": [], "booted": len(boots), "booted_failed": 0, "mismatches": 0,
             "first": None, "end": None, "recording": ""}
        for t in states:
            b = info(t)
            lo, hi = b["point"], max(b["point"], b["last"])
            n = hi - lo + 1
            shared = b["shared"] if b["shared"] in (0, 1, 2) else 2
            if not shared and t.get("equivalent_to"):
                shared = 2
            u["points"] += n
            u["first"] = lo if u["first"] is None else min(u["first"], lo)
            u["end"] = hi if u["end"] is None else max(u["end"], hi)
            u["recording"] = u["recording"] or b.get("recording", "")
            if shared == 0:
                u["judged"] += n
            else:
                u["shared"] += n
                u["not_read" if shared == 1 else "same_reading"] += n
            o = t["outcome"] if t["outcome"] in ("pass", "fail") else "error"
            if o == "fail":
                u["failed"] += n
                u["failed_shared" if shared else "failed_judged"] += n
                u["failures"].append(t)
            elif o == "error":
                u["errors"] += n
                u["failures"].append(t)
            p = u["predictions"].setdefault(prediction(t), {"points": 0, "pass": 0, "fail": 0,
                                                             "error": 0})
            p["points"] += n
            p[o] += n
            u["cells"].append({"point": lo, "last": hi, "verdict": o, "shared": shared,
                               "case": t["case_id"], "eq": t.get("equivalent_to") or "",
                               "during": b["during"], "prediction": prediction(t),
                               "detail": t.get("detail") or ""})
            if u["during"] and u["during"][-1]["during"] == b["during"]:
                u["during"][-1]["last"] = hi
            else:
                u["during"].append({"during": b["during"], "point": lo, "last": hi})
        for t in boots:
            b = info(t)
            mm = mismatch(t)
            ok = t["outcome"] == "pass"
            u["booted_failed"] += 0 if ok else 1
            u["mismatches"] += 1 if mm else 0
            u["boots"].append({"point": b["point"], "case": t["case_id"],
                               "mark": "mismatch" if mm else ("pass" if ok else "fail"),
                               "outcome": t["outcome"], "during": b["during"],
                               "predicted": b.get("predicted") or {}})
        if u["first"] is None:  # boots only (no state rows)
            pts = [x["point"] for x in u["boots"]] or [0]
            u["first"], u["end"] = min(pts), max(pts)
        u["distinct"] = len(u["predictions"])
        out.append(u)
    return out


def totals(ups):
    keys = ("points", "judged", "shared", "not_read", "same_reading", "failed", "errors",
            "booted", "booted_failed", "mismatches")
    return {k: sum(u[k] for u in ups) for k in keys}


def uid(u):
    return anchor("blocks-%s-%s-%s" % (u["profile"], u["scenario"], u["unit"]))[2:]


def fmt_pred(p):
    v, s, st = p
    return "%s on slot %s, agent from %s" % (v or "?", s or "?", st or "?")


def fmt_range(c):
    return ("%d" % c["point"]) if c["last"] == c["point"] else "%d-%d" % (c["point"], c["last"])


# ---------------------------------------------------------------------- SVG


def svg_strip(u, w=1000, left=8, right=8):
    """One bar: x = crash point index over the whole update (a shared run spans
    its width), a rect per row coloured by verdict (shared rows lighter), the
    console's agent state under it as labelled segments, the booted points
    marked above it (a failed boot and a predicted-outcome mismatch apart)."""
    first, end = u["first"], u["end"]
    span = end - first + 1
    inner = w - left - right
    sx = inner / float(span)
    top, bar_h, dur_y, dur_h = 16, 26, 46, 18
    axis_y = dur_y + dur_h + 4
    h = axis_y + 20

    def x(p):
        return left + (p - first) * sx

    out = []
    # failed cells last (on top) and at least 2 px wide: one failed write among
    # 1,500 points must show
    for c in sorted(u["cells"], key=lambda c: c["verdict"] != "pass"):
        key = c["verdict"] + ("-shared" if c["shared"] else "")
        title = "point %s: %s%s; predicted %s%s" % (
            fmt_range(c), c["verdict"],
            (", shared (%s) with %s" % (SHARED[c["shared"]], c["eq"])) if c["shared"] else
            ", judged", fmt_pred(c["prediction"]),
            ("; " + c["detail"]) if c["verdict"] != "pass" and c["detail"] else "")
        rect = ('<rect class="blk-cell" x="%.2f" y="%d" width="%.2f" height="%d" fill="%s" '
                'data-point="%d" data-last="%d" data-verdict="%s" data-shared="%d" '
                'data-case="%s"><title>%s</title></rect>' % (
                    x(c["point"]), top,
                    max(0.6 if c["verdict"] == "pass" else 2.0, (c["last"] - c["point"] + 1) * sx),
                    bar_h,
                    COLOURS[key], c["point"], c["last"], c["verdict"], c["shared"], e(c["case"]),
                    e(title)))
        if c["verdict"] != "pass":
            rect = '<a href="#%s">%s</a>' % (anchor(c["case"]), rect)
        out.append(rect)
    for d in u["during"]:
        x0, wd = x(d["point"]), (d["last"] - d["point"] + 1) * sx
        label = d["during"] or "?"
        out.append('<rect class="blk-during" x="%.2f" y="%d" width="%.2f" height="%d" fill="%s" '
                   'stroke="#fff" stroke-width="0.5" data-during="%s" data-point="%d" '
                   'data-last="%d"><title>%s: points %d-%d</title></rect>' % (
                       x0, dur_y, max(0.6, wd), dur_h, DURING_COLOURS.get(label, "#bbb"),
                       e(label), d["point"], d["last"], e(label), d["point"], d["last"]))
        if wd > 6.5 * len(label) + 4:
            out.append('<text x="%.1f" y="%d" fill="#111">%s</text>' % (
                x0 + 3, dur_y + dur_h // 2 + 4, e(label)))
    for b in u["boots"]:
        cx = x(b["point"]) + max(0.6, sx) / 2
        title = "booted point %d: %s; predicted %s, agent from %s" % (
            b["point"], b["outcome"] if b["mark"] != "mismatch" else "predicted-outcome mismatch",
            b["predicted"].get("version", "?"), b["predicted"].get("state", "?"))
        if b["mark"] == "pass":
            shape = '<path d="M%.1f %d l-5 -9 h10 z" fill="#1d232a"' % (cx, top - 1)
        elif b["mark"] == "fail":
            shape = ('<path d="M%.1f %d l-6 -11 h12 z" fill="#c62828" stroke="#1d232a" '
                     'stroke-width="1"' % (cx, top - 1))
        else:
            shape = ('<path d="M%.1f %d l6 -7 l-6 -7 l-6 7 z" fill="#8e24aa" stroke="#1d232a" '
                     'stroke-width="1"' % (cx, top + 1))
        mark = '%s class="blk-boot" data-point="%d" data-boot="%s" data-case="%s"><title>%s</title></path>' % (
            shape, b["point"], b["mark"], e(b["case"]), e(title))
        if b["mark"] != "pass":
            mark = '<a href="#%s">%s</a>' % (anchor(b["case"]), mark)
        out.append(mark)
    # the axis: crash point index
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' % (
        left, axis_y, w - right, axis_y))
    step = max(1, int(nice_step(span - 1 if span > 1 else 1)))
    v = (first + step - 1) // step * step
    ticks = sorted({first, end} | set(range(v, end + 1, step)))
    for p in ticks:
        if p != end and p != first and (end - p) * sx < 30:
            continue
        tx = x(p) + sx / 2
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888"/>'
                   '<text x="%.1f" y="%d" text-anchor="%s" fill="#444">%d</text>' % (
                       tx, axis_y, tx, axis_y + 4, tx, axis_y + 15,
                       "end" if p == end and p != first else
                       "start" if p == first else "middle", p))
    return ('<svg class="blk-strip" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="block-level crash states %s" data-update="%s" data-first="%d" '
            'data-end="%d">%s</svg>' % (w, h, w, h, e(uid(u)), e(uid(u)), first, end,
                                       "".join(out)))


# --------------------------------------------------------------------- HTML


def count_rows(u):
    return [
        ("crash points", u["points"], "points %d to %d of the recorded log" % (u["first"], u["end"])),
        ("judged", u["judged"], "each checked on the host (e2fsck journal replay, e2fsck -fn, "
                                "debugfs, mtools, libubootenv, the invariants)"),
        ("sharing a result", u["shared"], "not executed checks: the result of the state before"),
        ("\u2003not read", u["not_read"], SHARED[1]),
        ("\u2003same reading", u["same_reading"], SHARED[2]),
        ("failed", u["failed"], "%d judged, %d sharing a failed result" % (
            u["failed_judged"], u["failed_shared"])),
        ("distinct predicted outcomes", u["distinct"],
         "what the next power-on boots and runs, and the agent state it resumes from"),
        ("booted", u["booted"], "real boots of a state (QEMU), agent run to the end"),
        ("booted failed", u["booted_failed"], "a booted state whose trial failed"),
        ("predicted-outcome mismatches", u["mismatches"],
         "the boot did not do what the host predicted"),
    ]


def legend():
    items = [("pass", "judged, passed"), ("pass-shared", "sharing a passed result"),
             ("fail", "judged, failed"), ("fail-shared", "sharing a failed result")]
    out = ['<p class="blk-legend small">']
    out += ['<span style="background:%s"></span>%s' % (COLOURS[k], e(t)) for k, t in items]
    out.append('<br>x: the crash point index over the whole update (a run of points sharing '
               "one result spans its width); under the bar: the agent state on the console while that part of the log "
               "was written; above it: &#9660; booted, <span style=\"background:#c62828\">"
               "</span>booted and failed, <span style=\"background:#8e24aa\"></span>"
               "predicted-outcome mismatch</p>")
    return "".join(out)


def render_html(ups):
    if not ups:
        return ""
    out = ['<h2 id="blocks">Block-level crash states</h2>',
           '<p class="note">The disk of one recorded update (QEMU <code>blklogwrites</code>) '
           "rebuilt at every crash point and checked on the host without booting; the "
           "verdict of a state is a <b>prediction</b> of what the next power-on boots and "
           "runs, proved only for the booted sample. States that <b>share a result</b> were "
           "not checked again: they are not executed checks (the whole log is enumerated, so "
           "no sampling bound is given). Their rows are not counted as trials in the sections "
           "above and below; a booted state is a trial.</p>",
           legend()]
    for u in ups:
        i = uid(u)
        out.append('<h3 id="%s">%s / %s &mdash; a crash point after %s</h3>' % (
            e(i), e(u["profile"]), e(u["scenario"]), e(u["unit_text"])))
        if u["board_unit"] and u["board_unit"] != u["unit"]:
            out.append('<p class="note">Note: %s is modelled per %s elsewhere; this update used '
                       "%s.</p>" % (e(u["profile"]), e(u["board_unit"]), e(u["unit"])))
        out.append('<table class="blk-counts" data-update="%s"><tr><th>states</th>'
                   '<th class="num">n</th><th>what</th></tr>' % e(i))
        for name, n, what in count_rows(u):
            cls = ""
            if name in ("failed", "booted failed", "predicted-outcome mismatches") and n:
                cls = ' class="fail"'
            out.append('<tr%s data-count="%s"><td>%s</td><td class="num">%d</td><td>%s</td>'
                       "</tr>" % (cls, e(name.strip("\u2003 ")), e(name), n, e(what)))
        out.append("</table>")
        if u["recording"]:
            out.append('<p class="small note">recording: <code>%s</code></p>' % e(u["recording"]))
        out.append(svg_strip(u))
        preds = sorted(u["predictions"].items(), key=lambda kv: -kv[1]["points"])
        out.append("<details><summary>%d distinct predicted outcomes</summary><table>"
                   '<tr><th>predicted: version on slot, agent from</th><th class="num">points'
                   '</th><th class="num">pass</th><th class="num">fail</th></tr>%s</table>'
                   "</details>" % (u["distinct"], "".join(
                       '<tr%s><td>%s</td><td class="num">%d</td><td class="num">%d</td>'
                       '<td class="num">%d</td></tr>' % (
                           ' class="fail"' if p["fail"] else "", e(fmt_pred(k)), p["points"],
                           p["pass"], p["fail"]) for k, p in preds)))
        if u["failures"]:
            out.append("<h3>Failed states of %s / %s (%d rows)</h3>" % (
                e(u["profile"]), e(u["scenario"]), len(u["failures"])))
        listed = {t["case_id"] for t in u["failures"]}
        under = {}
        for t in u["failures"]:
            if t.get("equivalent_to") in listed:
                under.setdefault(t["equivalent_to"], []).append(t)
        for t in u["failures"]:
            if t.get("equivalent_to") in listed:
                continue  # under the state whose result it shares
            b = info(t)
            c = {"point": b["point"], "last": max(b["point"], b["last"])}
            out.append('<div class="failure blk-failure" id="%s">' % anchor(t["case_id"]))
            out.append("<h3>%s %s</h3>" % (
                '<span class="badge %s">%s</span>' % (
                    "fail" if t["outcome"] == "fail" else "error", e(t["outcome"])),
                e(t["case_id"])))
            out.append("<p>crash point %s (log entries applied: %s), written during %s; %s; "
                       "predicted %s</p>" % (
                           e(fmt_range(c)), e(b.get("pos", "?")), e(b["during"] or "?"),
                           "judged" if not b["shared"] else "shares the result of %s (%s)" % (
                               e(t.get("equivalent_to")), e(SHARED.get(b["shared"], ""))),
                           e(fmt_pred(prediction(t)))))
            if t.get("detail"):
                out.append("<p><b>Detail:</b> %s</p>" % e(t["detail"]))
            bad = [x for x in t.get("invariants", []) if not x["ok"]]
            if bad:
                out.append("<table><tr><th>failed check</th><th>detail</th></tr>%s</table>" % "".join(
                    '<tr class="fail"><td>%s</td><td>%s</td></tr>' % (e(x["name"]), e(x["detail"]))
                    for x in bad))
            out.append("<b>Reproduce:</b>")
            out.append('<pre class="repro"><code>%s</code></pre>' % e(t.get("reproduce")))
            more = under.get(t["case_id"], [])
            if more:
                out.append("<details><summary>%d more %s sharing this failed result (%d points)"
                           "</summary>" % (len(more), "row" if len(more) == 1 else "rows", sum(
                               max(info(m)["point"], info(m)["last"]) - info(m)["point"] + 1
                               for m in more)))
                for m in more:
                    out.append('<p id="%s" class="small">%s</p><pre class="repro"><code>%s'
                               "</code></pre>" % (anchor(m["case_id"]), e(m["case_id"]),
                                                  e(m.get("reproduce"))))
                out.append("</details>")
            out.append("</div>")
        bad_boots = [b for b in u["boots"] if b["mark"] != "pass"]
        if bad_boots:
            out.append('<p>Booted states that failed (in <a href="#failures">Failures</a>): %s</p>'
                       % ", ".join('<a href="#%s">%s</a>%s' % (
                           anchor(b["case"]), e(b["case"]),
                           " (predicted-outcome mismatch)" if b["mark"] == "mismatch" else "")
                           for b in bad_boots))
    return "\n".join(out)


# ----------------------------------------------------------------- Markdown


def render_md(ups, max_failed=20):
    if not ups:
        return ""
    out = ["### Block-level crash states", "",
           "_Each state's verdict is a prediction from a host-side check; states sharing a "
           "result were not checked again (not executed checks). Only the booted states ran "
           "the agent._", "",
           "| update | unit | crash points | judged | shared (not read / same reading) | failed "
           "| distinct predicted | booted | booted failed | mismatches |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for u in ups:
        out.append("| %s/%s | %s | %d | %d | %d (%d / %d) | %d | %d | %d | %d | %d |" % (
            u["profile"], u["scenario"], "each " + u["unit"], u["points"], u["judged"],
            u["shared"], u["not_read"], u["same_reading"], u["failed"], u["distinct"],
            u["booted"], u["booted_failed"], u["mismatches"]))
    out.append("")
    for u in ups:
        out.append("- %s/%s: a crash point after %s" % (u["profile"], u["scenario"],
                                                       u["unit_text"]))
    out.append("")
    fails = [t for u in ups for t in u["failures"]]
    if fails:
        out += ["#### Failed block-level states (%d rows)" % len(fails), ""]
        for t in fails[:max_failed]:
            why = " ".join((t.get("detail") or "").split())
            if len(why) > 300:
                why = why[:297] + "..."
            eq = " (shares the result of `%s`)" % t["equivalent_to"] if t.get("equivalent_to") else ""
            out += ["- **%s** %s%s — %s" % (t["case_id"], t["outcome"], eq,
                                            why.replace("|", "\\|")),
                    "  ```", "  %s" % (t.get("reproduce") or ""), "  ```"]
        if len(fails) > max_failed:
            out.append("- ... and %d more: see report.html or reproduce.txt" % (
                len(fails) - max_failed))
        out.append("")
    return "\n".join(out)
