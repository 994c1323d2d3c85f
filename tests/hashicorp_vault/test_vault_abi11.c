/*
 * test_vault_abi11.c -- the Vault plugin's ABI 1.1 slots against the
 * Vault-compatible server: health counters, negative caching (neg_ttl),
 * the buffer read, per-call location overrides (namespace, mount,
 * path_prefix, field) with their validation, version pins, delete modes,
 * BYPASS_CACHE, NONBLOCKING, listing and change notifications.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vf_server *srv;

static int setup(void **state) {
  (void)state;
  static const char *const nss[] = {"ns1", NULL};
  static const char *const mounts[] = {"team", NULL};
  srv = vf_start(&(vf_options){.namespaces = nss, .mounts = mounts});
  return srv ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  vf_stop(srv);
  return 0;
}

static int reset(void **state) {
  (void)state;
  vf_clear_faults(srv);
  vf_clear_requests(srv);
  return 0;
}

/* A client on the test server with extra settings (access read_and_write). */
static kms_client *client_with(it_host *h, const char *interval, const kms_setting *extra,
                               size_t n) {
  it_host_init(h);
  it_target(h, srv, 0, 0);
  it_set(h, "HCP_VAULT_REFRESH_INTERVAL", interval);
  h->host.notify = it_notify_record;
  kms_setting s[8] = {{"access_mode", "read_and_write"}};
  for (size_t i = 0; i < n; i++) s[i + 1] = extra[i];
  kms_client *c = NULL;
  kms_error err;
  if (it_client(h, s, n + 1, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}

static size_t count(const char *method, const char *path) {
  vf_log *log = vf_requests(srv);
  size_t n = vf_count(log, method, path);
  vf_log_free(log);
  return n;
}

static kms_health health(kms_client *c) {
  kms_health hl;
  memset(&hl, 0, sizeof hl);
  hl.struct_size = sizeof hl;
  kms_error err;
  assert_int_equal(kms_client_health(c, &hl, &err), KMS_OK);
  return hl;
}

static kms_call_options loc_opts(const kms_setting *loc, size_t n) {
  kms_call_options o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.location = loc;
  o.n_location = n;
  return o;
}

/* Read through read_secret_opt into val. */
static kms_status rd_opt(kms_client *c, const char *name, const kms_call_options *o, char *val,
                         size_t vs, kms_error *err) {
  kms_secret *s = NULL;
  val[0] = '\0';
  kms_status st = kms_client_read_opt(c, name, o, &s, err);
  if (st == KMS_OK) {
    snprintf(val, vs, "%s", s->value);
    kms_client_free_secret(c, s);
  }
  return st;
}

static void test_health(void **state) {
  (void)state;
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  assert_int_equal(kms_client_write(c, "h1", "v1", 2, NULL, &err), KMS_OK);
  char v[32];
  assert_int_equal(it_read(c, "h1", v, sizeof v, NULL, NULL), KMS_OK); /* hit (the write) */
  assert_int_equal(it_read(c, "h-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  kms_call_options bypass = loc_opts(NULL, 0);
  bypass.flags = KMS_CALL_BYPASS_CACHE;
  assert_int_equal(rd_opt(c, "h1", &bypass, v, sizeof v, &err), KMS_OK);
  kms_health hl = health(c);
  assert_int_equal(hl.reachable, 1);
  assert_int_equal(hl.authenticated, 1);
  assert_int_equal(hl.token_ttl_seconds, -1); /* a static token */
  assert_int_equal(hl.cache_entries, 1);
  assert_int_equal(hl.hits, 1);
  assert_int_equal(hl.misses, 2);
  assert_int_equal(hl.fetches, 2);
  assert_int_equal(hl.negative_hits, 0);
  assert_int_equal(hl.logins, 0);
  assert_int_equal(hl.errors_by_status[KMS_NOT_FOUND], 1);
  assert_int_equal(hl.last_error_status, KMS_NOT_FOUND);
  assert_non_null(strstr(hl.last_error, "h-missing"));
  assert_null(strstr(hl.last_error, vf_root_token(srv)));
  assert_true(hl.last_error_time > 0);
  it_done(&h, c);

  /* Vault unreachable: reachable 0, UNAVAILABLE counted. */
  it_host h2;
  it_host_init(&h2);
  it_target(&h2, srv, 0, 0);
  it_set(&h2, "HCP_VAULT_ADDR", "http://127.0.0.1:1");
  it_set(&h2, "VAULT_MAX_RETRIES", "0");
  kms_client *c2 = NULL;
  assert_int_equal(it_client(&h2, IT_RW, IT_RW_N, &c2, &err), KMS_OK);
  assert_int_equal(it_read(c2, "x", v, sizeof v, NULL, NULL), KMS_UNAVAILABLE);
  hl = health(c2);
  assert_int_equal(hl.reachable, 0);
  assert_int_equal(hl.errors_by_status[KMS_UNAVAILABLE], 1);
  it_done(&h2, c2);
}

static void test_neg_ttl(void **state) {
  (void)state;
  it_host h;
  static const kms_setting neg[] = {{"neg_ttl", "60"}};
  kms_client *c = client_with(&h, "300", neg, 1);
  char v[32];
  for (int i = 0; i < 1000; i++)
    assert_int_equal(it_read(c, "neg-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  assert_int_equal(count("GET", "/v1/secret/data/neg-missing"), 1);
  kms_health hl = health(c);
  assert_int_equal(hl.negative_hits, 999);
  assert_int_equal(hl.misses, 1);
  /* a write through the instance clears it */
  kms_error err;
  assert_int_equal(kms_client_write(c, "neg-missing", "now", 3, NULL, &err), KMS_OK);
  assert_int_equal(it_read(c, "neg-missing", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "now");
  /* a delete too: the next read asks Vault again, then the answer is cached */
  assert_int_equal(kms_client_delete(c, "neg-missing", &err), KMS_OK);
  assert_int_equal(it_read(c, "neg-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  assert_int_equal(it_read(c, "neg-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  assert_int_equal(count("GET", "/v1/secret/data/neg-missing"), 2);
  it_done(&h, c);

  /* default (0): every read asks */
  vf_clear_requests(srv);
  c = client_with(&h, "300", NULL, 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(it_read(c, "neg-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  assert_int_equal(count("GET", "/v1/secret/data/neg-missing"), 3);
  it_done(&h, c);

  /* a bad value is refused, naming the setting */
  it_host_init(&h);
  it_target(&h, srv, 0, 0);
  static const kms_setting bad[] = {{"neg_ttl", "soon"}};
  kms_error e2;
  assert_int_equal(it_client(&h, bad, 1, &c, &e2), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(e2.message, "neg_ttl"));
  it_host_free(&h);
}

static void test_read_into(void **state) {
  (void)state;
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  assert_int_equal(kms_client_write(c, "into", "hello", 5, NULL, &err), KMS_OK);
  kms_secret_info info = {sizeof info, 0, 0, 0};
  char small[3] = "ab";
  assert_int_equal(kms_client_read_into(c, "into", NULL, small, sizeof small, &info, &err),
                   KMS_BUFFER_TOO_SMALL);
  assert_int_equal(info.length, 5);
  assert_int_equal(kms_client_read_into(c, "into", NULL, NULL, 0, &info, &err),
                   KMS_BUFFER_TOO_SMALL);
  char buf[6];
  assert_int_equal(kms_client_read_into(c, "into", NULL, buf, sizeof buf, &info, &err), KMS_OK);
  assert_string_equal(buf, "hello");
  assert_int_equal(info.length, 5);
  assert_int_equal(info.version, 1);
  /* a miss fetches, then serves */
  vf_put(srv, "secret/data/into2", "{\"key\":\"fetched\"}");
  char b2[16];
  assert_int_equal(kms_client_read_into(c, "into2", NULL, b2, sizeof b2, &info, &err), KMS_OK);
  assert_string_equal(b2, "fetched");
  assert_int_equal(kms_client_read_into(c, "into-missing", NULL, b2, sizeof b2, &info, &err),
                   KMS_NOT_FOUND);
  it_done(&h, c);
}

static void test_locations(void **state) {
  (void)state;
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  char v[64];
  static const kms_setting ns[] = {{"namespace", "ns1"}};
  kms_call_options o = loc_opts(ns, 1);
  assert_int_equal(kms_client_write_opt(c, "team-key", "t1", 2, NULL, &o, &err), KMS_OK);
  assert_int_equal(count("POST", "/v1/ns1/secret/data/team-key"), 1);
  assert_int_equal(rd_opt(c, "team-key", &o, v, sizeof v, &err), KMS_OK);
  assert_string_equal(v, "t1");
  assert_int_equal(it_read(c, "team-key", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);

  static const kms_setting mp[] = {{"mount", "team"}, {"path_prefix", "a/b"}};
  o = loc_opts(mp, 2);
  assert_int_equal(kms_client_write_opt(c, "k", "t2", 2, NULL, &o, &err), KMS_OK);
  assert_int_equal(count("POST", "/v1/team/data/a/b/k"), 1);
  assert_int_equal(rd_opt(c, "k", &o, v, sizeof v, &err), KMS_OK);
  assert_string_equal(v, "t2");
  assert_int_equal(kms_client_delete_opt(c, "k", &o, &err), KMS_OK);
  assert_int_equal(rd_opt(c, "k", &o, v, sizeof v, &err), KMS_NOT_FOUND);

  /* field instead of key */
  vf_put(srv, "secret/data/multi", "{\"key\":\"a\",\"api\":\"b\"}");
  static const kms_setting fd[] = {{"field", "api"}};
  o = loc_opts(fd, 1);
  assert_int_equal(rd_opt(c, "multi", &o, v, sizeof v, &err), KMS_OK);
  assert_string_equal(v, "b");
  assert_int_equal(it_read(c, "multi", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "a");
  assert_int_equal(kms_client_write_opt(c, "multi", "x", 1, NULL, &o, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "field"));

  /* unknown keys and bad segments are refused, naming the key */
  static const kms_setting unk[] = {{"colour", "blue"}};
  o = loc_opts(unk, 1);
  assert_int_equal(rd_opt(c, "multi", &o, v, sizeof v, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "colour"));
  assert_int_equal(kms_client_write_opt(c, "multi", "x", 1, NULL, &o, &err),
                   KMS_INVALID_ARGUMENT);
  assert_int_equal(kms_client_delete_opt(c, "multi", &o, &err), KMS_INVALID_ARGUMENT);
  static const char *const bad[] = {"../x", "/ns1", "a//b", "", "a/./b"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    kms_setting b[] = {{"namespace", bad[i]}};
    o = loc_opts(b, 1);
    assert_int_equal(rd_opt(c, "multi", &o, v, sizeof v, &err), KMS_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "namespace"));
  }
  vf_log *log = vf_requests(srv);
  for (size_t i = 0; i < log->n; i++) assert_null(strstr(log->r[i].path, ".."));
  vf_log_free(log);
  it_done(&h, c);
}

static void test_version_delete_bypass(void **state) {
  (void)state;
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  char v[64];
  assert_int_equal(kms_client_write(c, "ver", "one", 3, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "ver", "two", 3, NULL, &err), KMS_OK);
  kms_call_options o = loc_opts(NULL, 0);
  o.version = 1;
  for (int i = 0; i < 2; i++) { /* cached per version: one request */
    assert_int_equal(rd_opt(c, "ver", &o, v, sizeof v, &err), KMS_OK);
    assert_string_equal(v, "one");
  }
  assert_int_equal(it_read(c, "ver", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "two");
  vf_log *log = vf_requests(srv);
  size_t pinned = 0;
  for (size_t i = 0; i < log->n; i++)
    if (log->r[i].query && strcmp(log->r[i].query, "version=1") == 0) pinned++;
  vf_log_free(log);
  assert_int_equal(pinned, 1);

  /* BYPASS_CACHE sees a change made elsewhere, and refreshes the cache */
  vf_put(srv, "secret/data/ver", "{\"key\":\"three\"}");
  assert_int_equal(it_read(c, "ver", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "two");
  kms_call_options b = loc_opts(NULL, 0);
  b.flags = KMS_CALL_BYPASS_CACHE;
  assert_int_equal(rd_opt(c, "ver", &b, v, sizeof v, &err), KMS_OK);
  assert_string_equal(v, "three");
  assert_int_equal(it_read(c, "ver", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "three");

  /* delete modes per call (the instance default is soft) */
  kms_call_options d = loc_opts(NULL, 0);
  d.delete_mode = KMS_DELETE_SOFT;
  assert_int_equal(kms_client_delete_opt(c, "ver", &d, &err), KMS_OK);
  assert_int_equal(count("DELETE", "/v1/secret/data/ver"), 1);
  assert_int_equal(vf_http(srv, "GET", "/v1/secret/metadata/ver", vf_root_token(srv), NULL, NULL),
                   200);
  d.delete_mode = KMS_DELETE_PERMANENT;
  assert_int_equal(kms_client_delete_opt(c, "ver", &d, &err), KMS_OK);
  assert_int_equal(count("DELETE", "/v1/secret/metadata/ver"), 1);
  assert_int_equal(vf_http(srv, "GET", "/v1/secret/metadata/ver", vf_root_token(srv), NULL, NULL),
                   404);
  d.delete_mode = KMS_DELETE_SOFT;
  d.recovery_window_days = 7;
  assert_int_equal(kms_client_delete_opt(c, "ver", &d, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "recovery_window_days"));
  it_done(&h, c);
}

static void test_nonblocking(void **state) {
  (void)state;
  it_rec_clear();
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  char v[64];
  vf_put(srv, "secret/data/nb", "{\"key\":\"later\"}");
  kms_call_options o = loc_opts(NULL, 0);
  o.flags = KMS_CALL_NONBLOCKING;
  assert_int_equal(rd_opt(c, "nb", &o, v, sizeof v, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "background"));
  kms_status st = KMS_UNAVAILABLE;
  for (int i = 0; i < 500 && st == KMS_UNAVAILABLE; i++) {
    st = rd_opt(c, "nb", &o, v, sizeof v, &err);
    if (st == KMS_UNAVAILABLE) it_sleep_ms(10);
  }
  assert_int_equal(st, KMS_OK);
  assert_string_equal(v, "later");
  assert_int_equal(count("GET", "/v1/secret/data/nb"), 1); /* one fetch for all the misses */
  for (int i = 0; i < 500 && !it_rec_has("UPD nb v1"); i++) it_sleep_ms(10);
  assert_true(it_rec_has("UPD nb v1"));
  /* a missing secret: UNAVAILABLE, then NOT_FOUND from a cached answer only
   * with neg_ttl; without, it stays UNAVAILABLE at once */
  assert_int_equal(rd_opt(c, "nb-missing", &o, v, sizeof v, &err), KMS_UNAVAILABLE);
  /* a nonblocking buffer read of a cached value */
  kms_secret_info info = {sizeof info, 0, 0, 0};
  assert_int_equal(kms_client_read_into(c, "nb", &o, v, sizeof v, &info, &err), KMS_OK);
  assert_string_equal(v, "later");
  it_done(&h, c); /* destroy joins the background thread */
}

static int collect_name(void *ctx, const char *name) {
  char *acc = ctx;
  strcat(acc, name);
  strcat(acc, ",");
  return 0;
}

static void test_list(void **state) {
  (void)state;
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  static const kms_setting ns[] = {{"namespace", "ns1"}, {"path_prefix", "lst"}};
  kms_call_options o = loc_opts(ns, 2);
  const char *names[] = {"a/b/c", "a/d", "x", "ab"};
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(kms_client_write_opt(c, names[i], "v", 1, NULL, &o, &err), KMS_OK);
  char **got = NULL;
  size_t n = 0;
  assert_int_equal(kms_client_list_names(c, "", &o, &got, &n, &err), KMS_OK);
  assert_int_equal(n, 4);
  assert_string_equal(got[0], "a/b/c");
  assert_string_equal(got[1], "a/d");
  assert_string_equal(got[2], "ab");
  assert_string_equal(got[3], "x");
  kms_client_list_names_free(got, n);
  assert_int_equal(kms_client_list_names(c, "a/", &o, &got, &n, &err), KMS_OK);
  assert_int_equal(n, 2);
  kms_client_list_names_free(got, n);
  assert_int_equal(kms_client_list_names(c, "a", &o, &got, &n, &err), KMS_OK);
  assert_int_equal(n, 3); /* a/b/c, a/d, ab */
  kms_client_list_names_free(got, n);
  char acc[256] = "";
  assert_int_equal(kms_client_list(c, "a/b", &o, collect_name, acc, &err), KMS_OK);
  assert_string_equal(acc, "a/b/c,");
  /* nothing there: empty, not an error */
  assert_int_equal(kms_client_list_names(c, "nothing/", &o, &got, &n, &err), KMS_OK);
  assert_int_equal(n, 0);
  kms_client_list_names_free(got, n);
  static const kms_setting unk[] = {{"colour", "blue"}};
  kms_call_options u = loc_opts(unk, 1);
  assert_int_equal(kms_client_list_names(c, "", &u, &got, &n, &err), KMS_INVALID_ARGUMENT);
  it_done(&h, c);
}

static void test_notify(void **state) {
  (void)state;
  it_rec_clear();
  it_host h;
  kms_client *c = client_with(&h, "300", NULL, 0);
  kms_error err;
  char v[64];
  vf_put(srv, "secret/data/rot", "{\"key\":\"k1\"}");
  assert_int_equal(it_read(c, "rot", v, sizeof v, NULL, NULL), KMS_OK);
  assert_int_equal(it_rec_count(), 0); /* a first read is no change */
  vf_put(srv, "secret/data/rot", "{\"key\":\"k2\"}");
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_true(it_rec_has("UPD rot v2\n"));
  /* a write through the instance is not reported back */
  assert_int_equal(kms_client_write(c, "rot", "k3", 2, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_int_equal(it_rec_count(), 1);
  /* gone from Vault */
  assert_int_equal(vf_http(srv, "DELETE", "/v1/secret/metadata/rot", vf_root_token(srv), NULL,
                           NULL), 204);
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_true(it_rec_has("DEL rot v0\n"));
  /* under a location override: the location comes with it */
  static const kms_setting ns[] = {{"namespace", "ns1"}};
  kms_call_options o = loc_opts(ns, 1);
  vf_put(srv, "ns1/secret/data/t/rot", "{\"key\":\"a\"}");
  assert_int_equal(rd_opt(c, "t/rot", &o, v, sizeof v, &err), KMS_OK);
  vf_put(srv, "ns1/secret/data/t/rot", "{\"key\":\"b\"}");
  kms_call_options ob = o;
  ob.flags = KMS_CALL_BYPASS_CACHE;
  assert_int_equal(rd_opt(c, "t/rot", &ob, v, sizeof v, &err), KMS_OK);
  assert_true(it_rec_has("UPD t/rot v2 namespace=ns1\n"));
  it_done(&h, c);
}

/* The background refresher sees a rotation made elsewhere and notifies
 * within one refresh interval (1 s here; polled, bounded at 10 s). */
static void test_notify_from_refresher(void **state) {
  (void)state;
  it_rec_clear();
  it_host h;
  static const kms_setting bg[] = {{"background_refresh", "true"}};
  kms_client *c = client_with(&h, "1", bg, 1);
  char v[64];
  vf_put(srv, "secret/data/bgrot", "{\"key\":\"k1\"}");
  assert_int_equal(it_read(c, "bgrot", v, sizeof v, NULL, NULL), KMS_OK);
  vf_put(srv, "secret/data/bgrot", "{\"key\":\"k2\"}");
  long long t0 = it_now_ms();
  while (!it_rec_has("UPD bgrot v2\n") && it_now_ms() - t0 < 10000) it_sleep_ms(20);
  assert_true(it_rec_has("UPD bgrot v2\n"));
  assert_int_equal(it_read(c, "bgrot", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "k2");
  it_done(&h, c);
}

/* A 1.0 host's table ends before notify: the plugin must not read it (the
 * slot holds a poisoned pointer here that would crash if called). */
static void poisoned(void *ctx, const kms_change *ch) {
  (void)ctx;
  (void)ch;
  fail_msg("notify called although it lies outside the host's struct_size");
}

static void test_notify_respects_host_size(void **state) {
  (void)state;
  it_host h;
  it_host_init(&h);
  it_target(&h, srv, 0, 0);
  it_set(&h, "HCP_VAULT_REFRESH_INTERVAL", "300");
  h.host.struct_size = offsetof(kms_host, notify);
  h.host.notify = poisoned;
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  char v[32];
  vf_put(srv, "secret/data/old-host", "{\"key\":\"a\"}");
  assert_int_equal(it_read(c, "old-host", v, sizeof v, NULL, NULL), KMS_OK);
  vf_put(srv, "secret/data/old-host", "{\"key\":\"b\"}");
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK); /* a change the plugin learns */
  assert_int_equal(it_read(c, "old-host", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "b");
  it_done(&h, c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_health, reset),
      cmocka_unit_test_setup(test_neg_ttl, reset),
      cmocka_unit_test_setup(test_read_into, reset),
      cmocka_unit_test_setup(test_locations, reset),
      cmocka_unit_test_setup(test_version_delete_bypass, reset),
      cmocka_unit_test_setup(test_nonblocking, reset),
      cmocka_unit_test_setup(test_list, reset),
      cmocka_unit_test_setup(test_notify, reset),
      cmocka_unit_test_setup(test_notify_from_refresher, reset),
      cmocka_unit_test_setup(test_notify_respects_host_size, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
