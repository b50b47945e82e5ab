/* The agent under test, as the harness sees it: an adapter (docs/agents.md
 * is the contract). Everything the simulator assumes about the program it
 * breaks goes through this table: what the agent reads on the device, how a
 * pass is started, how its state changes are seen, how it tells its state,
 * and where its durable state lives. A new agent is one adapter file
 * (sim/src/agent_NAME.c) and one line in otasim_agent_find. */
#ifndef OTASIM_AGENT_H
#define OTASIM_AGENT_H

#include <stddef.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_device;
struct otasim_scenario;
struct otasim_fault;

struct otasim_agent {
    const char *name; /* as scenario files and messages name it */
    /* Writes what the agent reads on the device (its config, the trusted
     * key, its view of the boot env) under the device's root. */
    int (*provision)(struct otasim_device *d, struct ota_err *err);
    /* argv of one pass (one run of the agent that checks for, applies or
     * resumes an update and exits); cap includes the NULL. */
    void (*pass_argv)(const struct otasim_device *d, const char **argv, size_t cap);
    /* A line of the agent's stderr: 1 if it tells a state change, with the
     * change in the harness's state-line JSON (docs/agents.md) in json; 0 if
     * not. */
    int (*state_line)(const char *line, char *json, size_t cap);
    /* The agent's own account of where it is, as the harness's status JSON
     * (docs/agents.md), malloc'ed in *ret. */
    int (*status)(struct otasim_device *d, char **ret, struct ota_err *err);
    /* Its durable state: an SQLite database under the device's root, copied
     * for the invariants before anything opens it ("": none). */
    const char *state_db;
    /* NULL: the pass's program is the agent, started with the interposer in
     * LD_PRELOAD. Else the pass's program is the adapter's driver (a device
     * side that runs several programs, not all of them the agent's): it gets
     * the interposer's LD_PRELOAD value under this name instead and loads it
     * into the programs whose calls are the device's. */
    const char *preload_env;
    /* 1: once the agent settles, it has cleared bootcount (ota-agent resets
     * it after a fallback); 0: a fallback's count stays in the env, which
     * the bootloader rule ignores while upgrade_available is 0 (SWUpdate). */
    int settles_bootcount;
    /* 1: the interposer sees every message the agent sends to the server
     * (NET events), so a crash point with no fsync and no message since the
     * one before cannot differ from it (the equivalence of the recording
     * run). 0: some are sent by a process it does not follow (swupdate's
     * forked suricatta), so every crash point is run. */
    int net_journaled;
    /* The states its state lines can show (NULL-terminated; NULL: every
     * state of docs/DESIGN.md): a state trigger outside them is refused. */
    const char *const *states;
    /* NULL, or refuses with a reason what the adapter cannot run: a
     * scenario's profile or source, a fault (the scenario's, or the one a
     * command line gives a trial). */
    int (*check)(const struct otasim_scenario *sc, const struct otasim_fault *f,
                 struct ota_err *err);
};

/* ota-agent, this project's agent (sim/src/agent_ota.c). */
extern const struct otasim_agent otasim_agent_ota;
/* Debian's swupdate with its suricatta hawkBit client on the server's DDI
 * face, and seed 003's health commit (sim/src/agent_swupdate.c). */
extern const struct otasim_agent otasim_agent_swupdate;
/* The scenario's target as a .swu (slots relative to the device root, so
 * one serves every device), built in dir and added to the server as
 * release id, published. */
struct otasim_tools;
struct otasim_server;
struct otasim_built;
int otasim_swupdate_add_release(const struct otasim_tools *t, const struct otasim_server *srv,
                                const struct otasim_scenario *sc, const struct otasim_built *built,
                                const char *dir, const char *id, struct ota_err *err);

/* The adapter called name, NULL if there is none. */
const struct otasim_agent *otasim_agent_find(const char *name);
/* What ag can run: a state trigger only in its states, then its check(). */
int otasim_agent_check(const struct otasim_agent *ag, const struct otasim_scenario *sc,
                       const struct otasim_fault *f, struct ota_err *err);
/* state_line for agents whose lines are already the harness's: "OTA-STATE
 * {json}" (ota-agent; the swupdate driver writes them too). */
int otasim_agent_otastate_line(const char *line, char *json, size_t cap);
/* argv[] = v[0..n-1], NULL-terminated within cap (pass_argv's). */
void otasim_agent_argv(const char **argv, size_t cap, const char *const *v, size_t n);

#ifdef __cplusplus
}
#endif
#endif
