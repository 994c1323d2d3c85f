/*
 * test_vault_proxy.c -- which requests go through an HTTP proxy, with a real
 * recording proxy (proxy.py) on loopback:
 *   - a loopback Vault address (127.0.0.1, localhost) is never proxied, even
 *     with http_proxy / HTTP_PROXY / VAULT_HTTP_PROXY set, so the token never
 *     reaches the proxy (the proxy variables are also put in the process
 *     environment, which libcurl would read on its own);
 *   - VAULT_HTTP_PROXY (and BAO_HTTP_PROXY) is used for a remote address,
 *     and http_proxy for http:// when no explicit proxy is set;
 *   - NO_PROXY exempts a host (the request goes direct);
 *   - a bad proxy URL fails create, naming the variable.
 * "vault.test" is a name that does not resolve: the proxy maps it to the
 * test server, so a request for it succeeds only through the proxy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static vf_server *srv;
static pid_t proxy_pid;
static char proxy_url[64], proxy_log[256], remote_addr[64];

static int start_proxy(void) {
  char dir[] = "/tmp/vault_proxy.XXXXXX";
  if (!mkdtemp(dir)) return -1;
  char ready[256], script[512], map[64];
  snprintf(ready, sizeof ready, "%s/ready", dir);
  snprintf(proxy_log, sizeof proxy_log, "%s/log", dir);
  snprintf(script, sizeof script, "%s/tests/hashicorp_vault/proxy.py", getenv("KMS_SOURCE_DIR"));
  snprintf(map, sizeof map, "vault.test=127.0.0.1");
  const char *py = getenv("KMS_PYTHON") ? getenv("KMS_PYTHON") : "/usr/bin/python3";
  char *argv[] = {(char *)py, script, "--ready-file", ready, "--log", proxy_log, "--map", map,
                  "--exit-with-parent", NULL};
  if (posix_spawn(&proxy_pid, py, NULL, NULL, argv, environ) != 0) return -1;
  for (int i = 0; i < 200; i++) { /* up to 20 s: python under load */
    FILE *f = fopen(ready, "r");
    int port = 0;
    if (f && fscanf(f, "%d", &port) == 1 && port > 0) {
      fclose(f);
      snprintf(proxy_url, sizeof proxy_url, "http://127.0.0.1:%d", port);
      return 0;
    }
    if (f) fclose(f);
    it_sleep_ms(100);
  }
  fprintf(stderr, "proxy.py did not start\n");
  return -1;
}

static int setup(void **state) {
  srv = vf_start(&(vf_options){0});
  if (!srv || start_proxy() != 0) return -1;
  snprintf(remote_addr, sizeof remote_addr, "http://vault.test:%d", vf_port(srv));
  return vf_put(srv, "secret/data/p", "{\"key\":\"via\"}") == 200 ? 0 : -1;
}

static int teardown(void **state) {
  if (proxy_pid > 0) {
    kill(proxy_pid, SIGTERM);
    waitpid(proxy_pid, NULL, 0);
  }
  vf_stop(srv);
  return 0;
}

/* Lines the proxy logged so far, then forget them. */
static char *proxy_seen(void) {
  FILE *f = fopen(proxy_log, "r");
  char *buf = calloc(1, 65536);
  if (f) {
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
  }
  f = fopen(proxy_log, "w");
  if (f) fclose(f);
  return buf;
}

static const char *const PROXY_VARS[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                         "HTTPS_PROXY", "ALL_PROXY", "all_proxy",
                                         "no_proxy", "NO_PROXY", NULL};

/* A read through a fresh client whose host environment holds `vars`
 * (name, value pairs, NULL-terminated); the proxy variables among them are
 * also set in the process environment (libcurl reads that one) while the
 * plugin runs, and removed again before the fixture talks to its server. */
static kms_status read_with(const char *addr, const char *const *vars, kms_error *err) {
  it_host h;
  it_host_init(&h);
  it_target(&h, srv, 0, 0);
  it_set(&h, "HCP_VAULT_ADDR", addr);
  it_set(&h, "HCP_VAULT_REFRESH_INTERVAL", "0");
  it_set(&h, "VAULT_MAX_RETRIES", "0");
  it_set(&h, "VAULT_CLIENT_TIMEOUT", "10");
  for (size_t i = 0; vars[i]; i += 2) {
    it_set(&h, vars[i], vars[i + 1]);
    setenv(vars[i], vars[i + 1], 1);
  }
  kms_client *c = NULL;
  kms_status st = it_client(&h, NULL, 0, &c, err);
  if (st == KMS_OK) st = it_read(c, "p", NULL, 0, NULL, err);
  it_done(&h, c);
  for (size_t i = 0; PROXY_VARS[i]; i++) unsetenv(PROXY_VARS[i]);
  unsetenv("VAULT_HTTP_PROXY");
  unsetenv("BAO_HTTP_PROXY");
  return st;
}

static size_t server_gets(void) {
  vf_log *log = vf_requests(srv);
  size_t n = vf_count(log, "GET", "/v1/secret/data/p");
  vf_log_free(log);
  vf_clear_requests(srv);
  return n;
}

static void test_loopback_never_proxied(void **state) {
  char local[64];
  snprintf(local, sizeof local, "http://localhost:%d", vf_port(srv));
  const char *addrs[] = {vf_url(srv), local};
  for (size_t i = 0; i < 2; i++) {
    const char *vars[] = {"http_proxy", proxy_url, "HTTP_PROXY", proxy_url, "ALL_PROXY",
                          proxy_url, "VAULT_HTTP_PROXY", proxy_url, NULL};
    kms_error err;
    vf_clear_requests(srv);
    assert_int_equal(read_with(addrs[i], vars, &err), KMS_OK);
    char *seen = proxy_seen();
    assert_string_equal(seen, ""); /* the proxy saw nothing, so no token */
    free(seen);
    assert_int_equal(server_gets(), 1); /* it went straight to Vault */
  }
}

static void test_explicit_proxy_used(void **state) {
  const char *names[] = {"VAULT_HTTP_PROXY", "BAO_HTTP_PROXY"};
  for (size_t i = 0; i < 2; i++) {
    const char *vars[] = {names[i], proxy_url, NULL};
    kms_error err;
    vf_clear_requests(srv);
    assert_int_equal(read_with(remote_addr, vars, &err), KMS_OK);
    char *seen = proxy_seen();
    char want[160];
    snprintf(want, sizeof want, "\"method\": \"GET\", \"target\": \"%s/v1/secret/data/p\", "
             "\"token\": true", remote_addr);
    assert_non_null(strstr(seen, want));
    free(seen);
    assert_int_equal(server_gets(), 1);
  }
}

static void test_env_proxy_and_no_proxy(void **state) {
  kms_error err;
  /* http_proxy applies to a remote http:// address */
  const char *env[] = {"http_proxy", proxy_url, NULL};
  assert_int_equal(read_with(remote_addr, env, &err), KMS_OK);
  char *seen = proxy_seen();
  assert_non_null(strstr(seen, "/v1/secret/data/p"));
  free(seen);
  /* ... unless NO_PROXY lists the host: then it goes direct, and
   * vault.test does not resolve */
  const char *listed[][2] = {{"NO_PROXY", "vault.test"},
                             {"no_proxy", "example.com, .test"},
                             {"NO_PROXY", "*"}};
  for (size_t i = 0; i < 3; i++) {
    const char *vars[] = {"http_proxy", proxy_url, "VAULT_HTTP_PROXY", proxy_url,
                          listed[i][0], listed[i][1], NULL};
    assert_int_equal(read_with(remote_addr, vars, &err), KMS_UNAVAILABLE);
    seen = proxy_seen();
    assert_string_equal(seen, "");
    free(seen);
  }
  /* a NO_PROXY entry for another host leaves the proxy in use */
  const char *other[] = {"http_proxy", proxy_url, "NO_PROXY", "vault.example,test.vault", NULL};
  assert_int_equal(read_with(remote_addr, other, &err), KMS_OK);
  seen = proxy_seen();
  assert_non_null(strstr(seen, "/v1/secret/data/p"));
  free(seen);
  vf_clear_requests(srv);
}

static void test_bad_proxy_url(void **state) {
  const char *vars[] = {"VAULT_HTTP_PROXY", "ftp://proxy:21", NULL};
  kms_error err;
  assert_int_equal(read_with(vf_url(srv), vars, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "VAULT_HTTP_PROXY"));
  assert_non_null(strstr(err.message, "proxy URL"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_loopback_never_proxied),
    cmocka_unit_test(test_explicit_proxy_used),
    cmocka_unit_test(test_env_proxy_and_no_proxy),
    cmocka_unit_test(test_bad_proxy_url),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
