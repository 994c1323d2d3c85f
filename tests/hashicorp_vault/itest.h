/*
 * itest.h -- helpers shared by the hashicorp_vault integration tests: a
 * kms_host whose getenv serves a per-test table (no setenv) and whose log
 * callback captures every line, plus loading the real plugin through the
 * loader (KMS_PLUGIN_DIR).
 */
#ifndef ITEST_H
#define ITEST_H

#include "kms_loader.h"
#include "vault_fixture.h"

#include <pthread.h>
#include <stddef.h>

#define IT_MAX_ENV 64

typedef struct it_host {
  kms_host host;
  pthread_mutex_t mu;
  char *names[IT_MAX_ENV];
  char *values[IT_MAX_ENV];
  size_t n;
  char *logs; /* every log line, "LEVEL message\n" */
  size_t loglen, logcap;
} it_host;

void it_host_init(it_host *h);
void it_host_free(it_host *h);
/* Set (value != NULL) or unset a variable of the host's environment. */
void it_set(it_host *h, const char *name, const char *value);
/* Point the host at server s with the root token (and CA / client cert for TLS). */
void it_target(it_host *h, vf_server *s, int tls, int mtls);
/* Copy of the captured log (malloc'ed). */
char *it_logs(it_host *h);
size_t it_log_count(it_host *h, const char *needle);
void it_clear_logs(it_host *h);

/* Which plugin it_module loads (before its first call; default
 * "hashicorp_vault"; tests/aws_plugin uses "aws_secret_manager"). */
void it_use_plugin(const char *name);
/* The plugin module, loaded once per process. */
const kms_module *it_module(void);
kms_status it_client(it_host *h, const kms_setting *s, size_t n, kms_client **out,
                     kms_error *err);

/* Settings shorthand: read_and_write access. */
extern const kms_setting IT_RW[];
#define IT_RW_N 1

/* Wall-clock milliseconds (monotonic), for hang detection bounds only. */
long long it_now_ms(void);

/* Read `name`: copy the value into val (vs bytes, "" on error) and the
 * flags into *flags (either may be NULL), free the secret, return the status.
 * err may be NULL. */
kms_status it_read(kms_client *c, const char *name, char *val, size_t vs, uint32_t *flags,
                   kms_error *err);

/* The client's health (struct_size set, the rest zeroed first). */
kms_status it_health(kms_client *c, kms_health *out);

/* In a cmocka test: fail (naming the line) unless health's reachable and
 * authenticated are r and a. */
#define IT_EXPECT_HEALTH(c, r, a)                                                            \
  do {                                                                                       \
    kms_health hl_;                                                                          \
    kms_status st_ = it_health((c), &hl_);                                                   \
    if (st_ != KMS_OK || hl_.reachable != (r) || hl_.authenticated != (a))                   \
      fail_msg("line %d: health %d, reachable %d authenticated %d; want %d %d", __LINE__,    \
               (int)st_, (int)hl_.reachable, (int)hl_.authenticated, (r), (a));              \
  } while (0)

/* Destroy the client, then the host. */
void it_done(it_host *h, kms_client *c);

/* Sleep `ms` milliseconds (waiting for TTLs and leases to pass). */
void it_sleep_ms(long ms);

/* Change notifications, recorded (one process-wide record): set
 * h->host.notify = it_notify_record; each change becomes a line
 * "UPD|DEL <name> v<version>[ <key>=<value>...]\n". Thread-safe (the
 * plugin calls it from its own threads). */
void it_notify_record(void *ctx, const kms_change *ch);
void it_rec_clear(void);
int it_rec_has(const char *line); /* the record holds `line` (a substring) */
int it_rec_count(void);
/* Poll (every 10 ms, at most timeout_ms) until the record holds `line`. */
int it_rec_wait(const char *line, long timeout_ms);

#endif
