/*
 * test_host_unit.c -- cmocka tests of kms-host's pure logic: config parsing
 * (types, lines, unknown keys, defaults), os.environ/ references with
 * LiteLLM's exact rule, hosted_keys/access_mode routing, prefix
 * normalisation, redaction, aliases, key format and hashing, and the outbox
 * queue's superseding rule (on a real SQLite file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "host.h"
#include "pool_check.h"

static host_result res;
static const char *err = res.msg;

static host_status parse(const char *yaml, host_config *cfg) {
  res.msg[0] = '\0';
  return host_config_parse(yaml, strlen(yaml), "cfg.yaml", "/etc/gw", cfg, &res);
}

static void expect_error(const char *yaml, const char *needle1, const char *needle2) {
  host_config cfg;
  host_status rc = parse(yaml, &cfg);
  if (rc == HOST_OK) host_config_free(&cfg);
  assert_int_equal(rc, HOST_CONFIG);
  assert_int_equal(res.status, HOST_CONFIG);
  if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
    fail_msg("error '%s' lacks '%s' / '%s'", err, needle1, needle2 ? needle2 : "");
}

static const char *setting(const host_config *c, const char *k) {
  for (size_t i = 0; i < c->n_settings; i++)
    if (!strcmp(c->settings[i].key, k)) return c->settings[i].value;
  return NULL;
}

static void test_config_full(void **state) {
  (void)state;
  const char *y =
      "model_list:\n"
      "  - model_name: gpt-4o\n"
      "    litellm_params:\n"
      "      model: openai/gpt-4o\n"
      "      api_key: os.environ/OPENAI_API_KEY\n"
      "      rpm: 10\n"
      "      nested: {a: os.environ/NOT_A_TOP_LEVEL_VALUE}\n"
      "  - model_name: claude\n"
      "    litellm_params:\n"
      "      api_key: \"os.environ/ANTHROPIC_API_KEY\"\n"
      "      api_base: https://example.com/os.environ/X\n"
      "litellm_settings: {drop_params: true}\n"
      "unknown_top: [1, 2]\n"
      "general_settings:\n"
      "  master_key: sk-1234\n"
      "  key_management_system: hashicorp_vault\n"
      "  plugin_dir: plugins\n"
      "  kms_db_path: /var/lib/kms.db\n"
      "  key_management_settings:\n"
      "    store_virtual_keys: true\n"
      "    prefix_for_stored_virtual_keys: team-a\n"
      "    access_mode: read_and_write\n"
      "    hosted_keys: [OPENAI_API_KEY, OTHER]\n"
      "    delete_mode: destroy\n"
      "    stale_if_error: 30\n"
      "    empty_one:\n";
  host_config c;
  assert_int_equal(parse(y, &c), 0);
  assert_string_equal(c.kms, "hashicorp_vault");
  assert_int_equal(c.kms_line, 16);
  assert_string_equal(c.plugin_dir, "/etc/gw/plugins");
  assert_string_equal(c.db_path, "/var/lib/kms.db");
  assert_int_equal(c.store_virtual_keys, 1);
  assert_string_equal(c.prefix, "team-a/");
  assert_int_equal(c.access_mode, HOST_ACCESS_READ_AND_WRITE);
  assert_int_equal(c.hosted_keys_set, 1);
  assert_int_equal(c.n_hosted_keys, 2);
  assert_string_equal(c.hosted_keys[1], "OTHER");
  /* every scalar reaches the plugin as a string; hosted_keys comma-joined */
  assert_string_equal(setting(&c, "store_virtual_keys"), "true");
  assert_string_equal(setting(&c, "prefix_for_stored_virtual_keys"), "team-a");
  assert_string_equal(setting(&c, "access_mode"), "read_and_write");
  assert_string_equal(setting(&c, "hosted_keys"), "OPENAI_API_KEY,OTHER");
  assert_string_equal(setting(&c, "delete_mode"), "destroy");
  assert_string_equal(setting(&c, "stale_if_error"), "30");
  assert_null(setting(&c, "empty_one"));
  /* every string value of a mapping that starts with the marker, nested ones
   * too (as LiteLLM resolves them); not one that merely contains it */
  assert_int_equal(c.n_refs, 3);
  assert_string_equal(c.refs[0].env_name, "OPENAI_API_KEY");
  assert_string_equal(c.refs[0].param, "api_key");
  assert_string_equal(c.refs[0].model_name, "gpt-4o");
  assert_int_equal(c.refs[0].line, 5);
  assert_string_equal(c.refs[1].env_name, "NOT_A_TOP_LEVEL_VALUE");
  assert_int_equal(c.refs[2].model_index, 1);
  assert_string_equal(c.refs[2].env_name, "ANTHROPIC_API_KEY");
  host_config_free(&c);
}

static void test_config_defaults(void **state) {
  (void)state;
  host_config c;
  assert_int_equal(parse("general_settings:\n  master_key: x\n", &c), 0);
  assert_null(c.kms);
  assert_int_equal(c.store_virtual_keys, 0);
  assert_string_equal(c.prefix, "litellm/");
  assert_int_equal(c.access_mode, HOST_ACCESS_UNSET);
  assert_int_equal(c.hosted_keys_set, 0);
  assert_int_equal(c.n_refs, 0);
  assert_null(c.plugin_dir);
  host_config_free(&c);
  /* null sections are absent sections */
  assert_int_equal(parse("general_settings:\nmodel_list:\n", &c), 0);
  host_config_free(&c);
  /* an empty hosted_keys list means: nothing is hosted */
  assert_int_equal(parse("general_settings:\n  key_management_system: env\n"
                         "  key_management_settings:\n    hosted_keys: []\n", &c), 0);
  assert_int_equal(c.hosted_keys_set, 1);
  assert_int_equal(host_ref_uses_plugin(&c, "A"), 0);
  assert_int_equal(c.key_generation_settings, 0);
  host_config_free(&c);
  /* litellm_settings.key_generation_settings: set unless absent or null
   * (LiteLLM's `is not None`); a litellm_settings that is no mapping is
   * still ignored */
  assert_int_equal(parse("litellm_settings:\n  key_generation_settings:\n"
                         "    team_key_generation: {allowed_team_member_roles: [admin]}\n", &c),
                   0);
  assert_int_equal(c.key_generation_settings, 1);
  host_config_free(&c);
  assert_int_equal(parse("litellm_settings:\n  key_generation_settings: null\n", &c), 0);
  assert_int_equal(c.key_generation_settings, 0);
  host_config_free(&c);
  assert_int_equal(parse("litellm_settings: [a]\n", &c), 0);
  assert_int_equal(c.key_generation_settings, 0);
  host_config_free(&c);
}

static void test_config_errors(void **state) {
  (void)state;
  expect_error("", "empty", NULL);
  expect_error("- a\n- b\n", "cfg.yaml:1", "expected a mapping");
  expect_error("general_settings: [1]\n", "cfg.yaml:1: general_settings", "mapping");
  expect_error("general_settings:\n  key_management_system: [a]\n", ":2:",
               "key_management_system");
  expect_error("general_settings:\n  key_management_system: Hashi-Corp\n",
               "general_settings.key_management_system", "not a plugin name");
  expect_error("general_settings:\n  key_management_settings:\n    store_virtual_keys: maybe\n",
               "cfg.yaml:3: general_settings.key_management_settings.store_virtual_keys",
               "true or false");
  expect_error("general_settings:\n  key_management_settings:\n    access_mode: rw\n",
               ":3:", "read_only, write_only or read_and_write");
  expect_error("general_settings:\n  key_management_settings:\n    hosted_keys: OPENAI\n",
               "hosted_keys", "list");
  expect_error("general_settings:\n  key_management_settings:\n    hosted_keys: [[a]]\n",
               "hosted_keys", "item 0");
  expect_error("general_settings:\n  key_management_settings: 5\n", "key_management_settings",
               "mapping");
  expect_error("general_settings:\n  key_management_settings:\n"
               "    prefix_for_stored_virtual_keys: ../x\n", "prefix_for_stored_virtual_keys",
               "'..'");
  expect_error("model_list: {a: 1}\n", "model_list", "list");
  expect_error("model_list:\n  - just-a-string\n", "cfg.yaml:2: model_list[0]", "mapping");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: [1]\n",
               "cfg.yaml:3: model_list[0].litellm_params", "mapping");
  expect_error("general_settings:\n  key_management_system: env\n  key_management_system: x\n",
               "cfg.yaml:3: general_settings.key_management_system", "duplicate key (first at line 2)");
  expect_error("general_settings:\n  a: [1,\n", "YAML syntax error", NULL);
  expect_error("general_settings:\n  plugin_dir: {a: b}\n", "plugin_dir", "directory");
}

static void test_bool(void **state) {
  (void)state;
  int v = -1;
  assert_true(host_parse_bool("true", &v) && v == 1);
  assert_true(host_parse_bool("False", &v) && v == 0);
  assert_true(host_parse_bool("yes", &v) && v == 1);
  assert_true(host_parse_bool("0", &v) && v == 0);
  assert_false(host_parse_bool("tru", &v));
  assert_false(host_parse_bool("", &v));
}

static void test_env_ref(void **state) {
  (void)state;
  char *n = NULL;
  host_result e;
  assert_int_equal(host_env_ref_name("os.environ/OPENAI_API_KEY", &n, &e), HOST_OK);
  assert_string_equal(n, "OPENAI_API_KEY");
  free(n);
  /* Python str.replace removes every occurrence */
  assert_int_equal(host_env_ref_name("os.environ/A/os.environ/B", &n, &e), HOST_OK);
  assert_string_equal(n, "A/B");
  free(n);
  assert_int_equal(host_env_ref_name("os.environ/", &n, &e), HOST_OK);
  assert_string_equal(n, "");
  free(n);
  /* must start with the marker, case-sensitive, no leading space: not a
   * reference is HOST_OK with no name */
  static const char *const plain[] = {" os.environ/A", "OS.ENVIRON/A", "os.environ.A",
                                      "https://x/os.environ/A"};
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    n = (char *)"unchanged";
    assert_int_equal(host_env_ref_name(plain[i], &n, &e), HOST_OK);
    assert_null(n);
  }
}

static void test_routing(void **state) {
  (void)state;
  host_config c;
  assert_int_equal(parse("general_settings: {}\n", &c), 0);
  assert_int_equal(host_ref_uses_plugin(&c, "A"), 0); /* no secret manager: environment */
  host_config_free(&c);
  assert_int_equal(parse("general_settings:\n  key_management_system: env\n", &c), 0);
  assert_int_equal(host_ref_uses_plugin(&c, "A"), 1); /* hosted_keys unset: everything */
  host_config_free(&c);
  assert_int_equal(parse("general_settings:\n  key_management_system: env\n"
                         "  key_management_settings: {hosted_keys: [A]}\n", &c), 0);
  assert_int_equal(host_ref_uses_plugin(&c, "A"), 1);
  assert_int_equal(host_ref_uses_plugin(&c, "B"), 0);
  host_config_free(&c);
  assert_int_equal(parse("general_settings:\n  key_management_system: env\n"
                         "  key_management_settings: {access_mode: write_only}\n", &c), 0);
  assert_int_equal(host_ref_uses_plugin(&c, "A"), 0); /* LiteLLM: write_only reads env */
  host_config_free(&c);
}

static void test_prefix(void **state) {
  (void)state;
  host_result e;
  char *p = NULL;
  assert_int_equal(host_prefix_normalise("litellm", &p, &e), HOST_OK);
  assert_string_equal(p, "litellm/");
  free(p);
  assert_int_equal(host_prefix_normalise("a/b/", &p, &e), HOST_OK);
  assert_string_equal(p, "a/b/");
  free(p);
  static const char *const bad[] = {"", "/abs", "a//b", "a/./b", "a/..", "a b", "a\nb"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    e.msg[0] = '\0';
    p = (char *)"unchanged";
    assert_int_equal(host_prefix_normalise(bad[i], &p, &e), HOST_CONFIG);
    assert_null(p);
    assert_int_equal(e.status, HOST_CONFIG);
    assert_true(e.msg[0] != '\0');
  }
  assert_int_equal(host_prefix_normalise("/abs", &p, &e), HOST_CONFIG);
  assert_string_equal(e.msg, "must not start with '/'");
}

static void test_redact(void **state) {
  (void)state;
  char buf[96];
  const char *secret = "sk-proj-0123456789abcdefXYZ";
  host_redact(secret, strlen(secret), buf, sizeof buf);
  assert_string_equal(buf, "sk-... (27 chars)");
  assert_null(strstr(buf, "0123"));
  host_redact("short", 5, buf, sizeof buf);
  assert_string_equal(buf, "****** (5 chars)");
  host_redact("elevenchars", 11, buf, sizeof buf);
  assert_null(strstr(buf, "ele"));
  host_redact("\x01\x02\x03rest-of-a-long-value", 23, buf, sizeof buf);
  assert_string_equal(buf, "???... (23 chars)");
}

static void test_alias(void **state) {
  (void)state;
  assert_true(host_alias_valid("demo"));
  assert_true(host_alias_valid("team-a.prod_1"));
  assert_false(host_alias_valid(""));
  assert_false(host_alias_valid("-x"));
  assert_false(host_alias_valid(".hidden"));
  assert_true(host_alias_valid("tenant-a/gateway-key")); /* LiteLLM's '/' segments */
  assert_false(host_alias_valid("a//b"));
  assert_false(host_alias_valid("a/../b"));
  assert_false(host_alias_valid("a/"));
  assert_false(host_alias_valid(".."));
  assert_false(host_alias_valid("a b"));
  char big[HOST_ALIAS_MAX + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_false(host_alias_valid(big));
  big[HOST_ALIAS_MAX] = '\0';
  assert_true(host_alias_valid(big));
}

static void test_base64url(void **state) {
  (void)state;
  static const struct { const char *in, *out; } v[] = {
    {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
    {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
  char out[32];
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
    host_base64url((const unsigned char *)v[i].in, strlen(v[i].in), out);
    assert_string_equal(out, v[i].out);
  }
}

static void test_keys(void **state) {
  (void)state;
  char a[HOST_KEY_MAX], b[HOST_KEY_MAX], h[65], id[HOST_KEY_ID_HEX + 1];
  assert_int_equal(host_key_new(a), 0);
  assert_int_equal(host_key_new(b), 0);
  assert_memory_equal(a, "sk-", 3);
  assert_int_equal(strlen(a), 3 + 32); /* 24 bytes = 192 bits, >= 128 */
  assert_string_not_equal(a, b);
  assert_true(host_key_format_valid(a));
  assert_false(host_key_format_valid("sk-short"));
  assert_false(host_key_format_valid("pk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
  assert_false(host_key_format_valid("sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAA/AAA"));
  assert_int_equal(host_key_hash("abc", h), 0);
  assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(host_key_id_new(id), 0);
  assert_int_equal(strlen(id), HOST_KEY_ID_HEX);
  char *n = host_key_secret_name("litellm/", "demo", id);
  assert_string_equal(n, "litellm/demo");
  free(n);
  n = host_key_secret_name("litellm/", NULL, "0011223344556677");
  assert_string_equal(n, "litellm/virtual-key-0011223344556677");
  free(n);
}

static long count(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  long n = -1;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW) n = (long)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* A database path in a fresh private directory (the host refuses a
 * database in a directory others can write, such as /tmp itself). */
typedef struct tmpdb {
  char dir[64];
  char path[96];
} tmpdb;

static void tmpdb_make(tmpdb *t) {
  snprintf(t->dir, sizeof t->dir, "/tmp/kms-host-unit-XXXXXX");
  assert_non_null(mkdtemp(t->dir));
  snprintf(t->path, sizeof t->path, "%s/keys.db", t->dir);
}

static void tmpdb_remove(tmpdb *t) {
  static const char *const suffixes[] = {"", "-journal", ".lock", ".spy"};
  char p[128];
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    snprintf(p, sizeof p, "%s%s", t->path, suffixes[i]);
    unlink(p);
  }
  assert_int_equal(rmdir(t->dir), 0);
}

static void test_outbox_queue(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  const char *path = t.path;
  host_db *db = NULL;
  host_result r = {HOST_OK, ""};
  long n = 0;
  assert_int_equal(host_db_open(path, &db, &r), HOST_OK);
  assert_int_equal(host_store_enqueue(db, HOST_OUTBOX_WRITE, "p/a", "v1", 2, &r), HOST_OK);
  assert_int_equal(host_store_enqueue(db, HOST_OUTBOX_WRITE, "p/b", "v1", 2, &r), HOST_OK);
  /* a newer write of p/a supersedes the older one */
  assert_int_equal(host_store_enqueue(db, HOST_OUTBOX_WRITE, "p/a", "v2", 2, &r), HOST_OK);
  assert_int_equal(host_store_pending(db, &n, &r), HOST_OK);
  assert_int_equal(n, 2);
  assert_int_equal(count(host_db_sqlite(db), "SELECT count(*) FROM outbox WHERE value='v1' AND secret_name='p/a'"),
                   0);
  /* a delete drops queued writes of that name but is itself queued */
  assert_int_equal(host_store_enqueue(db, HOST_OUTBOX_DELETE, "p/a", NULL, 0, &r), HOST_OK);
  assert_int_equal(host_store_pending(db, &n, &r), HOST_OK);
  assert_int_equal(n, 2);
  assert_int_equal(count(host_db_sqlite(db), "SELECT count(*) FROM outbox WHERE op='delete' AND value IS NULL"), 1);
  /* order is kept: p/b first, then the delete of p/a */
  assert_int_equal(count(host_db_sqlite(db), "SELECT secret_name='p/b' FROM outbox ORDER BY seq LIMIT 1"), 1);
  /* with no plugin nothing can land; the queue stays, the error says why */
  assert_int_equal(host_outbox_deliver(db, NULL, &n, &r), HOST_QUEUED);
  assert_int_equal(n, 2);
  assert_non_null(strstr(r.msg, "key_management_system"));
  assert_int_equal(count(host_db_sqlite(db), "SELECT attempts FROM outbox ORDER BY seq LIMIT 1"), 1);
  host_db_close(db);
  tmpdb_remove(&t);
}

/* reconcile's orphan delete: refused (owned) when a key holds the name at
 * that location, queued at its location otherwise -- the same name at
 * another location is another secret. */
static void test_orphan_delete_checks_owner(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  host_db *db = NULL;
  host_result r = {HOST_OK, ""};
  int owned = -1;
  assert_int_equal(host_db_open(t.path, &db, &r), HOST_OK);
  assert_int_equal(host_store_generate(db, "00000000000000aa", "h1", "race", "litellm/race",
                                       "sk-value", &r), HOST_OK);
  assert_int_equal(host_store_enqueue_orphan_delete(db, "litellm/race", "", &owned, &r), HOST_OK);
  assert_int_equal(owned, 1);
  sqlite3 *c = host_db_sqlite(db);
  assert_int_equal(count(c, "SELECT count(*) FROM outbox WHERE op='delete'"), 0);
  assert_int_equal(count(c, "SELECT count(*) FROM outbox WHERE op='write'"), 1); /* kept */
  assert_int_equal(host_store_enqueue_orphan_delete(db, "litellm/race", "namespace=t", &owned,
                                                    &r), HOST_OK);
  assert_int_equal(owned, 0);
  assert_int_equal(count(c, "SELECT count(*) FROM outbox WHERE op='delete' AND "
                            "secret_name='litellm/race' AND location='namespace=t'"), 1);
  assert_int_equal(count(c, "SELECT count(*) FROM outbox WHERE op='write'"), 1);
  host_db_close(db);
  tmpdb_remove(&t);
}

/* ------------------------------------------------------------- migrations */

static void test_migrations(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  sqlite3 *db = NULL;
  host_result r = {HOST_OK, ""};
  assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
  /* Step 3 only works after step 2: order matters. */
  static const host_migration steps[] = {
    {1, "CREATE TABLE a(x);"},
    {2, "CREATE TABLE b(y); INSERT INTO b VALUES('two');"},
    {3, "INSERT INTO b SELECT y || '+three' FROM b;"},
  };
  assert_int_equal(host_db_migrate(db, t.path, steps, 1, &r), HOST_OK);
  assert_int_equal(host_db_schema_version(db), 1);
  assert_int_equal(count(db, "SELECT count(*) FROM sqlite_master WHERE name='b'"), 0);
  /* from 1 to 3: steps 2 and 3, in order, once */
  assert_int_equal(host_db_migrate(db, t.path, steps, 3, &r), HOST_OK);
  assert_int_equal(host_db_schema_version(db), 3);
  assert_int_equal(count(db, "SELECT count(*) FROM b WHERE y='two+three'"), 1);
  assert_int_equal(host_db_migrate(db, t.path, steps, 3, &r), HOST_OK);
  assert_int_equal(count(db, "SELECT count(*) FROM b"), 2);
  /* an older binary (it knows 2 steps) refuses the newer schema */
  memset(&r, 0, sizeof r);
  assert_int_equal(host_db_migrate(db, t.path, steps, 2, &r), HOST_CONFIG);
  assert_non_null(strstr(r.msg, "schema version 3, newer than this kms-host understands (2)"));
  assert_non_null(strstr(r.msg, t.path));
  /* a failing step leaves the version where it was */
  static const host_migration bad[] = {{4, "CREATE TABLE c(z); INSERT INTO nowhere VALUES(1);"}};
  static const host_migration all[] = {steps[0], steps[1], steps[2], bad[0]};
  assert_int_equal(host_db_migrate(db, t.path, all, 4, &r), HOST_FAILED);
  assert_non_null(strstr(r.msg, "schema version 4"));
  assert_int_equal(host_db_schema_version(db), 3);
  assert_int_equal(count(db, "SELECT count(*) FROM sqlite_master WHERE name='c'"), 0);
  sqlite3_close(db);
  /* the real history: a fresh file gets HOST_SCHEMA_VERSION */
  assert_int_equal(unlink(t.path), 0);
  host_db *hdb = NULL;
  assert_int_equal(host_db_open(t.path, &hdb, &r), HOST_OK);
  assert_string_equal(host_db_kind(hdb), "sqlite");
  assert_int_equal(host_db_schema_version(host_db_sqlite(hdb)), HOST_SCHEMA_VERSION);
  host_db_close(hdb);
  tmpdb_remove(&t);
}

/* ---------------------------------------------------------- data at rest */

/* 1 if `needle` occurs in the file's bytes. */
static int file_contains(const char *path, const char *needle) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  size_t m = strlen(needle);
  for (size_t i = 0; i + m <= n; i++)
    if (!memcmp(buf + i, needle, m)) return 1;
  return 0;
}

static void test_delivered_key_leaves_no_copy(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  host_db *db = NULL;
  host_result r = {HOST_OK, ""};
  static const char key[] = "sk-QUEUEDkeyQUEUEDkeyQUEUEDkey0123";
  assert_int_equal(host_db_open(t.path, &db, &r), HOST_OK);
  assert_int_equal(host_store_generate(db, "0011223344556677", "hash", "a", "litellm/a", key, &r),
                   HOST_OK);
  assert_true(file_contains(t.path, key)); /* queued: it must be there */
  /* A second name for the journal SQLite is about to write: it keeps the
   * inode (and its bytes) after SQLite deletes the journal at commit. */
  char journal[128], spy[128];
  snprintf(journal, sizeof journal, "%s-journal", t.path);
  snprintf(spy, sizeof spy, "%s.spy", t.path);
  int fd = open(journal, O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true(fd >= 0);
  static const char zeros[4096];
  assert_int_equal(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
  close(fd);
  assert_int_equal(link(journal, spy), 0);
  host_outbox_item it;
  int found = 0;
  assert_int_equal(host_store_next(db, &it, &found, &r), HOST_OK);
  assert_int_equal(found, 1);
  assert_string_equal(it.value, key);
  assert_int_equal(host_store_landed(db, it.seq, &r), HOST_OK); /* delivered */
  host_outbox_item_free(&it);
  host_db_close(db);
  struct stat st;
  assert_int_equal(stat(journal, &st), -1); /* deleted at commit ... */
  assert_int_equal(stat(spy, &st), 0);
  assert_true(st.st_size > 0);              /* ... after SQLite wrote the page into it ... */
  assert_false(file_contains(spy, key));     /* ... and zeroed it first */
  assert_false(file_contains(spy, "QUEUEDkey"));
  assert_false(file_contains(t.path, key)); /* secure_delete: not in the file either */
  assert_false(file_contains(t.path, "QUEUEDkey"));
  tmpdb_remove(&t);
}

static void test_file_private(void **state) {
  (void)state;
  host_result r = {HOST_OK, ""};
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_mode = S_IFREG | 0600;
  st.st_uid = geteuid();
  assert_int_equal(host_file_private("database", "/x/db", &st, &r), HOST_OK);
  st.st_mode = S_IFREG | 0640;
  assert_int_equal(host_file_private("database", "/x/db", &st, &r), HOST_CONFIG);
  assert_non_null(strstr(r.msg, "chmod 600 /x/db"));
  assert_non_null(strstr(r.msg, "0640"));
  st.st_mode = S_IFREG | 0600;
  st.st_uid = geteuid() + 1;
  assert_int_equal(host_file_private("database journal", "/x/db-journal", &st, &r), HOST_CONFIG);
  assert_non_null(strstr(r.msg, "database journal /x/db-journal is owned by uid"));
  st.st_uid = geteuid();
  st.st_mode = S_IFIFO | 0600;
  assert_int_equal(host_file_private("database", "/x/db", &st, &r), HOST_CONFIG);
}

/* ------------------------------------------------------------ the lock */

typedef struct fake_clock {
  uint64_t now;
  unsigned sleeps;
  unsigned longest;
} fake_clock;

static uint64_t fake_now(void *ctx) { return ((fake_clock *)ctx)->now; }

static void fake_sleep(void *ctx, unsigned ms) {
  fake_clock *c = ctx;
  c->now += ms;
  c->sleeps++;
  if (ms > c->longest) c->longest = ms;
}

static void test_lock_bounded_wait(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  fake_clock fc = {1000, 0, 0};
  host_clock clock = {fake_now, fake_sleep, &fc};
  host_result r = {HOST_OK, ""};
  int held = -1, second = -1;
  assert_int_equal(host_lock_acquire(t.path, 0, &clock, &held, &r), HOST_OK);
  assert_true(held >= 0);
  assert_int_equal(fc.sleeps, 0);
  /* a second open file description conflicts like another process would */
  assert_int_equal(host_lock_acquire(t.path, 2000, &clock, &second, &r), HOST_FAILED);
  assert_int_equal(second, -1);
  assert_int_equal(fc.now, 3000); /* waited exactly the timeout, in short polls */
  assert_true(fc.sleeps >= 2000 / 50 && fc.longest <= 50);
  char who[64];
  snprintf(who, sizeof who, "held by process %ld", (long)getpid());
  assert_non_null(strstr(r.msg, who));
  assert_non_null(strstr(r.msg, ".lock"));
  /* timeout 0: one try, no sleeping */
  fc.sleeps = 0;
  assert_int_equal(host_lock_acquire(t.path, 0, &clock, &second, &r), HOST_FAILED);
  assert_int_equal(fc.sleeps, 0);
  host_lock_release(held);
  assert_int_equal(host_lock_acquire(t.path, 0, &clock, &second, &r), HOST_OK);
  host_lock_release(second);
  tmpdb_remove(&t);
}

/* ------------------------------------------------------------------ io */

static void test_terminal_text(void **state) {
  (void)state;
  static const struct {
    const char *in;
    int unsafe;
    const char *out;
  } v[] = {
    {"plain sk-abc", 0, "plain sk-abc"},
    {"multi\nline\ttab", 0, "multi\nline\ttab"},
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", 0, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"},
    {"a\x1b[31mb", 1, "a\\x1b[31mb"},
    {"cr\rhide", 1, "cr\\x0dhide"},
    {"del\x7f", 1, "del\\x7f"},
    {"c1 \xc2\x9b", 1, "c1 \\xc2\\x9b"},          /* U+009B, 8-bit CSI */
    {"raw \x9b", 1, "raw \\x9b"},                 /* not UTF-8 */
    {"bad \xc3", 1, "bad \\xc3"},                 /* truncated sequence */
    {"overlong \xc0\xaf", 1, "overlong \\xc0\\xaf"},
    {"surrogate \xed\xa0\x80", 1, "surrogate \\xed\\xa0\\x80"},
    {"back\\slash", 0, "back\\\\slash"},
  };
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
    size_t n = strlen(v[i].in);
    assert_int_equal(host_text_unsafe_for_terminal(v[i].in, n), v[i].unsafe);
    char *e = host_text_escape(v[i].in, n);
    assert_string_equal(e, v[i].out);
    assert_false(host_text_unsafe_for_terminal(e, strlen(e)));
    free(e);
  }
  assert_true(host_text_unsafe_for_terminal("nul\0x", 5));
}

static void test_read_all(void **state) {
  (void)state;
  host_result r = {HOST_OK, ""};
  char *buf = NULL;
  size_t len = 0;
  for (size_t size = 0; size <= 10000; size += 2500) {
    FILE *f = tmpfile();
    assert_non_null(f);
    for (size_t i = 0; i < size; i++) fputc('a' + (int)(i % 26), f);
    rewind(f);
    host_status s = host_read_all(f, 7500, "stdin", &buf, &len, &r);
    fclose(f);
    if (size > 7500) {
      assert_int_equal(s, HOST_FAILED);
      assert_non_null(strstr(r.msg, "stdin is longer than 7500 bytes"));
      continue;
    }
    assert_int_equal(s, HOST_OK);
    assert_int_equal(len, size);
    for (size_t i = 0; i < size; i++) assert_int_equal(buf[i], 'a' + (int)(i % 26));
    buf[len] = '\0'; /* the spare byte */
    free(buf);
  }
  assert_int_equal(host_strip_newline("ab\r\n", 4), 2);
  assert_int_equal(host_strip_newline("ab\n\n", 4), 3);
  assert_int_equal(host_strip_newline("ab\r", 3), 3);
  assert_int_equal(host_strip_newline("", 0), 0);
}

/* The connection pool on SQLite: threads share 3 connections to one file. */
static void test_pool_sqlite(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  pool_check(t.path);
  tmpdb_remove(&t);
}

/* ------------------------------------------------------------------ teams */

static void one_location(void *ctx, const char *location) {
  char *seen = ctx;
  strcat(seen, "[");
  strcat(seen, location);
  strcat(seen, "]");
}

/* A schema-1 file (as kms-host 1 wrote it, with a key and a queued write)
 * opened by this binary: migrated to HOST_SCHEMA_VERSION, the key and the
 * queued write at the default location (""), no team. */
static void test_migration_v1_to_teams(void **state) {
  (void)state;
  tmpdb t = {"", ""};
  tmpdb_make(&t);
  sqlite3 *raw = NULL;
  host_result r = {HOST_OK, ""};
  assert_int_equal(sqlite3_open(t.path, &raw), SQLITE_OK);
  assert_int_equal(host_db_exec(raw,
      "CREATE TABLE virtual_keys(key_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,"
      " alias TEXT UNIQUE, secret_name TEXT,"
      " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),"
      " updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"
      "CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
      " op TEXT NOT NULL CHECK(op IN ('write','delete')), secret_name TEXT NOT NULL,"
      " value BLOB, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
      " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"
      "INSERT INTO virtual_keys(key_id, token_hash, alias, secret_name)"
      " VALUES('00112233aabbccdd', 'h1', 'old', 'p/old');"
      "INSERT INTO outbox(op, secret_name, value) VALUES('write', 'p/old', 'v');"
      "PRAGMA user_version=1;", &r), HOST_OK);
  sqlite3_close(raw);
  assert_int_equal(chmod(t.path, 0600), 0); /* as kms-host creates it */
  host_db *db = NULL;
  assert_int_equal(host_db_open(t.path, &db, &r), HOST_OK);
  assert_int_equal(host_db_schema_version(host_db_sqlite(db)), HOST_SCHEMA_VERSION);
  host_key_row row;
  assert_int_equal(host_store_find(db, "old", NULL, &row, &r), HOST_OK);
  assert_string_equal(row.location, "");
  assert_null(row.team_id);
  host_key_row_free(&row);
  host_outbox_item it;
  int found = 0;
  assert_int_equal(host_store_next(db, &it, &found, &r), HOST_OK);
  assert_int_equal(found, 1);
  assert_string_equal(it.location, "");
  assert_string_equal(it.name, "p/old");
  host_outbox_item_free(&it);
  char seen[256] = "";
  assert_int_equal(host_store_locations(db, one_location, seen, &r), HOST_OK);
  assert_string_equal(seen, "[]");
  /* a team key adds its location; a queued write there is a separate row */
  assert_int_equal(host_store_team_put(db, "acme", NULL, "namespace=a", 1, &r), HOST_OK);
  assert_int_equal(host_store_team_put(db, "acme", NULL, "", 1, &r), HOST_FAILED);
  assert_non_null(strstr(r.msg, "already exists"));
  assert_int_equal(host_store_generate_at(db, "ffeeddccbbaa0011", "h2", NULL, "acme",
                                          "namespace=a", "p/old", "sk-x", &r), HOST_OK);
  assert_int_equal(count(host_db_sqlite(db), "SELECT count(*) FROM outbox"), 2);
  seen[0] = '\0';
  assert_int_equal(host_store_locations(db, one_location, seen, &r), HOST_OK);
  assert_string_equal(seen, "[][namespace=a]");
  assert_int_equal(host_store_team_remove(db, "acme", &r), HOST_FAILED);
  assert_non_null(strstr(r.msg, "still has 1 virtual key"));
  host_db_close(db);
  tmpdb_remove(&t);
}

static void test_location_text(void **state) {
  (void)state;
  host_result r = {HOST_OK, ""};
  char *text = NULL;
  kms_setting in[] = {{"path_prefix", "gw"}, {"namespace", "team-a/sub"}, {"mount", ""}};
  assert_int_equal(host_location_from_pairs(in, 3, "settings", &text, &r), HOST_OK);
  assert_string_equal(text, "namespace=team-a/sub;path_prefix=gw"); /* fixed order */
  char buf[HOST_LOCATION_TEXT_MAX];
  kms_setting set[HOST_LOCATION_NKEYS];
  size_t n = 0;
  assert_int_equal(host_location_settings(text, buf, set, &n, &r), HOST_OK);
  assert_int_equal(n, 2);
  assert_string_equal(set[0].key, "namespace");
  assert_string_equal(set[0].value, "team-a/sub");
  assert_string_equal(set[1].key, "path_prefix");
  assert_string_equal(set[1].value, "gw");
  free(text);
  kms_setting unknown[] = {{"region", "eu"}};
  assert_int_equal(host_location_from_pairs(unknown, 1, "settings", &text, &r), HOST_USAGE);
  assert_non_null(strstr(r.msg, "unknown key 'region'"));
  kms_setting twice[] = {{"mount", "a"}, {"mount", "b"}};
  assert_int_equal(host_location_from_pairs(twice, 2, "settings", &text, &r), HOST_USAGE);
  kms_setting bad[] = {{"namespace", "a/../b"}};
  assert_int_equal(host_location_from_pairs(bad, 1, "settings", &text, &r), HOST_USAGE);
  assert_non_null(strstr(r.msg, "namespace 'a/../b' is not valid"));
  assert_int_equal(host_location_settings("evil=x", buf, set, &n, &r), HOST_FAILED);
  assert_int_equal(host_location_settings("", buf, set, &n, &r), HOST_OK);
  assert_int_equal(n, 0);
  assert_true(host_team_id_valid("team_1.a-b"));
  assert_false(host_team_id_valid("-x"));
  assert_false(host_team_id_valid("a/b"));
  assert_false(host_team_id_valid(""));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pool_sqlite),
    cmocka_unit_test(test_config_full),  cmocka_unit_test(test_config_defaults),
    cmocka_unit_test(test_config_errors), cmocka_unit_test(test_bool),
    cmocka_unit_test(test_env_ref),      cmocka_unit_test(test_routing),
    cmocka_unit_test(test_prefix),       cmocka_unit_test(test_redact),
    cmocka_unit_test(test_alias),        cmocka_unit_test(test_base64url),
    cmocka_unit_test(test_keys),         cmocka_unit_test(test_outbox_queue),
    cmocka_unit_test(test_orphan_delete_checks_owner),
    cmocka_unit_test(test_migrations),   cmocka_unit_test(test_delivered_key_leaves_no_copy),
    cmocka_unit_test(test_file_private), cmocka_unit_test(test_lock_bounded_wait),
    cmocka_unit_test(test_terminal_text), cmocka_unit_test(test_read_all),
    cmocka_unit_test(test_migration_v1_to_teams), cmocka_unit_test(test_location_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
