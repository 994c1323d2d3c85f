/*
 * kpc_common.c -- clock, xorshift, wiping frees, JSON parse and URL path
 * (see kpc_common.h).
 */
#include "kpc_common.h"

#include "kms_plugin_util.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t kpc_clock_now(const kpc_clock *c) {
  if (c && c->now_ms) return c->now_ms(c->ctx);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kpc_cond_init(pthread_cond_t *cv) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &ca);
  pthread_condattr_destroy(&ca);
}

void kpc_timespec_in(int64_t ms, struct timespec *ts) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

void kpc_rng_seed(kpc_rng *r, uint64_t seed, const void *salt) {
  if (!seed) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)salt ^
           ((uint64_t)getpid() << 40);
  }
  r->s = seed ? seed : 88172645463325252ull;
}

uint64_t kpc_rng_next(kpc_rng *r) {
  if (!r->s) kpc_rng_seed(r, 0, r);
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

int64_t kpc_rng_jitter(kpc_rng *r, int64_t d) {
  if (d <= 0) return 0;
  return d / 2 + (int64_t)(kpc_rng_next(r) % (uint64_t)(d / 2 + 1));
}

void kpc_wipe_free(char *s) {
  if (!s) return;
  kms_wipe(s, strlen(s));
  free(s);
}

static void json_wipe(cJSON *j) {
  for (cJSON *c = j; c; c = c->next) {
    if (c->type & cJSON_IsReference) continue; /* borrowed: not ours to wipe */
    if (c->valuestring) OPENSSL_cleanse(c->valuestring, strlen(c->valuestring));
    if (c->string && !(c->type & cJSON_StringIsConst)) OPENSSL_cleanse(c->string, strlen(c->string));
    if (c->child) json_wipe(c->child);
  }
}

void kpc_json_wipe_delete(cJSON *j) {
  if (!j) return;
  json_wipe(j);
  cJSON_Delete(j);
}

cJSON *kpc_json_parse(const char *body, size_t len) {
  if (!body || !len || memchr(body, '\0', len)) return NULL;
  return cJSON_ParseWithLength(body, len);
}

const char *kpc_url_path(const char *addr, const char *url) {
  size_t n = strlen(addr);
  if (strncmp(url, addr, n) == 0 && url[n] == '/') return url + n;
  return url;
}

int kpc_utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      k = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3, cp = c & 0x07;
    } else {
      return 0;
    }
    for (size_t j = 1; j <= k; j++) {
      if (i + j >= n || (s[i + j] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += k + 1;
  }
  return 1;
}

/* Print `root` into a buffer sized for the worst case (every byte escaped as
 * \u00XX), so cJSON never reallocates (and leaves no unwiped copy). */
kms_status kpc_json_print_wiped(cJSON *root, size_t payload, char **body, size_t *body_len,
                                kms_error *err) {
  size_t cap = payload * 6 + 256;
  char *buf = malloc(cap);
  if (!buf) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  if (!cJSON_PrintPreallocated(root, buf, (int)cap, 0)) {
    OPENSSL_cleanse(buf, cap);
    free(buf);
    return kms_error_set(err, KMS_INTERNAL, 0, "could not encode the request body");
  }
  *body_len = strlen(buf);
  *body = buf;
  return KMS_OK;
}

kms_status kpc_error_prefix(kms_status st, kms_error *err, const char *prefix) {
  if (st == KMS_OK || !err) return st;
  size_t n = strlen(err->message), p = strlen(prefix);
  if (p >= sizeof err->message) return st;
  if (n + p >= sizeof err->message) n = sizeof err->message - p - 1;
  memmove(err->message + p, err->message, n);
  memcpy(err->message, prefix, p);
  err->message[n + p] = '\0';
  return st;
}

int kpc_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  if (!*s) return -1;
  for (const char *p = s; *p; p++)
    if (!isdigit((unsigned char)*p) && !(p == s && *p == '-')) return -1;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int kpc_parse_duration_ms(const char *s, int64_t *ms) {
  int64_t v, total = 0;
  if (!s || !*s) return -1;
  if (kpc_parse_i64(s, 0, INT64_MAX / 1000, &v) == 0) return *ms = v * 1000, 0;
  for (const char *p = s; *p;) { /* Go style: <digits><unit>..., unit ms|s|m|h */
    if (!isdigit((unsigned char)*p)) return -1;
    int64_t n = 0, mult;
    while (isdigit((unsigned char)*p)) {
      if (n > INT64_MAX / 100) return -1;
      n = n * 10 + (*p++ - '0');
    }
    if (strncmp(p, "ms", 2) == 0) mult = 1, p += 2;
    else if (*p == 's') mult = 1000, p++;
    else if (*p == 'm') mult = 60000, p++;
    else if (*p == 'h') mult = 3600000, p++;
    else return -1;
    if (n > (INT64_MAX / 4 - total) / mult) return -1;
    total += n * mult;
  }
  *ms = total;
  return 0;
}

int kpc_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name) {
  sigset_t all, old;
  sigfillset(&all);
  static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
  for (size_t i = 0; i < sizeof sync_signals / sizeof *sync_signals; i++)
    sigdelset(&all, sync_signals[i]);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc == 0 && name) pthread_setname_np(*t, name);
  return rc;
}
