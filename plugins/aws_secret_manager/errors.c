/*
 * errors.c -- AWS error answers -> kms_status and a message that names the
 * operation, AWS's error type and AWS's own text, plus what to do; and
 * which answers are worth retrying (see sm.h). Never a secret: quoted
 * validation echoes are cut and the value being written is redacted.
 */
#include "sm.h"

#include "kms_plugin_util.h"
#include "kpc_common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* One printable line of at most size-1 bytes. */
static void copy_line(char *dst, size_t size, const char *src) {
  snprintf(dst, size, "%s", src ? src : "");
  for (char *p = dst; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
}

void sm_parse_error(const char *body, size_t len, sm_error *out) {
  out->type[0] = out->message[0] = '\0';
  cJSON *root = kpc_json_parse(body, len);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return;
  }
  cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "__type");
  cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "Message");
  if (!cJSON_IsString(m)) m = cJSON_GetObjectItemCaseSensitive(root, "message");
  if (cJSON_IsString(t) && t->valuestring) {
    /* "com.amazonaws.secretsmanager#ResourceNotFoundException" -> the code;
     * "Code:http://..." (some front ends) -> the part before ':' */
    const char *code = strrchr(t->valuestring, '#');
    code = code ? code + 1 : t->valuestring;
    copy_line(out->type, sizeof out->type, code);
    char *colon = strchr(out->type, ':');
    if (colon) *colon = '\0';
  }
  if (cJSON_IsString(m)) copy_line(out->message, sizeof out->message, m->valuestring);
  cJSON_Delete(root);
}

/* Cut the quoted text after every "Value '" (AWS's validation messages echo
 * the offending member, which may be a secret) and any occurrence of the
 * secret itself. The message never grows: it may fill its buffer. */
static void redact(char *msg, const char *secret, size_t secret_len) {
  char *p = msg;
  while ((p = strstr(p, "Value '")) != NULL) {
    char *start = p + 7, *end = strchr(start, '\'');
    if (!end) {
      snprintf(start, (size_t)(msg + strlen(msg) - start) + 1, "...");
      break;
    }
    size_t n = (size_t)(end - start);
    if (n < 3) { /* "..." would lengthen the message past its buffer */
      memset(start, '.', n);
      p = end + 1;
      continue;
    }
    memmove(start + 3, end, strlen(end) + 1);
    memcpy(start, "...", 3);
    p = start + 4;
  }
  if (!secret || secret_len < 4) return;
  char *hit;
  while ((hit = memmem(msg, strlen(msg), secret, secret_len)) != NULL) {
    memmove(hit + 3, hit + secret_len, strlen(hit + secret_len) + 1);
    memcpy(hit, "...", 3);
  }
}

static int type_in(const char *type, const char *const *list) {
  for (; *list; list++)
    if (strcmp(type, *list) == 0) return 1;
  return 0;
}

static const char *const k_throttle[] = {
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException", "SlowDown", "PriorRequestNotComplete",
    "TransactionInProgressException", "EC2ThrottledException", NULL};
static const char *const k_auth[] = {
    "ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException",
    "InvalidSignatureException", "IncompleteSignatureException", "SignatureDoesNotMatch",
    "MissingAuthenticationTokenException", "MissingAuthenticationToken", "InvalidClientTokenId",
    "RequestExpired", NULL};
static const char *const k_invalid[] = {
    "InvalidRequestException", "InvalidParameterException", "ValidationException",
    "MalformedPolicyDocumentException", "SerializationException", "InvalidNextTokenException",
    NULL};
static const char *const k_unavailable[] = {
    "InternalServiceError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "LimitExceededException", NULL};

int sm_retryable(long status, const char *body, size_t len) {
  if (status == 429 || (status >= 500 && status <= 599 && status != 501)) return 1;
  if (status != 400) return 0;
  sm_error e;
  sm_parse_error(body, len, &e);
  return type_in(e.type, k_throttle);
}

int sm_error_is(long status, const char *body, size_t len, const char *type) {
  if (status < 400) return 0;
  sm_error e;
  sm_parse_error(body, len, &e);
  return strcmp(e.type, type) == 0;
}

int sm_is_scheduled_for_deletion(long status, const char *body, size_t len) {
  if (status != 400) return 0;
  sm_error e;
  sm_parse_error(body, len, &e);
  return strcmp(e.type, "InvalidRequestException") == 0 && strstr(e.message, "for deletion");
}

/* The status and the advice for an error type (and HTTP status). */
static kms_status classify(const sm_error *e, long status, const char **hint) {
  const char *t = e->type;
  *hint = "";
  if (strcmp(t, "ResourceNotFoundException") == 0) return KMS_NOT_FOUND;
  if (strcmp(t, "AccessDeniedException") == 0 || strcmp(t, "AccessDenied") == 0) {
    *hint = "; grant the credentials' IAM identity this secretsmanager action on the secret";
    return KMS_PERMISSION_DENIED;
  }
  if (strcmp(t, "DecryptionFailure") == 0 || strcmp(t, "EncryptionFailure") == 0) {
    *hint = "; the credentials need kms:Decrypt/GenerateDataKey on the secret's KMS key";
    return KMS_PERMISSION_DENIED;
  }
  if (type_in(t, k_auth)) {
    *hint = strstr(e->message, "Signature expired") || strstr(e->message, "not yet current")
                ? "; the system clock is off by more than 5 minutes: synchronise it (NTP)"
                : "; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the profile/role), the "
                  "session token and AWS_REGION";
    return KMS_UNAUTHENTICATED;
  }
  if (type_in(t, k_throttle)) {
    *hint = "; AWS is throttling this account: retry later or lower the request rate";
    return KMS_UNAVAILABLE;
  }
  if (strcmp(t, "ResourceExistsException") == 0) return KMS_CONFLICT;
  if (type_in(t, k_invalid)) return KMS_INVALID_ARGUMENT;
  if (type_in(t, k_unavailable) || status >= 500) return KMS_UNAVAILABLE;
  if (status == 401) return KMS_UNAUTHENTICATED;
  if (status == 403) return KMS_PERMISSION_DENIED;
  if (status == 404 && !t[0]) {
    *hint = "; is the endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER) AWS Secrets Manager?";
    return KMS_INTERNAL;
  }
  return KMS_INTERNAL;
}

kms_status sm_map_error(const char *op, long status, const char *body, size_t len, int attempts,
                        const char *secret, size_t secret_len, kms_error *err) {
  sm_error e;
  sm_parse_error(body, len, &e);
  redact(e.message, secret, secret_len);
  redact(e.type, secret, secret_len);
  const char *hint;
  kms_status st = classify(&e, status, &hint);
  char tries[32] = "";
  if (attempts > 1) snprintf(tries, sizeof tries, ", %d attempts", attempts);
  return kms_error_set(err, st, (int32_t)status, "%s: AWS Secrets Manager %s (HTTP %ld%s)%s%.300s%s",
                       op, e.type[0] ? e.type : "error", status, tries, e.message[0] ? ": " : "",
                       e.message, hint);
}
