/*
 * test_host_1_0.c -- a host compiled against the FROZEN 1.0 headers
 * (tests/abi/abi_1_0: kms_plugin.h, kms_loader.h, kms_plugin_util.h as
 * released) and linked with today's libkmsloader, loading today's 1.1
 * plugins: every 1.0 call works, the larger table is accepted, and a plugin
 * never reads past this host's (1.0-sized) kms_host -- so it must not call a
 * notify this host does not have (ASan would see a read past the table).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kms_loader.h" /* from abi_1_0: this is a 1.0 host */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if KMS_ABI_MINOR != 0
#error "test_host_1_0 must be built against the frozen 1.0 headers"
#endif

static int logged;
static void on_log(void *ctx, kms_log_level level, const char *msg) {
  (void)ctx, (void)level, (void)msg;
  logged++;
}

/* Exactly 1.0's size: a 1.1 plugin must find no notify here. */
static const kms_host host = {sizeof(kms_host), KMS_ABI_MAJOR, KMS_ABI_MINOR, NULL, on_log,
                              NULL};

static kms_module *load(const char *dir, const char *name) {
  kms_module *m = NULL;
  kms_error err;
  if (kms_module_load(dir, name, &m, &err) != KMS_OK) fail_msg("loading %s: %s", name, err.message);
  const kms_plugin *p = kms_module_plugin(m);
  assert_int_equal(p->abi_major, 1);
  assert_int_equal(p->abi_minor, 1);
  assert_true(p->struct_size > sizeof(kms_plugin)); /* a longer table, accepted */
  return m;
}

/* full.so: the whole 1.0 surface, including refresh (which in 1.1 may
 * notify) after another instance changed a cached secret. */
static void test_full_plugin_1_0_calls(void **state) {
  (void)state;
  kms_module *m = load(TEST_PLUGIN_DIR, "full");
  kms_client *a = NULL, *b = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, &host, NULL, 0, &a, &err), KMS_OK);
  assert_int_equal(kms_client_create(m, &host, NULL, 0, &b, &err), KMS_OK);
  assert_int_equal(kms_client_write(a, "old_host", "v1", 2, NULL, &err), KMS_OK);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(b, "old_host", &s, &err), KMS_OK);
  assert_string_equal(s->value, "v1");
  assert_int_equal(s->version, 1);
  kms_client_free_secret(b, s);
  kms_write_options cas = {sizeof cas, NULL, KMS_WRITE_CAS, 1};
  assert_int_equal(kms_client_write(a, "old_host", "v2", 2, &cas, &err), KMS_OK);
  assert_int_equal(kms_client_write(a, "old_host", "v3", 2, &cas, &err), KMS_CONFLICT);
  assert_int_equal(kms_client_refresh(b, &err), KMS_OK); /* b learns v2; nobody to notify */
  assert_int_equal(kms_client_read(b, "old_host", &s, &err), KMS_OK);
  assert_string_equal(s->value, "v2");
  kms_client_free_secret(b, s);
  assert_int_equal(kms_client_delete(a, "old_host", &err), KMS_OK);
  assert_int_equal(kms_client_delete(a, "old_host", &err), KMS_OK);
  assert_int_equal(kms_client_read(a, "old_host", &s, &err), KMS_NOT_FOUND);
  assert_null(s);
  kms_client_destroy(a);
  kms_client_destroy(b);
  kms_module_unload(m);
}

/* The in-tree env plugin (1.1) through the 1.0 client. */
static void test_env_plugin_1_0_calls(void **state) {
  (void)state;
  kms_module *m = load(getenv("KMS_PLUGIN_DIR"), "env");
  kms_client *c = NULL;
  kms_error err;
  kms_setting settings[] = {{"prefix", "KMS_HOST10_"}};
  assert_int_equal(kms_client_create(m, &host, settings, 1, &c, &err), KMS_OK);
  assert_int_equal(setenv("KMS_HOST10_KEY", "from-env", 1), 0);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "KEY", &s, &err), KMS_OK);
  assert_string_equal(s->value, "from-env");
  kms_client_free_secret(c, s);
  assert_int_equal(kms_client_read(c, "MISSING", &s, &err), KMS_NOT_FOUND);
  assert_int_equal(kms_client_write(c, "KEY", "x", 1, NULL, &err), KMS_UNSUPPORTED);
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  kms_client_destroy(c);
  kms_module_unload(m);
}

/* Listing through the 1.0 loader API still reports the 1.1 plugins. */
static void test_list_sees_1_1(void **state) {
  (void)state;
  kms_plugin_info *list = NULL;
  size_t n = 0;
  kms_error err;
  assert_int_equal(kms_plugin_list(TEST_PLUGIN_DIR, &list, &n, &err), KMS_OK);
  int found = 0;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(list[i].name, "full")) {
      found = 1;
      assert_int_equal(list[i].status, KMS_OK);
      assert_int_equal(list[i].abi_minor, 1);
    }
  assert_true(found);
  kms_plugin_list_free(list);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_plugin_1_0_calls),
      cmocka_unit_test(test_env_plugin_1_0_calls),
      cmocka_unit_test(test_list_sees_1_1),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
