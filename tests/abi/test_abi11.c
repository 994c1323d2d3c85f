/*
 * test_abi11.c -- ABI 1.1 through the kms_client_* helpers: per-call options
 * (location, version pin, delete modes, unknown keys), the never-blocking
 * read, the buffer read, listing, change notifications delivered outside the
 * plugin's locks, and health -- against full.so (every 1.1 slot) -- and the
 * same helpers against v10.so, a plugin built against the frozen 1.0 header
 * (tests/abi/abi_1_0): 1.0 calls work, 1.1 features are UNSUPPORTED cleanly
 * and default options fall back to the 1.0 slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kms_loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a host with log (a gate for background fetches) and notify -------- */

struct test_host {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int gate_open;       /* background fetches wait in log() until set */
  int fetches_waiting; /* how many are held there now */
  int n_changes;
  char last_name[64];
  uint32_t last_kind;
  int64_t last_version;
  char last_ns[32];
  kms_client *client; /* read back from inside notify, when set */
  kms_status read_in_notify;
  char value_in_notify[64];
};

static void th_log(void *ctx, kms_log_level level, const char *msg) {
  struct test_host *t = ctx;
  (void)level;
  if (!strstr(msg, "background fetch")) return;
  pthread_mutex_lock(&t->lock);
  t->fetches_waiting++;
  pthread_cond_broadcast(&t->cond);
  while (!t->gate_open) pthread_cond_wait(&t->cond, &t->lock);
  t->fetches_waiting--;
  pthread_mutex_unlock(&t->lock);
}

static void th_notify(void *ctx, const kms_change *c) {
  struct test_host *t = ctx;
  kms_status st = KMS_OK;
  char value[64] = "";
  if (t->client && c->kind == KMS_CHANGE_UPDATED) {
    /* Calling back into the instance: full.so's error-checking locks turn
     * "notified under a lock" into KMS_INTERNAL instead of a deadlock. */
    kms_secret_info info = {sizeof info, 0, 0, 0};
    kms_call_options o = {sizeof o, 0, c->location, c->n_location, 0, 0, 0};
    kms_error err;
    st = kms_client_read_into(t->client, c->name, &o, value, sizeof value, &info, &err);
  }
  pthread_mutex_lock(&t->lock);
  t->n_changes++;
  snprintf(t->last_name, sizeof t->last_name, "%s", c->name);
  t->last_kind = c->kind;
  t->last_version = c->version;
  snprintf(t->last_ns, sizeof t->last_ns, "%s",
           c->n_location && c->location ? c->location[0].value : "");
  t->read_in_notify = st;
  memcpy(t->value_in_notify, value, sizeof value);
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

static struct test_host *th_new(int gate_open) {
  struct test_host *t = calloc(1, sizeof *t);
  assert_non_null(t);
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->cond, NULL);
  t->gate_open = gate_open;
  return t;
}

static void th_free(struct test_host *t) {
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  free(t);
}

static void th_wait_changes(struct test_host *t, int n) {
  pthread_mutex_lock(&t->lock);
  while (t->n_changes < n) pthread_cond_wait(&t->cond, &t->lock);
  pthread_mutex_unlock(&t->lock);
}

/* ---- fixtures ----------------------------------------------------------- */

struct fixture {
  kms_module *m;
  kms_host host;
  struct test_host *th;
  kms_client *a, *b; /* two instances over the same backend */
};

static kms_module *load(const char *name) {
  kms_module *m = NULL;
  kms_error err;
  if (kms_module_load(TEST_PLUGIN_DIR, name, &m, &err) != KMS_OK)
    fail_msg("loading %s: %s", name, err.message);
  return m;
}

static int setup_full(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  f->m = load("full");
  f->th = th_new(1);
  f->host = (kms_host){.struct_size = sizeof(kms_host), .abi_major = KMS_ABI_MAJOR,
                       .abi_minor = KMS_ABI_MINOR, .ctx = f->th, .log = th_log,
                       .notify = th_notify};
  kms_error err;
  assert_int_equal(kms_client_create(f->m, &f->host, NULL, 0, &f->a, &err), KMS_OK);
  assert_int_equal(kms_client_create(f->m, &f->host, NULL, 0, &f->b, &err), KMS_OK);
  *state = f;
  return 0;
}

static int teardown_full(void **state) {
  struct fixture *f = *state;
  kms_client_destroy(f->a);
  kms_client_destroy(f->b);
  kms_module_unload(f->m);
  th_free(f->th);
  free(f);
  return 0;
}

#define OPTS(...) ((kms_call_options){sizeof(kms_call_options), __VA_ARGS__})

static void expect(kms_status got, kms_status want, const kms_error *err, const char *needle) {
  if (got != want)
    fail_msg("want %s got %s (%s)", kms_status_str(want), kms_status_str(got), err->message);
  if (needle && !strstr(err->message, needle))
    fail_msg("message '%s' lacks '%s'", err->message, needle);
}

static void read_expect(kms_client *c, const char *name, const kms_call_options *o,
                        const char *want_value, int64_t want_version) {
  kms_secret *s = NULL;
  kms_error err;
  expect(kms_client_read_opt(c, name, o, &s, &err), KMS_OK, &err, NULL);
  assert_string_equal(s->value, want_value);
  if (want_version) assert_int_equal(s->version, want_version);
  kms_client_free_secret(c, s);
}

/* ---- full.so ------------------------------------------------------------ */

static void test_location_and_unknown_keys(void **state) {
  struct fixture *f = *state;
  kms_error err;
  kms_setting team[] = {{"namespace", "team_a"}};
  kms_call_options in_team = OPTS(0, team, 1, 0, 0, 0);
  expect(kms_client_write_opt(f->a, "loc", "team", 4, NULL, &in_team, &err), KMS_OK, &err, NULL);
  expect(kms_client_write_opt(f->a, "loc", "default", 7, NULL, NULL, &err), KMS_OK, &err, NULL);
  read_expect(f->b, "loc", &in_team, "team", 1);
  read_expect(f->b, "loc", NULL, "default", 1);
  /* An unknown key is refused by the plugin, naming it, on every call. */
  kms_setting bad[] = {{"mount", "secret"}};
  kms_call_options o = OPTS(0, bad, 1, 0, 0, 0);
  kms_secret *s = NULL;
  expect(kms_client_read_opt(f->a, "loc", &o, &s, &err), KMS_INVALID_ARGUMENT, &err, "'mount'");
  assert_null(s);
  expect(kms_client_write_opt(f->a, "loc", "x", 1, NULL, &o, &err), KMS_INVALID_ARGUMENT, &err,
         "'mount'");
  expect(kms_client_delete_opt(f->a, "loc", &o, &err), KMS_INVALID_ARGUMENT, &err, "'mount'");
  char **names;
  size_t n;
  expect(kms_client_list_names(f->a, "", &o, &names, &n, &err), KMS_INVALID_ARGUMENT, &err,
         "'mount'");
  /* A bad value of a known key is refused too. */
  kms_setting badval[] = {{"namespace", "../x"}};
  o = OPTS(0, badval, 1, 0, 0, 0);
  expect(kms_client_read_opt(f->a, "loc", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "namespace");
  /* The loader refuses what cannot apply before the plugin sees it. */
  o = OPTS(KMS_CALL_NONBLOCKING, NULL, 0, 0, 0, 0);
  expect(kms_client_write_opt(f->a, "loc", "x", 1, NULL, &o, &err), KMS_INVALID_ARGUMENT, &err,
         "apply to reads");
  o = OPTS(KMS_CALL_NONBLOCKING | KMS_CALL_BYPASS_CACHE, NULL, 0, 0, 0, 0);
  expect(kms_client_read_opt(f->a, "loc", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "contradict");
  o = OPTS(0x80, NULL, 0, 0, 0, 0);
  expect(kms_client_read_opt(f->a, "loc", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "unknown option flag bits 0x80");
  o = OPTS(0, NULL, 0, 3, 0, 0);
  expect(kms_client_delete_opt(f->a, "loc", &o, &err), KMS_INVALID_ARGUMENT, &err,
         "'version' pins reads only");
  o = OPTS(0, NULL, 0, 0, KMS_DELETE_PERMANENT, 30);
  expect(kms_client_delete_opt(f->a, "loc", &o, &err), KMS_INVALID_ARGUMENT, &err,
         "recovery_window_days");
  kms_setting twice[] = {{"namespace", "a"}, {"namespace", "b"}};
  o = OPTS(0, twice, 2, 0, 0, 0);
  expect(kms_client_read_opt(f->a, "loc", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "given twice");
  o = (kms_call_options){0};
  expect(kms_client_read_opt(f->a, "loc", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "struct_size");
}

static void test_version_pin_and_delete_modes(void **state) {
  struct fixture *f = *state;
  kms_error err;
  expect(kms_client_write(f->a, "ver", "one", 3, NULL, &err), KMS_OK, &err, NULL);
  expect(kms_client_write(f->a, "ver", "two", 3, NULL, &err), KMS_OK, &err, NULL);
  kms_call_options v1 = OPTS(0, NULL, 0, 1, 0, 0), v3 = OPTS(0, NULL, 0, 3, 0, 0);
  read_expect(f->b, "ver", &v1, "one", 1);
  read_expect(f->b, "ver", NULL, "two", 2);
  kms_secret *s = NULL;
  expect(kms_client_read_opt(f->b, "ver", &v3, &s, &err), KMS_NOT_FOUND, &err, "version 3");
  /* Soft delete: the current version is gone, pinned old ones remain. */
  kms_call_options soft = OPTS(0, NULL, 0, 0, KMS_DELETE_SOFT, 7);
  expect(kms_client_delete_opt(f->a, "ver", &soft, &err), KMS_OK, &err, NULL);
  expect(kms_client_read_opt(f->a, "ver", NULL, &s, &err), KMS_NOT_FOUND, &err, NULL);
  read_expect(f->a, "ver", &v1, "one", 1);
  /* Permanent: every version. A second delete of a missing one is OK. */
  kms_call_options perm = OPTS(0, NULL, 0, 0, KMS_DELETE_PERMANENT, 0);
  expect(kms_client_delete_opt(f->a, "ver", &perm, &err), KMS_OK, &err, NULL);
  expect(kms_client_read_opt(f->a, "ver", &v1, &s, &err), KMS_NOT_FOUND, &err, NULL);
  expect(kms_client_delete_opt(f->a, "ver", &perm, &err), KMS_OK, &err, NULL);
}

/* The never-blocking read answers at once while the fetch it started is held
 * in the host's log callback; one fetch for two misses; the fetch's result is
 * announced with notify and served by the next never-blocking read. */
static void test_nonblocking_read(void **state) {
  struct fixture *f = *state;
  kms_error err;
  expect(kms_client_write(f->a, "nb", "fresh", 5, NULL, &err), KMS_OK, &err, NULL);
  pthread_mutex_lock(&f->th->lock);
  f->th->gate_open = 0;
  pthread_mutex_unlock(&f->th->lock);
  kms_call_options nb = OPTS(KMS_CALL_NONBLOCKING, NULL, 0, 0, 0, 0);
  char buf[64];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  expect(kms_client_read_into(f->b, "nb", &nb, buf, sizeof buf, &info, &err), KMS_UNAVAILABLE,
         &err, "background fetch");
  /* The fetch is now held in log(); a second miss must not wait for it nor
   * start another. */
  pthread_mutex_lock(&f->th->lock);
  while (f->th->fetches_waiting < 1) pthread_cond_wait(&f->th->cond, &f->th->lock);
  pthread_mutex_unlock(&f->th->lock);
  expect(kms_client_read_into(f->b, "nb", &nb, buf, sizeof buf, &info, &err), KMS_UNAVAILABLE,
         &err, NULL);
  kms_health h = {.struct_size = sizeof h};
  expect(kms_client_health(f->b, &h, &err), KMS_OK, &err, NULL);
  assert_int_equal(h.fetches, 0);
  assert_int_equal(h.misses, 2);
  int before = f->th->n_changes;
  f->th->client = f->b; /* read back from notify: proves no lock is held */
  pthread_mutex_lock(&f->th->lock);
  f->th->gate_open = 1;
  pthread_cond_broadcast(&f->th->cond);
  pthread_mutex_unlock(&f->th->lock);
  th_wait_changes(f->th, before + 1);
  assert_string_equal(f->th->last_name, "nb");
  assert_int_equal(f->th->last_kind, KMS_CHANGE_UPDATED);
  assert_int_equal(f->th->last_version, 1);
  assert_int_equal(f->th->read_in_notify, KMS_OK);
  assert_string_equal(f->th->value_in_notify, "fresh");
  expect(kms_client_read_into(f->b, "nb", &nb, buf, sizeof buf, &info, &err), KMS_OK, &err, NULL);
  assert_string_equal(buf, "fresh");
  expect(kms_client_health(f->b, &h, &err), KMS_OK, &err, NULL);
  assert_int_equal(h.fetches, 1);
  f->th->client = NULL;
}

static void test_read_into(void **state) {
  struct fixture *f = *state;
  kms_error err;
  expect(kms_client_write(f->a, "buf", "0123456789", 10, NULL, &err), KMS_OK, &err, NULL);
  char buf[16];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  expect(kms_client_read_into(f->a, "buf", NULL, buf, sizeof buf, &info, &err), KMS_OK, &err,
         NULL);
  assert_string_equal(buf, "0123456789");
  assert_int_equal(info.length, 10);
  assert_int_equal(info.version, 1);
  /* Too small by one (no room for the NUL): the needed size, buf untouched. */
  memset(buf, 'x', sizeof buf);
  info.length = 0;
  expect(kms_client_read_into(f->a, "buf", NULL, buf, 10, &info, &err), KMS_BUFFER_TOO_SMALL,
         &err, "at least 11");
  assert_int_equal(info.length, 10);
  for (size_t i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 'x');
  /* Asking the size only. */
  info.length = 0;
  expect(kms_client_read_into(f->a, "buf", NULL, NULL, 0, &info, &err), KMS_BUFFER_TOO_SMALL,
         &err, NULL);
  assert_int_equal(info.length, 10);
  assert_string_equal(kms_status_str(KMS_BUFFER_TOO_SMALL), "BUFFER_TOO_SMALL");
  /* An info from an older header (length only): version is not written. */
  struct {
    kms_secret_info info;
    int64_t canary;
  } small = {{offsetof(kms_secret_info, version), 0, 0x55, 0x66}, 0x77};
  expect(kms_client_read_into(f->a, "buf", NULL, buf, sizeof buf, &small.info, &err), KMS_OK,
         &err, NULL);
  assert_int_equal(small.info.length, 10);
  assert_int_equal(small.info.version, 0x55);
  assert_int_equal(small.info.flags, 0x66);
  info.struct_size = 0;
  expect(kms_client_read_into(f->a, "buf", NULL, buf, sizeof buf, &info, &err),
         KMS_INVALID_ARGUMENT, &err, "struct_size");
}

struct list_ctx {
  kms_client *client;
  int seen, stop_after;
  kms_status inner;
};

static int list_cb(void *ctx, const char *name) {
  struct list_ctx *l = ctx;
  kms_health h = {.struct_size = sizeof h};
  kms_error err;
  kms_status st = kms_client_health(l->client, &h, &err); /* inside the callback */
  if (st != KMS_OK) l->inner = st;
  kms_secret *s = NULL;
  st = kms_client_read(l->client, name, &s, &err);
  if (st != KMS_OK) l->inner = st;
  kms_client_free_secret(l->client, s);
  return ++l->seen == l->stop_after;
}

static void test_listing(void **state) {
  struct fixture *f = *state;
  kms_error err;
  const char *names[] = {"ls_a1", "ls_a2", "ls_b1"};
  for (int i = 0; i < 3; i++)
    expect(kms_client_write(f->a, names[i], "v", 1, NULL, &err), KMS_OK, &err, NULL);
  kms_setting team[] = {{"namespace", "team_l"}};
  kms_call_options in_team = OPTS(0, team, 1, 0, 0, 0);
  expect(kms_client_write_opt(f->a, "ls_c1", "v", 1, NULL, &in_team, &err), KMS_OK, &err, NULL);
  char **got;
  size_t n;
  expect(kms_client_list_names(f->b, "ls_a", NULL, &got, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 2);
  assert_string_equal(got[0], "ls_a1");
  assert_string_equal(got[1], "ls_a2");
  kms_client_list_names_free(got, n);
  expect(kms_client_list_names(f->b, "ls_", &in_team, &got, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 1);
  assert_string_equal(got[0], "ls_c1");
  kms_client_list_names_free(got, n);
  /* The callback may call the instance (no plugin lock is held) and stop. */
  struct list_ctx l = {f->b, 0, 2, KMS_OK};
  expect(kms_client_list(f->b, "ls_", NULL, list_cb, &l, &err), KMS_OK, &err, NULL);
  assert_int_equal(l.seen, 2);
  assert_int_equal(l.inner, KMS_OK);
  expect(kms_client_list(f->b, "", NULL, NULL, NULL, &err), KMS_INVALID_ARGUMENT, &err, NULL);
}

/* Another instance rotates a key; refresh and a cache-bypassing read notice,
 * tell the host, and the host can read from inside the callback. */
static void test_notifications(void **state) {
  struct fixture *f = *state;
  kms_error err;
  expect(kms_client_write(f->a, "rot", "v1", 2, NULL, &err), KMS_OK, &err, NULL);
  read_expect(f->b, "rot", NULL, "v1", 1); /* b caches v1 */
  int before = f->th->n_changes;
  expect(kms_client_write(f->a, "rot", "v2", 2, NULL, &err), KMS_OK, &err, NULL);
  assert_int_equal(f->th->n_changes, before); /* a's own write: no news */
  read_expect(f->b, "rot", NULL, "v1", 1);     /* still cached */
  f->th->client = f->b;
  expect(kms_client_refresh(f->b, &err), KMS_OK, &err, NULL);
  assert_int_equal(f->th->n_changes, before + 1);
  assert_string_equal(f->th->last_name, "rot");
  assert_int_equal(f->th->last_kind, KMS_CHANGE_UPDATED);
  assert_int_equal(f->th->last_version, 2);
  assert_int_equal(f->th->read_in_notify, KMS_OK);
  assert_string_equal(f->th->value_in_notify, "v2");
  /* In a team namespace the change names its location. */
  kms_setting team[] = {{"namespace", "team_n"}};
  kms_call_options in_team = OPTS(0, team, 1, 0, 0, 0);
  expect(kms_client_write_opt(f->a, "rot", "t1", 2, NULL, &in_team, &err), KMS_OK, &err, NULL);
  read_expect(f->b, "rot", &in_team, "t1", 1);
  expect(kms_client_write_opt(f->a, "rot", "t2", 2, NULL, &in_team, &err), KMS_OK, &err, NULL);
  kms_call_options bypass = OPTS(KMS_CALL_BYPASS_CACHE, team, 1, 0, 0, 0);
  read_expect(f->b, "rot", &bypass, "t2", 2);
  assert_int_equal(f->th->n_changes, before + 2);
  assert_string_equal(f->th->last_ns, "team_n");
  assert_string_equal(f->th->value_in_notify, "t2");
  /* Gone from the backend: DELETED. */
  kms_call_options perm = OPTS(0, NULL, 0, 0, KMS_DELETE_PERMANENT, 0);
  expect(kms_client_delete_opt(f->a, "rot", &perm, &err), KMS_OK, &err, NULL);
  bypass = OPTS(KMS_CALL_BYPASS_CACHE, NULL, 0, 0, 0, 0);
  kms_secret *s = NULL;
  expect(kms_client_read_opt(f->b, "rot", &bypass, &s, &err), KMS_NOT_FOUND, &err, NULL);
  assert_int_equal(f->th->n_changes, before + 3);
  assert_int_equal(f->th->last_kind, KMS_CHANGE_DELETED);
  f->th->client = NULL;
}

static void test_health(void **state) {
  struct fixture *f = *state;
  kms_error err;
  expect(kms_client_write(f->a, "h", "v", 1, NULL, &err), KMS_OK, &err, NULL);
  kms_secret *s = NULL;
  expect(kms_client_read(f->a, "h", &s, &err), KMS_OK, &err, NULL); /* hit */
  kms_client_free_secret(f->a, s);
  expect(kms_client_read(f->a, "h_missing", &s, &err), KMS_NOT_FOUND, &err, NULL);
  kms_health h = {.struct_size = sizeof h};
  expect(kms_client_health(f->a, &h, &err), KMS_OK, &err, NULL);
  assert_int_equal(h.reachable, 1);
  assert_int_equal(h.authenticated, 1);
  assert_int_equal(h.token_ttl_seconds, -1); /* preset by the loader, left alone */
  assert_int_equal(h.hits, 1);
  assert_int_equal(h.misses, 1);
  assert_int_equal(h.fetches, 1);
  assert_int_equal(h.cache_entries, 1);
  assert_int_equal(h.errors_by_status[KMS_NOT_FOUND], 1);
  assert_int_equal(h.last_error_status, KMS_NOT_FOUND);
  assert_non_null(strstr(h.last_error, "h_missing"));
  assert_true(h.last_error_time > 0);
  /* A host built against a shorter kms_health: nothing past its size. */
  struct {
    kms_health h;
    char canary[8];
  } big;
  memset(&big, 0x5a, sizeof big);
  big.h.struct_size = offsetof(kms_health, hits);
  expect(kms_client_health(f->a, &big.h, &err), KMS_OK, &err, NULL);
  assert_int_equal(big.h.reachable, 1);
  assert_int_equal(big.h.cache_entries, 1);
  assert_int_equal(big.h.struct_size, offsetof(kms_health, hits));
  const unsigned char *p = (const unsigned char *)&big.h + offsetof(kms_health, hits);
  for (size_t i = 0; i < sizeof big - offsetof(kms_health, hits); i++) assert_int_equal(p[i], 0x5a);
  big.h.struct_size = 1;
  expect(kms_client_health(f->a, &big.h, &err), KMS_INVALID_ARGUMENT, &err, "struct_size");
}

/* ---- v10.so: built against the frozen 1.0 header ------------------------- */

static void test_1_0_plugin_in_1_1_host(void **state) {
  (void)state;
  kms_module *m = load("v10");
  const kms_plugin *p = kms_module_plugin(m);
  assert_int_equal(p->abi_minor, 0);
  assert_true(p->struct_size < sizeof(kms_plugin));
  assert_false(KMS_SLOT_AVAILABLE(p, read_secret_opt));
  assert_false(KMS_SLOT_AVAILABLE(p, health));
  kms_host host = {.struct_size = sizeof host, .abi_major = KMS_ABI_MAJOR,
                   .abi_minor = KMS_ABI_MINOR, .notify = th_notify};
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, &host, NULL, 0, &c, &err), KMS_OK);
  /* 1.0 calls, and 1.1 helpers with default options through the 1.0 slots. */
  expect(kms_client_write(c, "k", "v1", 2, NULL, &err), KMS_OK, &err, NULL);
  read_expect(c, "k", NULL, "v1", 1);
  kms_call_options defaults = OPTS(0, NULL, 0, 0, 0, 0);
  read_expect(c, "k", &defaults, "v1", 1);
  expect(kms_client_write_opt(c, "k", "v2", 2, NULL, &defaults, &err), KMS_OK, &err, NULL);
  char buf[8];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  expect(kms_client_read_into(c, "k", NULL, buf, sizeof buf, &info, &err), KMS_OK, &err, NULL);
  assert_string_equal(buf, "v2");
  expect(kms_client_read_into(c, "k", NULL, buf, 2, &info, &err), KMS_BUFFER_TOO_SMALL, &err,
         NULL);
  assert_int_equal(info.length, 2);
  /* Anything only 1.1 can do: UNSUPPORTED, the plugin is not called. */
  kms_setting team[] = {{"namespace", "t"}};
  kms_call_options o = OPTS(0, team, 1, 0, 0, 0);
  kms_secret *s = NULL;
  expect(kms_client_read_opt(c, "k", &o, &s, &err), KMS_UNSUPPORTED, &err,
         "does not provide read_secret_opt");
  assert_non_null(strstr(err.message, "ABI 1.0"));
  expect(kms_client_read_into(c, "k", &o, buf, sizeof buf, &info, &err), KMS_UNSUPPORTED, &err,
         "read_secret_opt");
  expect(kms_client_write_opt(c, "k", "x", 1, NULL, &o, &err), KMS_UNSUPPORTED, &err,
         "write_secret_opt");
  o = OPTS(0, NULL, 0, 0, KMS_DELETE_PERMANENT, 0);
  expect(kms_client_delete_opt(c, "k", &o, &err), KMS_UNSUPPORTED, &err, "delete_secret_opt");
  o = OPTS(KMS_CALL_NONBLOCKING, NULL, 0, 0, 0, 0);
  expect(kms_client_read_opt(c, "k", &o, &s, &err), KMS_UNSUPPORTED, &err, NULL);
  char **names;
  size_t n;
  expect(kms_client_list_names(c, "", NULL, &names, &n, &err), KMS_UNSUPPORTED, &err,
         "does not provide list_secrets");
  kms_health h = {.struct_size = sizeof h};
  expect(kms_client_health(c, &h, &err), KMS_UNSUPPORTED, &err, "does not provide health");
  assert_int_equal(h.reachable, -1);
  expect(kms_client_delete_opt(c, "k", NULL, &err), KMS_OK, &err, NULL);
  expect(kms_client_read(c, "k", &s, &err), KMS_NOT_FOUND, &err, NULL);
  kms_client_destroy(c);
  kms_module_unload(m);
}

/* A plugin claiming more bytes than the buffer holds: the loader does not
 * pass the claim on; the buffer is wiped. */
static void test_read_into_overrun_refused(void **state) {
  (void)state;
  kms_module *m = load("liar");
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, NULL, NULL, 0, &c, &err), KMS_OK);
  expect(kms_client_write(c, "l", "secret", 6, NULL, &err), KMS_OK, &err, NULL);
  char buf[16];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  expect(kms_client_read_into(c, "l", NULL, buf, sizeof buf, &info, &err), KMS_INTERNAL, &err,
         "overran");
  for (size_t i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 0);
  kms_client_destroy(c);
  kms_module_unload(m);
}

/* The default-ness test every fallback relies on. */
static void test_options_default(void **state) {
  (void)state;
  assert_true(kms_call_options_default(NULL));
  kms_call_options o = OPTS(0, NULL, 0, 0, 0, 0);
  assert_true(kms_call_options_default(&o));
  o.recovery_window_days = 7;
  assert_false(kms_call_options_default(&o));
  o.struct_size = offsetof(kms_call_options, recovery_window_days); /* an older writer */
  assert_true(kms_call_options_default(&o));
  kms_setting l[] = {{"a", "b"}};
  o = OPTS(0, l, 1, 0, 0, 0);
  assert_string_equal(kms_options_get(&o, "a"), "b");
  assert_null(kms_options_get(&o, "b"));
  assert_null(kms_options_get(NULL, "a"));
}

/* kms_stats from many threads: striped counters still sum exactly. */
static void *add_hits(void *arg) {
  for (int i = 0; i < 10000; i++) kms_stats_add(arg, KMS_STAT_HITS, 1);
  kms_stats_add(arg, KMS_STAT_FETCHES, 2);
  return NULL;
}

static void test_stats_threads(void **state) {
  (void)state;
  kms_stats *st = kms_stats_new();
  assert_non_null(st);
  pthread_t t[12];
  for (int i = 0; i < 12; i++) assert_int_equal(pthread_create(&t[i], NULL, add_hits, st), 0);
  for (int i = 0; i < 12; i++) pthread_join(t[i], NULL);
  kms_error e;
  kms_error_set(&e, KMS_UNAVAILABLE, 503, "backend down: retry later");
  assert_int_equal(kms_stats_result(st, KMS_UNAVAILABLE, &e), KMS_UNAVAILABLE);
  assert_int_equal(kms_stats_result(st, KMS_OK, NULL), KMS_OK);
  assert_int_equal(kms_stats_result(st, (kms_status)99, NULL), (kms_status)99);
  kms_health h = {.struct_size = sizeof h};
  kms_stats_fill(st, &h);
  assert_int_equal(h.hits, 120000);
  assert_int_equal(h.fetches, 24);
  assert_int_equal(h.errors_by_status[KMS_UNAVAILABLE], 1);
  assert_int_equal(h.errors_by_status[KMS_INTERNAL], 1); /* out-of-range statuses land here */
  assert_int_equal(h.last_error_status, 99);
  assert_string_equal(h.last_error, "UNKNOWN"); /* no message: the status name */
  kms_stats_free(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_location_and_unknown_keys, setup_full, teardown_full),
      cmocka_unit_test_setup_teardown(test_version_pin_and_delete_modes, setup_full,
                                      teardown_full),
      cmocka_unit_test_setup_teardown(test_nonblocking_read, setup_full, teardown_full),
      cmocka_unit_test_setup_teardown(test_read_into, setup_full, teardown_full),
      cmocka_unit_test_setup_teardown(test_listing, setup_full, teardown_full),
      cmocka_unit_test_setup_teardown(test_notifications, setup_full, teardown_full),
      cmocka_unit_test_setup_teardown(test_health, setup_full, teardown_full),
      cmocka_unit_test(test_1_0_plugin_in_1_1_host),
      cmocka_unit_test(test_read_into_overrun_refused),
      cmocka_unit_test(test_options_default),
      cmocka_unit_test(test_stats_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
