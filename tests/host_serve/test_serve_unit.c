/*
 * test_serve_unit.c -- cmocka tests of `kms-host serve`'s parts without the
 * HTTP daemon, so they also run under TSan and valgrind (scripts/test):
 * credentials and the constant-time master-key check, the bounded request
 * body, LiteLLM's error shape, routing and auth in serve_handle on a real
 * database, and the delivery worker's round accounting (a request waits
 * for a round that started after its commit; a queue that cannot land is
 * reported as queued, an empty one as landed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "serve.h"

static void test_credential(void **state) {
  (void)state;
  assert_string_equal(serve_credential("Bearer sk-1", NULL), "sk-1");
  assert_string_equal(serve_credential("bearer  sk-1", NULL), "sk-1");
  assert_string_equal(serve_credential(NULL, "sk-2"), "sk-2");
  assert_string_equal(serve_credential("", "Bearer sk-2"), "sk-2");
  assert_null(serve_credential(NULL, NULL));
  assert_null(serve_credential("Bearer ", NULL));
}

static void test_is_master(void **state) {
  (void)state;
  host_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.path = "config.yaml";
  unsigned char sha[32];
  host_result r = {HOST_OK, ""};
  assert_int_equal(serve_master_key(&cfg, NULL, sha, &r), HOST_CONFIG);
  assert_non_null(strstr(r.msg, "master_key is not set"));
  cfg.master_key = "sk-1234";
  assert_int_equal(serve_master_key(&cfg, NULL, sha, &r), HOST_OK);
  assert_true(serve_is_master(sha, "sk-1234"));
  assert_false(serve_is_master(sha, "sk-123"));
  assert_false(serve_is_master(sha, "sk-12345"));
  assert_false(serve_is_master(sha, ""));
  assert_false(serve_is_master(sha, NULL));
}

/* config.c keeps general_settings.master_key as written, for serve. */
static void test_config_master_key(void **state) {
  (void)state;
  host_result err;
  host_config cfg;
  const char *lit = "general_settings:\n  master_key: sk-1234\n";
  assert_int_equal(host_config_parse(lit, strlen(lit), "c.yaml", "/etc", &cfg, &err), HOST_OK);
  assert_string_equal(cfg.master_key, "sk-1234");
  host_config_free(&cfg);
  const char *ref = "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n";
  assert_int_equal(host_config_parse(ref, strlen(ref), "c.yaml", "/etc", &cfg, &err), HOST_OK);
  assert_string_equal(cfg.master_key, "os.environ/LITELLM_MASTER_KEY");
  host_config_free(&cfg);
  const char *bad = "general_settings:\n  master_key: [a, b]\n";
  assert_int_equal(host_config_parse(bad, strlen(bad), "c.yaml", "/etc", &cfg, &err), HOST_CONFIG);
  assert_non_null(strstr(err.msg, "general_settings.master_key"));
}

static void test_body_limit(void **state) {
  (void)state;
  serve_req q;
  memset(&q, 0, sizeof q);
  char chunk[1024];
  memset(chunk, 'a', sizeof chunk);
  for (unsigned i = 0; i < SERVE_BODY_MAX / sizeof chunk; i++) serve_req_append(&q, chunk, sizeof chunk);
  assert_int_equal(q.len, SERVE_BODY_MAX);
  assert_false(q.too_big);
  serve_req_append(&q, "b", 1);
  assert_true(q.too_big);
  assert_int_equal(q.len, SERVE_BODY_MAX);
  serve_req_free(&q);
}

static void test_error_shape(void **state) {
  (void)state;
  serve_reply rep = {0, NULL};
  serve_reply_error(&rep, 401, "auth_error", NULL, "no %s", "key");
  assert_int_equal(rep.status, 401);
  assert_string_equal(rep.body, "{\"error\":{\"message\":\"no key\",\"type\":\"auth_error\","
                                "\"param\":\"None\",\"code\":\"401\"}}");
  serve_reply_free(&rep);
  host_result r = {HOST_FAILED, "no virtual key with alias 'x'"};
  serve_reply_result(&rep, &r, "key_aliases");
  assert_int_equal(rep.status, 404);
  serve_reply_free(&rep);
}

/* ------------------------------------------------- a database and a worker */

typedef struct fixture {
  char dir[256];
  char db_path[300];
  host_config cfg;
  serve_ctx ctx;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/serve-unit-XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->db_path, sizeof f->db_path, "%s/kms-host.db", f->dir);
  umask(077);
  host_result r = {HOST_OK, ""};
  if (host_db_open(f->db_path, &f->ctx.db, &r) != HOST_OK) {
    fprintf(stderr, "%s\n", r.msg);
    return -1;
  }
  f->cfg.path = "config.yaml";
  f->cfg.master_key = "sk-1234";
  f->ctx.cfg = &f->cfg;
  f->ctx.deliver_wait_ms = 2000;
  pthread_mutex_init(&f->ctx.db_mu, NULL);
  pthread_mutex_init(&f->ctx.plugin_mu, NULL);
  if (serve_master_key(&f->cfg, NULL, f->ctx.master_sha, &r) != HOST_OK ||
      serve_worker_start(f->db_path, NULL, &f->ctx.plugin_mu, 1, 4, host_clock_system(),
                         &f->ctx.worker, &r) != HOST_OK)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  serve_worker_stop(f->ctx.worker);
  host_db_close(f->ctx.db);
  pthread_mutex_destroy(&f->ctx.db_mu);
  pthread_mutex_destroy(&f->ctx.plugin_mu);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

static const char *no_query(void *ctx, const char *name) {
  (void)ctx, (void)name;
  return NULL;
}

static unsigned call(fixture *f, const char *method, const char *path, const char *cred,
                     const char *body, char **out) {
  serve_req q;
  memset(&q, 0, sizeof q);
  if (body) serve_req_append(&q, body, strlen(body));
  serve_reply rep = {0, NULL};
  serve_handle(&f->ctx, method, path, no_query, NULL, cred, &q, &rep);
  serve_req_free(&q);
  unsigned st = rep.status;
  if (out) *out = strdup(rep.body);
  serve_reply_free(&rep);
  return st;
}

static void test_routes_and_auth(void **state) {
  fixture *f = *state;
  char *b = NULL;
  assert_int_equal(call(f, "GET", "/health/liveliness", NULL, NULL, NULL), 200);
  assert_int_equal(call(f, "POST", "/key/generate", NULL, "{}", NULL), 401);
  assert_int_equal(call(f, "POST", "/key/generate", "sk-wrong", "{}", NULL), 401);
  assert_int_equal(call(f, "GET", "/nope", "sk-1234", NULL, NULL), 404);
  assert_int_equal(call(f, "POST", "/key/generate", "sk-1234", "{\"key_alias\": \"u1\"}", &b), 200);
  /* store_virtual_keys is off: nothing to deliver */
  assert_non_null(strstr(b, "\"secret_manager\":\"not_stored\""));
  cJSON *o = cJSON_Parse(b);
  char key[HOST_KEY_MAX];
  snprintf(key, sizeof key, "%s", cJSON_GetObjectItem(o, "key")->valuestring);
  cJSON_Delete(o);
  free(b);
  /* The new key is a virtual key: /key/info for itself, nothing else. */
  assert_int_equal(call(f, "GET", "/key/info", key, NULL, NULL), 200);
  assert_int_equal(call(f, "GET", "/key/list", key, NULL, NULL), 403);
  assert_int_equal(call(f, "POST", "/key/generate", "sk-1234", "{\"key_alias\": \"u1\"}", NULL), 400);
  assert_int_equal(call(f, "POST", "/key/delete", "sk-1234", "{\"key_aliases\": [\"u1\"]}", NULL),
                   200);
  assert_int_equal(call(f, "GET", "/key/info", key, NULL, NULL), 401); /* gone */
}

static void test_worker_rounds(void **state) {
  fixture *f = *state;
  serve_delivery d;
  serve_worker_deliver(f->ctx.worker, 5000, &d);
  assert_true(d.landed); /* nothing queued */
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&f->ctx.db_mu);
  assert_int_equal(host_store_enqueue(f->ctx.db, HOST_OUTBOX_DELETE, "litellm/x", NULL, 0, &r),
                   HOST_OK);
  pthread_mutex_unlock(&f->ctx.db_mu);
  /* No plugin instance: the round cannot land it, and says why. */
  serve_worker_deliver(f->ctx.worker, 5000, &d);
  assert_false(d.landed);
  assert_int_equal(d.queued, 1);
  assert_non_null(strstr(d.error, "no secret-manager instance"));
  /* A zero wait answers at once: not landed (no round covered it yet). */
  serve_worker_deliver(f->ctx.worker, 0, &d);
  assert_false(d.landed);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_credential),
    cmocka_unit_test(test_is_master),
    cmocka_unit_test(test_config_master_key),
    cmocka_unit_test(test_body_limit),
    cmocka_unit_test(test_error_shape),
    cmocka_unit_test_setup_teardown(test_routes_and_auth, setup, teardown),
    cmocka_unit_test_setup_teardown(test_worker_rounds, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
