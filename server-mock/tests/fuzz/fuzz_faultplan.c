/* Fuzz harness: the server's fault plans, JSON and YAML (--faults FILE and
 * PUT /api/v1/admin/faults), through otasrv_faultplan_parse with the format
 * found from the text (OTASRV_PLAN_AUTO: '{' JSON, else YAML). A plan it
 * accepts is described (the admin view). Corpus: corpus/faultplan/ (seeded
 * from server-mock/faults/examples). */
#include "otasrv/faultplan.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct otasrv_faultplan *plan = NULL;
    struct ota_err err;
    json_t *view = NULL;

    if (otasrv_faultplan_parse((const char *)data, size, OTASRV_PLAN_AUTO, &plan, &err) < 0)
        return 0;
    if (otasrv_faultplan_describe(plan, &view, &err) == 0)
        json_decref(view);
    otasrv_faultplan_free(plan);
    return 0;
}
