/* Fuzz harness: the simulator's fleet files (scenarios/fleet/NAME.yaml,
 * docs/fleet.md) through otasim_fleet_parse. Corpus: corpus/fleet/. */
#include "otasim/fleet.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct otasim_fleet_def d;
    struct ota_err err;

    memset(&d, 0, sizeof(d));
    if (otasim_fleet_parse((const char *)data, size, "fuzz.yaml", &d, &err) == 0)
        otasim_fleet_def_free(&d);
    return 0;
}
