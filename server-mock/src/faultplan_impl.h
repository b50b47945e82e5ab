/* Fault plans: the plan object and its rules, shared by faultplan.c (parse,
 * validate, match) and faultplan_view.c (the admin views and the log line). */
#ifndef OTASRV_FAULTPLAN_IMPL_H
#define OTASRV_FAULTPLAN_IMPL_H

#include "otasrv/faultplan.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#define PATH_CAP   256 /* path glob and logged path, with the NUL */
#define NAME_CAP   128 /* device and release ids, with the NUL */
#define METHOD_CAP 16
#define BIG        ((int64_t)1 << 53) /* bound for sizes and counters */

struct rule {
    char id[OTASRV_FAULT_ID_MAX];
    uint64_t id_hash;
    char *path;                 /* glob, NULL: any */
    char method[METHOD_CAP];    /* upper case, "": any */
    char *device;               /* NULL: any */
    char *release;              /* NULL: any */
    uint64_t nth, after, every; /* 0: not set */
    double probability;
    uint64_t count; /* 0: unlimited */
    struct otasrv_fault fault;
    json_t *source; /* the rule as validated, for describe */
    uint64_t matched, applied;
};

struct log_entry {
    struct otasrv_fault_decision d;
    uint64_t request_id;
    uint64_t ts;
    char method[METHOD_CAP];
    char path[PATH_CAP];
    char device[NAME_CAP];
    char release[NAME_CAP];
    int has_method, has_path, has_device, has_release;
};

struct otasrv_faultplan {
    pthread_mutex_t lock;
    uint64_t seed;
    struct rule *rules;
    size_t nrules;
    struct log_entry *ring; /* OTASRV_FAULTLOG_CAP entries */
    size_t next;            /* slot the next entry goes to */
    size_t len;             /* entries held */
    uint64_t total;         /* applications since the last clear */
};

#endif
