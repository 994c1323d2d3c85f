/*
 * test_env_plugin.c -- the env backend: reads through the host's getenv (or
 * the process environment), the prefix setting, read-only refusals, names,
 * and concurrent readers; ABI 1.1: options (the `prefix` location key,
 * unknown keys, version pins), the allocation-free buffer read, listing the
 * process environment, health.
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

static kms_module *module;

/* The host's own environment: a fixed table, so tests need no setenv. */
static const char *fake_env[][2] = {
    {"OPENAI_API_KEY", "sk-openai-test"},
    {"TEAM_A_AZURE_API_KEY", "azure-secret"},
    {"EMPTY", ""},
};
static int getenv_calls;

static const char *host_getenv(void *ctx, const char *name) {
  __atomic_add_fetch(&getenv_calls, 1, __ATOMIC_RELAXED);
  assert_ptr_equal(ctx, &module);
  for (size_t i = 0; i < sizeof fake_env / sizeof fake_env[0]; i++)
    if (strcmp(fake_env[i][0], name) == 0) return fake_env[i][1];
  return NULL;
}

static const kms_host host = {.struct_size = sizeof(kms_host), .abi_major = KMS_ABI_MAJOR,
                              .abi_minor = KMS_ABI_MINOR, .ctx = &module, .getenv = host_getenv};

static int setup(void **state) {
  kms_error err;
  if (kms_module_load(getenv("KMS_PLUGIN_DIR"), "env", &module, &err) != KMS_OK) {
    fprintf(stderr, "cannot load env plugin: %s\n", err.message);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  kms_module_unload(module);
  return 0;
}

static kms_client *client(const kms_host *h, const kms_setting *s, size_t n) {
  kms_client *c = NULL;
  kms_error err;
  if (kms_client_create(module, h, s, n, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}

static void read_expect(kms_client *c, const char *name, const char *want) {
  kms_secret *s = NULL;
  kms_error err;
  kms_status st = kms_client_read(c, name, &s, &err);
  if (st != KMS_OK) fail_msg("read %s: %s", name, err.message);
  assert_int_equal(s->length, strlen(want));
  assert_memory_equal(s->value, want, s->length + 1); /* NUL included */
  kms_client_free_secret(c, s);
}

static void test_table_and_capabilities(void **state) {
  const kms_plugin *p = kms_module_plugin(module);
  assert_string_equal(p->name, "env");
  assert_true(p->capabilities & KMS_CAP_READ);
  assert_true(p->capabilities & KMS_CAP_THREAD_SAFE);
  assert_false(p->capabilities & KMS_CAP_WRITE);
  assert_false(p->capabilities & KMS_CAP_DELETE);
  assert_true(p->capabilities & KMS_CAP_LIST);
  assert_int_equal(p->abi_minor, 1);
  assert_true(KMS_SLOT_AVAILABLE(p, read_secret_into));
  assert_true(KMS_SLOT_AVAILABLE(p, health));
}

static void test_reads_through_host_getenv(void **state) {
  kms_client *c = client(&host, NULL, 0);
  int before = getenv_calls;
  read_expect(c, "OPENAI_API_KEY", "sk-openai-test");
  read_expect(c, "EMPTY", "");
  assert_true(getenv_calls > before);
  kms_secret *s = NULL;
  kms_error err;
  assert_int_equal(kms_client_read(c, "ANTHROPIC_API_KEY", &s, &err), KMS_NOT_FOUND);
  assert_null(s);
  assert_non_null(strstr(err.message, "ANTHROPIC_API_KEY is not set"));
  kms_client_destroy(c);
}

static void test_prefix_setting(void **state) {
  kms_setting s[] = {{"prefix", "TEAM_A_"}, {"access_mode", "read_only"}};
  kms_client *c = client(&host, s, 2);
  read_expect(c, "AZURE_API_KEY", "azure-secret");
  kms_secret *out = NULL;
  kms_error err;
  assert_int_equal(kms_client_read(c, "OPENAI_API_KEY", &out, &err), KMS_NOT_FOUND);
  assert_non_null(strstr(err.message, "TEAM_A_OPENAI_API_KEY"));
  kms_client_destroy(c);
}

static void test_bad_prefix_refused(void **state) {
  kms_setting s[] = {{"prefix", "BAD-PREFIX"}};
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(module, &host, s, 1, &c, &err), KMS_INVALID_ARGUMENT);
  assert_null(c);
  assert_non_null(strstr(err.message, "'prefix'"));
}

static void test_process_environment_without_host_getenv(void **state) {
  setenv("KMS_ENV_TEST_SECRET", "from-process", 1);
  kms_client *c = client(NULL, NULL, 0);
  read_expect(c, "KMS_ENV_TEST_SECRET", "from-process");
  kms_client_destroy(c);
  /* A host table from an older host that ends before getenv: process env. */
  kms_host short_host = host;
  short_host.struct_size = offsetof(kms_host, getenv);
  c = client(&short_host, NULL, 0);
  read_expect(c, "KMS_ENV_TEST_SECRET", "from-process");
  kms_client_destroy(c);
  unsetenv("KMS_ENV_TEST_SECRET");
}

static void test_read_only(void **state) {
  kms_client *c = client(&host, NULL, 0);
  kms_error err;
  assert_int_equal(kms_client_write(c, "OPENAI_API_KEY", "x", 1, NULL, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "read-only"));
  assert_int_equal(kms_client_delete(c, "OPENAI_API_KEY", &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "read-only"));
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  read_expect(c, "OPENAI_API_KEY", "sk-openai-test"); /* untouched */
  kms_client_destroy(c);
}

static void test_invalid_names(void **state) {
  kms_client *c = client(&host, NULL, 0);
  const char *bad[] = {"A-B", "1ABC", "a/b", "../x", "A B", "X\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kms_secret *s = NULL;
    kms_error err;
    assert_int_equal(kms_client_read(c, bad[i], &s, &err), KMS_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "environment variable name"));
  }
  kms_client_destroy(c);
}

static void *reader(void *arg) {
  kms_client *c = arg;
  for (int i = 0; i < 2000; i++) {
    kms_secret *s = NULL;
    kms_error err;
    if (kms_client_read(c, "OPENAI_API_KEY", &s, &err) != KMS_OK) return (void *)1;
    int ok = strcmp(s->value, "sk-openai-test") == 0;
    kms_client_free_secret(c, s);
    if (!ok) return (void *)1;
  }
  return NULL;
}

static void test_concurrent_readers(void **state) {
  kms_client *c = client(&host, NULL, 0);
  pthread_t t[8];
  for (int i = 0; i < 8; i++) assert_int_equal(pthread_create(&t[i], NULL, reader, c), 0);
  for (int i = 0; i < 8; i++) {
    void *r;
    pthread_join(t[i], &r);
    assert_null(r);
  }
  kms_client_destroy(c);
}

/* ---- ABI 1.1 ------------------------------------------------------------ */

#define OPTS(...) ((kms_call_options){sizeof(kms_call_options), __VA_ARGS__})

static void expect(kms_status got, kms_status want, const kms_error *err, const char *needle) {
  if (got != want)
    fail_msg("want %s got %s (%s)", kms_status_str(want), kms_status_str(got), err->message);
  if (needle && !strstr(err->message, needle))
    fail_msg("message '%s' lacks '%s'", err->message, needle);
}

static void test_options(void **state) {
  kms_client *c = client(&host, NULL, 0);
  kms_error err;
  kms_secret *s = NULL;
  /* `prefix` overrides the setting for one call. */
  kms_setting team[] = {{"prefix", "TEAM_A_"}};
  kms_call_options o = OPTS(0, team, 1, 0, 0, 0);
  expect(kms_client_read_opt(c, "AZURE_API_KEY", &o, &s, &err), KMS_OK, &err, NULL);
  assert_string_equal(s->value, "azure-secret");
  kms_client_free_secret(c, s);
  /* Never-blocking and cache-bypassing reads are honoured as they stand. */
  o = OPTS(KMS_CALL_NONBLOCKING, NULL, 0, 0, 0, 0);
  expect(kms_client_read_opt(c, "OPENAI_API_KEY", &o, &s, &err), KMS_OK, &err, NULL);
  kms_client_free_secret(c, s);
  o = OPTS(KMS_CALL_BYPASS_CACHE, NULL, 0, 0, 0, 0);
  expect(kms_client_read_opt(c, "OPENAI_API_KEY", &o, &s, &err), KMS_OK, &err, NULL);
  kms_client_free_secret(c, s);
  /* Unknown keys are refused by name, on reads, writes, deletes and lists. */
  kms_setting bad[] = {{"namespace", "x"}};
  o = OPTS(0, bad, 1, 0, 0, 0);
  expect(kms_client_read_opt(c, "OPENAI_API_KEY", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "unknown location key 'namespace'");
  assert_null(s);
  expect(kms_client_write_opt(c, "X", "v", 1, NULL, &o, &err), KMS_INVALID_ARGUMENT, &err,
         "'namespace'");
  expect(kms_client_delete_opt(c, "X", &o, &err), KMS_INVALID_ARGUMENT, &err, "'namespace'");
  char buf[8];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  expect(kms_client_read_into(c, "X", &o, buf, sizeof buf, &info, &err), KMS_INVALID_ARGUMENT,
         &err, "'namespace'");
  /* A bad prefix value, a version pin the environment cannot honour. */
  kms_setting badp[] = {{"prefix", "A-B"}};
  o = OPTS(0, badp, 1, 0, 0, 0);
  expect(kms_client_read_opt(c, "X", &o, &s, &err), KMS_INVALID_ARGUMENT, &err, "'prefix'");
  o = OPTS(0, NULL, 0, 2, 0, 0);
  expect(kms_client_read_opt(c, "OPENAI_API_KEY", &o, &s, &err), KMS_UNSUPPORTED, &err,
         "'version'");
  /* Valid options on a write: still read-only. */
  kms_setting good[] = {{"prefix", "TEAM_A_"}};
  o = OPTS(0, good, 1, 0, 0, 0);
  expect(kms_client_write_opt(c, "X", "v", 1, NULL, &o, &err), KMS_UNSUPPORTED, &err,
         "read-only");
  kms_client_destroy(c);
}

static void test_read_into(void **state) {
  kms_client *c = client(&host, NULL, 0);
  kms_error err;
  char buf[32];
  kms_secret_info info = {sizeof info, 0, -1, 0};
  expect(kms_client_read_into(c, "OPENAI_API_KEY", NULL, buf, sizeof buf, &info, &err), KMS_OK,
         &err, NULL);
  assert_string_equal(buf, "sk-openai-test");
  assert_int_equal(info.length, 14);
  assert_int_equal(info.version, 0);
  memset(buf, 'x', sizeof buf);
  expect(kms_client_read_into(c, "OPENAI_API_KEY", NULL, buf, 14, &info, &err),
         KMS_BUFFER_TOO_SMALL, &err, "at least 15");
  assert_int_equal(info.length, 14);
  for (size_t i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 'x');
  expect(kms_client_read_into(c, "EMPTY", NULL, buf, 1, &info, &err), KMS_OK, &err, NULL);
  assert_string_equal(buf, "");
  expect(kms_client_read_into(c, "NOPE", NULL, buf, sizeof buf, &info, &err), KMS_NOT_FOUND,
         &err, "NOPE is not set");
  kms_client_destroy(c);
}

static void test_list(void **state) {
  kms_error err;
  char **names;
  size_t n;
  /* A host's own getenv cannot be enumerated: said so, not an empty list. */
  kms_client *c = client(&host, NULL, 0);
  expect(kms_client_list_names(c, "", NULL, &names, &n, &err), KMS_UNSUPPORTED, &err,
         "cannot be enumerated");
  kms_client_destroy(c);
  /* The process environment, under the instance's prefix and the call's. */
  assert_int_equal(setenv("KMSLIST_ONE", "1", 1), 0);
  assert_int_equal(setenv("KMSLIST_TWO", "2", 1), 0);
  assert_int_equal(setenv("KMSLISTX_THREE", "3", 1), 0);
  kms_setting s[] = {{"prefix", "KMSLIST_"}};
  c = client(NULL, s, 1);
  expect(kms_client_list_names(c, "", NULL, &names, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "ONE");
  assert_string_equal(names[1], "TWO");
  kms_client_list_names_free(names, n);
  expect(kms_client_list_names(c, "T", NULL, &names, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "TWO");
  kms_client_list_names_free(names, n);
  kms_setting other[] = {{"prefix", "KMSLISTX_"}};
  kms_call_options o = OPTS(0, other, 1, 0, 0, 0);
  expect(kms_client_list_names(c, "", &o, &names, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "THREE");
  kms_client_list_names_free(names, n);
  kms_client_destroy(c);
  unsetenv("KMSLIST_ONE");
  unsetenv("KMSLIST_TWO");
  unsetenv("KMSLISTX_THREE");
}

static void test_health(void **state) {
  kms_client *c = client(&host, NULL, 0);
  kms_error err;
  read_expect(c, "OPENAI_API_KEY", "sk-openai-test");
  kms_secret *s = NULL;
  expect(kms_client_read(c, "NOPE", &s, &err), KMS_NOT_FOUND, &err, NULL);
  kms_health h = {.struct_size = sizeof h};
  expect(kms_client_health(c, &h, &err), KMS_OK, &err, NULL);
  assert_int_equal(h.reachable, 1);
  assert_int_equal(h.authenticated, -1); /* nothing to authenticate */
  assert_int_equal(h.fetches, 2);
  assert_int_equal(h.errors_by_status[KMS_NOT_FOUND], 1);
  assert_int_equal(h.last_error_status, KMS_NOT_FOUND);
  assert_non_null(strstr(h.last_error, "NOPE"));
  kms_client_destroy(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_and_capabilities),
      cmocka_unit_test(test_reads_through_host_getenv),
      cmocka_unit_test(test_prefix_setting),
      cmocka_unit_test(test_bad_prefix_refused),
      cmocka_unit_test(test_process_environment_without_host_getenv),
      cmocka_unit_test(test_read_only),
      cmocka_unit_test(test_invalid_names),
      cmocka_unit_test(test_concurrent_readers),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_read_into),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_health),
  };
  return cmocka_run_group_tests_name("env_plugin", tests, setup, teardown);
}
