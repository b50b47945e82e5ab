/* Fuzz harness: a rollout definition, the body of POST /api/v1/rollouts, as
 * the server reads it (api_rollouts.c: a JSON object, then
 * otasrv_rollout_from_json). A definition it accepts must write back
 * (otasrv_rollout_to_json) to an object it accepts again. Corpus:
 * corpus/rollout-def/ (docs/protocol.md, the e2e tests' definitions). */
#include "ota/json.h"
#include "otasrv/rollout.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct otasrv_rollout_def def = {0}, again = {0};
    struct ota_err err;
    json_t *o = NULL, *back = NULL;

    if (ota_json_parse((const char *)data, size, &o, &err) < 0)
        return 0;
    if (!json_is_object(o) || otasrv_rollout_from_json(o, &def, &err) < 0) {
        json_decref(o);
        return 0;
    }
    json_decref(o);
    if (otasrv_rollout_to_json(&def, &back) < 0)
        abort();
    if (otasrv_rollout_from_json(back, &again, &err) < 0)
        abort(); /* the server wrote a definition it refuses (a restart would lose it) */
    json_decref(back);
    otasrv_rollout_def_clear(&again);
    otasrv_rollout_def_clear(&def);
    return 0;
}
