/* --mode blocks: each scenario's update recorded once on the QEMU machine,
 * every block-level crash state checked on the host, a sample booted
 * (otasim/qblocks.h). Its rows go to the run's database like any trial's. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/qemu.h"
#include "otasim/proc.h"
#include "otasim/qblocks.h"
#include "runner_impl.h"

int otasim_runner_run_blocks(struct otasim_runner *r, struct otasim_run_stats *s,
                             struct ota_err *err)
{
    int rc = 0;

    if (r->t.target != OTASIM_TARGET_QEMU)
        return ota_err_set(err, EINVAL, "--mode blocks needs --target qemu");
    s->cases = 0;
    for (size_t si = 0; si < r->n_scens && rc == 0; si++) {
        struct scen *sc = &r->scens[si];
        struct otasim_trial tr;
        struct otasim_qblocks_opts o = {.jobs = r->o.jobs > 1 ? r->o.jobs : 2,
                                        .boot_sample = r->o.boot_sample,
                                        .seed = r->o.seed,
                                        .unit = -1,
                                        .model = r->o.blocks_model};
        struct otasim_qblocks_result res;
        double min;
        if ((rc = otasim_runner_ensure_server(r, si, err)) < 0)
            break;
        memset(&tr, 0, sizeof(tr));
        tr.sc = &sc->sc;
        tr.seed = r->o.seed;
        snprintf(tr.device_id, sizeof(tr.device_id), "blk-%08x",
                 otasim_hash32(sc->sc.path) ^ (uint32_t)r->t.qemu_profile);
        snprintf(tr.dir, sizeof(tr.dir), "%s/blocks-%zu", r->run_dir, si);
        tr.srv = &sc->srv;
        tr.built = sc->built;
        ota_strlcpy(tr.pub, sc->pub, sizeof(tr.pub));
        if ((rc = ota_fs_mkdirs(tr.dir, err)) < 0)
            break;
        rc = otasim_qblocks_run(&r->t, &tr, &o, r->db, r->run_id, &res, err);
        if (rc < 0) {
            rc = ota_err_prefix(err, rc, "%s", sc->sc.name);
            break;
        }
        min = res.check_ms > 0 ? res.check_ms / 60000.0 : 0;
        printf("blocks: %s on %s: unit %s, %" PRIu64 " log entries, %" PRIu64
               " crash points: %" PRIu64 " checked (read: e2fsck, debugfs, mtools, the env), of "
               "them %" PRIu64 " with a new reading judged (%" PRIu64 " failed) and %" PRIu64
               " sharing the previous state's result; %" PRIu64
               " not read (nothing the device uses changed); %" PRIu64
               " distinct outcomes; check %.1f s = %.0f checked states/min (-j%d); partitions "
               "read %" PRIu64 ", kept %" PRIu64 "; recording %s\n",
               sc->sc.name, otasim_qemu_profile_names[r->t.qemu_profile], res.unit, res.entries,
               res.points, res.checked, res.evaluated, res.failed, res.same_reading, res.same_disk,
               res.outcomes, res.check_ms / 1000.0, min > 0 ? res.checked / min : 0.0, o.jobs,
               res.part_reads, res.part_reused, res.record_ms ? "made" : "cached");
        if (res.model[0])
            printf("blocks: %s on %s: model %s (docs/blocks.md \"Models of a state\"): %" PRIu64
                   " of the %" PRIu64 " crash points changed by it, the others checked as found\n",
                   sc->sc.name, otasim_qemu_profile_names[r->t.qemu_profile], res.model,
                   res.modelled, res.points);
        printf("blocks: %s on %s: booted %d (%d of %" PRIu64
               " distinct outcomes), %d failed, %d predicted wrongly, %.1f s; recording %s\n",
               sc->sc.name, otasim_qemu_profile_names[r->t.qemu_profile], res.boots,
               res.outcomes_booted, res.outcomes, res.boots_failed, res.mismatches,
               res.boot_ms / 1000.0, res.rec_dir);
        fflush(stdout);
        s->cases += res.points + (uint64_t)res.boots;
        s->run += res.evaluated + (uint64_t)res.boots;
        s->equivalent += res.same_disk + res.same_reading;
        s->failed += res.failed + (uint64_t)res.boots_failed;
        s->passed += res.evaluated - res.failed + (uint64_t)(res.boots - res.boots_failed);
    }
    return rc;
}
