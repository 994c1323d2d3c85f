/*
 * common.c -- clock, xorshift, wiping frees and URL path (see common.h).
 */
#include "common.h"

#include "kms_plugin_util.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t vault_clock_now(const vault_clock *c) {
  if (c && c->now_ms) return c->now_ms(c->ctx);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vault_cond_init(pthread_cond_t *cv) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &ca);
  pthread_condattr_destroy(&ca);
}

void vault_timespec_in(int64_t ms, struct timespec *ts) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

void vault_rng_seed(vault_rng *r, uint64_t seed, const void *salt) {
  if (!seed) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)salt ^
           ((uint64_t)getpid() << 40);
  }
  r->s = seed ? seed : 88172645463325252ull;
}

uint64_t vault_rng_next(vault_rng *r) {
  if (!r->s) vault_rng_seed(r, 0, r);
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

int64_t vault_rng_jitter(vault_rng *r, int64_t d) {
  if (d <= 0) return 0;
  return d / 2 + (int64_t)(vault_rng_next(r) % (uint64_t)(d / 2 + 1));
}

void vault_wipe_free(char *s) {
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

void vault_json_wipe_delete(cJSON *j) {
  if (!j) return;
  json_wipe(j);
  cJSON_Delete(j);
}

cJSON *vault_json_parse(const char *body, size_t len) {
  if (!body || !len || memchr(body, '\0', len)) return NULL;
  return cJSON_ParseWithLength(body, len);
}

const char *vault_url_path(const char *addr, const char *url) {
  size_t n = strlen(addr);
  if (strncmp(url, addr, n) == 0 && url[n] == '/') return url + n;
  return url;
}

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

size_t vault_encode_path_to(const char *s, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (unreserved(*p) || *p == '/') {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return (size_t)(o - out);
}

char *vault_encode_path(const char *s) {
  char *out = malloc(3 * strlen(s) + 1);
  if (out) vault_encode_path_to(s, out);
  return out;
}

void vault_errors_text(const char *body, size_t len, char *buf, size_t size) {
  if (!size) return;
  buf[0] = '\0';
  cJSON *root = vault_json_parse(body, len);
  cJSON *errs = root ? cJSON_GetObjectItemCaseSensitive(root, "errors") : NULL;
  size_t used = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, errs) {
    if (!cJSON_IsString(e) || !e->valuestring || !*e->valuestring) continue;
    int n = snprintf(buf + used, size - used, "%s%s", used ? "; " : "", e->valuestring);
    if (n < 0 || (size_t)n >= size - used) {
      used = size - 1;
      break;
    }
    used += (size_t)n;
  }
  /* One line, printable. */
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
  cJSON_Delete(root);
}
