/*
 * hostcmds.h -- the kms-host commands built on ABI 1.1: `health`
 * (cmd_health.c), `watch` (watch.c) and `reconcile` (reconcile.c).
 *
 * Same conventions as host.h: a function that can fail returns a host_status
 * and fills a host_result; the *_print / *_run functions write the command's
 * report to the FILE main hands them (as host_resolve_print does) and never
 * choose an exit status. Everything here runs on the CLI's main thread,
 * except host_watch_notify, which plugin threads call.
 */
#ifndef KMS_HOSTCMDS_H
#define KMS_HOSTCMDS_H

#include "host.h"

/* ------------------------------------------------------------- cmd_health.c */

typedef struct host_health_report {
  const char *plugin;  /* its name, borrowed */
  int have_health;     /* the plugin answered the health slot (h is valid) */
  kms_health h;
  kms_status probe;    /* the refresh probe: KMS_OK, its failure, or
                          KMS_UNSUPPORTED (no refresh slot: no probe) */
  char probe_msg[KMS_ERROR_MESSAGE_SIZE];
  int healthy;
  char reason[HOST_ERR_SIZE]; /* why not, "" when healthy */
} host_health_report;

/* health [--json]: *json set. HOST_OK or HOST_USAGE. */
host_status host_health_parse(int argc, char **argv, int *json, host_result *r);
/* Probe the instance (its refresh slot: credentials checked against the
 * backend now, so the figures are not just create()'s), then read its
 * health. `client` NULL with `down` set: create() found the backend
 * unreachable (`down` is why); the report is then unhealthy without figures.
 * Healthy = the probe passed (or there is none) and neither reachable nor
 * authenticated is 0. HOST_OK with *rep filled (healthy or not);
 * HOST_UNSUPPORTED when the plugin has no health slot (an ABI 1.0 plugin). */
host_status host_health_check(kms_client *client, const char *plugin, const char *down,
                              host_health_report *rep, host_result *r);
/* The report as `key: value` lines, or one JSON object with `json`. */
host_status host_health_print(const host_health_report *rep, int json, FILE *out,
                              host_result *r);

/* ------------------------------------------------------------------ watch.c */

typedef struct host_watch_args {
  long count;          /* stop after this many changes; 0 = no limit */
  unsigned timeout_s;  /* stop after this long; 0 = no limit */
  char **names;        /* names from the command line (borrowed argv) */
  size_t n_names;
} host_watch_args;

/* watch [--count N] [--timeout S] [NAME...]. HOST_OK or HOST_USAGE. */
host_status host_watch_parse(int argc, char **argv, host_watch_args *a, host_result *r);

/* The settings watch adds to key_management_settings: background_refresh:
 * true when the config does not set it (*n = 1), nothing when it is true;
 * HOST_CONFIG when the config turns it off (watch would see nothing). */
host_status host_watch_settings(const host_config *cfg, kms_setting extra[1], size_t *n,
                                host_result *r);

/* A queue of changes: host_watch_notify (the host_notify_fn, from any
 * thread) appends, host_watch_run (main thread) drains. Free it only after
 * the plugin instance that notifies it is destroyed. */
typedef struct host_watch host_watch;
host_status host_watch_new(host_watch **w, host_result *r);
void host_watch_free(host_watch *w);
void host_watch_notify(void *ctx, const kms_change *change);
/* How many changes wait in the queue and how many were dropped since the
 * last drain (tests; thread-safe). */
void host_watch_counts(host_watch *w, size_t *queued, unsigned long *dropped);

/* Watch `a`'s names, else the config's os.environ/ references read through
 * the plugin: read each once (the plugin notices changes of what it holds),
 * then print one line per change as it comes -- `updated NAME version=V` or
 * `deleted NAME`, never a value -- until --count changes, --timeout, or
 * SIGINT/SIGTERM (handled here for the run, then restored). HOST_OK;
 * HOST_UNSUPPORTED when the plugin does not notify; HOST_CONFIG when it
 * caches nothing (it would never re-read); HOST_FAILED when a name cannot
 * be read at the start or --timeout ends before --count changes. */
host_status host_watch_run(host_watch *w, kms_client *client, const host_config *cfg,
                           const host_watch_args *a, FILE *out, host_result *r);

/* -------------------------------------------------------------- reconcile.c */

typedef struct host_reconcile_args {
  int delete_orphans;
  int json;
} host_reconcile_args;

/* reconcile [--delete-orphans] [--json]. HOST_OK or HOST_USAGE. */
host_status host_reconcile_parse(int argc, char **argv, host_reconcile_args *a, host_result *r);

/* Compare the secrets under prefix_for_stored_virtual_keys (listed through
 * the plugin) with the keys in `db`, per location, and report: orphans (no
 * key owns them), keys whose secret is missing, queued outbox operations.
 * Repairs go through the outbox only: a missing secret whose write is still
 * queued, an orphan whose delete is queued, and (with --delete-orphans) a
 * delete enqueued for each orphan, then delivered. The caller holds the
 * delivery lock. HOST_OK: consistent (nothing found, or all repaired now);
 * HOST_FAILED: differences remain (the report says which and the fix);
 * HOST_QUEUED: repairs are queued (run sync); HOST_UNSUPPORTED: the plugin
 * cannot list; HOST_BACKEND: the listing or a read failed (nothing changed). */
host_status host_reconcile_run(host_db *db, const host_config *cfg, kms_client *client,
                               const host_reconcile_args *a, FILE *out, host_result *r);

#endif /* KMS_HOSTCMDS_H */
