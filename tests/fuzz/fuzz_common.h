/*
 * fuzz_common.h -- helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * FUZZ_CHECK(cond, ...) prints the broken invariant and abort()s, which
 * libFuzzer reports as a crash and saves the input. fuzz_env is a tiny
 * name=value table served through kms_host.getenv, so the Vault plugin's
 * configuration code reads only what the fuzzer gave it (never the process
 * environment). Header-only: each target is a single translation unit.
 */
#ifndef KMS_FUZZ_COMMON_H
#define KMS_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms_plugin.h"

#define FUZZ_CHECK(cond, ...)                                                                   \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "\n*** invariant broken at %s:%d: %s\n*** ", __FILE__, __LINE__, #cond);  \
      fprintf(stderr, __VA_ARGS__);                                                             \
      fputc('\n', stderr);                                                                      \
      abort();                                                                                  \
    }                                                                                           \
  } while (0)

/* A kms_error is well formed: the status agrees, the message is
 * NUL-terminated inside the buffer, non-empty and one printable line. */
static inline void fuzz_check_error(const kms_error *err, kms_status st) {
  FUZZ_CHECK(err->status == st, "err.status %d != returned %d", (int)err->status, (int)st);
  size_t n = strnlen(err->message, sizeof err->message);
  FUZZ_CHECK(n < sizeof err->message, "message not NUL-terminated");
  FUZZ_CHECK(n > 0, "status %d with an empty message", (int)st);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)err->message[i];
    FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control byte 0x%02x at %zu in message '%s'", c, i,
               err->message);
  }
}

#define FUZZ_ENV_MAX 64
typedef struct fuzz_env {
  const char *name[FUZZ_ENV_MAX];
  const char *value[FUZZ_ENV_MAX];
  size_t n;
} fuzz_env;

/* Later entries win, as a later `export` would. */
static inline void fuzz_env_set(fuzz_env *e, const char *name, const char *value) {
  for (size_t i = 0; i < e->n; i++)
    if (!strcmp(e->name[i], name)) {
      e->value[i] = value;
      return;
    }
  if (e->n < FUZZ_ENV_MAX) {
    e->name[e->n] = name;
    e->value[e->n++] = value;
  }
}

static inline const char *fuzz_env_get(void *ctx, const char *name) {
  const fuzz_env *e = ctx;
  for (size_t i = 0; i < e->n; i++)
    if (!strcmp(e->name[i], name)) return e->value[i];
  return NULL;
}

/* Does the NUL-terminated `hay` contain the non-empty `needle`? */
static inline int fuzz_contains(const char *hay, const char *needle) {
  return hay && needle && *needle && strstr(hay, needle) != NULL;
}

#endif
