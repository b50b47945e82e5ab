/* sw-description through libconfig (otasrv/swdesc.h), the one file of the
 * server that includes it. What is read: software.version (a string),
 * software.description (optional), software.hardware-compatibility
 * (optional: an array of strings) and, anywhere under software (selection
 * sets and modes, board sections, up to 4 levels), the lists "images" and
 * "files": an entry with type "raw" makes a rootfs release, else one with
 * type "archive" an app release. A text with "@include" is refused: libconfig
 * would open the file it names. */
#include "otasrv/swdesc.h"

#include <errno.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"
#include "ota/version.h"
#include "otasrv/server.h"

#define MAX_DEPTH 4

/* Sets *raw / *archive from the handlers the entries of list use. */
static void scan_list(const config_setting_t *list, int *raw, int *archive)
{
    int n = config_setting_length(list);

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *type = NULL;

        if (!e || !config_setting_is_group(e) || !config_setting_lookup_string(e, "type", &type))
            continue;
        if (strcmp(type, "raw") == 0)
            *raw = 1;
        else if (strcmp(type, "archive") == 0)
            *archive = 1;
    }
}

static void scan(const config_setting_t *group, int depth, int *raw, int *archive)
{
    int n = config_setting_length(group);

    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(group, (unsigned)i);
        const char *name = c ? config_setting_name(c) : NULL;

        if (!c || !name)
            continue;
        if ((strcmp(name, "images") == 0 || strcmp(name, "files") == 0) &&
            config_setting_is_list(c))
            scan_list(c, raw, archive);
        else if (config_setting_is_group(c) && depth < MAX_DEPTH)
            scan(c, depth + 1, raw, archive);
    }
}

static int read_hw(const config_setting_t *sw, struct otasrv_swdesc *d, struct ota_err *err)
{
    const config_setting_t *hw = config_setting_get_member(sw, "hardware-compatibility");
    int n;

    if (!hw)
        return 0;
    if (!config_setting_is_array(hw) && !config_setting_is_list(hw))
        return ota_err_set(err, EINVAL,
                           "sw-description line %d: hardware-compatibility is not an array",
                           config_setting_source_line(hw));
    n = config_setting_length(hw);
    if (n > OTASRV_SWDESC_MAX_HW)
        return ota_err_set(err, EINVAL, "sw-description: %d hardware revisions (at most %d)", n,
                           OTASRV_SWDESC_MAX_HW);
    for (int i = 0; i < n; i++) {
        const char *s = config_setting_get_string_elem(hw, i);

        if (!s || !s[0] || strlen(s) >= sizeof(d->hw[0]) || strchr(s, '"') || strchr(s, '\\'))
            return ota_err_set(err, EINVAL,
                               "sw-description line %d: hardware-compatibility entry %d is not "
                               "a revision string (1..63 characters, no quotes)",
                               config_setting_source_line(hw), i + 1);
        ota_strlcpy(d->hw[d->n_hw++], s, sizeof(d->hw[0]));
    }
    return 0;
}

static int read_software(config_t *cfg, struct otasrv_swdesc *d, struct ota_err *err)
{
    const config_setting_t *sw = config_lookup(cfg, "software");
    const char *version = NULL, *desc = NULL;
    int raw = 0, archive = 0, r;

    if (!sw || !config_setting_is_group(sw))
        return ota_err_set(err, EINVAL, "sw-description: no software group");
    if (!config_setting_lookup_string(sw, "version", &version))
        return ota_err_set(err, EINVAL, "sw-description: software.version (a string) is missing");
    if (!ota_version_valid(version) || strlen(version) >= sizeof(d->version))
        return ota_err_set(err, EINVAL,
                           "sw-description: version \"%.64s\" is not MAJOR.MINOR.PATCH[-PRE]",
                           version);
    ota_strlcpy(d->version, version, sizeof(d->version));
    if (config_setting_lookup_string(sw, "description", &desc) && desc &&
        strlen(desc) < sizeof(d->name) && otasrv_valid_id(desc))
        ota_strlcpy(d->name, desc, sizeof(d->name));
    else
        ota_strlcpy(d->name, "swu", sizeof(d->name));
    if ((r = read_hw(sw, d, err)) < 0)
        return r;
    scan(sw, 0, &raw, &archive);
    if (!raw && !archive)
        return ota_err_set(err, EINVAL,
                           "sw-description: no image of type \"raw\" (rootfs) and no file of "
                           "type \"archive\" (app)");
    ota_strlcpy(d->kind, raw ? "rootfs" : "app", sizeof(d->kind));
    return 0;
}

int otasrv_swdesc_parse(const char *text, size_t n, struct otasrv_swdesc *ret, struct ota_err *err)
{
    struct otasrv_swdesc d = {0};
    config_t cfg;
    char *copy;
    int r;

    if (n > OTASRV_SWDESC_MAX_BYTES)
        return ota_err_set(err, EINVAL, "sw-description: %zu bytes (at most %d)", n,
                           OTASRV_SWDESC_MAX_BYTES);
    if (memchr(text, '\0', n))
        return ota_err_set(err, EINVAL, "sw-description: a NUL byte in the text");
    /* libconfig 1.5 follows @include directives even when it reads a
     * string, and has no hook to stop it: the text would read our files. */
    if (memmem(text, n, "@include", 8))
        return ota_err_set(err, EINVAL,
                           "sw-description: @include is not allowed (it would read files of the "
                           "server)");
    copy = strndup(text, n);
    if (!copy)
        return ota_err_set(err, ENOMEM, "out of memory");
    config_init(&cfg);
    if (!config_read_string(&cfg, copy)) {
        r = ota_err_set(err, EINVAL, "sw-description line %d: %s", config_error_line(&cfg),
                        config_error_text(&cfg) ? config_error_text(&cfg) : "syntax error");
    } else {
        r = read_software(&cfg, &d, err);
    }
    config_destroy(&cfg);
    free(copy);
    if (r == 0)
        *ret = d;
    return r;
}

char *otasrv_swdesc_hw_json(const struct otasrv_swdesc *d)
{
    json_t *a = json_array();
    char *s = NULL;

    for (int i = 0; a && i < d->n_hw; i++)
        json_array_append_new(a, json_string(d->hw[i]));
    if (a)
        s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}
