/* The ota-sim command line (run, matrix, svc). Returns the exit code:
 * 0 every trial passed; 1 a trial failed; 2 usage or a bad scenario file;
 * 5 the harness itself failed. */
#ifndef OTASIM_CLI_H
#define OTASIM_CLI_H

#ifdef __cplusplus
extern "C" {
#endif

int otasim_cli_main(int argc, char **argv);
/* ota-sim fleet FILE [options] (cli_fleet.c). */
int otasim_cli_fleet(int argc, char **argv);
/* ota-sim fleet-merge OUT.db SHARD.db... (cli_fleet.c). */
int otasim_cli_fleet_merge(int argc, char **argv);
/* ota-sim fleet-calibrate FILE [options] (cli_calibrate.c). */
int otasim_cli_fleet_calibrate(int argc, char **argv);
/* ota-sim boot FW_ENV_CONFIG SLOT_A SLOT_B --image V=FILE... (cli_boot.c). */
int otasim_cli_boot(int argc, char **argv);
/* ota-sim swupdate-pass CONFIG: one pass of a simulated SWUpdate device
 * (cli_swupdate.c; the swupdate adapter's driver, agent_swupdate.c). */
int otasim_cli_swupdate_pass(int argc, char **argv);
/* ota-sim blocks info|replay|bench|check: block-level crash states (cli_blocks.c). */
int otasim_cli_blocks(int argc, char **argv);

/* The block-level models' options (--torn-seed S, --torn-unit B,
 * --erase-block B, --damage-seed S; sizes with K/M), shared by `ota-sim
 * blocks` and `ota-sim run --mode blocks`: 1 taken, 0 not a model option, -1
 * a bad value. _done checks what goes together and sets the defaults (torn
 * unit 4096), printing the reason after who: 0 or -1. */
struct otasim_blk_model;
struct otasim_blk_model_flags {
    int torn_unit, damage_seed;
};
int otasim_blk_model_opt(const char *name, const char *value, struct otasim_blk_model *m,
                         struct otasim_blk_model_flags *f);
int otasim_blk_model_done(struct otasim_blk_model *m, const struct otasim_blk_model_flags *f,
                          const char *who);

#ifdef __cplusplus
}
#endif
#endif
