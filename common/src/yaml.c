/* YAML to a jansson tree over libyaml's event API (see ota/yaml.h).
 *
 * The events drive a stack of open collections; a finished node is added to
 * its parent (under the key waiting there, for a mapping) or becomes the
 * root. Anchored nodes are also kept in a table, so an alias takes a new
 * reference to the same value: the tree is a DAG, which jansson's refcounts
 * handle, and an alias can never point into a collection still open (YAML
 * gives the anchor only once its node is done), so there are no cycles. */
#include "ota/yaml.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_DEPTH  64
#define YAML_ANCHOR 256

struct yframe {
    json_t *node;
    char *anchor;
    char *key; /* mapping: the key waiting for its value */
};

struct yanchor {
    char *name;
    json_t *value;
};

struct ybuild {
    struct yframe stack[YAML_DEPTH];
    size_t depth;
    struct yanchor anchors[YAML_ANCHOR];
    size_t nanchors;
    json_t *root;
    int docs;
};

static void ybuild_free(struct ybuild *b)
{
    for (size_t i = 0; i < b->depth; i++) {
        json_decref(b->stack[i].node);
        free(b->stack[i].anchor);
        free(b->stack[i].key);
    }
    for (size_t i = 0; i < b->nanchors; i++) {
        free(b->anchors[i].name);
        json_decref(b->anchors[i].value);
    }
    json_decref(b->root);
}

static int at_code(const yaml_event_t *ev, struct ota_err *err, int code, const char *fmt,
                   const char *what)
{
    char msg[256];

    snprintf(msg, sizeof(msg), fmt, what);
    return ota_err_set(err, code, "YAML line %zu column %zu: %s", ev->start_mark.line + 1,
                       ev->start_mark.column + 1, msg);
}

/* A failure at ev's position; fmt has one %s, for what. */
static int at(const yaml_event_t *ev, struct ota_err *err, const char *fmt, const char *what)
{
    return at_code(ev, err, EINVAL, fmt, what);
}

/* Takes v (a new reference) into the tree, under anchor if any. */
static int yadd(struct ybuild *b, json_t *v, const char *anchor, const yaml_event_t *ev,
                struct ota_err *err)
{
    struct yframe *top;
    int rc;

    if (!v)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (anchor) {
        if (b->nanchors == YAML_ANCHOR) {
            json_decref(v);
            return at(ev, err, "too many anchors (limit %s)", "256");
        }
        b->anchors[b->nanchors].name = strdup(anchor);
        if (!b->anchors[b->nanchors].name) {
            json_decref(v);
            return ota_err_set(err, ENOMEM, "out of memory");
        }
        b->anchors[b->nanchors++].value = json_incref(v);
    }
    if (b->depth == 0) {
        b->root = v;
        return 0;
    }
    top = &b->stack[b->depth - 1];
    if (json_is_array(top->node))
        return json_array_append_new(top->node, v) < 0 ? ota_err_set(err, ENOMEM, "out of memory")
                                                       : 0;
    rc = json_object_set_new(top->node, top->key, v);
    free(top->key);
    top->key = NULL;
    return rc < 0 ? ota_err_set(err, ENOMEM, "out of memory") : 0;
}

static int is_digits(const char *s, const char *digits)
{
    if (!*s)
        return 0;
    return s[strspn(s, digits)] == '\0';
}

/* A YAML 1.2 float of the core schema, without .inf/.nan (JSON has none). */
static int is_float(const char *s)
{
    int mant = 0;

    if (*s == '+' || *s == '-')
        s++;
    while (*s >= '0' && *s <= '9')
        s++, mant = 1;
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9')
            s++, mant = 1;
    }
    if (!mant)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

enum ytype { Y_ANY, Y_STR, Y_INT, Y_FLOAT, Y_BOOL, Y_NULL };

/* Resolves a scalar as the YAML 1.2 core schema does; want narrows it to an
 * explicit tag. */
static int yscalar(const yaml_event_t *ev, enum ytype want, json_t **ret, struct ota_err *err)
{
    const char *s = (const char *)ev->data.scalar.value;
    const char *num = s[0] == '+' || s[0] == '-' ? s + 1 : s;
    int neg = s[0] == '-';

    if (want == Y_STR) {
        *ret = json_stringn(s, ev->data.scalar.length);
        return 0;
    }
    if ((want == Y_ANY || want == Y_NULL) && (!*s || !strcmp(s, "~") || !strcmp(s, "null") ||
                                              !strcmp(s, "Null") || !strcmp(s, "NULL"))) {
        *ret = json_null();
        return 0;
    }
    if ((want == Y_ANY || want == Y_BOOL) &&
        (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))) {
        *ret = json_true();
        return 0;
    }
    if ((want == Y_ANY || want == Y_BOOL) &&
        (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))) {
        *ret = json_false();
        return 0;
    }
    if (want == Y_ANY || want == Y_INT || want == Y_FLOAT) {
        int base = 0;
        const char *digits = num;

        if (is_digits(num, "0123456789"))
            base = 10;
        else if (s == num && !strncmp(s, "0x", 2) && is_digits(s + 2, "0123456789abcdefABCDEF"))
            base = 16, digits = s + 2;
        else if (s == num && !strncmp(s, "0o", 2) && is_digits(s + 2, "01234567"))
            base = 8, digits = s + 2;
        if (base) {
            char *end;
            unsigned long long u;

            errno = 0;
            u = strtoull(digits, &end, base);
            if (errno == ERANGE || u > (neg ? (unsigned long long)INT64_MAX + 1 : INT64_MAX))
                return at(ev, err, "integer out of range: %s", s);
            if (want == Y_FLOAT)
                *ret = json_real(neg ? -(double)u : (double)u);
            else
                *ret = json_integer(neg ? (json_int_t)(0 - u) : (json_int_t)u);
            return 0;
        }
    }
    if ((want == Y_ANY || want == Y_FLOAT) && is_float(s)) {
        *ret = json_real(strtod(s, NULL));
        return 0;
    }
    if (want != Y_ANY)
        return at(ev, err, "scalar '%s' does not fit its tag", s);
    *ret = json_stringn(s, ev->data.scalar.length);
    return 0;
}

static int yscalar_event(struct ybuild *b, const yaml_event_t *ev, struct ota_err *err)
{
    const char *s = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *anchor = (const char *)ev->data.scalar.anchor;
    struct yframe *top = b->depth ? &b->stack[b->depth - 1] : NULL;
    enum ytype want = Y_STR;
    json_t *v = NULL;
    int rc;

    if (strlen(s) != ev->data.scalar.length)
        return at(ev, err, "%s", "a scalar holds a NUL byte");
    if (top && json_is_object(top->node) && !top->key) {
        if (json_object_get(top->node, s))
            return at(ev, err, "duplicate key '%s'", s);
        top->key = strdup(s);
        return top->key ? 0 : ota_err_set(err, ENOMEM, "out of memory");
    }
    if (tag && strcmp(tag, "!") == 0)
        want = Y_STR;
    else if (ev->data.scalar.plain_implicit)
        want = Y_ANY;
    else if (!tag)
        want = Y_STR;
    else if (!strcmp(tag, YAML_STR_TAG))
        want = Y_STR;
    else if (!strcmp(tag, YAML_INT_TAG))
        want = Y_INT;
    else if (!strcmp(tag, YAML_FLOAT_TAG))
        want = Y_FLOAT;
    else if (!strcmp(tag, YAML_BOOL_TAG))
        want = Y_BOOL;
    else if (!strcmp(tag, YAML_NULL_TAG))
        want = Y_NULL;
    else
        return at(ev, err, "unsupported tag '%s'", tag);
    rc = yscalar(ev, want, &v, err);
    if (rc < 0)
        return rc;
    return yadd(b, v, anchor, ev, err);
}

static int ystart(struct ybuild *b, const yaml_event_t *ev, json_t *node, const char *anchor,
                  const char *tag, struct ota_err *err)
{
    struct yframe *top = b->depth ? &b->stack[b->depth - 1] : NULL;

    if (!node)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (tag && strcmp(tag, YAML_SEQ_TAG) && strcmp(tag, YAML_MAP_TAG) && strcmp(tag, "!")) {
        json_decref(node);
        return at(ev, err, "unsupported tag '%s'", tag);
    }
    if (top && json_is_object(top->node) && !top->key) {
        json_decref(node);
        return at(ev, err, "%s", "mapping keys must be scalars");
    }
    if (b->depth == YAML_DEPTH) {
        json_decref(node);
        return at(ev, err, "nested too deeply (limit %s)", "64");
    }
    b->stack[b->depth].node = node;
    b->stack[b->depth].key = NULL;
    b->stack[b->depth].anchor = anchor ? strdup(anchor) : NULL;
    b->depth++;
    if (anchor && !b->stack[b->depth - 1].anchor)
        return ota_err_set(err, ENOMEM, "out of memory");
    return 0;
}

static int yend(struct ybuild *b, const yaml_event_t *ev, struct ota_err *err)
{
    struct yframe f = b->stack[--b->depth];
    int rc = yadd(b, f.node, f.anchor, ev, err);

    free(f.anchor);
    free(f.key);
    return rc;
}

static int yalias(struct ybuild *b, const yaml_event_t *ev, struct ota_err *err)
{
    const char *name = (const char *)ev->data.alias.anchor;
    struct yframe *top = b->depth ? &b->stack[b->depth - 1] : NULL;

    if (top && json_is_object(top->node) && !top->key)
        return at(ev, err, "%s", "mapping keys must be scalars");
    for (size_t i = b->nanchors; i-- > 0;)
        if (strcmp(b->anchors[i].name, name) == 0)
            return yadd(b, json_incref(b->anchors[i].value), NULL, ev, err);
    return at(ev, err, "unknown anchor '%s'", name);
}

static int yevent(struct ybuild *b, const yaml_event_t *ev, struct ota_err *err)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->docs > 1)
            return at_code(ev, err, E2BIG, "%s", "more than one document");
        return 0;
    case YAML_SCALAR_EVENT:
        return yscalar_event(b, ev, err);
    case YAML_SEQUENCE_START_EVENT:
        return ystart(b, ev, json_array(), (const char *)ev->data.sequence_start.anchor,
                      (const char *)ev->data.sequence_start.tag, err);
    case YAML_MAPPING_START_EVENT:
        return ystart(b, ev, json_object(), (const char *)ev->data.mapping_start.anchor,
                      (const char *)ev->data.mapping_start.tag, err);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return yend(b, ev, err);
    case YAML_ALIAS_EVENT:
        return yalias(b, ev, err);
    default:
        return 0;
    }
}

int ota_yaml_to_json(const char *text, size_t n, json_t **ret, struct ota_err *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct ybuild *b;
    int done = 0;
    int rc = 0;

    b = calloc(1, sizeof(*b));
    if (!b)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (!yaml_parser_initialize(&parser)) {
        free(b);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, n);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR)
                rc = ota_err_set(err, ENOMEM, "out of memory");
            else
                rc = ota_err_set(err, EINVAL, "YAML line %zu column %zu: %s%s%s",
                                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                                 parser.problem ? parser.problem : "syntax error",
                                 parser.context ? " " : "", parser.context ? parser.context : "");
            goto out;
        }
        rc = yevent(b, &ev, err);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0)
            goto out;
    }
    if (!b->root) {
        rc = ota_err_set(err, ENODATA, "YAML: no document");
        goto out;
    }
    *ret = b->root;
    b->root = NULL;
out:
    ybuild_free(b);
    free(b);
    yaml_parser_delete(&parser);
    return rc;
}
