/*
 * plugin_util.c -- the secret helpers of kms_plugin_util.h: a wipe that is
 * not optimised away, and the kms_secret allocator/free pair plugins share.
 * Built into libkmsplugutil.a (hidden, for plugins) and libkmsloader.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero, sched_getcpu */
#endif
#include "kms_plugin_util.h"

#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void kms_wipe(void *p, size_t size) {
  if (!p || size == 0) return;
#if defined(__GLIBC__) || defined(__OpenBSD__) || defined(__FreeBSD__)
  explicit_bzero(p, size);
#else
  /* Through a volatile pointer the compiler cannot prove the store dead. */
  static void *(*const volatile set)(void *, int, size_t) = memset;
  set(p, 0, size);
#endif
}

unsigned kms_cpu_stripe(unsigned n) {
  if (n <= 1) return 0;
#ifdef __linux__
  /* glibc >= 2.35 answers from the rseq area: a few ns, no system call */
  int cpu = sched_getcpu();
  if (cpu >= 0) return (unsigned)cpu % n;
#endif
  return 0;
}

kms_status kms_secret_new(const char *value, size_t length, kms_secret **out, kms_error *err) {
  if (!out) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_secret_new: out is NULL");
  *out = NULL;
  if (!value && length)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "kms_secret_new: value is NULL but length is %zu", length);
  if (length == SIZE_MAX)
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory for a %zu-byte secret", length);
  kms_secret *s = calloc(1, sizeof *s);
  char *copy = malloc(length + 1);
  if (!s || !copy) {
    free(s);
    free(copy);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory for a %zu-byte secret", length);
  }
  if (length) memcpy(copy, value, length);
  copy[length] = '\0';
  s->struct_size = sizeof *s;
  s->value = copy;
  s->length = length;
  *out = s;
  return KMS_OK;
}

void kms_secret_free(kms_secret *s) {
  if (!s) return;
  if (s->value) {
    kms_wipe((void *)s->value, s->length);
    free((void *)s->value);
  }
  kms_wipe(s, sizeof *s);
  free(s);
}

/* The packed layout: the struct, then the bytes and their NUL. */
kms_status kms_secret_new_packed(const char *value, size_t length, kms_secret **out,
                                 kms_error *err) {
  if (!out)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_secret_new_packed: out is NULL");
  *out = NULL;
  if (!value && length)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "kms_secret_new_packed: value is NULL but length is %zu", length);
  if (length > SIZE_MAX - sizeof(kms_secret) - 1)
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory for a %zu-byte secret", length);
  kms_secret *s = malloc(sizeof *s + length + 1);
  if (!s) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory for a %zu-byte secret", length);
  char *copy = (char *)(s + 1);
  if (length) memcpy(copy, value, length);
  copy[length] = '\0';
  *s = (kms_secret){.struct_size = sizeof *s, .value = copy, .length = length};
  *out = s;
  return KMS_OK;
}

void kms_secret_free_packed(kms_secret *s) {
  if (!s) return;
  kms_wipe(s, sizeof *s + s->length + 1); /* the value's bytes lie after the struct */
  free(s);
}
