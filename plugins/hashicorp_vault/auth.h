/*
 * auth.h -- the "auth provider": where the plugin's Vault token comes from.
 *
 * Every request asks vault_auth_token() for the current token and, if Vault
 * answers 403, tells vault_auth_forbidden() which token generation failed.
 * That is the whole seam between requests and authentication:
 *
 *   vault_auth_token()     -> copy of the current token + its generation
 *   vault_auth_forbidden() -> "this generation got a 403": returns 1 when a
 *                             newer token is (now) available and the caller
 *                             should retry once, 0 when it should give up
 *   vault_auth_refresh()   -> what refresh() does for credentials
 *
 * Implemented today: static token auth (HCP_VAULT_TOKEN / VAULT_TOKEN /
 * BAO_TOKEN). The token never changes, so forbidden() returns 0 and
 * refresh() is a no-op.
 *
 * For the next engineer (issue 5): TLS-certificate login (POST
 * /v1/auth/cert/login {"name": cert_role}), AppRole login (POST
 * /v1/auth/{approle_mount}/login {"role_id","secret_id"}), both with
 * X-Vault-Namespace: cfg->login_namespace, renew-self ahead of expiry and
 * re-login on 403 belong in auth.c behind these three functions:
 *   - keep the token + lease expiry + generation under `mu`;
 *   - token(): if no token or the lease is near its end, one thread logs in
 *     (others wait on a condvar: "requests made while a login is in flight
 *     wait for it"), then everyone copies the new token;
 *   - forbidden(gen): if gen == current generation, log in again once
 *     (bumping the generation) and return 1; if the generation already moved
 *     on, return 1 without logging in; never loop;
 *   - refresh(): renew-self, or log in when renewal is impossible.
 * vault_auth_new() currently refuses VAULT_AUTH_CERT and VAULT_AUTH_APPROLE
 * with KMS_UNSUPPORTED naming the variables, so nothing is silently ignored.
 * The HTTP client (`http`) is available for login requests; a login must use
 * vault_http_perform with token = NULL and namespace = login namespace.
 *
 * Thread-safety: token(), forbidden() and refresh() may be called
 * concurrently from any thread; new/free must not race with them.
 * Tokens are wiped before their memory is freed.
 */
#ifndef VAULT_AUTH_H
#define VAULT_AUTH_H

#include "config.h"
#include "http.h"
#include "kms_plugin.h"
#include "logging.h"

#include <stdint.h>

typedef struct vault_auth vault_auth;

/* `cfg`, `http` and `lg` are borrowed and must outlive the provider. */
kms_status vault_auth_new(const vault_config *cfg, vault_http *http, const vault_logger *lg,
                          vault_auth **out, kms_error *err);
void vault_auth_free(vault_auth *a);

/* The current token: *token is a malloc'ed copy (release with
 * vault_auth_token_free, which wipes it), *generation identifies it. */
kms_status vault_auth_token(vault_auth *a, char **token, uint64_t *generation, kms_error *err);
void vault_auth_token_free(char *token);

/* A request made with token `generation` was refused with HTTP 403.
 * Returns 1 if the caller should retry once with vault_auth_token(). */
int vault_auth_forbidden(vault_auth *a, uint64_t generation);

/* Revalidate / renew credentials now (refresh()). */
kms_status vault_auth_refresh(vault_auth *a, kms_error *err);

#endif
