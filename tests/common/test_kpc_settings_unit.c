/*
 * test_kpc_settings_unit.c -- the shared settings-table mechanism
 * (plugins/common/kpc_settings): every kind, both boolean dialects,
 * defaults, environment-vs-setting precedence, unknown keys, and the
 * wording of errors (the setting or variable, the bad value, what is
 * allowed; a secret row's value never shown).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kpc_common.h"
#include "kpc_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a host with its own environment table and a captured log ---- */

typedef struct fake_host {
  const char *const *env; /* name, value, name, value, ..., NULL */
  char log[2048];
} fake_host;

static const char *fake_getenv(void *ctx, const char *name) {
  const fake_host *f = ctx;
  for (size_t i = 0; f->env && f->env[i]; i += 2)
    if (strcmp(f->env[i], name) == 0) return f->env[i + 1];
  return NULL;
}

static void fake_log(void *ctx, kms_log_level level, const char *msg) {
  fake_host *f = ctx;
  (void)level;
  size_t n = strlen(f->log);
  snprintf(f->log + n, sizeof f->log - n, "%s\n", msg);
}

static kms_host host_of(fake_host *f) {
  kms_host h;
  memset(&h, 0, sizeof h);
  h.struct_size = sizeof h;
  h.ctx = f;
  h.log = fake_log;
  h.getenv = fake_getenv;
  return h;
}

/* ---- a config struct with a field of every kind ---- */

typedef struct cfg {
  int64_t count;      /* INT, env T_COUNT / T_COUNT_OLD, setting count */
  int64_t wait_s;     /* DURATION stored in seconds */
  int64_t wait_ms;    /* DURATION stored in ms */
  int go_flag;        /* BOOL, Go dialect */
  int yaml_flag;      /* BOOL, YAML dialect */
  int mode;           /* ENUM */
  size_t size;        /* INT into a size_t */
  unsigned small;     /* INT into an unsigned */
  char *name;         /* STRING with a check */
  char *token;        /* STRING, secret */
  int custom;         /* CUSTOM: "n+1" */
} cfg;

static int name_ok(const char *s) { return strlen(s) <= 8 && strchr(s, ' ') == NULL; }

static kms_status set_plus_one(void *c, const kpc_setting_row *r, const char *label,
                               const char *v, kms_error *err) {
  int64_t n;
  if (kpc_parse_i64(v, 0, 9, &n) != 0) return kpc_settings_bad(err, r, label, v);
  ((cfg *)c)->custom = (int)n + 1;
  return KMS_OK;
}

#define F(f, t) KPC_FIELD(cfg, f, t)
static const kpc_setting_row ROWS[] = {
    {.key = "count", .env = KPC_NAMES("T_COUNT", "T_COUNT_OLD"), .kind = KPC_SET_INT,
     F(count, KPC_F_I64), .def = 7, .lo = 0, .hi = 100, .what = "a whole number from 0 to 100"},
    {.key = "wait", .kind = KPC_SET_DURATION, F(wait_s, KPC_F_I64), .def = 30, .lo = 0,
     .hi = INT64_MAX / 4, .div = 1000, .what = "a duration"},
    {.key = "wait_ms", .env = KPC_NAMES("T_WAIT_MS"), .kind = KPC_SET_DURATION,
     F(wait_ms, KPC_F_I64), .def = 500, .lo = 1, .hi = 60000, .what = "a duration up to 1m"},
    {.key = "go_flag", .env = KPC_NAMES("T_GO"), .kind = KPC_SET_BOOL, F(go_flag, KPC_F_INT),
     .dialect = KPC_BOOL_GO},
    {.key = "yaml_flag", .kind = KPC_SET_BOOL, F(yaml_flag, KPC_F_INT), .def = 1,
     .dialect = KPC_BOOL_YAML},
    {.key = "mode", .kind = KPC_SET_ENUM, F(mode, KPC_F_INT), .def = 1,
     .choices = KPC_NAMES("off", "soft", "hard")},
    {.key = "size", .kind = KPC_SET_INT, F(size, KPC_F_SIZE), .def = 4096, .lo = 1024,
     .hi = 1 << 20, .what = "an integer between 1024 and 1048576"},
    {.key = "small", .kind = KPC_SET_INT, F(small, KPC_F_UINT), .def = 3, .lo = 1, .hi = 9,
     .what = "1 to 9"},
    {.key = "name", .env = KPC_NAMES("T_NAME"), .kind = KPC_SET_STRING, F(name, KPC_F_STR),
     .check = name_ok, .what = "a name of at most 8 characters without spaces"},
    {.key = "token", .kind = KPC_SET_STRING, F(token, KPC_F_STR), .check = name_ok,
     .what = "a token without spaces", .secret = 1},
    {.key = "custom", .env = KPC_NAMES("T_CUSTOM"), .kind = KPC_SET_CUSTOM, .set = set_plus_one,
     .what = "a digit"},
    {.key = "assume_role", .kind = KPC_SET_REFUSED, .what = "is not implemented; remove it"},
    {.key = "hosted_keys", .kind = KPC_SET_IGNORED},
};
#undef F
#define N (sizeof ROWS / sizeof *ROWS)

static void cfg_free(cfg *c) {
  free(c->name);
  free(c->token);
  memset(c, 0, sizeof *c);
}

/* Defaults, then env, then settings, as the plugins call them. */
static kms_status load(cfg *c, fake_host *f, const kms_setting *s, size_t n, kms_error *err) {
  kms_host h = host_of(f);
  kpc_logger lg = {&h, "test: "};
  memset(c, 0, sizeof *c);
  kpc_settings_defaults(ROWS, N, c);
  kms_status st = kpc_settings_apply_env(ROWS, N, c, &h, err);
  if (st == KMS_OK) st = kpc_settings_apply(ROWS, N, c, s, n, &lg, err);
  return st;
}

static void test_defaults(void **state) {
  (void)state;
  fake_host f = {0};
  cfg c;
  kms_error err;
  assert_int_equal(load(&c, &f, NULL, 0, &err), KMS_OK);
  assert_int_equal(c.count, 7);
  assert_int_equal(c.wait_s, 30);
  assert_int_equal(c.wait_ms, 500);
  assert_int_equal(c.go_flag, 0);
  assert_int_equal(c.yaml_flag, 1);
  assert_int_equal(c.mode, 1);
  assert_int_equal(c.size, 4096);
  assert_int_equal(c.small, 3);
  assert_null(c.name);
  assert_int_equal(c.custom, 0);
  assert_string_equal(f.log, "");
  cfg_free(&c);
}

static void test_every_kind(void **state) {
  (void)state;
  fake_host f = {0};
  static const kms_setting s[] = {
      {"count", " 42 "}, {"wait", "1h2m3s"}, {"wait_ms", "250ms"}, {"go_flag", "True"},
      {"yaml_flag", "OFF"}, {"mode", "hard"}, {"size", "65536"}, {"small", "9"},
      {"name", "  abc  "}, {"token", "s.xyz"}, {"custom", "4"}, {"assume_role", "  "},
      {"hosted_keys", "anything at all"}, {NULL, "skipped"}};
  cfg c;
  kms_error err;
  assert_int_equal(load(&c, &f, s, sizeof s / sizeof *s, &err), KMS_OK);
  assert_int_equal(c.count, 42);
  assert_int_equal(c.wait_s, 3723);
  assert_int_equal(c.wait_ms, 250);
  assert_int_equal(c.go_flag, 1);
  assert_int_equal(c.yaml_flag, 0);
  assert_int_equal(c.mode, 2);
  assert_int_equal(c.size, 65536);
  assert_int_equal(c.small, 9);
  assert_string_equal(c.name, "abc");
  assert_string_equal(c.token, "s.xyz");
  assert_int_equal(c.custom, 5);
  /* a later setting replaces a string; a blank one unsets it */
  static const kms_setting s2[] = {{"name", "first"}, {"name", "second"}, {"token", "t"},
                                   {"token", " "}, {"wait", "90"}};
  cfg_free(&c);
  assert_int_equal(load(&c, &f, s2, sizeof s2 / sizeof *s2, &err), KMS_OK);
  assert_string_equal(c.name, "second");
  assert_null(c.token);
  assert_int_equal(c.wait_s, 90); /* plain seconds */
  cfg_free(&c);
}

static void test_bool_dialects(void **state) {
  (void)state;
  static const char *const go_ok[] = {"1", "t", "T", "TRUE", "true", "True",
                                      "0", "f", "F", "FALSE", "false", "False"};
  static const char *const go_bad[] = {"yes", "no", "on", "off", "tRuE", "y", "", "2"};
  static const char *const yaml_ok[] = {"true", "TRUE", "tRuE", "yes", "Yes", "on", "1",
                                        "false", "No", "OFF", "0"};
  static const char *const yaml_bad[] = {"t", "f", "y", "n", "", "2", "enabled"};
  int b;
  for (size_t i = 0; i < sizeof go_ok / sizeof *go_ok; i++) {
    assert_int_equal(kpc_parse_bool(KPC_BOOL_GO, go_ok[i], &b), 0);
    assert_int_equal(b, i < 6);
  }
  for (size_t i = 0; i < sizeof go_bad / sizeof *go_bad; i++)
    assert_int_equal(kpc_parse_bool(KPC_BOOL_GO, go_bad[i], &b), -1);
  for (size_t i = 0; i < sizeof yaml_ok / sizeof *yaml_ok; i++) {
    assert_int_equal(kpc_parse_bool(KPC_BOOL_YAML, yaml_ok[i], &b), 0);
    assert_int_equal(b, i < 7);
  }
  for (size_t i = 0; i < sizeof yaml_bad / sizeof *yaml_bad; i++)
    assert_int_equal(kpc_parse_bool(KPC_BOOL_YAML, yaml_bad[i], &b), -1);

  /* through the table: the row's dialect decides */
  fake_host f = {0};
  cfg c;
  kms_error err;
  static const kms_setting go_yes[] = {{"go_flag", "yes"}};
  assert_int_equal(load(&c, &f, go_yes, 1, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "setting 'go_flag' must be true or false"));
  assert_non_null(strstr(err.message, "(got 'yes')"));
  cfg_free(&c);
  static const kms_setting yaml_t[] = {{"yaml_flag", "T"}};
  assert_int_equal(load(&c, &f, yaml_t, 1, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "setting 'yaml_flag' must be true or false (also yes/no"));
  cfg_free(&c);
}

static void test_env_and_precedence(void **state) {
  (void)state;
  /* the first variable set and not blank wins; a setting wins over both */
  static const char *const env[] = {"T_COUNT", "   ", "T_COUNT_OLD", "12", "T_GO", "T",
                                    "T_NAME", "envname", "T_CUSTOM", "1", "T_WAIT_MS", "2s",
                                    NULL};
  fake_host f = {env, ""};
  cfg c;
  kms_error err;
  assert_int_equal(load(&c, &f, NULL, 0, &err), KMS_OK);
  assert_int_equal(c.count, 12);
  assert_int_equal(c.go_flag, 1);
  assert_string_equal(c.name, "envname");
  assert_int_equal(c.custom, 2);
  assert_int_equal(c.wait_ms, 2000);
  cfg_free(&c);
  static const kms_setting s[] = {{"count", "13"}, {"name", "setname"}, {"go_flag", "false"}};
  assert_int_equal(load(&c, &f, s, 3, &err), KMS_OK);
  assert_int_equal(c.count, 13);
  assert_string_equal(c.name, "setname");
  assert_int_equal(c.go_flag, 0);
  assert_int_equal(c.custom, 2); /* no setting: the variable's */
  cfg_free(&c);

  /* a bad variable is named as the variable that was read */
  static const char *const bad_env[] = {"T_COUNT_OLD", "-1", NULL};
  fake_host fb = {bad_env, ""};
  assert_int_equal(load(&c, &fb, NULL, 0, &err), KMS_INVALID_ARGUMENT);
  assert_string_equal(err.message, "T_COUNT_OLD must be a whole number from 0 to 100 (got '-1')");
  cfg_free(&c);

  /* kpc_env_first: *which is the name found, or names[0] */
  kms_host h = host_of(&f);
  const char *which = NULL;
  assert_string_equal(kpc_env_first(&h, KPC_NAMES("T_COUNT", "T_COUNT_OLD"), &which), "12");
  assert_string_equal(which, "T_COUNT_OLD");
  /* unset and blank alike: none */
  assert_null(kpc_env_first(&h, KPC_NAMES("T_NONE", "T_COUNT"), &which));
  assert_string_equal(which, "T_NONE");
}

/* Each bad value: the status and the exact message. */
static void test_errors(void **state) {
  (void)state;
  static const struct {
    const char *key, *value;
    kms_status st;
    const char *msg;
  } cases[] = {
      {"count", "101", KMS_INVALID_ARGUMENT,
       "setting 'count' must be a whole number from 0 to 100 (got '101')"},
      {"count", "1 2", KMS_INVALID_ARGUMENT,
       "setting 'count' must be a whole number from 0 to 100 (got '1 2')"},
      {"wait", "1d", KMS_INVALID_ARGUMENT, "setting 'wait' must be a duration (got '1d')"},
      {"wait_ms", "0", KMS_INVALID_ARGUMENT,
       "setting 'wait_ms' must be a duration up to 1m (got '0')"},
      {"wait_ms", "2m", KMS_INVALID_ARGUMENT,
       "setting 'wait_ms' must be a duration up to 1m (got '2m')"},
      {"mode", "Hard", KMS_INVALID_ARGUMENT,
       "setting 'mode' must be one of off, soft, hard (got 'Hard')"},
      {"size", "1023", KMS_INVALID_ARGUMENT,
       "setting 'size' must be an integer between 1024 and 1048576 (got '1023')"},
      {"small", "0", KMS_INVALID_ARGUMENT, "setting 'small' must be 1 to 9 (got '0')"},
      {"name", "too long a name", KMS_INVALID_ARGUMENT,
       "setting 'name' must be a name of at most 8 characters without spaces (got 'too long a "
       "name')"},
      {"token", "s.secret value", KMS_INVALID_ARGUMENT,
       "setting 'token' must be a token without spaces (got (not shown))"},
      {"custom", "10", KMS_INVALID_ARGUMENT, "setting 'custom' must be a digit (got '10')"},
      {"assume_role", "arn:x", KMS_UNSUPPORTED,
       "setting 'assume_role' is not implemented; remove it"},
      /* control characters cannot split the message */
      {"mode", "x\nFAKE", KMS_INVALID_ARGUMENT,
       "setting 'mode' must be one of off, soft, hard (got 'x?FAKE')"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    fake_host f = {0};
    cfg c;
    kms_error err;
    kms_setting s[] = {{cases[i].key, cases[i].value}};
    kms_status st = load(&c, &f, s, 1, &err);
    if (st != cases[i].st || strcmp(err.message, cases[i].msg) != 0)
      fail_msg("case %zu: status %d message '%s'", i, st, err.message);
    cfg_free(&c);
  }
}

static void test_unknown_keys(void **state) {
  (void)state;
  fake_host f = {0};
  static const kms_setting s[] = {{"no_such_key", "1"}, {"Bad Key\npasted=secret", "v"},
                                  {"count", "5"}};
  cfg c;
  kms_error err;
  assert_int_equal(load(&c, &f, s, 3, &err), KMS_OK);
  assert_int_equal(c.count, 5);
  assert_non_null(strstr(f.log, "test: ignoring unknown setting 'no_such_key'"));
  assert_non_null(strstr(f.log, "name is not [a-z0-9_] (name not shown)"));
  assert_null(strstr(f.log, "secret"));
  cfg_free(&c);
}

static void test_dup_trim(void **state) {
  (void)state;
  char *t = kpc_dup_trim(" \t a b \r\n");
  assert_string_equal(t, "a b");
  free(t);
  t = kpc_dup_trim("   ");
  assert_string_equal(t, "");
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),       cmocka_unit_test(test_every_kind),
      cmocka_unit_test(test_bool_dialects),  cmocka_unit_test(test_env_and_precedence),
      cmocka_unit_test(test_errors),         cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_dup_trim),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
