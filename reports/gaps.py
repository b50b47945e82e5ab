"""What a run does not show, for ota-report: the crash model its power cuts
used (and the ones it did not exercise), the cases its tier skipped, the
trials its agent could not run, and what each tier it ran on declares it
does not model (table run_gaps of sim/src/rundb.c, written by the runner
from otasim_target_gaps in sim/src/qtrial.c). Python 3 standard library only.
"""

import html
import sqlite3

# sim/src/power.c otasim_crash_model_names, docs/DESIGN.md "The power model"
CRASH_MODELS = {
    "minimal": "everything not made durable is lost: writes not fsynced, directory changes "
               "not made durable by an fsync of the directory",
    "reorder": "seeded subsets of the operations not yet durable survive, within what fsync "
               "orders",
    "torn": "the last unsynced write of a file survives in part, at sector granularity",
}
# ota-sim --mode blocks (docs/blocks.md): crash states rebuilt from a recorded block log
BLOCK_MODELS = {
    "blocks-write": "block-level crash states, a crash point after each write the guest sent "
                    "(raspi3b: the SD card never flushes, every completed write is on it, in "
                    "order); each state checked on the host, only a sample booted",
    "blocks-flush": "block-level crash states, a crash point after each flush (virt: "
                    "virtio-blk's volatile cache; writes between flushes are not split up); "
                    "each state checked on the host, only a sample booted",
}
QEMU_POWER_CUT = ("QEMU is killed: the guest loses its RAM and page cache, every write it sent "
                  "to its disk is kept")


def e(x):
    return html.escape("" if x is None else str(x), quote=True)


def describe(model):
    if model == "qemu":
        return QEMU_POWER_CUT
    return CRASH_MODELS.get(model) or BLOCK_MODELS.get(model, "")


def load(con, run_id):
    """(table present, [(kind, subject, detail)]) of run run_id."""
    have = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='run_gaps'"
                       ).fetchone()
    if not have:
        return False, []
    return True, [tuple(r) for r in con.execute(
        "SELECT kind, subject, detail FROM run_gaps WHERE run_id=? ORDER BY rowid", (run_id,))]


def analyse(trials, recorded, rows):
    """The gaps of a run as plain data (rendered to HTML and Markdown)."""
    tiers = sorted({t.get("target") or "native" for t in trials} or
                   {s for k, s, _ in rows if k == "not-modelled"} or {"native"})
    cuts = {}
    for t in trials:
        if t["fault"] != "power-cut" or t["outcome"] == "not-run" or t.get("equivalent_to"):
            continue  # counted: the power cuts made (an equivalent point copies one)
        tier = t.get("target") or "native"
        model = "qemu" if tier == "qemu" else (t.get("crash_model") or "minimal")
        if (t.get("crash_model") or "").startswith("blocks-"):
            if (t.get("trigger") or "").endswith(" booted"):
                continue  # a boot of a state counted as one already
            model = t["crash_model"]  # counted: the states judged on the host
        cuts[model] = cuts.get(model, 0) + 1
    native_cut = any(m in CRASH_MODELS for m in cuts)
    declared = {}
    for kind, subject, detail in rows:
        if kind == "not-modelled":
            declared.setdefault(subject, []).append(detail)
    not_run = {}
    for t in trials:
        if t["outcome"] == "not-run":
            not_run.setdefault(t["detail"] or "(no reason recorded)", []).append(t["case_id"])
    return {
        "recorded": recorded,
        "tiers": tiers,
        "power_cuts": cuts,
        "unused_models": [m for m in CRASH_MODELS if m not in cuts] if native_cut else [],
        "skipped": [(s, d) for k, s, d in rows if k == "skipped"],
        "declared": {tier: declared.get(tier, []) for tier in sorted(set(tiers) | set(declared))},
        "not_run": not_run,
    }


def render_html(g, trials=True):
    """trials False: a run of fleet runs only (no crash model, no cases)."""
    out = ['<div class="gaps">']
    # the crash model (a fleet run's devices are in memory: its tier says so)
    if not trials:
        pass
    elif not g["power_cuts"]:
        out.append("<p><b>Crash model:</b> no power cuts in this run.</p>")
    else:
        items = []
        for model, n in sorted(g["power_cuts"].items()):
            what = describe(model)
            items.append('<li data-crash-model="%s"><b>%s</b> (%s: %d): %s</li>' % (
                e(model), e("QEMU power cut" if model == "qemu" else model),
                "crash states judged" if model in BLOCK_MODELS else "power cuts made", n, e(what)))
        out.append("<p><b>Crash model</b> of the power cuts:</p><ul>%s</ul>" % "".join(items))
        if g["unused_models"]:
            out.append('<p class="unused-models">Not exercised in this run: %s '
                       "(<code>--crash-model</code>).</p>" % ", ".join(
                           "<b>%s</b> (%s)" % (e(m), e(CRASH_MODELS[m]))
                           for m in g["unused_models"]))
    # skipped on the tier
    if not g["recorded"]:
        out.append('<p class="unrecorded"><b>Not recorded:</b> this run database was written '
                   "before ota-sim recorded %swhat its tiers do not model (table "
                   "<code>run_gaps</code>).</p>" % ("skipped cases and " if trials else ""))
    elif trials and g["skipped"]:
        out.append("<p><b>Skipped on this tier</b> (%d cases it cannot run; not in the "
                   "matrix):</p><table class=\"skipped\"><tr><th>case</th><th>why</th></tr>%s"
                   "</table>" % (len(g["skipped"]), "".join(
                       "<tr><td><code>%s</code></td><td>%s</td></tr>" % (e(s), e(d))
                       for s, d in g["skipped"])))
    elif trials:
        out.append('<p class="skipped-none"><b>Skipped on this tier:</b> no case.</p>')
    if g["not_run"]:
        out.append("<p><b>Not run</b> (the agent under test lacks what they need):</p><ul>%s</ul>"
                   % "".join("<li>%d: %s</li>" % (len(ids), e(why))
                             for why, ids in sorted(g["not_run"].items())))
    # what each tier does not model
    for tier, lines in g["declared"].items():
        if lines:
            out.append('<p><b>What the %s tier does not model</b> (as it declares):</p>'
                       '<ul class="not-modelled" data-tier="%s">%s</ul>' % (
                           e(tier), e(tier), "".join("<li>%s</li>" % e(x) for x in lines)))
        elif g["recorded"]:
            out.append('<p class="unrecorded"><b>Not recorded:</b> what the %s tier does not '
                       "model.</p>" % e(tier))
    out.append("</div>")
    return "\n".join(out)


def render_md(g, trials=True):
    out = ["### What this run does not show", ""]
    if not trials:
        if not g["recorded"]:
            out.append("- not recorded by this database: what the fleet runner does not model")
    elif not g["power_cuts"]:
        out.append("- crash model: no power cuts in this run")
    for model, n in sorted(g["power_cuts"].items()):
        out.append("- crash model **%s** (%s: %d): %s" % (
            "QEMU power cut" if model == "qemu" else model,
            "crash states judged" if model in BLOCK_MODELS else "power cuts made", n,
            describe(model)))
    if g["unused_models"]:
        out.append("- crash models not exercised: %s" % ", ".join(g["unused_models"]))
    if not trials:
        pass
    elif not g["recorded"]:
        out.append("- not recorded by this database: skipped cases, what the tiers do not model")
    else:
        out.append("- skipped on this tier: %d case(s)" % len(g["skipped"]))
        out += ["  - `%s`: %s" % (s, d) for s, d in g["skipped"]]
    for why, ids in sorted(g["not_run"].items()):
        out.append("- not run (%d): %s" % (len(ids), why))
    for tier, lines in g["declared"].items():
        out += ["- the %s tier does not model: %s" % (tier, x) for x in lines]
    out.append("")
    return "\n".join(out)


def read(db_uri, run_id, trials):
    """Open the database read-only and analyse run run_id's gaps."""
    con = sqlite3.connect(db_uri, uri=True)
    try:
        recorded, rows = load(con, run_id)
    finally:
        con.close()
    return analyse(trials, recorded, rows)
