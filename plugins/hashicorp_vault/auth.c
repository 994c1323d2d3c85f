/*
 * auth.c -- the auth provider (see auth.h for the seam and the plan for
 * certificate / AppRole login, renewal and re-login on 403).
 * Today: static token only.
 */
#include "auth.h"

#include "kms_loader.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct vault_auth {
  const vault_config *cfg;
  vault_http *http;
  const vault_logger *lg;
  pthread_mutex_t mu; /* guards token and generation */
  char *token;        /* current client token (wiped on free) */
  uint64_t generation;
};

kms_status vault_auth_new(const vault_config *cfg, vault_http *http, const vault_logger *lg,
                          vault_auth **out, kms_error *err) {
  *out = NULL;
  switch (cfg->auth_method) {
  case VAULT_AUTH_TOKEN: break;
  case VAULT_AUTH_CERT:
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "hashicorp_vault: TLS certificate login (HCP_VAULT_CLIENT_CERT/KEY%s "
                         "without a token) is not implemented in this build yet; set "
                         "HCP_VAULT_TOKEN (the client certificate is still sent for mTLS)",
                         cfg->cert_role ? ", HCP_VAULT_CERT_ROLE" : "");
  case VAULT_AUTH_APPROLE:
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "hashicorp_vault: AppRole login (HCP_VAULT_APPROLE_ROLE_ID/SECRET_ID) is "
                         "not implemented in this build yet; unset them and set HCP_VAULT_TOKEN");
  }
  vault_auth *a = calloc(1, sizeof *a);
  if (!a) return kms_error_set(err, KMS_NO_MEMORY, 0, "hashicorp_vault: out of memory");
  a->cfg = cfg;
  a->http = http;
  a->lg = lg;
  pthread_mutex_init(&a->mu, NULL);
  a->token = strdup(cfg->token);
  if (!a->token) {
    vault_auth_free(a);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "hashicorp_vault: out of memory");
  }
  a->generation = 1;
  *out = a;
  return KMS_OK;
}

void vault_auth_token_free(char *token) {
  if (!token) return;
  OPENSSL_cleanse(token, strlen(token));
  free(token);
}

void vault_auth_free(vault_auth *a) {
  if (!a) return;
  vault_auth_token_free(a->token);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

kms_status vault_auth_token(vault_auth *a, char **token, uint64_t *generation, kms_error *err) {
  pthread_mutex_lock(&a->mu);
  *token = a->token ? strdup(a->token) : NULL;
  *generation = a->generation;
  pthread_mutex_unlock(&a->mu);
  if (!*token) return kms_error_set(err, KMS_NO_MEMORY, 0, "hashicorp_vault: out of memory");
  return KMS_OK;
}

int vault_auth_forbidden(vault_auth *a, uint64_t generation) {
  /* A static token cannot be replaced: the 403 stands. (Login-based methods
   * re-login here once per generation; see auth.h.) */
  pthread_mutex_lock(&a->mu);
  int newer = a->generation != generation;
  pthread_mutex_unlock(&a->mu);
  return newer;
}

kms_status vault_auth_refresh(vault_auth *a, kms_error *err) {
  (void)a;
  (void)err;
  return KMS_OK; /* static token: nothing to renew */
}
