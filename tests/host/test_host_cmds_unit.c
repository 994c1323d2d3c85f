/*
 * test_host_cmds_unit.c -- cmocka tests of the ABI 1.1 commands' pure parts:
 * argument parsing of health/watch/reconcile, watch's background_refresh
 * rule, the notify path (kms_host.notify of plugin.c -> the registered sink
 * -> watch's bounded queue) from several threads at once, and health's
 * report when create() found the backend down. The commands against a real
 * Vault-compatible server are in test_host_cmds.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "hostcmds.h"

static host_result res;

static void test_parse_args(void **state) {
  (void)state;
  int json = -1;
  char *h1[] = {"--json"}, *bad[] = {"--nope"};
  assert_int_equal(host_health_parse(1, h1, &json, &res), HOST_OK);
  assert_int_equal(json, 1);
  assert_int_equal(host_health_parse(1, bad, &json, &res), HOST_USAGE);
  assert_non_null(strstr(res.msg, "--nope"));

  host_reconcile_args ra;
  char *r1[] = {"--delete-orphans", "--json"};
  assert_int_equal(host_reconcile_parse(2, r1, &ra, &res), HOST_OK);
  assert_true(ra.delete_orphans && ra.json);
  assert_int_equal(host_reconcile_parse(1, bad, &ra, &res), HOST_USAGE);

  host_watch_args wa;
  char *w1[] = {"--count", "3", "--timeout", "60", "a", "b/c"};
  assert_int_equal(host_watch_parse(6, w1, &wa, &res), HOST_OK);
  assert_int_equal(wa.count, 3);
  assert_int_equal(wa.timeout_s, 60);
  assert_int_equal(wa.n_names, 2);
  assert_string_equal(wa.names[1], "b/c");
  char *w2[] = {"--count", "0"}, *w3[] = {"--timeout", "-1"}, *w4[] = {"a", "--count", "1"},
       *w5[] = {"--count"}, *w6[] = {"--timeout", "5x"};
  assert_int_equal(host_watch_parse(2, w2, &wa, &res), HOST_USAGE);
  assert_int_equal(host_watch_parse(2, w3, &wa, &res), HOST_USAGE);
  assert_int_equal(host_watch_parse(3, w4, &wa, &res), HOST_USAGE);
  assert_non_null(strstr(res.msg, "options go before the NAMEs"));
  assert_int_equal(host_watch_parse(1, w5, &wa, &res), HOST_USAGE);
  assert_int_equal(host_watch_parse(2, w6, &wa, &res), HOST_USAGE);
  assert_int_equal(host_watch_parse(0, NULL, &wa, &res), HOST_OK);
  assert_int_equal(wa.n_names, 0);
}

static void test_watch_settings(void **state) {
  (void)state;
  host_setting s = {"background_refresh", "false", 7};
  host_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.path = "cfg.yaml";
  kms_setting extra[1];
  size_t n = 9;
  /* unset: watch adds it */
  assert_int_equal(host_watch_settings(&cfg, extra, &n, &res), HOST_OK);
  assert_int_equal(n, 1);
  assert_string_equal(extra[0].key, "background_refresh");
  assert_string_equal(extra[0].value, "true");
  /* off: refused, naming the line */
  cfg.settings = &s;
  cfg.n_settings = 1;
  assert_int_equal(host_watch_settings(&cfg, extra, &n, &res), HOST_CONFIG);
  assert_non_null(strstr(res.msg, "cfg.yaml:7"));
  /* on: nothing to add */
  s.value = "yes";
  assert_int_equal(host_watch_settings(&cfg, extra, &n, &res), HOST_OK);
  assert_int_equal(n, 0);
}

#define THREADS 4
#define PER_THREAD 500

typedef struct sender {
  const kms_host *host;
  int id;
} sender;

/* What a plugin thread does: call the host table's notify. */
static void *send_changes(void *arg) {
  sender *s = arg;
  kms_setting loc[] = {{"namespace", "team-a"}};
  for (int i = 0; i < PER_THREAD; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%d/n%d", s->id, i);
    kms_change c = {sizeof c, name, KMS_CHANGE_UPDATED, i + 1, loc, 1};
    s->host->notify(s->host->ctx, &c);
  }
  return NULL;
}

static void test_notify_reaches_watch_queue(void **state) {
  (void)state;
  const kms_host *h = host_services(0);
  assert_true(KMS_FIELD_PRESENT(h, kms_host, notify) && h->notify);
  host_watch *w = NULL;
  assert_int_equal(host_watch_new(&w, &res), HOST_OK);
  /* no sink yet: the change is dropped, not queued */
  kms_change c = {sizeof c, "x", KMS_CHANGE_DELETED, 0, NULL, 0};
  h->notify(h->ctx, &c);
  size_t queued;
  unsigned long dropped;
  host_watch_counts(w, &queued, &dropped);
  assert_int_equal(queued, 0);
  host_notify_set(host_watch_notify, w);
  pthread_t t[THREADS];
  sender s[THREADS];
  for (int i = 0; i < THREADS; i++) {
    s[i] = (sender){h, i};
    assert_int_equal(pthread_create(&t[i], NULL, send_changes, &s[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  host_watch_counts(w, &queued, &dropped);
  assert_int_equal(queued, THREADS * PER_THREAD);
  assert_int_equal(dropped, 0);
  /* the queue is bounded: beyond 4096 changes are counted, not held */
  for (int i = 0; i < 5000; i++) h->notify(h->ctx, &c);
  host_watch_counts(w, &queued, &dropped);
  assert_int_equal(queued, 4096);
  assert_int_equal(dropped, THREADS * PER_THREAD + 5000 - 4096);
  host_notify_set(NULL, NULL);
  host_watch_free(w); /* frees what is still queued (ASan/valgrind check) */
}

static void test_health_backend_down(void **state) {
  (void)state;
  host_health_report rep;
  assert_int_equal(host_health_check(NULL, "hashicorp_vault", "cannot connect", &rep, &res),
                   HOST_OK);
  assert_false(rep.healthy);
  assert_false(rep.have_health);
  assert_int_equal(rep.probe, KMS_UNAVAILABLE);
  assert_non_null(strstr(rep.reason, "unreachable: cannot connect"));
  char buf[2048] = "";
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  assert_non_null(f);
  assert_int_equal(host_health_print(&rep, 1, f, &res), HOST_OK);
  fclose(f);
  assert_non_null(strstr(buf, "\"healthy\":false"));
  assert_null(strstr(buf, "\"hits\"")); /* no figures without an instance */
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_args),
    cmocka_unit_test(test_watch_settings),
    cmocka_unit_test(test_notify_reaches_watch_queue),
    cmocka_unit_test(test_health_backend_down),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
