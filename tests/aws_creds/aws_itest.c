/*
 * aws_itest.c -- a plain libcurl transport for the aws_creds integration
 * tests (see aws_itest.h): one easy handle per request, the body collected
 * into a buffer that is wiped whenever it moves.
 */
#include "aws_itest.h"

#include "kms_plugin_util.h"
#include "kpc_common.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
  char *p;
  size_t n;
} buf;

static size_t on_data(char *d, size_t sz, size_t nm, void *u) {
  buf *b = u;
  size_t n = sz * nm;
  char *np = malloc(b->n + n + 1); /* not realloc: the old copy is wiped */
  if (!np) return 0;
  if (b->p) memcpy(np, b->p, b->n);
  memcpy(np + b->n, d, n);
  np[b->n + n] = '\0';
  if (b->p) kms_wipe(b->p, b->n);
  free(b->p);
  b->p = np;
  b->n += n;
  return n;
}

/* One libcurl request; 0 or the CURLcode. */
static CURLcode perform(const char *method, const char *url, const char *const *headers,
                        const char *body, size_t body_len, long timeout_ms, long *status,
                        buf *out) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  if (!c) return CURLE_OUT_OF_MEMORY;
  for (size_t i = 0; headers && headers[i]; i++) h = curl_slist_append(h, headers[i]);
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(h); /* header strings may hold tokens: libcurl copied them */
  curl_easy_cleanup(c);
  return rc;
}

kms_status ait_curl_http(void *ctx, const char *method, const char *url,
                         const char *const *headers, const char *body, size_t body_len,
                         int64_t deadline_ms, long *status, char **resp_body, size_t *resp_len,
                         kms_error *err) {
  int64_t left = deadline_ms - kpc_clock_now(ctx);
  buf b = {0};
  *resp_body = NULL;
  *resp_len = 0;
  if (left <= 0) return kms_error_set(err, KMS_UNAVAILABLE, 0, "deadline passed");
  CURLcode rc = perform(method, url, headers, body, body_len, (long)left, status, &b);
  if (rc != CURLE_OK) {
    if (b.p) kms_wipe(b.p, b.n);
    free(b.p);
    return kms_error_set(err, KMS_UNAVAILABLE, 0, "%s", curl_easy_strerror(rc));
  }
  if (!b.p && !(b.p = calloc(1, 1))) return kms_error_set(err, KMS_NO_MEMORY, 0, "oom");
  *resp_body = b.p;
  *resp_len = b.n;
  return KMS_OK;
}
