/*
 * scratch.h -- private plugin directories for the loader's tests. They live
 * under the build tree (TEST_SCRATCH_DIR), never in /tmp: the loader refuses
 * directories that others can write, sticky ones included.
 */
#ifndef KMS_TEST_SCRATCH_H
#define KMS_TEST_SCRATCH_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh 0755 directory under TEST_SCRATCH_DIR, its path in `out`. */
static inline void scratch_dir(char *out, size_t size) {
  assert_true(snprintf(out, size, "%s/kms-abi-XXXXXX", TEST_SCRATCH_DIR) < (int)size);
  assert_non_null(mkdtemp(out));
  assert_int_equal(chmod(out, 0755), 0);
}

/* Copy TEST_PLUGIN_DIR/<name>.so to <dir>/<as>.so, mode 0755; returns the
 * new path (malloc'ed). */
static inline char *copy_plugin_as(const char *name, const char *dir, const char *as) {
  char src[PATH_MAX], *dst = malloc(PATH_MAX);
  assert_non_null(dst);
  assert_true(snprintf(src, sizeof src, "%s/%s.so", TEST_PLUGIN_DIR, name) < (int)sizeof src);
  assert_true(snprintf(dst, PATH_MAX, "%s/%s.so", dir, as) < PATH_MAX);
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  fclose(out);
  assert_int_equal(chmod(dst, 0755), 0);
  return dst;
}

static inline int scratch_remove_one(const char *path, const struct stat *st, int flag,
                                     struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* rm -rf `dir` (symlinks are removed, not followed). */
static inline void scratch_remove(const char *dir) {
  assert_int_equal(nftw(dir, scratch_remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

#endif
