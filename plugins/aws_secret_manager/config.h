/*
 * config.h -- environment + key_management_settings -> one validated
 * aws_config for the aws_secret_manager plugin.
 *
 * Everything the plugin reads from outside is read here, once, in create():
 * the region and endpoints, the AWS SDK credential variables, the shared
 * `credentials`/`config` files of the selected profile (through ini.h), and
 * the settings. Later code (creds.c, the plugin) only reads the struct.
 *
 * Precedence (the AWS SDKs' where they define one):
 *   region    setting aws_region_name, AWS_REGION, AWS_DEFAULT_REGION,
 *             AWS_REGION_NAME (LiteLLM's), the profile's `region`.
 *   endpoint  AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL, else
 *             https://secretsmanager.<region>.amazonaws.com
 *   STS       setting aws_sts_endpoint, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL,
 *             else https://sts.<region>.amazonaws.com
 *   profile   setting aws_profile_name, AWS_PROFILE, AWS_DEFAULT_PROFILE, "default".
 * Every error is KMS_INVALID_ARGUMENT (or KMS_PERMISSION_DENIED for a shared
 * file others can write, KMS_UNSUPPORTED for a credential kind the plugin
 * does not implement, KMS_NO_MEMORY) and names the variable, setting or file
 * and what is allowed; no message ever holds a credential or a token.
 *
 * Thread-safety: aws_config_load() only reads its inputs (call it from
 * create()); a loaded aws_config is immutable and may be read from any
 * thread. aws_config_free() must not race with readers.
 */
#ifndef AWS_CONFIG_H
#define AWS_CONFIG_H

#include "kms_plugin.h"

#include <stddef.h>
#include <stdint.h>

typedef enum aws_access_mode {
  AWS_ACCESS_READ_ONLY = 0, /* LiteLLM's default */
  AWS_ACCESS_WRITE_ONLY,
  AWS_ACCESS_READ_AND_WRITE
} aws_access_mode;

/* Defaults (documented in the plugin README). */
#define AWS_DEFAULT_RECOVERY_DAYS 7 /* LiteLLM's async_delete_secret default */
#define AWS_DEFAULT_REFRESH_S 86400 /* cache TTL, as the Vault plugin */
#define AWS_DEFAULT_TIMEOUT_MS 60000
#define AWS_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define AWS_DEFAULT_MAX_RETRIES 2 /* the SDKs' legacy mode: 3 attempts */
#define AWS_DEFAULT_STALE_IF_ERROR_S 3600
#define AWS_DEFAULT_STALE_RETRY_MS 5000
/* A 64 KiB SecretString (Secrets Manager's limit) JSON-escaped up to six
 * times, plus the envelope. */
#define AWS_DEFAULT_MAX_RESPONSE (1048576)
#define AWS_DEFAULT_MAX_IDLE 8
#define AWS_DEFAULT_IMDS_ENDPOINT "http://169.254.169.254"
#define AWS_ECS_HOST_URL "http://169.254.170.2"
#define AWS_DESCRIPTION_MAX 2048 /* CreateSecret Description limit */
#define AWS_TAG_KEY_MAX 128
#define AWS_TAG_VALUE_MAX 256
#define AWS_TAGS_MAX 50

typedef struct aws_tag {
  char *key, *value;
} aws_tag;

typedef struct aws_config {
  /* Where. URLs are scheme://host[:port] with no trailing slash, path,
   * user info, query or fragment. *_source name the variable or setting
   * they came from (string literals), for messages. */
  char *region;
  const char *region_source;
  char *endpoint;      /* Secrets Manager */
  char *sts_endpoint;  /* STS (web identity) */
  int endpoint_overridden; /* endpoint came from a variable, not the region */

  /* The credential sources, as found (creds.c picks in the SDKs' order).
   * Secrets are wiped on free. */
  char *env_access_key_id, *env_secret_access_key, *env_session_token;
  char *profile;                  /* selected profile name */
  const char *profile_source;     /* the variable or setting that named it, or "default" */
  char *credentials_file, *config_file; /* paths (resolved ~); files may not exist */
  int profile_found;              /* the profile has a section in either file */
  char *profile_access_key_id, *profile_secret_access_key, *profile_session_token;
  const char *profile_keys_file;  /* "credentials" or "config": where the keys were */
  const char *profile_unsupported; /* the profile needs what the plugin lacks
                                      ("credential_process", "sso_start_url", "sso_session",
                                      "source_profile", "credential_source"); NULL if not */
  char *web_identity_token_file, *role_arn, *role_session_name; /* settings, env or profile */
  const char *web_identity_source; /* "AWS_WEB_IDENTITY_TOKEN_FILE", "profile", "aws_web_identity_token" */
  char *container_full_uri;       /* full URL: relative URI already joined to 169.254.170.2 */
  char *container_auth_token;     /* AWS_CONTAINER_AUTHORIZATION_TOKEN (wiped) */
  char *container_auth_token_file;
  char *imds_endpoint;            /* AWS_EC2_METADATA_SERVICE_ENDPOINT or the default */
  int imds_disabled;              /* AWS_EC2_METADATA_DISABLED=true */

  /* TLS: ca_file from setting ca_file, AWS_CA_BUNDLE, SSL_CERT_FILE; ca_path
   * from setting ca_path. NULL: the system store. */
  char *ca_file, *ca_path;

  /* Time and size limits (the Vault plugin's names). */
  int64_t refresh_interval_s; /* cache TTL; 0 disables the cache */
  int background_refresh;     /* setting background_refresh (the Vault plugin's name): a
                                 thread re-reads cached secrets before they expire */
  int64_t timeout_ms;         /* whole call, retries included */
  int64_t connect_timeout_ms;
  int max_retries;            /* max_retries setting, else AWS_MAX_ATTEMPTS - 1 */
  int64_t stale_if_error_s;
  int64_t stale_retry_ms;
  int64_t neg_ttl_ms;         /* NOT_FOUND cached this long; 0 = off */
  size_t max_response_bytes;
  unsigned max_idle_connections;

  /* Behaviour (LiteLLM's key_management_settings and AWS's API names). */
  aws_access_mode access_mode;
  char *primary_secret_name;  /* one JSON secret holding many keys; NULL if unset */
  int recovery_window_days;   /* 7..30 */
  int force_delete;           /* ForceDeleteWithoutRecovery */
  char *description;          /* CreateSecret Description; NULL if unset */
  aws_tag *tags;              /* CreateSecret Tags */
  size_t n_tags;
  char *version_stage;        /* GetSecretValue VersionStage; NULL = AWSCURRENT */
} aws_config;

/*
 * Fill *cfg from the environment (through host->getenv when present, else the
 * process environment), the shared files, and `settings`. On failure returns
 * the status above, fills err, and leaves *cfg freed. Warnings (unknown
 * setting) go to host->log.
 */
kms_status aws_config_load(aws_config *cfg, const kms_host *host, const kms_setting *settings,
                           size_t n_settings, kms_error *err);

/* Wipe credentials and free everything. Safe on a zeroed or freed struct. */
void aws_config_free(aws_config *cfg);

/* A region name as AWS spells them ("eu-central-1", "us-gov-west-1",
 * "cn-north-1"): lower-case letters, digits and '-', 1-50 characters,
 * starting with a letter. 1 if valid. Exposed for tests. */
int aws_region_valid(const char *region);

#endif
