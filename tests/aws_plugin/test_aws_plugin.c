/*
 * test_aws_plugin.c -- integration tests of aws_secret_manager.so: the real
 * plugin, loaded through the loader, against a real tests/aws_server
 * process over HTTPS on loopback (real SigV4 verification by the server).
 *
 * Covered: read/write (CreateSecret, then PutSecretValue), Description and
 * Tags, delete (recovery window, force, missing = OK), re-creating a name
 * scheduled for deletion (RestoreSecret), primary_secret_name (one JSON
 * secret, many keys), binary values (SecretBinary), error mapping
 * (AccessDenied, bad signature, wrong region, throttling with and without
 * retries), the cache (hits, stale-if-error) and single-flight, static
 * session credentials (a signed X-Amz-Security-Token), secrets never in
 * messages or logs; health's reachable/authenticated; the never-blocking
 * read (cold: UNAVAILABLE at once, then the background fetch's value; warm:
 * the cached value) and change notifications (a rotation and a deletion
 * made by another instance, seen by background_refresh's re-reads; the
 * instance's own write not reported back); listing (ListSecrets pages, a
 * name prefix, scheduled deletions left out, primary_secret_name's keys)
 * and the buffer read (read_secret_into).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REGION "eu-central-1"
#define KEY_ID "AKIAKMSPLUGTEST00001"
#define SECRET_KEY "kmsplug/test/secret/access/key/0000000000"

static vf_server *g_srv;

static void target(it_host *h, vf_server *s) {
  it_host_init(h);
  it_set(h, "AWS_REGION", REGION);
  it_set(h, "AWS_ENDPOINT_URL_SECRETS_MANAGER", vf_url(s));
  it_set(h, "AWS_ACCESS_KEY_ID", KEY_ID);
  it_set(h, "AWS_SECRET_ACCESS_KEY", SECRET_KEY);
  it_set(h, "AWS_CA_BUNDLE", vf_cert("ca.pem"));
  /* hermetic: no shared files or instance metadata of the machine */
  it_set(h, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
  it_set(h, "AWS_CONFIG_FILE", "/nonexistent/config");
  it_set(h, "AWS_EC2_METADATA_DISABLED", "true");
}

static kms_client *client(it_host *h, const kms_setting *s, size_t n) {
  kms_client *c = NULL;
  kms_error err;
  kms_status st = it_client(h, s, n, &c, &err);
  if (st != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}

static void reset(void) {
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/reset", NULL, "{}", NULL), 200);
  assert_int_equal(vf_clear_faults(g_srv), 0);
  assert_int_equal(vf_clear_requests(g_srv), 0);
}

/* Requests of one Secrets Manager operation in the server's log. */
static size_t count_op(const char *op) {
  vf_log *log = vf_requests(g_srv);
  assert_non_null(log);
  char want[96];
  snprintf(want, sizeof want, "secretsmanager.%s", op);
  size_t n = 0;
  for (size_t i = 0; i < log->n; i++) {
    const char *t = vf_header(&log->r[i], "X-Amz-Target");
    if (t && strcmp(t, want) == 0) n++;
  }
  vf_log_free(log);
  return n;
}

/* The body of the last request of `op` (malloc'ed), or NULL. */
static char *last_body(const char *op) {
  vf_log *log = vf_requests(g_srv);
  char want[96], *b = NULL;
  snprintf(want, sizeof want, "secretsmanager.%s", op);
  for (size_t i = 0; log && i < log->n; i++) {
    const char *t = vf_header(&log->r[i], "X-Amz-Target");
    if (t && strcmp(t, want) == 0) {
      free(b);
      b = strdup(log->r[i].body ? log->r[i].body : "");
    }
  }
  vf_log_free(log);
  return b;
}

static void write_ok(kms_client *c, const char *name, const char *v, size_t len) {
  kms_error err;
  kms_status st = kms_client_write(c, name, v, len, NULL, &err);
  if (st != KMS_OK) fail_msg("write %s: %s", name, err.message);
}

static void want_value(kms_client *c, const char *name, const char *want) {
  char v[256];
  kms_error err;
  kms_status st = it_read(c, name, v, sizeof v, NULL, &err);
  if (st != KMS_OK) fail_msg("read %s: %s", name, err.message);
  assert_string_equal(v, want);
}

static void want_status(kms_status st, kms_status want, const kms_error *err,
                          const char *needle) {
  if (st != want || (needle && !strstr(err->message, needle)))
    fail_msg("want %s with '%s', got %s: %s", kms_status_str(want), needle ? needle : "",
             kms_status_str(st), err->message);
  assert_non_null(strstr(err->message, "aws_secret_manager: "));
}

static const kms_setting RW[] = {{"access_mode", "read_and_write"},
                                 {"description", "litellm virtual key"},
                                 {"tags", "{\"Environment\": \"Prod\"}"}};

/* The usual client: the test server, access_mode read_and_write. */
static kms_client *rw_client(it_host *h) {
  target(h, g_srv);
  return client(h, RW, 1);
}

static void test_write_read_overwrite(void **state) {
  (void)state;
  reset();
  it_host h;
  target(&h, g_srv);
  kms_client *c = client(&h, RW, 3);
  write_ok(c, "litellm/alias-1", "sk-one", 6);
  assert_int_equal(count_op("CreateSecret"), 1);
  char *b = last_body("CreateSecret");
  assert_non_null(b);
  assert_non_null(strstr(b, "\"Description\": \"litellm virtual key\""));
  assert_non_null(strstr(b, "\"Key\": \"Environment\""));
  assert_null(strstr(b, "sk-one")); /* the server's log redacts the value */
  free(b);
  want_value(c, "litellm/alias-1", "sk-one"); /* written through the cache */
  assert_int_equal(count_op("GetSecretValue"), 0);
  write_ok(c, "litellm/alias-1", "sk-two", 6); /* exists: PutSecretValue */
  assert_int_equal(count_op("PutSecretValue"), 1);
  it_done(&h, c);

  /* a fresh instance reads AWS's value */
  target(&h, g_srv);
  c = client(&h, RW, 1);
  want_value(c, "litellm/alias-1", "sk-two");
  assert_int_equal(count_op("GetSecretValue"), 1);
  want_value(c, "litellm/alias-1", "sk-two"); /* cached */
  assert_int_equal(count_op("GetSecretValue"), 1);
  kms_secret *s = NULL;
  kms_error err;
  want_status(kms_client_read(c, "litellm/missing", &s, &err), KMS_NOT_FOUND, &err,
                "ResourceNotFoundException");
  it_done(&h, c);
}

static void test_delete_and_recreate(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  kms_error err;
  write_ok(c, "key-a", "v1", 2);
  assert_int_equal(kms_client_delete(c, "key-a", &err), KMS_OK);
  char *b = last_body("DeleteSecret");
  assert_non_null(strstr(b, "\"RecoveryWindowInDays\": 7"));
  free(b);
  /* scheduled for deletion reads as gone */
  kms_secret *s = NULL;
  want_status(kms_client_read(c, "key-a", &s, &err), KMS_NOT_FOUND, &err, "deletion");
  /* deleting again, and deleting a name that never existed: OK */
  assert_int_equal(kms_client_delete(c, "key-a", &err), KMS_OK);
  assert_int_equal(kms_client_delete(c, "never-was", &err), KMS_OK);
  /* re-creating the alias restores it and overwrites */
  write_ok(c, "key-a", "v2", 2);
  assert_int_equal(count_op("RestoreSecret"), 1);
  it_done(&h, c);
  target(&h, g_srv);
  c = client(&h, RW, 1);
  want_value(c, "key-a", "v2");
  it_done(&h, c);
}

static void test_force_delete(void **state) {
  (void)state;
  reset();
  it_host h;
  target(&h, g_srv);
  const kms_setting s[] = {{"access_mode", "read_and_write"},
                           {"force_delete_without_recovery", "true"}};
  kms_client *c = client(&h, s, 2);
  kms_error err;
  write_ok(c, "key-f", "v1", 2);
  assert_int_equal(kms_client_delete(c, "key-f", &err), KMS_OK);
  char *b = last_body("DeleteSecret");
  assert_non_null(strstr(b, "\"ForceDeleteWithoutRecovery\": true"));
  free(b);
  write_ok(c, "key-f", "v2", 2); /* the name is free at once: no restore */
  assert_int_equal(count_op("RestoreSecret"), 0);
  assert_int_equal(count_op("CreateSecret"), 2);
  it_done(&h, c);
}

static void test_primary_secret_name(void **state) {
  (void)state;
  reset();
  it_host h;
  target(&h, g_srv);
  const kms_setting s[] = {{"access_mode", "read_and_write"},
                           {"primary_secret_name", "litellm_secrets"}};
  kms_client *c = client(&h, s, 2);
  kms_error err;
  write_ok(c, "OPENAI_API_KEY_MODEL_1", "sk-key1", 7);
  write_ok(c, "OPENAI_API_KEY_MODEL_2", "sk-key2", 7);
  assert_int_equal(count_op("CreateSecret"), 1);
  assert_int_equal(count_op("PutSecretValue"), 1);
  want_value(c, "OPENAI_API_KEY_MODEL_1", "sk-key1");
  kms_secret *sec = NULL;
  want_status(kms_client_read(c, "OPENAI_API_KEY_MODEL_3", &sec, &err), KMS_NOT_FOUND, &err,
                "primary_secret_name");
  assert_int_equal(kms_client_delete(c, "OPENAI_API_KEY_MODEL_1", &err), KMS_OK);
  assert_int_equal(kms_client_delete(c, "OPENAI_API_KEY_MODEL_1", &err), KMS_OK);
  it_done(&h, c);

  /* the one secret, read as a whole by an instance without the setting */
  target(&h, g_srv);
  c = client(&h, RW, 1);
  char v[256];
  assert_int_equal(it_read(c, "litellm_secrets", v, sizeof v, NULL, &err), KMS_OK);
  assert_string_equal(v, "{\"OPENAI_API_KEY_MODEL_2\":\"sk-key2\"}");
  it_done(&h, c);
}

static void test_binary_value(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  static const char bin[] = {'\x00', '\xff', 'a', '\x00', '\x80', 'z'};
  write_ok(c, "bin-1", bin, sizeof bin);
  char *b = last_body("CreateSecret");
  assert_non_null(strstr(b, "SecretBinary"));
  free(b);
  it_done(&h, c);
  target(&h, g_srv);
  c = client(&h, RW, 1);
  kms_secret *s = NULL;
  kms_error err;
  assert_int_equal(kms_client_read(c, "bin-1", &s, &err), KMS_OK);
  assert_int_equal(s->length, sizeof bin);
  assert_memory_equal(s->value, bin, sizeof bin);
  kms_client_free_secret(c, s);
  it_done(&h, c);
}

static void test_errors(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_error err;
  kms_secret *s = NULL;
  /* a policy denial */
  kms_client *c = rw_client(&h);
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/deny", NULL,
                           "{\"action\": \"CreateSecret\", \"secret\": \".*\"}", NULL), 200);
  want_status(kms_client_write(c, "denied", "top-secret-value", 16, NULL, &err),
                KMS_PERMISSION_DENIED, &err, "AccessDeniedException");
  assert_null(strstr(err.message, "top-secret-value"));
  /* a name AWS would refuse never leaves the plugin */
  assert_int_equal(vf_clear_requests(g_srv), 0);
  want_status(kms_client_read(c, "bad name!", &s, &err), KMS_INVALID_ARGUMENT, &err,
                "A-Z a-z 0-9");
  assert_int_equal(count_op("GetSecretValue"), 0);
  it_done(&h, c);
  /* a wrong secret key: the server's signature differs */
  target(&h, g_srv);
  it_set(&h, "AWS_SECRET_ACCESS_KEY", "wrong/secret/key");
  c = client(&h, RW, 1);
  want_status(kms_client_read(c, "x", &s, &err), KMS_UNAUTHENTICATED, &err,
                "InvalidSignatureException");
  assert_null(strstr(err.message, "wrong/secret/key"));
  it_done(&h, c);
  /* signed for another region */
  target(&h, g_srv);
  it_set(&h, "AWS_REGION", "us-west-2");
  c = client(&h, RW, 1);
  want_status(kms_client_read(c, "x", &s, &err), KMS_UNAUTHENTICATED, &err, "region");
  it_done(&h, c);
}

static void test_throttling(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  write_ok(c, "thr", "v", 1);
  it_done(&h, c);
  static const char fault[] =
      "{\"match_headers\": {\"X-Amz-Target\": \"GetSecretValue$\"}, \"status\": 400, "
      "\"code\": \"ThrottlingException\", \"message\": \"Rate exceeded\", \"times\": 2}";
  assert_int_equal(vf_fault(g_srv, fault), 0);
  assert_int_equal(vf_clear_requests(g_srv), 0);
  target(&h, g_srv);
  c = client(&h, RW, 1);
  want_value(c, "thr", "v"); /* two throttled answers, then the value */
  assert_int_equal(count_op("GetSecretValue"), 3);
  it_done(&h, c);
  /* no retries left: UNAVAILABLE naming the throttling */
  assert_int_equal(vf_fault(g_srv, fault), 0);
  target(&h, g_srv);
  const kms_setting s[] = {{"access_mode", "read_and_write"}, {"max_retries", "0"}};
  c = client(&h, s, 2);
  kms_secret *sec = NULL;
  kms_error err;
  want_status(kms_client_read(c, "thr", &sec, &err), KMS_UNAVAILABLE, &err,
                "ThrottlingException");
  it_done(&h, c);
}

static void test_stale_if_error(void **state) {
  (void)state;
  reset();
  it_host h;
  target(&h, g_srv);
  const kms_setting s[] = {
      {"access_mode", "read_and_write"}, {"refresh_interval", "1"}, {"max_retries", "0"}};
  kms_client *c = client(&h, s, 3);
  write_ok(c, "st", "cached-v", 8);
  it_done(&h, c);
  target(&h, g_srv);
  c = client(&h, s, 3);
  want_value(c, "st", "cached-v");
  assert_int_equal(vf_fault(g_srv, "{\"match_headers\": {\"X-Amz-Target\": \"GetSecretValue$\"}, "
                                   "\"status\": 503, \"times\": -1}"),
                   0);
  it_sleep_ms(1100); /* past the TTL */
  char v[64];
  uint32_t flags = 0;
  kms_error err;
  assert_int_equal(it_read(c, "st", v, sizeof v, &flags, &err), KMS_OK);
  assert_string_equal(v, "cached-v");
  assert_true(flags & KMS_SECRET_STALE);
  assert_int_equal(it_log_count(&h, "serving cached secrets marked stale"), 1);
  it_done(&h, c);
}

typedef struct reader {
  kms_client *c;
  kms_status st;
  char v[64];
} reader;

static void *read_thread(void *arg) {
  reader *r = arg;
  r->st = it_read(r->c, "sf", r->v, sizeof r->v, NULL, NULL);
  return NULL;
}

static void test_single_flight(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  write_ok(c, "sf", "one-fetch", 9);
  it_done(&h, c);
  assert_int_equal(vf_fault(g_srv, "{\"match_headers\": {\"X-Amz-Target\": \"GetSecretValue$\"}, "
                                   "\"delay_ms\": 400, \"times\": -1}"),
                   0);
  assert_int_equal(vf_clear_requests(g_srv), 0);
  target(&h, g_srv);
  c = client(&h, RW, 1);
  enum { N = 8 };
  reader r[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    r[i].c = c;
    assert_int_equal(pthread_create(&t[i], NULL, read_thread, &r[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(r[i].st, KMS_OK);
    assert_string_equal(r[i].v, "one-fetch");
  }
  assert_int_equal(count_op("GetSecretValue"), 1);
  it_done(&h, c);
}

/* ABI 1.1 options: a version stage, BYPASS_CACHE, delete modes, validation. */
static void test_call_options(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  kms_error err;
  write_ok(c, "opt", "first", 5);
  write_ok(c, "opt", "second", 6);
  kms_setting prev[] = {{"version_stage", "AWSPREVIOUS"}};
  kms_call_options o = {.struct_size = sizeof o, .location = prev, .n_location = 1};
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read_opt(c, "opt", &o, &s, &err), KMS_OK);
  assert_string_equal(s->value, "first");
  kms_client_free_secret(c, s);
  char *b = last_body("GetSecretValue");
  assert_non_null(strstr(b, "\"VersionStage\": \"AWSPREVIOUS\""));
  free(b);
  /* BYPASS_CACHE asks AWS although the value is cached */
  size_t before = count_op("GetSecretValue");
  kms_call_options by = {.struct_size = sizeof by, .flags = KMS_CALL_BYPASS_CACHE};
  assert_int_equal(kms_client_read_opt(c, "opt", &by, &s, &err), KMS_OK);
  assert_string_equal(s->value, "second");
  kms_client_free_secret(c, s);
  assert_int_equal(count_op("GetSecretValue"), before + 1);
  /* refused options name themselves */
  kms_setting bad[] = {{"mount", "x"}};
  kms_call_options ob = {.struct_size = sizeof ob, .location = bad, .n_location = 1};
  want_status(kms_client_read_opt(c, "opt", &ob, &s, &err), KMS_INVALID_ARGUMENT, &err, "mount");
  kms_call_options nb = {.struct_size = sizeof nb, .flags = KMS_CALL_NONBLOCKING};
  assert_int_equal(kms_client_read_opt(c, "opt", &nb, &s, &err), KMS_OK); /* cached: at once */
  assert_string_equal(s->value, "second");
  kms_client_free_secret(c, s);
  kms_call_options pin = {.struct_size = sizeof pin, .version = 2};
  want_status(kms_client_read_opt(c, "opt", &pin, &s, &err), KMS_UNSUPPORTED, &err, "version");
  kms_call_options d3 = {.struct_size = sizeof d3, .recovery_window_days = 3};
  want_status(kms_client_delete_opt(c, "opt", &d3, &err), KMS_INVALID_ARGUMENT, &err, "7 to 30");
  /* a soft delete with its own window, then a permanent one */
  kms_call_options d10 = {.struct_size = sizeof d10, .delete_mode = KMS_DELETE_SOFT,
                          .recovery_window_days = 10};
  assert_int_equal(kms_client_delete_opt(c, "opt", &d10, &err), KMS_OK);
  b = last_body("DeleteSecret");
  assert_non_null(strstr(b, "\"RecoveryWindowInDays\": 10"));
  free(b);
  write_ok(c, "opt2", "x", 1);
  kms_call_options dp = {.struct_size = sizeof dp, .delete_mode = KMS_DELETE_PERMANENT};
  assert_int_equal(kms_client_delete_opt(c, "opt2", &dp, &err), KMS_OK);
  b = last_body("DeleteSecret");
  assert_non_null(strstr(b, "\"ForceDeleteWithoutRecovery\": true"));
  free(b);
  it_done(&h, c);
}

/* Static session credentials: libcurl signs the X-Amz-Security-Token header. */
static void test_session_token(void **state) {
  (void)state;
  const char *args[] = {"--region", REGION, "--session-token", "FwoGZXIvYXdzEXAMPLETOKEN", NULL};
  vf_server *s = vf_start(&(vf_options){.tls = 1, .server = "aws", .extra_args = args});
  assert_non_null(s);
  it_host h;
  target(&h, s);
  it_set(&h, "AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN");
  kms_client *c = client(&h, RW, 1);
  write_ok(c, "sess", "v", 1);
  want_value(c, "sess", "v");
  it_done(&h, c);
  /* without the token the server refuses */
  target(&h, s);
  c = client(&h, RW, 1);
  kms_error err;
  want_status(kms_client_write(c, "sess", "v", 1, NULL, &err), KMS_UNAUTHENTICATED, &err,
                "UnrecognizedClientException");
  it_done(&h, c);
  vf_stop(s);
}

/* health's reachable/authenticated, recorded by kpc_http_perform from every
 * Secrets Manager answer: down -> reachable 0; a credential error ->
 * authenticated 0 while reachable; a throttle says nothing of the
 * credentials; the next good call recovers. */
static void test_health(void **state) {
  (void)state;
  reset();
  it_host h;
  target(&h, g_srv);
  const kms_setting s[] = {{"access_mode", "read_and_write"}, {"refresh_interval", "0"},
                           {"max_retries", "0"}};
  kms_client *c = client(&h, s, 3);
  char v[32];
  IT_EXPECT_HEALTH(c, -1, -1);
  write_ok(c, "hl", "v", 1);
  IT_EXPECT_HEALTH(c, 1, 1);
  assert_int_equal(it_read(c, "hl-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  IT_EXPECT_HEALTH(c, 1, 1);
  assert_int_equal(vf_fault(g_srv, "{\"drop\": true, \"times\": -1}"), 0);
  assert_int_equal(it_read(c, "hl", v, sizeof v, NULL, NULL), KMS_UNAVAILABLE);
  IT_EXPECT_HEALTH(c, 0, 1);
  assert_int_equal(vf_clear_faults(g_srv), 0);
  want_value(c, "hl", "v");
  IT_EXPECT_HEALTH(c, 1, 1);
  assert_int_equal(vf_fault(g_srv, "{\"status\": 400, \"code\": \"UnrecognizedClientException\", "
                                   "\"message\": \"The security token included in the request "
                                   "is invalid.\", \"times\": 1}"),
                   0);
  assert_int_equal(it_read(c, "hl", v, sizeof v, NULL, NULL), KMS_UNAUTHENTICATED);
  IT_EXPECT_HEALTH(c, 1, 0);
  assert_int_equal(vf_fault(g_srv, "{\"status\": 400, \"code\": \"ThrottlingException\", "
                                   "\"message\": \"Rate exceeded\", \"times\": 1}"),
                   0);
  assert_int_equal(it_read(c, "hl", v, sizeof v, NULL, NULL), KMS_UNAVAILABLE);
  IT_EXPECT_HEALTH(c, 1, 0); /* throttled before the credentials were judged */
  want_value(c, "hl", "v");
  IT_EXPECT_HEALTH(c, 1, 1);
  it_done(&h, c);
  /* a wrong secret key: the server's signature check refuses it */
  target(&h, g_srv);
  it_set(&h, "AWS_SECRET_ACCESS_KEY", "wrong/secret/key");
  c = client(&h, s, 3);
  assert_int_equal(it_read(c, "hl", v, sizeof v, NULL, NULL), KMS_UNAUTHENTICATED);
  IT_EXPECT_HEALTH(c, 1, 0);
  it_done(&h, c);
}

/* A read_and_write client whose host records notifications, plus `extra`. */
static kms_client *watched(it_host *h, const kms_setting *extra, size_t n) {
  target(h, g_srv);
  h->host.notify = it_notify_record;
  kms_setting s[8] = {{"access_mode", "read_and_write"}};
  for (size_t i = 0; i < n && i < 7; i++) s[i + 1] = extra[i];
  return client(h, s, n + 1);
}

/* A KMS_CALL_NONBLOCKING read: the value into v ("" unless KMS_OK). */
static kms_status read_nb(kms_client *c, const char *name, char *v, size_t vs, kms_error *err) {
  kms_call_options o = {.struct_size = sizeof o, .flags = KMS_CALL_NONBLOCKING};
  kms_secret *s = NULL;
  kms_status st = kms_client_read_opt(c, name, &o, &s, err);
  v[0] = '\0';
  if (st == KMS_OK) {
    snprintf(v, vs, "%s", s->value);
    kms_client_free_secret(c, s);
  }
  return st;
}

static void test_nonblocking(void **state) {
  (void)state;
  reset();
  it_rec_clear();
  it_host hw, h;
  target(&hw, g_srv);
  kms_client *w = client(&hw, RW, 1); /* another instance writes it: c has nothing cached */
  write_ok(w, "nb", "later", 5);
  kms_client *c = watched(&h, NULL, 0);
  kms_error err;
  char v[64];
  /* cold: UNAVAILABLE at once, a background fetch started */
  want_status(read_nb(c, "nb", v, sizeof v, &err), KMS_UNAVAILABLE, &err, "background fetch");
  kms_status st = KMS_UNAVAILABLE;
  for (int i = 0; i < 1000 && st == KMS_UNAVAILABLE; i++) { /* bounded: 10 s */
    st = read_nb(c, "nb", v, sizeof v, &err);
    if (st == KMS_UNAVAILABLE) it_sleep_ms(10);
  }
  assert_int_equal(st, KMS_OK);
  assert_string_equal(v, "later");
  assert_int_equal(count_op("GetSecretValue"), 1); /* one fetch for every miss */
  assert_true(it_rec_wait("UPD nb v0\n", 10000)); /* the value it lacked has landed */
  /* warm: the cached value, no request */
  assert_int_equal(read_nb(c, "nb", v, sizeof v, &err), KMS_OK);
  assert_string_equal(v, "later");
  assert_int_equal(count_op("GetSecretValue"), 1);
  /* missing: UNAVAILABLE at once, every time (no neg_ttl: nothing to serve) */
  want_status(read_nb(c, "nb-missing", v, sizeof v, &err), KMS_UNAVAILABLE, &err, "background");
  it_done(&h, c); /* destroy joins the background thread */
  it_done(&hw, w);
}

/* Waits (bounded) until the server has seen more GetSecretValue than `n`. */
static int wait_gets_above(size_t n) {
  for (int i = 0; i < 1000; i++) {
    if (count_op("GetSecretValue") > n) return 1;
    it_sleep_ms(10);
  }
  return 0;
}

static void test_notify_from_refresher(void **state) {
  (void)state;
  reset();
  it_rec_clear();
  it_host hw, h;
  kms_client *w = rw_client(&hw);
  write_ok(w, "rot", "k1", 2);
  static const kms_setting bg[] = {{"background_refresh", "true"}, {"refresh_interval", "1"}};
  kms_client *c = watched(&h, bg, 2);
  want_value(c, "rot", "k1");
  assert_int_equal(it_rec_count(), 0); /* a first read is no change */
  /* a rotation by another instance (PutSecretValue): re-read at 75-90% of
   * the 1 s interval and reported; polled, bounded at 10 s */
  write_ok(w, "rot", "k2", 2);
  assert_true(it_rec_wait("UPD rot v0\n", 10000));
  want_value(c, "rot", "k2"); /* and the cache holds it */
  /* the instance's own write is not reported back, even once re-read */
  it_rec_clear();
  write_ok(c, "rot", "k3", 2);
  size_t gets = count_op("GetSecretValue");
  assert_true(wait_gets_above(gets));
  assert_true(wait_gets_above(gets + 1)); /* a full round after the write */
  assert_int_equal(it_rec_count(), 0);
  /* deleted by another instance (scheduled for deletion): reported gone */
  kms_error err;
  assert_int_equal(kms_client_delete(w, "rot", &err), KMS_OK);
  assert_true(it_rec_wait("DEL rot v0\n", 10000));
  char v[16];
  assert_int_equal(it_read(c, "rot", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  it_done(&h, c);
  it_done(&hw, w);
}

/* refresh() re-reads and notifies too; a read under location version_stage
 * carries it in the change. No refresher: nothing changes by itself. */
static void test_notify_from_refresh(void **state) {
  (void)state;
  reset();
  it_rec_clear();
  it_host hw, h;
  kms_client *w = rw_client(&hw);
  write_ok(w, "stg", "s1", 2);
  kms_client *c = watched(&h, NULL, 0);
  kms_setting cur[] = {{"version_stage", "AWSCURRENT"}};
  kms_call_options o = {.struct_size = sizeof o, .location = cur, .n_location = 1};
  kms_secret *s = NULL;
  kms_error err;
  assert_int_equal(kms_client_read_opt(c, "stg", &o, &s, &err), KMS_OK);
  kms_client_free_secret(c, s);
  want_value(c, "stg", "s1");
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_int_equal(it_rec_count(), 0); /* same versions: nothing to report */
  write_ok(w, "stg", "s2", 2);
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_true(it_rec_has("UPD stg v0\n"));
  assert_true(it_rec_has("UPD stg v0 version_stage=AWSCURRENT\n"));
  assert_int_equal(it_rec_count(), 2);
  want_value(c, "stg", "s2");
  it_done(&h, c);
  it_done(&hw, w);
}

/* primary_secret_name: changes are told per field of the one JSON secret.
 * A never-blocking read's landing makes every field readable (all told);
 * refresh() after another instance's writes tells the rotated field and the
 * removed one, not the untouched ones; the instance's own write is not told
 * back; a write that finds another instance's change (its read-modify-write
 * starts from AWS's document) tells it. */
static void test_notify_primary_fields(void **state) {
  (void)state;
  reset();
  it_rec_clear();
  static const kms_setting primary[] = {{"access_mode", "read_and_write"},
                                        {"primary_secret_name", "litellm_notify"}};
  it_host hw, h;
  target(&hw, g_srv);
  kms_client *w = client(&hw, primary, 2);
  write_ok(w, "A", "a1", 2);
  write_ok(w, "B", "b1", 2);
  write_ok(w, "C", "c1", 2);
  kms_client *c = watched(&h, &primary[1], 1);
  kms_error err;
  char v[64];
  want_status(read_nb(c, "A", v, sizeof v, &err), KMS_UNAVAILABLE, &err, "background fetch");
  assert_true(it_rec_wait("UPD C v0\n", 10000));
  assert_true(it_rec_has("UPD A v0\n") && it_rec_has("UPD B v0\n"));
  assert_int_equal(it_rec_count(), 3);
  assert_int_equal(read_nb(c, "A", v, sizeof v, &err), KMS_OK);
  assert_string_equal(v, "a1");
  it_rec_clear();
  /* another instance rotates B and removes C */
  write_ok(w, "B", "b2", 2);
  assert_int_equal(kms_client_delete(w, "C", &err), KMS_OK);
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_true(it_rec_has("UPD B v0\n"));
  assert_true(it_rec_has("DEL C v0\n"));
  assert_int_equal(it_rec_count(), 2);
  want_value(c, "B", "b2");
  /* its own write: not told, not even after a re-read */
  it_rec_clear();
  write_ok(c, "A", "a2", 2);
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  assert_int_equal(it_rec_count(), 0);
  /* another instance's change found by this instance's write of another field */
  write_ok(w, "B", "b3", 2);
  write_ok(c, "D", "d1", 2);
  assert_true(it_rec_has("UPD B v0\n"));
  assert_int_equal(it_rec_count(), 1);
  want_value(c, "B", "b3");
  it_done(&h, c);
  it_done(&hw, w);
}

static int stop_at_first(void *ctx, const char *name) {
  (void)name;
  ++*(int *)ctx;
  return 1;
}

/* list: ListSecrets with a name prefix over two pages (MaxResults 100),
 * names as read takes them, a secret scheduled for deletion left out, a
 * name that only shares the prefix's characters without the '/' left out,
 * the callback's stop honoured, a bad prefix refused. */
static void test_list(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  kms_error err;
  char name[64];
  for (int i = 0; i < 150; i++) {
    snprintf(name, sizeof name, "vk/k%03d", i);
    write_ok(c, name, "sk-x", 4);
  }
  write_ok(c, "vkx", "sk-y", 4);
  write_ok(c, "other/vk/k999", "sk-z", 4);
  assert_int_equal(kms_client_delete(c, "vk/k000", &err), KMS_OK);
  assert_int_equal(vf_clear_requests(g_srv), 0);
  char **names = NULL;
  size_t n = 0;
  kms_status st = kms_client_list_names(c, "vk/", NULL, &names, &n, &err);
  if (st != KMS_OK) fail_msg("list: %s", err.message);
  assert_int_equal(n, 149);
  assert_string_equal(names[0], "vk/k001");
  assert_string_equal(names[148], "vk/k149");
  assert_int_equal(count_op("ListSecrets"), 2);
  char *b = last_body("ListSecrets");
  assert_non_null(strstr(b, "\"NextToken\""));
  assert_non_null(strstr(b, "\"Key\": \"name\""));
  assert_non_null(strstr(b, "\"MaxResults\": 100"));
  free(b);
  kms_client_list_names_free(names, n);
  want_value(c, "vk/k001", "sk-x"); /* a listed name reads */
  assert_int_equal(kms_client_list_names(c, "", NULL, &names, &n, &err), KMS_OK);
  assert_int_equal(n, 151); /* 149 + vkx + other/vk/k999 */
  kms_client_list_names_free(names, n);
  /* the callback stops the listing: no second page asked for */
  assert_int_equal(vf_clear_requests(g_srv), 0);
  int calls = 0;
  assert_int_equal(kms_client_list(c, "vk/", NULL, stop_at_first, &calls, &err), KMS_OK);
  assert_int_equal(calls, 1);
  assert_int_equal(count_op("ListSecrets"), 1);
  want_status(kms_client_list(c, "vk !", NULL, stop_at_first, &calls, &err),
              KMS_INVALID_ARGUMENT, &err, "list prefix");
  kms_call_options lo = {.struct_size = sizeof lo, .n_location = 1,
                         .location = &(kms_setting){"version_stage", "AWSCURRENT"}};
  want_status(kms_client_list(c, "vk/", &lo, stop_at_first, &calls, &err),
              KMS_INVALID_ARGUMENT, &err, "version_stage");
  it_done(&h, c);

  /* primary_secret_name: the keys of the one secret */
  target(&h, g_srv);
  const kms_setting p[] = {{"access_mode", "read_and_write"},
                           {"primary_secret_name", "litellm_list"}};
  c = client(&h, p, 2);
  assert_int_equal(kms_client_list_names(c, "", NULL, &names, &n, &err), KMS_OK);
  assert_int_equal(n, 0); /* no document yet */
  write_ok(c, "KEY_A", "a", 1);
  write_ok(c, "KEY_B", "b", 1);
  write_ok(c, "OTHER", "o", 1);
  assert_int_equal(kms_client_list_names(c, "KEY_", NULL, &names, &n, &err), KMS_OK);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "KEY_A");
  assert_string_equal(names[1], "KEY_B");
  kms_client_list_names_free(names, n);
  it_done(&h, c);
}

/* read_secret_into: a miss fetches once, a hit answers from the cache; a
 * buffer too small is BUFFER_TOO_SMALL with the length needed and none of
 * the value; a missing secret NOT_FOUND. */
static void test_read_into(void **state) {
  (void)state;
  reset();
  it_host h;
  kms_client *c = rw_client(&h);
  kms_error err;
  write_ok(c, "into-a", "sk-into-value", 13);
  it_done(&h, c);
  target(&h, g_srv);
  c = client(&h, RW, 1);
  char buf[64];
  kms_secret_info info = {.struct_size = sizeof info};
  for (int i = 0; i < 2; i++) {
    kms_status st = kms_client_read_into(c, "into-a", NULL, buf, sizeof buf, &info, &err);
    if (st != KMS_OK) fail_msg("read_into: %s", err.message);
    assert_int_equal(info.length, 13);
    assert_string_equal(buf, "sk-into-value");
  }
  assert_int_equal(count_op("GetSecretValue"), 1);
  memset(buf, 0, sizeof buf);
  info.length = 0;
  want_status(kms_client_read_into(c, "into-a", NULL, buf, 5, &info, &err),
              KMS_BUFFER_TOO_SMALL, &err, NULL);
  assert_int_equal(info.length, 13);
  assert_null(strstr(buf, "sk-")); /* buf was zeroed: a partial copy would show */
  assert_null(strstr(err.message, "sk-into"));
  want_status(kms_client_read_into(c, "into-missing", NULL, buf, sizeof buf, &info, &err),
              KMS_NOT_FOUND, &err, "ResourceNotFoundException");
  kms_call_options o = {.struct_size = sizeof o, .n_location = 1,
                        .location = &(kms_setting){"version_stage", "AWSCURRENT"}};
  assert_int_equal(kms_client_read_into(c, "into-a", &o, buf, sizeof buf, &info, &err), KMS_OK);
  assert_string_equal(buf, "sk-into-value");
  /* a size query (no buffer), an exact fit, a NONBLOCKING hit */
  assert_int_equal(kms_client_read_into(c, "into-a", NULL, NULL, 0, &info, &err),
                   KMS_BUFFER_TOO_SMALL);
  assert_int_equal(info.length, 13);
  char exact[14];
  assert_int_equal(kms_client_read_into(c, "into-a", NULL, exact, sizeof exact, &info, &err),
                   KMS_OK);
  assert_string_equal(exact, "sk-into-value");
  kms_call_options nb = {.struct_size = sizeof nb, .flags = KMS_CALL_NONBLOCKING};
  assert_int_equal(kms_client_read_into(c, "into-a", &nb, buf, sizeof buf, &info, &err), KMS_OK);
  assert_string_equal(buf, "sk-into-value");
  it_done(&h, c);

  /* primary_secret_name: a key of the one JSON secret, into the buffer */
  target(&h, g_srv);
  const kms_setting p[] = {{"access_mode", "read_and_write"},
                           {"primary_secret_name", "litellm_into"}};
  c = client(&h, p, 2);
  write_ok(c, "KEY_A", "sk-a", 4);
  assert_int_equal(kms_client_read_into(c, "KEY_A", NULL, buf, sizeof buf, &info, &err), KMS_OK);
  assert_string_equal(buf, "sk-a");
  assert_int_equal(info.length, 4);
  assert_int_equal(kms_client_read_into(c, "KEY_A", NULL, buf, 4, &info, &err),
                   KMS_BUFFER_TOO_SMALL);
  want_status(kms_client_read_into(c, "KEY_B", NULL, buf, sizeof buf, &info, &err),
              KMS_NOT_FOUND, &err, "primary_secret_name");
  it_done(&h, c);
}

int main(void) {
  it_use_plugin("aws_secret_manager");
  const char *args[] = {"--region", REGION, NULL};
  g_srv = vf_start(&(vf_options){.tls = 1, .server = "aws", .extra_args = args});
  if (!g_srv) {
    fprintf(stderr, "cannot start tests/aws_server\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_read_overwrite), cmocka_unit_test(test_delete_and_recreate),
      cmocka_unit_test(test_force_delete),         cmocka_unit_test(test_primary_secret_name),
      cmocka_unit_test(test_binary_value),         cmocka_unit_test(test_errors),
      cmocka_unit_test(test_throttling),           cmocka_unit_test(test_stale_if_error),
      cmocka_unit_test(test_single_flight),        cmocka_unit_test(test_session_token),
      cmocka_unit_test(test_call_options),         cmocka_unit_test(test_health),
      cmocka_unit_test(test_nonblocking),          cmocka_unit_test(test_notify_from_refresher),
      cmocka_unit_test(test_notify_from_refresh),  cmocka_unit_test(test_notify_primary_fields),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_read_into),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  vf_stop(g_srv);
  return rc;
}
