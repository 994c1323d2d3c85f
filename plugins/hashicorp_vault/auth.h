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
 * Methods (cfg->auth_method, chosen by config.c: AppRole, then certificate,
 * then static token):
 *   - static token (HCP_VAULT_TOKEN / VAULT_TOKEN / BAO_TOKEN): never
 *     changes; forbidden() returns 0, refresh() asks lookup-self whether
 *     Vault still accepts it;
 *   - certificate login: POST {addr}/v1/auth/cert/login {"name": role} (or
 *     {} without HCP_VAULT_CERT_ROLE), the client certificate presented on
 *     the TLS connection by http.c; needs an https:// address (checked in
 *     vault_auth_new);
 *   - AppRole login: POST {addr}/v1/auth/{approle_mount}/login
 *     {"role_id","secret_id"}.
 *   Logins carry X-Vault-Namespace: cfg->login_namespace and no token, as do
 *   renew-self and lookup-self (the token lives in the login namespace).
 *
 * Token lifecycle (login methods):
 *   - the first request logs in (create never talks to Vault); concurrent
 *     callers wait on a condvar for that one login;
 *   - the token is reused for its lease (auth.lease_duration); once 2/3 of
 *     it has passed, the next caller renews it (POST auth/token/renew-self,
 *     increment = the login's lease) while the others keep using it;
 *   - renewal refused, token not renewable, or renewal capped by the max TTL
 *     (shorter lease than asked for, or Vault's max_ttl warning) -> a fresh
 *     login; when Vault is unreachable the current token stays in use;
 *   - a token is no longer handed out in the last tenth of its lease (at
 *     most 10 s): callers then wait for the login;
 *   - 403 with the current generation: GET auth/token/lookup-self with that
 *     token. Alive -> the 403 is a policy denial: no login, forbidden()
 *     returns 0 (PERMISSION_DENIED). Refused -> one login (generation + 1)
 *     and forbidden() returns 1; if that login fails, the retry's
 *     vault_auth_token() returns the login error (UNAUTHENTICATED with
 *     Vault's text). The caller retries at most once: never a loop;
 *   - a failed login is remembered for 1 s: callers in that window get the
 *     same error without a request, so bad credentials never become a login
 *     per request.
 * A client_token in a login answer that is not printable ASCII without
 * spaces (as HCP_VAULT_TOKEN must be) is refused before it is ever sent.
 * Every request, login and wait of one plugin call shares the call's
 * deadline.
 * Login failures: 4xx -> KMS_UNAUTHENTICATED with Vault's `errors` text and
 * the HTTP status in backend_status; 412/429/5xx -> KMS_UNAVAILABLE;
 * transport errors as http.c reports them. Messages name the variables to
 * check; never a token or the secret id.
 *
 * Tokens are wiped (OPENSSL_cleanse) before their memory is freed, including
 * the copies in parsed responses and the login body holding the secret id.
 * No lock is held during network I/O or while logging.
 */
#ifndef VAULT_AUTH_H
#define VAULT_AUTH_H

#include "config.h"
#include "http.h"
#include "kms_plugin.h"
#include "kpc_log.h"

#include <stdint.h>

typedef struct vault_auth vault_auth;

/* `cfg`, `http` and `lg` are borrowed and must outlive the provider. No
 * network I/O. KMS_INVALID_ARGUMENT for certificate login over http://.
 * Thread-safety: call from create() only; vault_auth_free must not race with
 * any other function on `a` (destroy() follows the ABI). */
kms_status vault_auth_new(const vault_config *cfg, vault_http *http, const kpc_logger *lg,
                          const kpc_clock *clock, vault_auth **out, kms_error *err);
void vault_auth_free(vault_auth *a);

/* The current token: *token is a malloc'ed copy (release with
 * vault_auth_token_free, which wipes it), *generation identifies it. May
 * log in, renew, or wait for another thread's login, all within `deadline`
 * (the calling plugin call's, vault_http_deadline()). On failure *token is
 * NULL and err says why (KMS_UNAVAILABLE when the deadline passed while
 * waiting).
 * Thread-safety: any number of threads concurrently. */
kms_status vault_auth_token(vault_auth *a, int64_t deadline, char **token, uint64_t *generation,
                            kms_error *err);
void vault_auth_token_free(char *token); /* NULL ok; any thread */

/* A request made with token `generation` was refused with HTTP 403;
 * `invalid_token`: Vault said "invalid token" (the token is dead, no need
 * to ask). Returns 1 if the caller should retry once with vault_auth_token()
 * (call it at most once per request). Without invalid_token it probes
 * lookup-self to tell a dead token from a policy's denial (for a static
 * token only to settle health's `authenticated`, at most once per second);
 * a dead token of a login method is replaced (a login).
 * Thread-safety: any number of threads concurrently. */
int vault_auth_forbidden(vault_auth *a, uint64_t generation, int invalid_token,
                         int64_t deadline);

/* Revalidate / renew credentials now (refresh()), within `deadline`:
 * renew-self when the token is renewable, a login when there is no usable
 * token or it cannot be renewed, lookup-self for a token without a lease.
 * KMS_OK while a usable token exists (a failed renewal of a still-valid
 * token is logged as a warning), else the login error. Static token:
 * lookup-self; KMS_UNAUTHENTICATED when Vault refuses it, the transport
 * error when Vault cannot be asked.
 * Thread-safety: any number of threads concurrently (a refresh during a
 * login in flight waits for it and reports its result). */
kms_status vault_auth_refresh(vault_auth *a, int64_t deadline, kms_error *err);

/* For the background refresher: when (plugin clock ms) the current token
 * wants renewing or replacing (the next vault_auth_token() call after that
 * does it), or 0 when nothing is scheduled: static token, no token yet
 * (the first request logs in), token without a lease, token already
 * unusable, or a login/renewal in flight. No I/O.
 * Thread-safety: any number of threads concurrently. */
int64_t vault_auth_renew_due_ms(vault_auth *a);

/* For the health slot: login and renewal attempts since create, and the
 * seconds the current token has left (-1: a static token or one without a
 * lease; 0: none yet or known dead). No I/O.
 * Thread-safety: any number of threads concurrently. */
void vault_auth_health(vault_auth *a, uint64_t *logins, uint64_t *renewals, int64_t *ttl_s);

#endif
