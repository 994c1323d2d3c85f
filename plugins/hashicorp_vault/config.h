/*
 * config.h -- environment + key_management_settings -> one validated struct.
 *
 * What lives here: vault_config (every knob the plugin has, already
 * normalised and range-checked), vault_config_load() and vault_config_free().
 * Every error names the variable or setting and says how to fix it; nothing
 * here ever prints a token or a secret id.
 *
 * Sources: address, token, namespace and client certificate/key come from
 *   ONE family: HCP_VAULT_* (LiteLLM's names) when any HCP_VAULT_* variable
 *   is set, else VAULT_* when any of those five is set, else BAO_* (OpenBao);
 *   then the documented default. Logged once (INFO) at load. Variables with no
 *   HCP_VAULT_* name (TLS, timeouts, retries, proxies) are read in every
 *   family: VAULT_* first, then BAO_*. The environment is read through host->getenv
 *   when the host provides one, else the process environment.
 * The full table is in README.md next to this file.
 *
 * Thread-safety: vault_config_load() only reads its inputs (call it from
 * create()); a loaded vault_config is immutable and may be read from any
 * thread. vault_config_free() must not race with readers.
 */
#ifndef VAULT_CONFIG_H
#define VAULT_CONFIG_H

#include "kms_plugin.h"
#include "common.h"
#include "kpc_log.h"

#include <stddef.h>
#include <stdint.h>

typedef enum vault_access_mode {
  VAULT_ACCESS_READ_ONLY = 0, /* LiteLLM's default */
  VAULT_ACCESS_WRITE_ONLY,
  VAULT_ACCESS_READ_AND_WRITE
} vault_access_mode;

typedef enum vault_delete_mode {
  VAULT_DELETE_SOFT = 0, /* DELETE {mount}/data/...: LiteLLM's behaviour */
  VAULT_DELETE_DESTROY   /* DELETE {mount}/metadata/...: every version gone */
} vault_delete_mode;

/* Which login the auth provider performs (auth.c). */
typedef enum vault_auth_method {
  VAULT_AUTH_TOKEN = 0, /* HCP_VAULT_TOKEN / VAULT_TOKEN / BAO_TOKEN */
  VAULT_AUTH_CERT,      /* HCP_VAULT_CLIENT_CERT+KEY (+ HCP_VAULT_CERT_ROLE), no token */
  VAULT_AUTH_APPROLE    /* HCP_VAULT_APPROLE_ROLE_ID + SECRET_ID */
} vault_auth_method;

/* The `auth_method` setting: auto picks by the credentials present, in
 * LiteLLM's priority (AppRole, certificate, token). */
typedef enum vault_auth_request {
  VAULT_AUTH_REQUEST_AUTO = 0,
  VAULT_AUTH_REQUEST_TOKEN,
  VAULT_AUTH_REQUEST_CERT,
  VAULT_AUTH_REQUEST_APPROLE
} vault_auth_request;

/* Defaults (documented in README.md). */
#define VAULT_DEFAULT_ADDR "http://127.0.0.1:8200"
#define VAULT_DEFAULT_MOUNT "secret"
#define VAULT_DEFAULT_APPROLE_MOUNT "approle"
#define VAULT_DEFAULT_REFRESH_S 86400
#define VAULT_DEFAULT_TIMEOUT_MS 60000       /* VAULT_CLIENT_TIMEOUT, as the Vault CLI */
#define VAULT_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define VAULT_DEFAULT_MAX_RETRIES 2          /* VAULT_MAX_RETRIES, as the Vault CLI */
#define VAULT_DEFAULT_STALE_IF_ERROR_S 3600
#define VAULT_DEFAULT_STALE_RETRY_MS 5000
/* A 1 MiB value (the host's put limit) can come back JSON-escaped six times
 * larger (\u0001 for a control character; Go escapes <, > and & the same
 * way), plus the envelope: 8 MiB reads back anything that could be written. */
#define VAULT_DEFAULT_MAX_RESPONSE (8 * 1048576)
#define VAULT_DEFAULT_MAX_IDLE 8
#define VAULT_NAME_MAX 1024 /* longest secret name accepted */

typedef struct vault_config {
  /* Where. addr has no trailing slash, scheme http or https, no user info,
   * query or fragment; it may end in a path prefix ("https://gw/vault"),
   * before which every request's "/v1/..." goes (as in LiteLLM). Namespaces/mount/prefix have no leading/trailing '/' and
   * no empty, "." or ".." segment; NULL when unset. */
  char *addr;
  char *secret_namespace; /* path prefix of every KV request */
  char *login_namespace;  /* X-Vault-Namespace of login requests */
  char *mount;
  char *prefix;

  /* Who. token is wiped on free. */
  vault_auth_request auth_requested; /* the auth_method setting */
  vault_auth_method auth_method;     /* what choose_auth() settled on */
  char *token;
  char *client_cert, *client_key; /* both or neither; sent on every TLS request */
  char *cert_role;
  char *approle_role_id;
  char *approle_secret_id; /* wiped on free */
  char *approle_mount;

  /* TLS. ca_file: VAULT_CACERT / BAO_CACERT, else (no VAULT_CAPATH either)
   * LiteLLM's SSL_VERIFY=<path>, else SSL_CERT_FILE. skip_verify:
   * VAULT_SKIP_VERIFY / BAO_SKIP_VERIFY, else SSL_VERIFY=false;
   * skip_verify_var names the variable that turned it on (a literal). */
  char *ca_file, *ca_path, *tls_server_name;
  int skip_verify;
  const char *skip_verify_var;

  /* Proxies (proxy.h decides per request): the explicit proxy
   * (VAULT_PROXY_ADDR / VAULT_HTTP_PROXY / BAO_HTTP_PROXY), else the
   * scheme's (HTTPS_PROXY / HTTP_PROXY, upper or lower case), and
   * NO_PROXY. Each proxy is a normalised URL with a scheme; NULL when unset. */
  char *proxy_explicit, *proxy_http, *proxy_https, *no_proxy;

  /* Time and size limits. */
  int64_t refresh_interval_s; /* cache TTL; 0 disables the cache */
  int64_t timeout_ms;         /* whole call, all retries included */
  int64_t connect_timeout_ms;
  int max_retries;
  int64_t stale_if_error_s;
  int64_t stale_retry_ms;
  int64_t neg_ttl_ms; /* setting neg_ttl: NOT_FOUND answers cached this long; 0 = off */
  size_t max_response_bytes;
  unsigned max_idle_connections;

  /* Behaviour. */
  vault_access_mode access_mode;
  vault_delete_mode delete_mode;
  int background_refresh; /* setting background_refresh: refresher.c re-reads before expiry */
  char *description;      /* setting description: written next to `key` (LiteLLM's); NULL if unset */
  int description_metadata; /* setting description_metadata: also POST custom_metadata */
  char **redirect_allowed_hosts; /* "host:port", lower-case; NULL-terminated */
  size_t n_redirect_allowed_hosts;
} vault_config;

/*
 * Fill *cfg from the environment (through host->getenv when present) and
 * `settings`. On failure returns KMS_INVALID_ARGUMENT (or KMS_UNSUPPORTED /
 * KMS_NO_MEMORY), fills err naming the variable and the fix, and leaves
 * *cfg freed. Warnings (unknown setting, VAULT_SKIP_VERIFY) go to `lg`.
 */
kms_status vault_config_load(vault_config *cfg, const kms_host *host, const kms_setting *settings,
                             size_t n_settings, const kpc_logger *lg, kms_error *err);

/* Wipe credentials and free everything. Safe on a zeroed or freed struct. */
void vault_config_free(vault_config *cfg);

/* Parse a duration: an integer number of seconds ("30"), or Go-style
 * "1h2m3s", "500ms". Returns 0 and sets *ms on success, -1 otherwise.
 * Exposed for unit tests. */
int vault_parse_duration_ms(const char *s, int64_t *ms);

#endif
