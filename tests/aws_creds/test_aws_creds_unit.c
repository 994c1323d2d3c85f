/*
 * test_aws_creds_unit.c -- unit tests of the aws_secret_manager plugin's
 * configuration (environment, settings, shared files), the shared-file
 * parser, the credential chain's order, the STS/ECS/IMDS answer parsers and
 * the refresh timing on an injected clock (no sleeping). The transport here
 * is a scripted aws_creds_http_fn (the injected interface, not libcurl);
 * test_aws_creds_server.c runs the same code against a real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "creds.h"
#include "ini.h"
#include "kpc_common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fixtures: environment, files, clock ---------------------------------- */

typedef struct fake_env {
  const char *kv[64]; /* name, value, ... NULL */
  char log[4096];
} fake_env;

static char g_dir[64];

static const char *fake_getenv(void *ctx, const char *name) {
  fake_env *e = ctx;
  for (size_t i = 0; e->kv[i]; i += 2)
    if (strcmp(e->kv[i], name) == 0) return e->kv[i + 1];
  return NULL;
}

static void fake_log(void *ctx, kms_log_level lvl, const char *msg) {
  fake_env *e = ctx;
  (void)lvl;
  strncat(e->log, msg, sizeof e->log - strlen(e->log) - 2);
  strcat(e->log, "\n");
}

static char *path_in(const char *name) {
  static char buf[8][160];
  static int i;
  char *b = buf[i++ % 8];
  snprintf(b, 160, "%s/%s", g_dir, name);
  return b;
}

static void write_file(const char *name, const char *text, mode_t mode) {
  const char *p = path_in(name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(p, mode), 0);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/aws_creds_unit.XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

/* Load with env (the shared files pointed into the temp dir unless the test
 * names them) and settings (key, value, ..., NULL). */
static kms_status load(aws_config *cfg, fake_env *e, const char *const *settings, kms_error *err) {
  size_t n = 0;
  while (e->kv[n]) n += 2;
  int has_cred = 0, has_conf = 0;
  for (size_t i = 0; i < n; i += 2) {
    has_cred |= strcmp(e->kv[i], "AWS_SHARED_CREDENTIALS_FILE") == 0;
    has_conf |= strcmp(e->kv[i], "AWS_CONFIG_FILE") == 0;
  }
  if (!has_cred) e->kv[n++] = "AWS_SHARED_CREDENTIALS_FILE", e->kv[n++] = path_in("credentials");
  if (!has_conf) e->kv[n++] = "AWS_CONFIG_FILE", e->kv[n++] = path_in("config");
  e->kv[n++] = "HOME", e->kv[n++] = g_dir;
  e->kv[n] = NULL;
  kms_host host = {sizeof host, 1, 1, e, fake_log, fake_getenv, NULL};
  kms_setting s[32];
  size_t ns = 0;
  for (size_t i = 0; settings && settings[i]; i += 2, ns++) {
    s[ns].key = settings[i];
    s[ns].value = settings[i + 1];
  }
  memset(err, 0, sizeof *err);
  return aws_config_load(cfg, &host, s, ns, err);
}

#define ENV(...) {.kv = {__VA_ARGS__, NULL}}
#define SET(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef struct fake_clock {
  int64_t now;
} fake_clock;
static int64_t fake_now(void *ctx) { return ((fake_clock *)ctx)->now; }

/* ---- INI ---------------------------------------------------------------------- */

typedef struct collected {
  char text[2048];
} collected;

static int collect(void *ctx, const char *section, const char *key, const char *value) {
  collected *c = ctx;
  size_t n = strlen(c->text);
  snprintf(c->text + n, sizeof c->text - n, "[%s]%s=%s|", section, key, value);
  return 0;
}

static void test_ini_format(void **state) {
  (void)state;
  const char *t = "# comment\n; also\n[default]\nAWS_Access_Key_ID = AKIA1\n"
                  "region: eu-west-1  \r\n\n[profile  dev]\ns3 =\n  max_concurrent = 10\n"
                  "  addressing = path\nnote = first\n  second line\nkey=a=b\n";
  collected c = {""};
  size_t bad = 99;
  assert_int_equal(aws_ini_parse(t, strlen(t), collect, &c, &bad), 0);
  assert_string_equal(c.text, "[default]aws_access_key_id=AKIA1|[default]region=eu-west-1|"
                              "[profile  dev]s3=|[profile  dev]s3.max_concurrent=10|"
                              "[profile  dev]s3.addressing=path|[profile  dev]note=first\n"
                              "second line|[profile  dev]key=a=b|");
}

static void test_ini_malformed(void **state) {
  (void)state;
  static const struct {
    const char *text;
    size_t line;
  } BAD[] = {
      {"key = before section\n", 1},
      {"[ok]\nno separator here\n", 2},
      {"[ok]\n[unterminated\n", 2},
      {"[ok]\n[]\n", 2},
      {"[ok]\n = empty key\n", 2},
      {"[ok]\na = 1\nb = 2\0hidden\n", 3},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
    collected c = {""};
    size_t bad = 0, len = strlen(BAD[i].text);
    if (i == 5) len = 24;
    assert_int_equal(aws_ini_parse(BAD[i].text, len, collect, &c, &bad), -1);
    assert_int_equal(bad, BAD[i].line);
  }
}

static int stop_at_second(void *ctx, const char *s, const char *k, const char *v) {
  (void)s, (void)k, (void)v;
  return ++*(int *)ctx == 2;
}

static void test_ini_stop(void **state) {
  (void)state;
  const char *t = "[a]\nx=1\ny=2\nz=3\n";
  int n = 0;
  assert_int_equal(aws_ini_parse(t, strlen(t), stop_at_second, &n, NULL), 1);
  assert_int_equal(n, 2);
}

static void test_profile_sections(void **state) {
  (void)state;
  write_file("c1", "[dev]\naws_access_key_id = AKIAFROMCREDENTIALS\n[profile dev]\nregion = x\n",
             0600);
  write_file("k1", "[dev]\nregion = wrong\n[profile dev]\nregion = eu-north-1\n"
                   "[default]\nregion = us-west-2\n", 0600);
  aws_profile p = {0};
  kms_error err = {0};
  assert_int_equal(aws_profile_read(path_in("c1"), "AWS_SHARED_CREDENTIALS_FILE", 0, "dev", &p, &err), KMS_OK);
  assert_true(p.found);
  assert_string_equal(p.aws_access_key_id, "AKIAFROMCREDENTIALS");
  assert_null(p.region); /* [profile dev] is not the credentials file's section */
  aws_profile_clear(&p);
  assert_int_equal(aws_profile_read(path_in("k1"), "AWS_CONFIG_FILE", 1, "dev", &p, &err), KMS_OK);
  assert_string_equal(p.region, "eu-north-1");
  aws_profile_clear(&p);
  assert_int_equal(aws_profile_read(path_in("k1"), "AWS_CONFIG_FILE", 1, "default", &p, &err), KMS_OK);
  assert_string_equal(p.region, "us-west-2");
  aws_profile_clear(&p);
  assert_int_equal(aws_profile_read(path_in("nope"), "AWS_CONFIG_FILE", 1, "dev", &p, &err), KMS_OK);
  assert_false(p.found);
}

static void test_profile_untrusted_file(void **state) {
  (void)state;
  write_file("gw", "[default]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\n", 0620);
  aws_profile p = {0};
  kms_error err = {0};
  assert_int_equal(aws_profile_read(path_in("gw"), "AWS_SHARED_CREDENTIALS_FILE", 0, "default",
                                    &p, &err), KMS_PERMISSION_DENIED);
  assert_non_null(strstr(err.message, "writable by group or others"));
  assert_non_null(strstr(err.message, "chmod go-w"));
  assert_null(strstr(err.message, "AKIA"));
  write_file("bad", "[default]\nthis line is wrong\n", 0600);
  assert_int_equal(aws_profile_read(path_in("bad"), "AWS_CONFIG_FILE", 1, "default", &p, &err),
                   KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "line 2"));
  aws_profile_clear(&p);
}

/* ---- configuration ---------------------------------------------------------------- */

static void test_config_defaults_and_region_order(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  write_file("config", "[default]\nregion = ap-south-1\n", 0600);
  fake_env e0 = ENV("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY", "s");
  assert_int_equal(load(&c, &e0, NULL, &err), KMS_OK);
  assert_string_equal(c.region, "ap-south-1");
  assert_string_equal(c.region_source, "the profile's region");
  assert_string_equal(c.endpoint, "https://secretsmanager.ap-south-1.amazonaws.com");
  assert_string_equal(c.sts_endpoint, "https://sts.ap-south-1.amazonaws.com");
  assert_false(c.endpoint_overridden);
  assert_int_equal(c.recovery_window_days, 7);
  assert_int_equal(c.force_delete, 0);
  assert_int_equal(c.access_mode, AWS_ACCESS_READ_ONLY);
  assert_int_equal(c.max_retries, AWS_DEFAULT_MAX_RETRIES);
  assert_string_equal(c.imds_endpoint, "http://169.254.169.254");
  assert_string_equal(c.profile, "default");
  aws_config_free(&c);

  fake_env e1 = ENV("AWS_REGION_NAME", "eu-west-3", "AWS_DEFAULT_REGION", "eu-west-2");
  assert_int_equal(load(&c, &e1, NULL, &err), KMS_OK);
  assert_string_equal(c.region, "eu-west-2");
  aws_config_free(&c);
  fake_env e2 = ENV("AWS_REGION_NAME", "eu-west-3", "AWS_REGION", "eu-west-1");
  assert_int_equal(load(&c, &e2, SET("aws_region_name", "cn-north-1"), &err), KMS_OK);
  assert_string_equal(c.region, "cn-north-1"); /* the setting wins */
  assert_string_equal(c.endpoint, "https://secretsmanager.cn-north-1.amazonaws.com.cn");
  aws_config_free(&c);
  fake_env e3 = ENV("AWS_REGION_NAME", "eu-west-3");
  assert_int_equal(load(&c, &e3, NULL, &err), KMS_OK);
  assert_string_equal(c.region, "eu-west-3");
  assert_string_equal(c.region_source, "AWS_REGION_NAME");
  aws_config_free(&c);
}

static void test_config_region_errors(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  fake_env e0 = ENV("X", "y");
  assert_int_equal(load(&c, &e0, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "no AWS region: set AWS_REGION"));
  fake_env e1 = ENV("AWS_REGION", "EU_West");
  assert_int_equal(load(&c, &e1, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "AWS_REGION must be an AWS region"));
  assert_true(aws_region_valid("us-gov-west-1"));
  assert_false(aws_region_valid("us-east-1-"));
  assert_false(aws_region_valid("1us"));
}

static void test_config_endpoints(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  fake_env e0 = ENV("AWS_REGION", "us-east-1", "AWS_ENDPOINT_URL", "http://127.0.0.1:4566/",
                    "AWS_ENDPOINT_URL_STS", "https://sts.local:8443");
  assert_int_equal(load(&c, &e0, NULL, &err), KMS_OK);
  assert_string_equal(c.endpoint, "http://127.0.0.1:4566");
  assert_true(c.endpoint_overridden);
  assert_string_equal(c.sts_endpoint, "https://sts.local:8443");
  aws_config_free(&c);
  fake_env e1 = ENV("AWS_REGION", "us-east-1", "AWS_ENDPOINT_URL", "http://a:1",
                    "AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://b:2");
  assert_int_equal(load(&c, &e1, SET("aws_sts_endpoint", "http://c:3"), &err), KMS_OK);
  assert_string_equal(c.endpoint, "http://b:2");
  assert_string_equal(c.sts_endpoint, "http://c:3");
  aws_config_free(&c);
  static const char *const BAD[] = {"ftp://x", "http://u:p@x", "http://x/path", "http://x?q=1",
                                    "not a url"};
  for (size_t i = 0; i < 5; i++) {
    fake_env e = ENV("AWS_REGION", "us-east-1", "AWS_ENDPOINT_URL_SECRETS_MANAGER", BAD[i]);
    assert_int_equal(load(&c, &e, NULL, &err), KMS_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "AWS_ENDPOINT_URL_SECRETS_MANAGER"));
    assert_null(strstr(err.message, "u:p"));
  }
}

static void test_config_settings(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  fake_env e = ENV("AWS_REGION", "us-east-1", "AWS_MAX_ATTEMPTS", "5");
  assert_int_equal(load(&c, &e, SET("access_mode", "read_and_write", "primary_secret_name",
                                    "litellm/keys", "recovery_window_in_days", "30",
                                    "force_delete_without_recovery", "true", "description",
                                    "litellm virtual key \xc3\xa9", "tags",
                                    "{\"Environment\": \"Prod\", \"Owner\": \"AI team\"}",
                                    "version_stage", "AWSPREVIOUS", "refresh_interval", "5m",
                                    "neg_ttl", "2s", "stale_if_error", "1h", "timeout", "20s",
                                    "connect_timeout", "30s", "store_virtual_keys", "true",
                                    "some_other_backend_key", "x"),
                        &err), KMS_OK);
  assert_int_equal(c.access_mode, AWS_ACCESS_READ_AND_WRITE);
  assert_string_equal(c.primary_secret_name, "litellm/keys");
  assert_int_equal(c.recovery_window_days, 30);
  assert_true(c.force_delete);
  assert_string_equal(c.description, "litellm virtual key \xc3\xa9");
  assert_int_equal(c.n_tags, 2);
  assert_string_equal(c.tags[0].key, "Environment");
  assert_string_equal(c.tags[0].value, "Prod");
  assert_string_equal(c.tags[1].value, "AI team");
  assert_string_equal(c.version_stage, "AWSPREVIOUS");
  assert_int_equal(c.refresh_interval_s, 300);
  assert_int_equal(c.neg_ttl_ms, 2000);
  assert_int_equal(c.stale_if_error_s, 3600);
  assert_int_equal(c.timeout_ms, 20000);
  assert_int_equal(c.connect_timeout_ms, 20000); /* capped at the call timeout */
  assert_int_equal(c.max_retries, 4);            /* AWS_MAX_ATTEMPTS counts the first try */
  assert_non_null(strstr(e.log, "ignoring unknown setting 'some_other_backend_key'"));
  assert_null(strstr(e.log, "store_virtual_keys"));
  aws_config_free(&c);
  fake_env e2 = ENV("AWS_REGION", "us-east-1");
  assert_int_equal(load(&c, &e2, SET("tags", "[{\"Key\": \"k\", \"Value\": \"v\"}]", "max_retries", "0"), &err), KMS_OK);
  assert_int_equal(c.n_tags, 1);
  assert_int_equal(c.max_retries, 0);
  aws_config_free(&c);
}

static void test_config_bad_settings(void **state) {
  (void)state;
  static const struct {
    const char *key, *value, *expect;
    kms_status st;
  } BAD[] = {
      {"recovery_window_in_days", "6", "between 7 and 30", KMS_INVALID_ARGUMENT},
      {"recovery_window_in_days", "31", "setting 'recovery_window_in_days'", KMS_INVALID_ARGUMENT},
      {"force_delete_without_recovery", "maybe", "true or false", KMS_INVALID_ARGUMENT},
      {"access_mode", "all", "read_only, write_only or read_and_write", KMS_INVALID_ARGUMENT},
      {"primary_secret_name", "bad name!", "1-512 characters", KMS_INVALID_ARGUMENT},
      {"tags", "{\"aws:x\": \"1\"}", "not starting with 'aws:'", KMS_INVALID_ARGUMENT},
      {"tags", "Environment=Prod", "mapping of tag keys", KMS_INVALID_ARGUMENT},
      {"description", "\xff\xfe", "valid UTF-8", KMS_INVALID_ARGUMENT},
      {"timeout", "0", "positive number of seconds", KMS_INVALID_ARGUMENT},
      {"neg_ttl", "5 parsecs", "setting 'neg_ttl'", KMS_INVALID_ARGUMENT},
      {"aws_session_name", "x", "2-64 characters", KMS_INVALID_ARGUMENT},
      {"aws_role_name", "role", "role ARN", KMS_INVALID_ARGUMENT},
      {"aws_external_id", "abc", "does not implement", KMS_UNSUPPORTED},
      {"aws_sts_endpoint", "sts.example.com", "aws_sts_endpoint", KMS_INVALID_ARGUMENT},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
    aws_config c;
    kms_error err;
    fake_env e = ENV("AWS_REGION", "us-east-1");
    assert_int_equal(load(&c, &e, SET(BAD[i].key, BAD[i].value), &err), BAD[i].st);
    if (!strstr(err.message, BAD[i].expect)) fail_msg("%s: %s", BAD[i].key, err.message);
  }
}

static void test_config_credentials_env(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  fake_env e0 = ENV("AWS_REGION", "us-east-1", "AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
  assert_int_equal(load(&c, &e0, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY"));
  assert_null(strstr(err.message, "AKIAIOSFODNN7EXAMPLE"));
  fake_env e1 = ENV("AWS_REGION", "us-east-1", "AWS_WEB_IDENTITY_TOKEN_FILE", "/t");
  assert_int_equal(load(&c, &e1, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "AWS_ROLE_ARN"));
  fake_env e2 = ENV("AWS_REGION", "us-east-1", "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r");
  assert_int_equal(load(&c, &e2, NULL, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "AssumeRole"));
  fake_env e3 = ENV("AWS_REGION", "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://10.0.0.1/creds");
  assert_int_equal(load(&c, &e3, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "loopback"));
  fake_env e4 = ENV("AWS_REGION", "us-east-1", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/abc", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://127.0.0.1:9/x", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok",
                    "AWS_EC2_METADATA_DISABLED", "TRUE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    "http://127.0.0.1:1234/");
  assert_int_equal(load(&c, &e4, NULL, &err), KMS_OK);
  assert_string_equal(c.container_full_uri, "http://169.254.170.2/v2/credentials/abc");
  assert_string_equal(c.container_auth_token, "tok");
  assert_true(c.imds_disabled);
  assert_string_equal(c.imds_endpoint, "http://127.0.0.1:1234");
  aws_config_free(&c);
}

static void test_config_profiles(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  write_file("credentials", "[dev]\naws_access_key_id = AKIADEVDEVDEVDEVDEV1\n"
                            "aws_secret_access_key = devsecret\n", 0600);
  write_file("config", "[profile dev]\nregion = eu-central-1\naws_access_key_id = AKIACONFIGCONFIG0001\n"
                       "aws_secret_access_key = cs\n[profile sso]\nsso_start_url = https://x\n"
                       "[profile wi]\nrole_arn = arn:aws:iam::123456789012:role/wi\n"
                       "web_identity_token_file = /var/run/token\n", 0600);
  fake_env e0 = ENV("AWS_PROFILE", "dev");
  assert_int_equal(load(&c, &e0, NULL, &err), KMS_OK);
  assert_string_equal(c.region, "eu-central-1");
  assert_string_equal(c.profile_access_key_id, "AKIADEVDEVDEVDEVDEV1"); /* credentials file wins */
  assert_string_equal(c.profile_secret_access_key, "devsecret");
  assert_string_equal(c.profile_keys_file, "credentials");
  aws_config_free(&c);
  fake_env e1 = ENV("AWS_PROFILE", "dev");
  assert_int_equal(load(&c, &e1, SET("aws_profile_name", "missing"), &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "aws_profile_name names profile 'missing'"));
  fake_env e2 = ENV("AWS_PROFILE", "wi");
  assert_int_equal(load(&c, &e2, SET("aws_region_name", "us-east-1"), &err), KMS_OK);
  assert_string_equal(c.role_arn, "arn:aws:iam::123456789012:role/wi");
  assert_string_equal(c.web_identity_token_file, "/var/run/token");
  assert_string_equal(c.web_identity_source, "profile");
  aws_config_free(&c);
  fake_env e2b = ENV("AWS_DEFAULT_PROFILE", "nosuch", "AWS_REGION", "us-east-1");
  assert_int_equal(load(&c, &e2b, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "AWS_DEFAULT_PROFILE names profile 'nosuch'"));
  fake_env e3 = ENV("AWS_PROFILE", "sso", "AWS_REGION", "us-east-1");
  assert_int_equal(load(&c, &e3, NULL, &err), KMS_OK);
  assert_string_equal(c.profile_unsupported, "sso_start_url");
  aws_creds_provider *p = NULL;
  assert_int_equal(aws_creds_new(&c, NULL, NULL, NULL, &p, &err), KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "sso_start_url"));
  aws_config_free(&c);
  write_file("credentials", "[default]\naws_access_key_id = AKIADEVDEVDEVDEVDEV1\n", 0666);
  fake_env e4 = ENV("AWS_REGION", "us-east-1");
  assert_int_equal(load(&c, &e4, NULL, &err), KMS_PERMISSION_DENIED);
  assert_non_null(strstr(err.message, "AWS_SHARED_CREDENTIALS_FILE"));
}

/* "~" in the file variables and the defaults under HOME. */
static void test_config_home(void **state) {
  (void)state;
  aws_config c;
  kms_error err;
  char aws_dir[160];
  snprintf(aws_dir, sizeof aws_dir, "%s/.aws", g_dir);
  assert_int_equal(mkdir(aws_dir, 0700), 0);
  write_file(".aws/credentials", "[default]\naws_access_key_id = AKIAHOMEHOMEHOMEHOM1\n"
                                 "aws_secret_access_key = hs\n", 0600);
  write_file("mycfg", "[default]\nregion = sa-east-1\n", 0600);
  /* the load() helper points both variables at the temp dir unless named: name
   * them as "~" paths and defaults */
  fake_env e = ENV("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", "AWS_CONFIG_FILE", "~/mycfg");
  assert_int_equal(load(&c, &e, NULL, &err), KMS_OK);
  char want[200];
  snprintf(want, sizeof want, "%s/.aws/credentials", g_dir);
  assert_string_equal(c.credentials_file, want);
  assert_string_equal(c.profile_access_key_id, "AKIAHOMEHOMEHOMEHOM1");
  assert_string_equal(c.region, "sa-east-1");
  aws_config_free(&c);
}

/* ---- parsers --------------------------------------------------------------------------- */

static char *iso_in(int64_t secs, char *buf) {
  time_t t = time(NULL) + (time_t)secs;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

static void test_parse_sts_xml(void **state) {
  (void)state;
  char exp[32], xml[1024];
  snprintf(xml, sizeof xml,
           "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
           "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAEXAMPLEEXAMPLE01"
           "</AccessKeyId><SecretAccessKey>se&amp;cret/+=</SecretAccessKey><SessionToken>"
           "tok&#x2B;en&#61;</SessionToken><Expiration>%s</Expiration></Credentials>"
           "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>", iso_in(3600, exp));
  aws_credentials c = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_parse_sts_xml(xml, strlen(xml), (int64_t)time(NULL), 1000, &c, &err), KMS_OK);
  assert_string_equal(c.access_key_id, "ASIAEXAMPLEEXAMPLE01");
  assert_string_equal(c.secret_access_key, "se&cret/+=");
  assert_string_equal(c.session_token, "tok+en=");
  assert_true(c.expires_ms >= 1000 + 3599000 && c.expires_ms <= 1000 + 3601000);
  aws_credentials_clear(&c);
  const char *nocreds = "<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error></ErrorResponse>";
  assert_int_equal(aws_creds_parse_sts_xml(nocreds, strlen(nocreds), 0, 0, &c, &err), KMS_INTERNAL);
  assert_non_null(strstr(err.message, "Credentials"));
  const char *past = "<Credentials><AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>s"
                     "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2001-01-01T00:00:00Z"
                     "</Expiration></Credentials>";
  assert_int_equal(aws_creds_parse_sts_xml(past, strlen(past), (int64_t)time(NULL), 0, &c, &err),
                   KMS_UNAUTHENTICATED);
  assert_null(c.access_key_id);
}

static void test_parse_json(void **state) {
  (void)state;
  char exp[32], js[512];
  snprintf(js, sizeof js, "{\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", \"AccessKeyId\": "
           "\"ASIAIMDSIMDSIMDS0001\", \"SecretAccessKey\": \"k\", \"Token\": \"t\", "
           "\"Expiration\": \"%s\"}", iso_in(900, exp));
  aws_credentials c = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_parse_json(js, strlen(js), (int64_t)time(NULL), 0, &c, &err), KMS_OK);
  assert_string_equal(c.session_token, "t");
  assert_true(c.expires_ms > 890000 && c.expires_ms <= 901000);
  aws_credentials_clear(&c);
  const char *fail = "{\"Code\": \"AssumeRoleUnauthorizedAccess\"}";
  assert_int_equal(aws_creds_parse_json(fail, strlen(fail), 0, 0, &c, &err), KMS_UNAUTHENTICATED);
  assert_non_null(strstr(err.message, "AssumeRoleUnauthorizedAccess"));
  const char *noexp = "{\"AccessKeyId\": \"ASIAIMDSIMDSIMDS0001\", \"SecretAccessKey\": \"k\", \"Token\": \"t\"}";
  assert_int_equal(aws_creds_parse_json(noexp, strlen(noexp), 0, 0, &c, &err), KMS_INTERNAL);
  assert_int_equal(aws_creds_parse_json("nope", 4, 0, 0, &c, &err), KMS_INTERNAL);
}

/* ---- the chain on a scripted transport --------------------------------------------------- */

typedef struct script {
  pthread_mutex_t mu;
  int calls;
  int fail;          /* answer HTTP 500 */
  int64_t ttl_s;     /* Expiration = now + ttl_s */
  int key_no;        /* AccessKeyId suffix, incremented per answer */
  long delay_ms;     /* real wait inside the call (single-flight test) */
  char last_url[256];
} script;

static kms_status scripted(void *ctx, const char *method, const char *url,
                           const char *const *headers, const char *body, size_t body_len,
                           int64_t deadline_ms, long *status, char **resp, size_t *resp_len,
                           kms_error *err) {
  script *s = ctx;
  (void)method, (void)headers, (void)body, (void)body_len, (void)deadline_ms, (void)err;
  if (s->delay_ms) {
    struct timespec ts = {0, s->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
  }
  pthread_mutex_lock(&s->mu);
  s->calls++;
  snprintf(s->last_url, sizeof s->last_url, "%s", url);
  char exp[32];
  *resp = malloc(512);
  if (s->fail) {
    *status = 500;
    snprintf(*resp, 512, "{\"message\": \"agent down\"}");
  } else {
    *status = 200;
    snprintf(*resp, 512, "{\"AccessKeyId\": \"ASIAECSECSECSECS%04d\", \"SecretAccessKey\": \"k\", "
             "\"Token\": \"t\", \"Expiration\": \"%s\"}", ++s->key_no, iso_in(s->ttl_s, exp));
  }
  *resp_len = strlen(*resp);
  pthread_mutex_unlock(&s->mu);
  return KMS_OK;
}

static void test_chain_order(void **state) {
  (void)state;
  write_file("credentials", "[default]\naws_access_key_id = AKIAPROFILEPROFILE01\n"
                            "aws_secret_access_key = ps\n", 0600);
  static const struct {
    const char *kv[12];
    const char *source;
  } CASES[] = {
      {{"AWS_ACCESS_KEY_ID", "AKIAENVENVENVENVENV1", "AWS_SECRET_ACCESS_KEY", "es",
        "AWS_WEB_IDENTITY_TOKEN_FILE", "/t", "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"},
       "env"},
      {{"AWS_WEB_IDENTITY_TOKEN_FILE", "/t", "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/x"},
       "web_identity"},
      {{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/x"}, "profile"},
  };
  for (size_t i = 0; i < 3; i++) {
    fake_env e;
    memset(&e, 0, sizeof e);
    size_t n = 0;
    e.kv[n++] = "AWS_REGION", e.kv[n++] = "us-east-1";
    for (size_t k = 0; CASES[i].kv[k]; k++) e.kv[n++] = CASES[i].kv[k];
    aws_config c;
    kms_error err;
    assert_int_equal(load(&c, &e, NULL, &err), KMS_OK);
    aws_creds_provider *p;
    script s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 3600, 0, 0, ""};
    assert_int_equal(aws_creds_new(&c, NULL, scripted, &s, &p, &err), KMS_OK);
    aws_creds_health h;
    aws_creds_health_get(p, &h);
    assert_string_equal(h.source, CASES[i].source);
    aws_creds_free(p);
    aws_config_free(&c);
  }
  /* no profile keys: the container, then IMDS, then nothing */
  unlink(path_in("credentials"));
  fake_env e1 = ENV("AWS_REGION", "us-east-1", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/x");
  aws_config c;
  kms_error err;
  aws_creds_provider *p;
  aws_creds_health h;
  assert_int_equal(load(&c, &e1, NULL, &err), KMS_OK);
  assert_int_equal(aws_creds_new(&c, NULL, scripted, NULL, &p, &err), KMS_OK);
  aws_creds_health_get(p, &h);
  assert_string_equal(h.source, "ecs");
  aws_creds_free(p);
  aws_config_free(&c);
  fake_env e2 = ENV("AWS_REGION", "us-east-1");
  assert_int_equal(load(&c, &e2, NULL, &err), KMS_OK);
  assert_int_equal(aws_creds_new(&c, NULL, scripted, NULL, &p, &err), KMS_OK);
  aws_creds_health_get(p, &h);
  assert_string_equal(h.source, "imds");
  aws_creds_free(p);
  aws_config_free(&c);
  fake_env e3 = ENV("AWS_REGION", "us-east-1", "AWS_EC2_METADATA_DISABLED", "true");
  assert_int_equal(load(&c, &e3, NULL, &err), KMS_OK);
  assert_int_equal(aws_creds_new(&c, NULL, scripted, NULL, &p, &err), KMS_UNAUTHENTICATED);
  assert_non_null(strstr(err.message, "no AWS credentials"));
  aws_config_free(&c);
}

static void test_static_credentials(void **state) {
  (void)state;
  fake_env e = ENV("AWS_REGION", "us-east-1", "AWS_ACCESS_KEY_ID", "AKIAENVENVENVENVENV1",
                   "AWS_SECRET_ACCESS_KEY", "es", "AWS_SESSION_TOKEN", "st");
  aws_config c;
  kms_error err;
  aws_creds_provider *p;
  assert_int_equal(load(&c, &e, NULL, &err), KMS_OK);
  assert_int_equal(aws_creds_new(&c, NULL, NULL, NULL, &p, &err), KMS_OK);
  aws_credentials k = {0};
  assert_int_equal(aws_creds_get(p, INT64_MAX, &k, &err), KMS_OK);
  assert_string_equal(k.access_key_id, "AKIAENVENVENVENVENV1");
  assert_string_equal(k.secret_access_key, "es");
  assert_string_equal(k.session_token, "st");
  assert_int_equal(k.expires_ms, 0);
  aws_credentials_clear(&k);
  assert_null(k.access_key_id);
  aws_creds_free(p);
  aws_config_free(&c);
}

/* An ECS provider on a fake clock answering credentials valid for ttl_s. */
static aws_creds_provider *ecs_provider(aws_config *c, fake_env *e, kpc_clock *clk, script *s) {
  kms_error err;
  assert_int_equal(load(c, e, NULL, &err), KMS_OK);
  aws_creds_provider *p;
  assert_int_equal(aws_creds_new(c, clk, scripted, s, &p, &err), KMS_OK);
  return p;
}

static void test_refresh_timing(void **state) {
  (void)state;
  fake_clock fc = {1000000};
  kpc_clock clk = {fake_now, &fc, NULL};
  script s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 3600, 0, 0, ""};
  fake_env e = ENV("AWS_REGION", "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                   "http://127.0.0.1:9/creds");
  aws_config c;
  aws_creds_provider *p = ecs_provider(&c, &e, &clk, &s);
  aws_credentials k = {0};
  kms_error err;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_int_equal(s.calls, 1);
  assert_string_equal(s.last_url, "http://127.0.0.1:9/creds");
  assert_string_equal(k.access_key_id, "ASIAECSECSECSECS0001");
  aws_creds_health h;
  aws_creds_health_get(p, &h);
  assert_true(h.temporary);
  assert_true(h.expires_in_s > 3590 && h.expires_in_s <= 3600);
  /* 54 minutes on: still fresh, no call */
  fc.now += 54 * 60 * 1000;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_int_equal(s.calls, 1);
  /* 4 minutes left: advisory refresh; a failure keeps the old ones */
  fc.now += 2 * 60 * 1000;
  s.fail = 1;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_int_equal(s.calls, 2);
  assert_string_equal(k.access_key_id, "ASIAECSECSECSECS0001");
  /* no new attempt within AWS_CREDS_RETRY_MS */
  fc.now += AWS_CREDS_RETRY_MS - 1;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_int_equal(s.calls, 2);
  fc.now += 1;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_int_equal(s.calls, 3);
  aws_creds_health_get(p, &h);
  assert_int_equal(h.last_status, KMS_UNAVAILABLE);
  /* inside the mandatory minute: a failure is an error naming the endpoint */
  fc.now += 3 * 60 * 1000 + 30000;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "container credentials endpoint answered HTTP 500: agent down"));
  assert_null(k.access_key_id);
  assert_int_equal(s.calls, 4);
  /* recovered: new credentials */
  s.fail = 0;
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_string_equal(k.access_key_id, "ASIAECSECSECSECS0002");
  assert_int_equal(s.calls, 5);
  /* invalidate (the service said ExpiredToken): the next get fetches */
  aws_creds_invalidate(p);
  assert_int_equal(aws_creds_get(p, fc.now + 5000, &k, &err), KMS_OK);
  assert_string_equal(k.access_key_id, "ASIAECSECSECSECS0003");
  assert_int_equal(s.calls, 6);
  aws_credentials_clear(&k);
  aws_creds_free(p);
  aws_config_free(&c);
}

typedef struct racer {
  aws_creds_provider *p;
  kms_status st;
  char key[32];
} racer;

static void *race(void *arg) {
  racer *r = arg;
  aws_credentials k = {0};
  kms_error err;
  r->st = aws_creds_get(r->p, INT64_MAX / 2, &k, &err);
  if (r->st == KMS_OK) snprintf(r->key, sizeof r->key, "%s", k.access_key_id);
  aws_credentials_clear(&k);
  return NULL;
}

static void test_single_flight(void **state) {
  (void)state;
  script s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 3600, 0, 200, ""};
  fake_env e = ENV("AWS_REGION", "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                   "http://127.0.0.1:9/creds");
  aws_config c;
  aws_creds_provider *p = ecs_provider(&c, &e, NULL, &s);
  pthread_t t[8];
  racer r[8];
  for (int i = 0; i < 8; i++) {
    r[i] = (racer){p, KMS_INTERNAL, ""};
    assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
  }
  for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  assert_int_equal(s.calls, 1);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(r[i].st, KMS_OK);
    assert_string_equal(r[i].key, "ASIAECSECSECSECS0001");
  }
  /* a failed refresh is reported to every waiter without one call each */
  aws_creds_invalidate(p);
  s.fail = 1;
  for (int i = 0; i < 8; i++) assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
  for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 8; i++) assert_int_equal(r[i].st, KMS_UNAVAILABLE);
  assert_true(s.calls <= 3); /* threads arriving after it ended may try once more */
  aws_creds_free(p);
  aws_config_free(&c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_ini_format),          T(test_ini_malformed),
      T(test_ini_stop),            T(test_profile_sections),
      T(test_profile_untrusted_file), T(test_config_defaults_and_region_order),
      T(test_config_region_errors), T(test_config_endpoints),
      T(test_config_settings),     T(test_config_bad_settings),
      T(test_config_credentials_env), T(test_config_profiles),
      T(test_config_home),
      T(test_parse_sts_xml),       T(test_parse_json),
      T(test_chain_order),         T(test_static_credentials),
      T(test_refresh_timing),      T(test_single_flight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
