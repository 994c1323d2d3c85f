/*
 * test_abi_backends.c -- the ABI probe: the three real backends (env.so,
 * hashicorp_vault.so, aws_secret_manager.so) loaded through libkmsloader in
 * one process at the same time, each table checked (name, ABI version,
 * struct size, capabilities against the slots it fills), and the same host
 * code -- one function taking only the backend's name -- doing a real
 * write / read / delete round trip against tests/vault_server and
 * tests/aws_server (both HTTPS on loopback, the AWS one verifying SigV4).
 * Each write is then looked up in the backend's own server, past the
 * plugin, so a value that only reached a cache would fail the test.
 *
 * This is the claim "swapped by config alone" made executable: the gateway's
 * code is backend_round_trip(); only the name (and the environment each
 * backend reads, as LiteLLM's does) differs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AWS_REGION "eu-west-3"
#define AWS_KEY_ID "AKIAKMSPLUGTEST00001"
#define AWS_SECRET_KEY "kmsplug/test/secret/access/key/0000000000"

static vf_server *g_vault, *g_aws;

/* What each backend must declare. */
typedef struct backend {
  const char *name;
  uint64_t caps; /* capabilities that must be set */
  int writable;  /* declares write and delete */
} backend;

static const backend BACKENDS[] = {
    {"env", KMS_CAP_READ, 0},
    {"hashicorp_vault", KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_THREAD_SAFE, 1},
    {"aws_secret_manager", KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_THREAD_SAFE,
     1},
};
#define N_BACKENDS (sizeof BACKENDS / sizeof BACKENDS[0])

static kms_module *g_mod[N_BACKENDS];

static kms_module *module(const char *name) {
  for (size_t i = 0; i < N_BACKENDS; i++)
    if (strcmp(BACKENDS[i].name, name) == 0) return g_mod[i];
  fail_msg("no backend %s", name);
  return NULL;
}

/* The environment each backend reads -- the operator's side of the swap. */
static void host_for(it_host *h, const char *name) {
  it_host_init(h);
  /* hermetic: nothing of the machine's own AWS setup */
  it_set(h, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
  it_set(h, "AWS_CONFIG_FILE", "/nonexistent/config");
  it_set(h, "AWS_EC2_METADATA_DISABLED", "true");
  if (strcmp(name, "hashicorp_vault") == 0) {
    it_target(h, g_vault, 1, 0);
  } else if (strcmp(name, "aws_secret_manager") == 0) {
    it_set(h, "AWS_REGION", AWS_REGION);
    it_set(h, "AWS_ENDPOINT_URL_SECRETS_MANAGER", vf_url(g_aws));
    it_set(h, "AWS_ACCESS_KEY_ID", AWS_KEY_ID);
    it_set(h, "AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY);
    it_set(h, "AWS_CA_BUNDLE", vf_cert("ca.pem"));
  } else {
    it_set(h, "OPENAI_API_KEY", "sk-from-the-environment");
  }
}

static void test_tables(void **state) {
  (void)state;
  for (size_t i = 0; i < N_BACKENDS; i++) {
    const backend *b = &BACKENDS[i];
    const kms_plugin *p = kms_module_plugin(g_mod[i]);
    assert_non_null(p);
    assert_string_equal(p->name, b->name);
    assert_int_equal(p->abi_major, KMS_ABI_MAJOR);
    assert_true(p->abi_minor <= KMS_ABI_MINOR);
    assert_true(p->struct_size >= offsetof(kms_plugin, free_secret) + sizeof p->free_secret);
    assert_true(p->version && p->version[0]);
    if ((p->capabilities & b->caps) != b->caps)
      fail_msg("%s: capabilities %#llx lack %#llx", b->name, (unsigned long long)p->capabilities,
               (unsigned long long)b->caps);
    assert_non_null(p->create);
    assert_non_null(p->destroy);
    assert_non_null(p->read_secret);
    assert_non_null(p->free_secret);
    /* a capability promises a slot; a read-only backend says so in its
     * capabilities (its slots may exist only to explain the refusal) */
    if (p->capabilities & KMS_CAP_WRITE) assert_non_null(p->write_secret);
    if (p->capabilities & KMS_CAP_DELETE) assert_non_null(p->delete_secret);
    assert_int_equal((p->capabilities & KMS_CAP_WRITE) != 0, b->writable);
    assert_int_equal((p->capabilities & KMS_CAP_DELETE) != 0, b->writable);
    /* the module path is <dir>/<name>.so */
    char want[128];
    snprintf(want, sizeof want, "/%s.so", b->name);
    const char *path = kms_module_path(g_mod[i]);
    assert_true(strlen(path) > strlen(want));
    assert_string_equal(path + strlen(path) - strlen(want), want);
  }
  /* the listing a host shows an operator names all three, loadable */
  kms_plugin_info *list = NULL;
  size_t n = 0;
  kms_error err;
  assert_int_equal(kms_plugin_list(getenv("KMS_PLUGIN_DIR"), &list, &n, &err), KMS_OK);
  size_t seen = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < N_BACKENDS; j++)
      if (strcmp(list[i].name, BACKENDS[j].name) == 0) {
        assert_int_equal(list[i].status, KMS_OK);
        assert_int_equal(list[i].abi_major, KMS_ABI_MAJOR);
        seen++;
      }
  kms_plugin_list_free(list);
  assert_int_equal(seen, N_BACKENDS);
}

/* The gateway's code: store a virtual key, read it back, delete it, see it
 * gone. Nothing here depends on the backend but its name. */
static void backend_round_trip(const char *name, const char *secret, const char *value) {
  it_host h;
  host_for(&h, name);
  static const kms_setting settings[] = {{"access_mode", "read_and_write"}};
  kms_client *c = NULL;
  kms_error err;
  if (kms_client_create(module(name), &h.host, settings, 1, &c, &err) != KMS_OK)
    fail_msg("%s: create: %s", name, err.message);
  assert_string_equal(kms_client_plugin(c)->name, name);
  if (kms_client_write(c, secret, value, strlen(value), NULL, &err) != KMS_OK)
    fail_msg("%s: write: %s", name, err.message);
  char got[128];
  if (it_read(c, secret, got, sizeof got, NULL, &err) != KMS_OK)
    fail_msg("%s: read: %s", name, err.message);
  assert_string_equal(got, value);
  it_done(&h, c);

  /* a fresh instance (no cache) reads what the backend holds */
  host_for(&h, name);
  assert_int_equal(kms_client_create(module(name), &h.host, settings, 1, &c, &err), KMS_OK);
  assert_int_equal(it_read(c, secret, got, sizeof got, NULL, &err), KMS_OK);
  assert_string_equal(got, value);
  if (kms_client_delete(c, secret, &err) != KMS_OK)
    fail_msg("%s: delete: %s", name, err.message);
  assert_int_equal(it_read(c, secret, got, sizeof got, NULL, &err), KMS_NOT_FOUND);
  it_done(&h, c);
}

/* Secrets Manager requests with this X-Amz-Target in the AWS server's log. */
static size_t aws_ops(const char *op) {
  vf_log *log = vf_requests(g_aws);
  assert_non_null(log);
  size_t n = 0;
  for (size_t i = 0; i < log->n; i++) {
    const char *t = vf_header(&log->r[i], "X-Amz-Target");
    if (t && strcmp(t, op) == 0) n++;
  }
  vf_log_free(log);
  return n;
}

static void test_vault_round_trip(void **state) {
  (void)state;
  assert_int_equal(vf_clear_requests(g_vault), 0);
  backend_round_trip("hashicorp_vault", "litellm/probe-vault", "sk-probe-vault-1");
  vf_log *log = vf_requests(g_vault);
  assert_non_null(log);
  assert_true(vf_count(log, "POST", "/v1/secret/data/litellm/probe-vault") +
                  vf_count(log, "PUT", "/v1/secret/data/litellm/probe-vault") >= 1);
  vf_log_free(log);
  /* gone from Vault itself: the current version is deleted (404) */
  long code = vf_http(g_vault, "GET", "/v1/secret/data/litellm/probe-vault",
                      vf_root_token(g_vault), NULL, NULL);
  assert_int_equal(code, 404);
}

static void test_aws_round_trip(void **state) {
  (void)state;
  assert_int_equal(vf_clear_requests(g_aws), 0);
  backend_round_trip("aws_secret_manager", "litellm/probe-aws", "sk-probe-aws-1");
  assert_int_equal(aws_ops("secretsmanager.CreateSecret"), 1);
  assert_int_equal(aws_ops("secretsmanager.DeleteSecret"), 1);
  assert_true(aws_ops("secretsmanager.GetSecretValue") >= 1);
  /* the Vault server saw none of it, and the AWS server none of Vault's */
  vf_log *log = vf_requests(g_vault);
  assert_int_equal(vf_count(log, "GET", "/v1/secret/data/litellm/probe-aws"), 0);
  vf_log_free(log);
}

static void test_env_read_only(void **state) {
  (void)state;
  it_host h;
  host_for(&h, "env");
  kms_client *c = NULL;
  kms_error err;
  assert_int_equal(kms_client_create(module("env"), &h.host, NULL, 0, &c, &err), KMS_OK);
  char got[128];
  assert_int_equal(it_read(c, "OPENAI_API_KEY", got, sizeof got, NULL, &err), KMS_OK);
  assert_string_equal(got, "sk-from-the-environment");
  /* the same write the other two took: refused, saying why */
  assert_int_equal(kms_client_write(c, "litellm/probe-env", "x", 1, NULL, &err),
                   KMS_UNSUPPORTED);
  assert_non_null(strstr(err.message, "read-only"));
  assert_int_equal(kms_client_delete(c, "litellm/probe-env", &err), KMS_UNSUPPORTED);
  it_done(&h, c);
}

static void unload_all(void) {
  for (size_t i = 0; i < N_BACKENDS; i++) kms_module_unload(g_mod[i]);
  vf_stop(g_vault);
  vf_stop(g_aws);
}

int main(void) {
  const char *aws_args[] = {"--region", AWS_REGION, NULL};
  g_vault = vf_start(&(vf_options){.tls = 1});
  g_aws = vf_start(&(vf_options){.tls = 1, .server = "aws", .extra_args = aws_args});
  int rc = 1;
  if (!g_vault || !g_aws) {
    fprintf(stderr, "cannot start tests/vault_server and tests/aws_server\n");
    goto out;
  }
  /* all three loaded at once, before any test runs */
  for (size_t i = 0; i < N_BACKENDS; i++) {
    kms_error err;
    if (kms_module_load(getenv("KMS_PLUGIN_DIR"), BACKENDS[i].name, &g_mod[i], &err) != KMS_OK) {
      fprintf(stderr, "cannot load %s: %s\n", BACKENDS[i].name, err.message);
      goto out;
    }
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tables),
      cmocka_unit_test(test_vault_round_trip),
      cmocka_unit_test(test_aws_round_trip),
      cmocka_unit_test(test_env_read_only),
  };
  rc = cmocka_run_group_tests(tests, NULL, NULL);
out:
  unload_all();
  return rc;
}
