/*
 * serve_json.c -- request bodies and LiteLLM-shaped JSON responses for
 * `kms-host serve`.
 *
 * Bodies are bounded (SERVE_BODY_MAX, then 413) and wiped when freed: a
 * caller-chosen key or a key to delete arrives in one. Errors take LiteLLM's
 * shape, {"error": {"message", "type", "param", "code"}} with code the HTTP
 * status as text, and never carry a secret (the messages come from host_*
 * results, which name keys by id or alias only).
 */
#include "serve.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void serve_req_append(serve_req *q, const char *data, size_t n) {
  if (q->too_big || n == 0) return;
  if (q->len + n > SERVE_BODY_MAX) {
    q->too_big = 1;
    return;
  }
  /* Grow by allocating anew so the old buffer can be wiped. */
  char *nb = malloc(q->len + n + 1);
  if (!nb) {
    q->too_big = 1;
    return;
  }
  if (q->body) {
    memcpy(nb, q->body, q->len);
    OPENSSL_cleanse(q->body, q->len);
    free(q->body);
  }
  memcpy(nb + q->len, data, n);
  q->len += n;
  nb[q->len] = '\0';
  q->body = nb;
}

void serve_req_free(serve_req *q) {
  if (q->body) OPENSSL_cleanse(q->body, q->len);
  free(q->body);
  q->body = NULL;
  q->len = 0;
}

void serve_reply_json(serve_reply *rep, unsigned status, cJSON *json) {
  rep->status = status;
  rep->body = json ? cJSON_PrintUnformatted(json) : NULL;
  if (json) cJSON_Delete(json); /* cJSON_Delete does not wipe; callers add no
                                   secret they have not also put in the body */
  if (!rep->body) {
    rep->status = 500;
    rep->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"internal_error\","
                       "\"param\":\"None\",\"code\":\"500\"}}");
  }
}

void serve_reply_error(serve_reply *rep, unsigned status, const char *type, const char *param,
                       const char *fmt, ...) {
  char msg[HOST_ERR_SIZE], code[8];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(code, sizeof code, "%u", status);
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  if (e) {
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "param", param ? param : "None"); /* LiteLLM sends "None" */
    cJSON_AddStringToObject(e, "code", code);
  }
  serve_reply_json(rep, status, o);
}

void serve_reply_result(serve_reply *rep, const host_result *r, const char *param) {
  unsigned st = 500;
  const char *type = "internal_server_error";
  switch (r->status) {
  case HOST_USAGE: st = 400; type = "bad_request_error"; break;
  case HOST_FAILED:
    /* host_store_find's not-found messages start with "no " */
    if (!strncmp(r->msg, "no ", 3)) { st = 404; type = "not_found_error"; }
    else if (strstr(r->msg, "already")) { st = 400; type = "bad_request_error"; }
    else if (strstr(r->msg, "expects a virtual key")) { st = 400; type = "bad_request_error"; }
    break;
  case HOST_CONFIG: st = 500; type = "config_error"; break;
  default: break;
  }
  serve_reply_error(rep, st, type, param, "%s", r->msg);
}

cJSON *serve_parse_object(const serve_req *q, serve_reply *rep) {
  if (!q->body || q->len == 0) return cJSON_CreateObject();
  const char *end = NULL;
  /* q->body is NUL-terminated; a NUL inside it ends the parse early, which
   * `end` then shows. */
  cJSON *o = cJSON_ParseWithOpts(q->body, &end, 1);
  if (!o || !cJSON_IsObject(o) || end != q->body + q->len) {
    cJSON_Delete(o);
    serve_reply_error(rep, 400, "bad_request_error", NULL,
                      "the request body is not a JSON object (send Content-Type: "
                      "application/json and a body like {\"key_alias\": \"my-key\"})");
    return NULL;
  }
  return o;
}

int serve_get_string(const cJSON *o, const char *name, const char **out, serve_reply *rep) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  *out = NULL;
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsString(v)) {
    serve_reply_error(rep, 400, "bad_request_error", name, "'%s' must be a string", name);
    return -1;
  }
  *out = v->valuestring;
  return 0;
}

void serve_reply_free(serve_reply *rep) {
  if (rep->body) OPENSSL_cleanse(rep->body, strlen(rep->body));
  free(rep->body);
  rep->body = NULL;
}
