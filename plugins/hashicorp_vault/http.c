/*
 * http.c -- Vault's configuration and headers over the shared HTTP client
 * (see http.h).
 */
#include "http.h"

#include "kms_plugin_util.h"

#include <stdlib.h>

struct vault_http {
  kpc_http_config hc; /* borrows vault_config's strings */
  kpc_http *core;
};

kms_status vault_http_new(const vault_config *cfg, const kpc_logger *lg, const kpc_clock *clock,
                          vault_http **out, kms_error *err) {
  *out = NULL;
  vault_http *h = calloc(1, sizeof *h);
  if (!h) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  h->hc = (kpc_http_config){
      .addr = cfg->addr,
      .timeout_ms = cfg->timeout_ms,
      .connect_timeout_ms = cfg->connect_timeout_ms,
      .max_retries = cfg->max_retries,
      .max_response_bytes = cfg->max_response_bytes,
      .max_idle_connections = cfg->max_idle_connections,
      .skip_verify = cfg->skip_verify,
      .ca_file = cfg->ca_file,
      .ca_path = cfg->ca_path,
      .tls_server_name = cfg->tls_server_name,
      .client_cert = cfg->client_cert,
      .client_key = cfg->client_key,
      .proxy = {cfg->proxy_explicit, cfg->proxy_http, cfg->proxy_https, cfg->no_proxy},
      .redirect_allowed_hosts = cfg->redirect_allowed_hosts,
      .n_redirect_allowed_hosts = cfg->n_redirect_allowed_hosts,
      .server_word = "Vault",
      .addr_var = "HCP_VAULT_ADDR",
      .timeout_var = "VAULT_CLIENT_TIMEOUT",
      .tls_vars = "VAULT_CACERT, VAULT_TLS_SERVER_NAME",
      .client_cert_var = "HCP_VAULT_CLIENT_CERT",
  };
  kms_status st = kpc_http_new(&h->hc, lg, clock, &h->core, err);
  if (st != KMS_OK) {
    free(h);
    return st;
  }
  *out = h;
  return KMS_OK;
}

void vault_http_free(vault_http *h) {
  if (!h) return;
  kpc_http_free(h->core);
  free(h);
}

void vault_http_cancel(vault_http *h) {
  if (h) kpc_http_cancel(h->core);
}

void vault_http_set_backoff(vault_http *h, long base_ms, long max_ms) {
  kpc_http_set_backoff(h->core, base_ms, max_ms);
}

int64_t vault_http_deadline(const vault_http *h) { return kpc_http_deadline(h->core); }

/* A login's answer (see vault_cred_check; auth.c maps the same statuses to
 * UNAUTHENTICATED). */
static int login_verdict(long status, const char *body, size_t len) {
  (void)body, (void)len;
  if (status >= 200 && status < 300) return 1;
  if (status >= 400 && status < 500 && status != 412 && status != 429) return 0;
  return -1;
}

static int data_verdict(long status, const char *body, size_t len) {
  if (status == 403 && !vault_errors_has(body, len, "invalid token")) return -1;
  return kpc_http_auth_by_status(status, body, len);
}

void vault_http_health(const vault_http *h, int *reachable, int *authenticated) {
  kpc_http_health(h->core, reachable, authenticated);
}

kms_status vault_http_perform(vault_http *h, const vault_http_request *req,
                              kpc_http_response *resp, kms_error *err) {
  const kpc_header hdrs[] = {
      {"X-Vault-Request", "true"},
      {"X-Vault-Token", req->token},
      {"X-Vault-Namespace", req->namespace_},
  };
  kpc_http_request r = {.op = req->op,
                        .method = req->method,
                        .url = req->url,
                        .headers = hdrs,
                        .n_headers = sizeof hdrs / sizeof hdrs[0],
                        .body = req->body,
                        .body_len = req->body_len,
                        .deadline_ms = req->deadline_ms,
                        .auth_verdict = req->check == VAULT_CHECK_TOKEN   ? kpc_http_auth_by_status
                                        : req->check == VAULT_CHECK_DATA  ? data_verdict
                                        : req->check == VAULT_CHECK_LOGIN ? login_verdict
                                                                          : NULL};
  return kpc_http_perform(h->core, &r, resp, err);
}
