/*
 * test_docker_plugin.c -- the docker backend's ABI 1.1 slots through the
 * loader (its LiteLLM-compatible reads are covered by tests/litellm_compat):
 * the buffer read (lower-case twin and whitespace stripping included),
 * listing (regular files only, dot-files and escaping symlinks skipped),
 * option checks (no location keys at all, no version pins) and health.
 * Secrets directories live under the build tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kms_loader.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
  kms_module *m;
  kms_client *c;
  char dir[PATH_MAX];
};

static void put(const char *dir, const char *name, const char *content) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "%s/docker-XXXXXX", TEST_SCRATCH_DIR);
  assert_non_null(mkdtemp(f->dir));
  put(f->dir, "OPENAI_API_KEY", "sk-docker\n");
  put(f->dir, "anthropic_api_key", "  sk-ant  \n");
  put(f->dir, ".hidden", "no");
  char sub[PATH_MAX + 8], link[PATH_MAX + 8];
  snprintf(sub, sizeof sub, "%s/subdir", f->dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  snprintf(link, sizeof link, "%s/escape", f->dir);
  assert_int_equal(symlink("/etc/hostname", link), 0);
  kms_error err;
  if (kms_module_load(getenv("KMS_PLUGIN_DIR"), "docker", &f->m, &err) != KMS_OK)
    fail_msg("load docker: %s", err.message);
  kms_setting s[] = {{"secrets_path", f->dir}};
  if (kms_client_create(f->m, NULL, s, 1, &f->c, &err) != KMS_OK)
    fail_msg("create docker: %s", err.message);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  kms_client_destroy(f->c);
  kms_module_unload(f->m);
  nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
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

static void test_read_into(void **state) {
  struct fx *f = *state;
  kms_error err;
  char buf[32];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  expect(kms_client_read_into(f->c, "OPENAI_API_KEY", NULL, buf, sizeof buf, &info, &err), KMS_OK,
         &err, NULL);
  assert_string_equal(buf, "sk-docker");
  assert_int_equal(info.length, 9);
  /* The lower-case twin, stripped; then too small: the needed length. */
  expect(kms_client_read_into(f->c, "ANTHROPIC_API_KEY", NULL, buf, sizeof buf, &info, &err),
         KMS_OK, &err, NULL);
  assert_string_equal(buf, "sk-ant");
  memset(buf, 'x', sizeof buf);
  expect(kms_client_read_into(f->c, "ANTHROPIC_API_KEY", NULL, buf, 6, &info, &err),
         KMS_BUFFER_TOO_SMALL, &err, "at least 7");
  assert_int_equal(info.length, 6);
  for (size_t i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 'x');
  expect(kms_client_read_into(f->c, "missing", NULL, buf, sizeof buf, &info, &err), KMS_NOT_FOUND,
         &err, "no file missing");
}

static void test_options(void **state) {
  struct fx *f = *state;
  kms_error err;
  kms_secret *s = NULL;
  kms_setting loc[] = {{"secrets_path", "/etc"}};
  kms_call_options o = OPTS(0, loc, 1, 0, 0, 0);
  expect(kms_client_read_opt(f->c, "OPENAI_API_KEY", &o, &s, &err), KMS_INVALID_ARGUMENT, &err,
         "unknown location key 'secrets_path'");
  assert_null(s);
  expect(kms_client_delete_opt(f->c, "x", &o, &err), KMS_INVALID_ARGUMENT, &err,
         "'secrets_path'");
  o = OPTS(0, NULL, 0, 1, 0, 0);
  expect(kms_client_read_opt(f->c, "OPENAI_API_KEY", &o, &s, &err), KMS_UNSUPPORTED, &err,
         "'version'");
  o = OPTS(KMS_CALL_NONBLOCKING, NULL, 0, 0, 0, 0);
  expect(kms_client_read_opt(f->c, "OPENAI_API_KEY", &o, &s, &err), KMS_OK, &err, NULL);
  assert_string_equal(s->value, "sk-docker");
  kms_client_free_secret(f->c, s);
}

static void test_list(void **state) {
  struct fx *f = *state;
  kms_error err;
  char **names;
  size_t n;
  expect(kms_client_list_names(f->c, "", NULL, &names, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 2); /* not .hidden, subdir or the escaping symlink */
  assert_string_equal(names[0], "OPENAI_API_KEY");
  assert_string_equal(names[1], "anthropic_api_key");
  kms_client_list_names_free(names, n);
  expect(kms_client_list_names(f->c, "anth", NULL, &names, &n, &err), KMS_OK, &err, NULL);
  assert_int_equal(n, 1);
  kms_client_list_names_free(names, n);
}

static void test_health(void **state) {
  struct fx *f = *state;
  kms_error err;
  kms_secret *s = NULL;
  expect(kms_client_read(f->c, "nope", &s, &err), KMS_NOT_FOUND, &err, NULL);
  kms_health h = {.struct_size = sizeof h};
  expect(kms_client_health(f->c, &h, &err), KMS_OK, &err, NULL);
  assert_int_equal(h.reachable, 1);
  assert_int_equal(h.fetches, 1);
  assert_int_equal(h.errors_by_status[KMS_NOT_FOUND], 1);
  assert_non_null(strstr(h.last_error, "nope"));
  /* The directory goes away (unmounted): no longer reachable. */
  kms_client *gone = NULL;
  char missing[PATH_MAX + 16];
  snprintf(missing, sizeof missing, "%s/not-mounted", f->dir);
  kms_setting st[] = {{"secrets_path", missing}};
  expect(kms_client_create(f->m, NULL, st, 1, &gone, &err), KMS_OK, &err, NULL);
  expect(kms_client_health(gone, &h, &err), KMS_OK, &err, NULL);
  assert_int_equal(h.reachable, 0);
  kms_client_destroy(gone);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_read_into, setup, teardown),
      cmocka_unit_test_setup_teardown(test_options, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_health, setup, teardown),
  };
  return cmocka_run_group_tests_name("docker_plugin", tests, NULL, NULL);
}
