/*
 * test_abi.c -- the loader's promises, checked against purpose-built plugins:
 * version checks, missing and NULL slots, names, permissions, non-plugins,
 * listing, and a host built against a later 1.x header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kms_loader.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"

static const char *plugin_dir(void) { return TEST_PLUGIN_DIR; }

static kms_module *load_ok(const char *name) {
  kms_module *m = NULL;
  kms_error err;
  kms_status st = kms_module_load(plugin_dir(), name, &m, &err);
  if (st != KMS_OK) fail_msg("loading %s: %s", name, err.message);
  assert_non_null(m);
  return m;
}

static void expect_load_error(const char *dir, const char *name, kms_status want,
                              const char *needle) {
  kms_module *m = (kms_module *)0x1;
  kms_error err;
  kms_status st = kms_module_load(dir, name, &m, &err);
  assert_null(m);
  if (st != want)
    fail_msg("load %s: want %s got %s (%s)", name ? name : "(null)", kms_status_str(want),
             kms_status_str(st), err.message);
  assert_int_equal(err.status, want);
  if (needle && !strstr(err.message, needle))
    fail_msg("message '%s' lacks '%s'", err.message, needle);
}

static void test_status_names(void **state) {
  const char *names[] = {"OK", "NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED",
                         "UNAUTHENTICATED", "UNAVAILABLE", "CONFLICT", "UNSUPPORTED",
                         "NO_MEMORY", "INTERNAL"};
  for (int i = 0; i < 10; i++) assert_string_equal(kms_status_str((kms_status)i), names[i]);
  assert_string_equal(kms_status_str((kms_status)1234), "UNKNOWN");
  /* kms_error_set keeps the message one printable line */
  kms_error err;
  assert_int_equal(kms_error_set(&err, KMS_INTERNAL, 7, "a\n%s\t%s", "b\r\x1b[1m", "\x7f"),
                   KMS_INTERNAL);
  assert_string_equal(err.message, "a?b??[1m??");
  assert_int_equal(err.backend_status, 7);
}

static void test_slot_available(void **state) {
  kms_plugin p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  assert_int_equal(KMS_SLOT_AVAILABLE(&p, read_secret), 0); /* NULL slot */
  p.read_secret = (kms_status(*)(kms_instance *, const char *, kms_secret **, kms_error *))1;
  assert_int_equal(KMS_SLOT_AVAILABLE(&p, read_secret), 1);
  p.struct_size = offsetof(kms_plugin, read_secret); /* just before the slot */
  assert_int_equal(KMS_SLOT_AVAILABLE(&p, read_secret), 0);
  p.struct_size = offsetof(kms_plugin, read_secret) + sizeof p.read_secret - 1; /* partial */
  assert_int_equal(KMS_SLOT_AVAILABLE(&p, read_secret), 0);
  p.struct_size = offsetof(kms_plugin, read_secret) + sizeof p.read_secret; /* exactly */
  assert_int_equal(KMS_SLOT_AVAILABLE(&p, read_secret), 1);
  assert_int_equal(kms_slot_available(&p, SIZE_MAX, 8), 0); /* no overflow */
  assert_int_equal(kms_slot_available(&p, 8, SIZE_MAX), 0);
  assert_int_equal(kms_slot_available(NULL, 0, 8), 0);
}

static void test_names_refused_before_file_access(void **state) {
  char long_name[301];
  memset(long_name, 'a', 300);
  long_name[300] = '\0';
  /* The directory does not exist: a NOT_FOUND would mean the loader looked. */
  const char *dir = "/nonexistent/kmsplug-dir";
  const char *bad[] = {"../x", "a/b", "X", "", long_name, "good.so", "a b", "é"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_load_error(dir, bad[i], KMS_INVALID_ARGUMENT, "invalid plugin name");
  expect_load_error(dir, NULL, KMS_INVALID_ARGUMENT, "invalid plugin name");
  /* And the valid counterpart does reach the file system. */
  expect_load_error(dir, "good", KMS_NOT_FOUND, "/nonexistent/kmsplug-dir");
  assert_true(kms_plugin_name_valid("hashicorp_vault"));
  assert_true(kms_plugin_name_valid("a"));
  assert_false(kms_plugin_name_valid(long_name));
  long_name[64] = '\0';
  assert_true(kms_plugin_name_valid(long_name));
  long_name[64] = 'a';
  long_name[65] = '\0';
  assert_false(kms_plugin_name_valid(long_name));
}

static void test_good_plugin_roundtrip(void **state) {
  kms_module *m = load_ok("good");
  const kms_plugin *p = kms_module_plugin(m);
  assert_string_equal(p->name, "good");
  assert_non_null(strstr(kms_module_path(m), "/good.so"));
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, NULL, NULL, 0, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "s1", "v1", 2, NULL, &err), KMS_OK);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "s1", &s, &err), KMS_OK);
  assert_int_equal(s->length, 2);
  assert_string_equal(s->value, "v1");
  assert_true(KMS_SECRET_HAS(s, version));
  assert_int_equal(s->version, 1);
  kms_client_free_secret(c, s);
  assert_int_equal(kms_client_delete(c, "s1", &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "s1", &s, &err), KMS_NOT_FOUND);
  assert_null(s);
  assert_string_equal(err.message, "test plugin: no such secret");
  /* The plugin returns UNAVAILABLE without a message: the loader names it. */
  assert_int_equal(kms_client_refresh(c, &err), KMS_UNAVAILABLE);
  assert_int_equal(err.status, KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "plugin 'good' refresh failed: UNAVAILABLE"));
  /* Empty names never reach the plugin. */
  assert_int_equal(kms_client_read(c, "", &s, &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(kms_client_write(c, NULL, "x", 1, NULL, NULL), KMS_INVALID_ARGUMENT);
  kms_client_destroy(c);
  kms_module_unload(m);
}

static void test_create_failure_reported(void **state) {
  kms_module *m = load_ok("good");
  kms_setting s[] = {{"fail", "1"}};
  kms_client *c = (kms_client *)0x1;
  kms_error err;
  assert_int_equal(kms_client_create(m, NULL, s, 1, &c, &err), KMS_INVALID_ARGUMENT);
  assert_null(c);
  assert_string_equal(err.message, "test plugin: setting 'fail' given");
  kms_module_unload(m);
}

/* Same major, older minor: slots outside struct_size are UNSUPPORTED and
 * never called (they abort() in the test plugin). */
static void test_older_minor_shorter_table(void **state) {
  kms_module *m = load_ok("old");
  const kms_plugin *p = kms_module_plugin(m);
  assert_true(p->struct_size < sizeof(kms_plugin));
  assert_false(KMS_SLOT_AVAILABLE(p, delete_secret));
  assert_false(KMS_SLOT_AVAILABLE(p, refresh));
  assert_false(KMS_SLOT_AVAILABLE(p, free_secret));
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, NULL, NULL, 0, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "a", "b", 1, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_delete(c, "a", &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "does not provide delete_secret"));
  assert_int_equal(kms_client_refresh(c, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "does not provide refresh"));
  /* Without free_secret a returned secret could not be released: no read. */
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "a", &s, &err), KMS_UNSUPPORTED);
  assert_null(s);
  kms_client_destroy(c);
  kms_module_unload(m);
}

/* Newer minor, longer table: a 1.0 host uses what it knows. */
static void test_newer_minor_longer_table(void **state) {
  kms_module *m = load_ok("future");
  const kms_plugin *p = kms_module_plugin(m);
  assert_int_equal(p->abi_minor, KMS_ABI_MINOR + 1);
  assert_true(p->struct_size > sizeof(kms_plugin));
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, NULL, NULL, 0, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "n", "value", 5, NULL, &err), KMS_OK);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "n", &s, &err), KMS_OK);
  assert_string_equal(s->value, "value");
  kms_client_free_secret(c, s);
  kms_client_destroy(c);
  kms_module_unload(m);
}

/* A host built against a later 1.x header (which appends a slot) meets a
 * plugin built against 1.0 (v10.so, compiled with the frozen abi_1_0
 * headers): the new slots read as absent, the rest works. */
static void test_later_host_header_with_1_0_plugin(void **state) {
  kms_module *m = load_ok("v10");
  const kms_plugin *p = kms_module_plugin(m);
  assert_int_equal(p->abi_minor, 0);
  assert_false(KMS_SLOT_AVAILABLE(p, read_secret_opt));
  assert_false(KMS_SLOT_AVAILABLE(p, list_secrets));
  assert_false(KMS_SLOT_AVAILABLE(p, health));
  assert_true(KMS_SLOT_AVAILABLE(p, read_secret));
  assert_true(KMS_SLOT_AVAILABLE(p, free_secret));
  kms_module_unload(m);
}

static void test_other_major_refused(void **state) {
  char plugin_abi[32], host_abi[32];
  snprintf(plugin_abi, sizeof plugin_abi, "ABI 2.%d", KMS_ABI_MINOR); /* built with this header */
  snprintf(host_abi, sizeof host_abi, "host speaks ABI 1.%d", KMS_ABI_MINOR);
  expect_load_error(plugin_dir(), "major2", KMS_UNSUPPORTED, plugin_abi);
  kms_module *m = NULL;
  kms_error err;
  kms_module_load(plugin_dir(), "major2", &m, &err);
  assert_non_null(strstr(err.message, host_abi));
  assert_non_null(strstr(err.message, "major2.so"));
}

static void test_missing_plugin_lists_what_is_there(void **state) {
  expect_load_error(plugin_dir(), "nosuch", KMS_NOT_FOUND, "nosuch.so: No such file or directory");
  expect_load_error(plugin_dir(), "nosuch", KMS_NOT_FOUND, "good");
  expect_load_error(plugin_dir(), "nosuch", KMS_NOT_FOUND, "major2");
}

static void test_missing_entry(void **state) {
  expect_load_error(plugin_dir(), "noentry", KMS_UNSUPPORTED, "does not export kms_plugin_entry");
}

static void test_refusing_plugin(void **state) {
  expect_load_error(plugin_dir(), "refuser", KMS_UNSUPPORTED, "refused this host");
}

static void test_name_mismatch(void **state) {
  expect_load_error(plugin_dir(), "misnamed", KMS_UNSUPPORTED, "calls itself 'other', not 'misnamed'");
}

static void test_null_slot(void **state) {
  kms_module *m = load_ok("nullslot");
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(m, NULL, NULL, 0, &c, &err), KMS_OK);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "x", &s, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "does not provide read_secret"));
  assert_int_equal(kms_client_write(c, "x", "y", 1, NULL, &err), KMS_OK);
  kms_client_destroy(c);
  kms_module_unload(m);
}

static void test_writable_plugin_refused(void **state) {
  char dir[PATH_MAX];
  scratch_dir(dir, sizeof dir);
  char *file = copy_plugin_as("good", dir, "good");
  kms_module *m = NULL;
  kms_error err;
  assert_int_equal(kms_module_load(dir, "good", &m, &err), KMS_OK); /* the copy itself is fine */
  kms_module_unload(m);
  assert_int_equal(chmod(file, 0775), 0);
  expect_load_error(dir, "good", KMS_PERMISSION_DENIED, "writable by group or others");
  assert_int_equal(chmod(file, 0757), 0);
  expect_load_error(dir, "good", KMS_PERMISSION_DENIED, file);
  assert_int_equal(chmod(file, 0755), 0);
  assert_int_equal(chmod(dir, 0777), 0);
  expect_load_error(dir, "good", KMS_PERMISSION_DENIED, "plugin directory");
  assert_int_equal(chmod(dir, 0755), 0);
  free(file);
  scratch_remove(dir);
}

static void test_not_a_shared_object(void **state) {
  char dir[PATH_MAX];
  scratch_dir(dir, sizeof dir);
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/junk.so", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("this is not an ELF file\n", f);
  fclose(f);
  chmod(path, 0644);
  expect_load_error(dir, "junk", KMS_UNSUPPORTED, "cannot load plugin");
  expect_load_error(dir, "junk", KMS_UNSUPPORTED, path);
  /* A directory named like a plugin is not a plugin either. */
  snprintf(path, sizeof path, "%s/adir.so", dir);
  assert_int_equal(mkdir(path, 0755), 0);
  expect_load_error(dir, "adir", KMS_UNSUPPORTED, "not a regular file");
  scratch_remove(dir);
}

static void test_list_plugins(void **state) {
  kms_plugin_info *list = NULL;
  size_t n = 0;
  kms_error err;
  assert_int_equal(kms_plugin_list(plugin_dir(), &list, &n, &err), KMS_OK);
  assert_int_equal(n, 11); /* the 8 variants, full and liar (1.1), v10 (frozen 1.0) */
  int saw_good = 0, saw_major2 = 0;
  for (size_t i = 0; i < n; i++) {
    if (i) assert_true(strcmp(list[i - 1].name, list[i].name) < 0); /* sorted */
    if (strcmp(list[i].name, "good") == 0) {
      saw_good = 1;
      assert_int_equal(list[i].status, KMS_OK);
      assert_string_equal(list[i].version, "0.0.1");
      assert_int_equal(list[i].abi_major, 1);
    }
    if (strcmp(list[i].name, "major2") == 0) {
      saw_major2 = 1;
      assert_int_equal(list[i].status, KMS_UNSUPPORTED);
      assert_non_null(strstr(list[i].error, "built for ABI 2."));
    }
  }
  assert_true(saw_good && saw_major2);
  kms_plugin_list_free(list);
  assert_int_equal(kms_plugin_list("/nonexistent/x", &list, &n, &err), KMS_NOT_FOUND);
  assert_non_null(strstr(err.message, "/nonexistent/x"));
}

static void test_plugin_dir_resolution(void **state) {
  assert_string_equal(kms_plugin_dir("/explicit"), "/explicit");
  setenv(KMS_PLUGIN_PATH_ENV, plugin_dir(), 1);
  assert_string_equal(kms_plugin_dir(NULL), plugin_dir());
  assert_string_equal(kms_plugin_dir(""), plugin_dir());
  kms_module *m = NULL;
  kms_error err;
  assert_int_equal(kms_module_load(NULL, "good", &m, &err), KMS_OK);
  kms_module_unload(m);
  unsetenv(KMS_PLUGIN_PATH_ENV);
  assert_non_null(strstr(kms_plugin_dir(NULL), "kmsplug/plugins"));
}

/* kms_plugin_util.h's secret helpers, which plugins use as free_secret. */
/* The packed secret (one block) and the CPU stripe hint (ABI 1.1 helpers). */
static void test_plugin_util_packed(void **state) {
  (void)state;
  kms_secret *s = NULL;
  kms_error err;
  assert_int_equal(kms_secret_new_packed("a\0b", 3, &s, &err), KMS_OK);
  assert_int_equal(s->struct_size, sizeof(kms_secret));
  assert_int_equal(s->length, 3);
  assert_memory_equal(s->value, "a\0b\0", 4);
  assert_ptr_equal(s->value, (const char *)(s + 1)); /* one block: what the free relies on */
  assert_int_equal(s->version, 0);
  assert_int_equal(s->flags, 0);
  kms_secret_free_packed(s);
  assert_int_equal(kms_secret_new_packed(NULL, 0, &s, &err), KMS_OK);
  assert_string_equal(s->value, "");
  kms_secret_free_packed(s);
  s = (kms_secret *)0x1;
  assert_int_equal(kms_secret_new_packed(NULL, 2, &s, &err), KMS_INVALID_ARGUMENT);
  assert_null(s);
  assert_int_equal(kms_secret_new_packed("x", SIZE_MAX, &s, &err), KMS_NO_MEMORY);
  assert_null(s);
  kms_secret_free_packed(NULL);
  assert_int_equal(kms_cpu_stripe(0), 0);
  assert_int_equal(kms_cpu_stripe(1), 0);
  for (int i = 0; i < 100; i++) assert_true(kms_cpu_stripe(3) < 3);
}

static void test_plugin_util_secrets(void **state) {
  kms_secret *s = NULL;
  kms_error err;
  assert_int_equal(kms_secret_new("a\0b", 3, &s, &err), KMS_OK);
  assert_int_equal(s->struct_size, sizeof(kms_secret));
  assert_int_equal(s->length, 3);
  assert_memory_equal(s->value, "a\0b\0", 4); /* bytes kept, NUL appended */
  assert_int_equal(s->version, 0);
  assert_int_equal(s->flags, 0);
  kms_secret_free(s);
  assert_int_equal(kms_secret_new(NULL, 0, &s, &err), KMS_OK);
  assert_string_equal(s->value, "");
  kms_secret_free(s);
  s = (kms_secret *)0x1;
  assert_int_equal(kms_secret_new(NULL, 2, &s, &err), KMS_INVALID_ARGUMENT);
  assert_null(s);
  s = (kms_secret *)0x1;
  assert_int_equal(kms_secret_new("x", SIZE_MAX, &s, &err), KMS_NO_MEMORY);
  assert_null(s);
  assert_non_null(strstr(err.message, "out of memory"));
  kms_secret_free(NULL);
  char buf[8] = "secret!";
  kms_wipe(buf, sizeof buf);
  for (size_t i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 0);
  kms_wipe(NULL, 3);
}

static void test_capabilities_text(void **state) {
  char buf[64];
  assert_string_equal(kms_capabilities_str(KMS_CAP_READ | KMS_CAP_THREAD_SAFE, buf, sizeof buf),
                      "read,thread-safe");
  assert_string_equal(kms_capabilities_str(KMS_CAP_LIST | KMS_CAP_NOTIFY, buf, sizeof buf),
                      "list,notify");
  assert_string_equal(kms_capabilities_str(0, buf, sizeof buf), "none");
  assert_string_equal(kms_capabilities_str(KMS_CAP_READ | KMS_CAP_WRITE, buf, 8), "read");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_names),
      cmocka_unit_test(test_slot_available),
      cmocka_unit_test(test_names_refused_before_file_access),
      cmocka_unit_test(test_good_plugin_roundtrip),
      cmocka_unit_test(test_create_failure_reported),
      cmocka_unit_test(test_older_minor_shorter_table),
      cmocka_unit_test(test_newer_minor_longer_table),
      cmocka_unit_test(test_later_host_header_with_1_0_plugin),
      cmocka_unit_test(test_other_major_refused),
      cmocka_unit_test(test_missing_plugin_lists_what_is_there),
      cmocka_unit_test(test_missing_entry),
      cmocka_unit_test(test_refusing_plugin),
      cmocka_unit_test(test_name_mismatch),
      cmocka_unit_test(test_null_slot),
      cmocka_unit_test(test_writable_plugin_refused),
      cmocka_unit_test(test_not_a_shared_object),
      cmocka_unit_test(test_list_plugins),
      cmocka_unit_test(test_plugin_dir_resolution),
      cmocka_unit_test(test_capabilities_text),
      cmocka_unit_test(test_plugin_util_secrets),
    cmocka_unit_test(test_plugin_util_packed),
  };
  return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
