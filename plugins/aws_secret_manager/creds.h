/*
 * creds.h -- the AWS SDK credential chain for the aws_secret_manager plugin.
 *
 * Sources, in the order botocore and the Java/Go SDKs v2 try them (the first
 * one configured wins; later ones are not consulted):
 *   1. env          AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN]
 *   2. web_identity AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN [+ AWS_ROLE_SESSION_NAME]
 *                   (or the profile's role_arn + web_identity_token_file, or the
 *                   aws_role_name + aws_web_identity_token settings) -> STS
 *                   AssumeRoleWithWebIdentity (Query protocol, unsigned, XML answer)
 *   3. profile      aws_access_key_id/... of the profile in the shared files
 *   4. ecs          AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI
 *                   [+ AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]]
 *   5. imds         EC2 IMDSv2 (PUT token, GET role, GET credentials) unless
 *                   AWS_EC2_METADATA_DISABLED
 * (Web identity comes before the shared files as in the SDKs: on EKS a pod's
 * service-account role must win over a ~/.aws baked into the image.)
 * config.c reads every variable and the shared files; this file uses
 * aws_config, and re-reads the web identity and container token files on each
 * refresh (Kubernetes and ECS rotate them).
 *
 * Temporary credentials (2, 4, 5) are fetched on first use and refreshed
 * before they expire: in the last AWS_CREDS_REFRESH_MS one caller refreshes
 * while the others keep using the still-valid ones (a failed refresh is
 * retried at most every AWS_CREDS_RETRY_MS); in the last
 * AWS_CREDS_MANDATORY_MS (or once expired) callers wait for the refresh.
 * One refresh at a time (single-flight).
 *
 * HTTP is injected (aws_creds_http_fn): this file has no HTTP client of its own.
 *
 * Thread-safety: aws_creds_get and aws_creds_health are thread-safe;
 * aws_creds_new/aws_creds_free are not (create/destroy). The http function
 * is called from whichever thread refreshes, never under the provider's lock.
 */
#ifndef AWS_CREDS_H
#define AWS_CREDS_H

#include "config.h"
#include "kms_plugin.h"

#include <stddef.h>
#include <stdint.h>

/* The injectable monotonic clock of plugins/common (kpc_common.h). */
struct kpc_clock;
typedef struct kpc_clock aws_clock;

#define AWS_CREDS_REFRESH_MS (5 * 60 * 1000)  /* advisory: refresh, keep old on failure */
#define AWS_CREDS_MANDATORY_MS (60 * 1000)    /* mandatory: wait for new ones */
#define AWS_CREDS_RETRY_MS (10 * 1000)        /* between failed advisory refreshes */
#define AWS_IMDS_TOKEN_TTL_S 21600

/*
 * One HTTP request. headers: "Name: value" strings, NULL-terminated (may be
 * NULL). body may be NULL (body_len 0). deadline_ms is on the provider's
 * clock. On KMS_OK *status is the HTTP status and *resp_body a malloc'ed
 * body (NUL-terminated, *resp_len bytes not counting the NUL) that the
 * caller wipes and frees. A transport failure returns non-OK (usually
 * KMS_UNAVAILABLE) with err filled. Must be thread-safe if the provider is
 * shared between threads.
 */
typedef kms_status (*aws_creds_http_fn)(void *ctx, const char *method, const char *url,
                                        const char *const *headers, const char *body,
                                        size_t body_len, int64_t deadline_ms, long *status,
                                        char **resp_body, size_t *resp_len, kms_error *err);

typedef struct aws_credentials {
  char *access_key_id, *secret_access_key, *session_token; /* session_token may be NULL */
  int64_t expires_ms; /* on the provider's clock; 0 = never */
} aws_credentials;

/* Wipe and free the strings; zero the struct. NULL ok. */
void aws_credentials_clear(aws_credentials *c);

typedef struct aws_creds_provider aws_creds_provider;

/*
 * Pick the source from cfg (no network). cfg and clock (NULL = real
 * monotonic clock) must outlive the provider. Fails with
 * KMS_UNAUTHENTICATED when no source is configured and IMDS is disabled, or
 * KMS_INVALID_ARGUMENT when a source is half configured (e.g. a role ARN
 * without a token file).
 */
kms_status aws_creds_new(const aws_config *cfg, const aws_clock *clock, aws_creds_http_fn http,
                         void *http_ctx, aws_creds_provider **out, kms_error *err);

/*
 * Copy the current credentials into *out (cleared first; the caller clears
 * it), fetching or refreshing them first when needed, within deadline_ms
 * (provider's clock). Errors: KMS_UNAUTHENTICATED (refused by STS/ECS/IMDS,
 * a missing or empty token file, expired and not renewable),
 * KMS_PERMISSION_DENIED (a token file others can write), KMS_UNAVAILABLE
 * (endpoint unreachable, 5xx, throttled, STS's IdP unreachable, deadline),
 * KMS_INTERNAL (unparsable answer). Messages name the source and quote AWS's
 * code and text, never a credential or token.
 */
kms_status aws_creds_get(aws_creds_provider *p, int64_t deadline_ms, aws_credentials *out,
                         kms_error *err);

/* Force the next aws_creds_get to fetch new temporary credentials (after
 * the service answered ExpiredTokenException). No-op for static ones. */
void aws_creds_invalidate(aws_creds_provider *p);

typedef struct aws_creds_health {
  const char *source;  /* "env", "web_identity", "profile", "ecs", "imds" (literal) */
  int temporary;       /* 1 for web_identity/ecs/imds (fetched, expiring, refreshed) */
  int64_t expires_in_s; /* -1: never expires, or nothing fetched yet */
  kms_status last_status; /* of the last fetch (KMS_OK if none failed) */
} aws_creds_health;

void aws_creds_health_get(aws_creds_provider *p, aws_creds_health *out);

/* Stop and free (wipes the cached credentials). NULL ok. */
void aws_creds_free(aws_creds_provider *p);

/* Parsers, exposed for unit tests and fuzzing. Both fill *out (cleared
 * first) or return KMS_INTERNAL / KMS_UNAUTHENTICATED with err naming what is
 * missing (never a value). now_wall_s/now_ms convert Expiration (ISO 8601,
 * wall time) to the provider's clock. */
kms_status aws_creds_parse_sts_xml(const char *body, size_t len, int64_t now_wall_s,
                                   int64_t now_ms, aws_credentials *out, kms_error *err);
kms_status aws_creds_parse_json(const char *body, size_t len, int64_t now_wall_s, int64_t now_ms,
                                aws_credentials *out, kms_error *err);

#endif
