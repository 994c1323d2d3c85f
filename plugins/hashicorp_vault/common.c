/*
 * common.c -- clock, xorshift, wiping frees and URL path (see common.h).
 */
#include "common.h"

#include <openssl/crypto.h>
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
  OPENSSL_cleanse(s, strlen(s));
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
