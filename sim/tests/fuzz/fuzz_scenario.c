/* Fuzz harness: the simulator's scenario files (scenarios/NAME.yaml, YAML or
 * JSON) through otasim_scenario_parse. Corpus: corpus/scenario/ (a sample of
 * scenarios/). */
#include "otasim/scenario.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct otasim_scenario s;
    struct ota_err err;

    memset(&s, 0, sizeof(s));
    if (otasim_scenario_parse((const char *)data, size, "fuzz.yaml", &s, &err) == 0) {
        (void)otasim_scenario_factory(&s);
        (void)otasim_scenario_target(&s);
        otasim_scenario_release(&s);
    }
    return 0;
}
