/* YAML to JSON: one reader for every YAML file of the project (fault plans,
 * scenarios), over libyaml's event API (the only file that uses libyaml).
 * Library otayaml, not part of otacommon, so ota-agent does not load libyaml.
 *
 * Scalars resolve as YAML 1.2's core schema does: plain ints (decimal, 0x
 * hex, 0o octal) become JSON integers, plain floats reals (no .inf/.nan),
 * true/false (and True/TRUE...) booleans, null/~/empty null; quoted scalars
 * stay strings. Explicit tags !!str !!int !!float !!bool !!null !!seq !!map
 * and "!" are honoured; any other tag is an error. Anchors and aliases work
 * (an alias shares its anchor's value). Mapping keys must be scalars and
 * unique. Limits: nesting 64 deep, 256 anchors. */
#ifndef OTA_YAML_H
#define OTA_YAML_H

#include <jansson.h>
#include <stddef.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses n bytes of text, which must hold exactly one YAML document, into a
 * jansson tree (*ret: a new reference). Errors, with a reason that gives the
 * line and column ("YAML line L column C: ..."):
 *   -EINVAL   syntax error, bad or unsupported tag, duplicate key, unknown
 *             alias, a scalar holding NUL, too deep, too many anchors;
 *   -ENODATA  no document at all (empty text, only comments);
 *   -E2BIG    more than one document;
 *   -ENOMEM. */
int ota_yaml_to_json(const char *text, size_t n, json_t **ret, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
