/*
 * test_loader_trust.c -- the loader's StrictModes rules against a hostile
 * local user: plugin files and directories owned by someone else, parent
 * directories others can write (sticky ones included), ACLs granting write,
 * symlinks into such places, a file swapped between the checks and dlopen,
 * and descriptor names reused after unloading. Runs as root (chown to
 * nobody, uid 65534) and links the loader built with its test hook
 * (kmsloader_testing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kms_loader.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "scratch.h"

#define NOBODY 65534

extern void (*kms_loader_test_before_dlopen)(const char *path);

static void expect_refused(const char *dir, const char *name, kms_status want,
                           const char *needle1, const char *needle2) {
  kms_module *m = (kms_module *)0x1;
  kms_error err;
  kms_status st = kms_module_load(dir, name, &m, &err);
  assert_null(m);
  if (st != want)
    fail_msg("load %s/%s: want %s got %s (%s)", dir, name, kms_status_str(want),
             kms_status_str(st), err.message);
  if (needle1 && !strstr(err.message, needle1))
    fail_msg("message '%s' lacks '%s'", err.message, needle1);
  if (needle2 && !strstr(err.message, needle2))
    fail_msg("message '%s' lacks '%s'", err.message, needle2);
}

static void expect_loads(const char *dir, const char *name) {
  kms_module *m = NULL;
  kms_error err;
  if (kms_module_load(dir, name, &m, &err) != KMS_OK)
    fail_msg("load %s/%s: %s", dir, name, err.message);
  assert_string_equal(kms_module_plugin(m)->name, name);
  kms_module_unload(m);
}

static void test_file_owned_by_another_user_refused(void **state) {
  char dir[PATH_MAX];
  scratch_dir(dir, sizeof dir);
  char *file = copy_plugin_as("good", dir, "good");
  expect_loads(dir, "good");
  /* 0755 in a root-owned 0755 directory: only the owner is wrong. */
  assert_int_equal(chown(file, NOBODY, NOBODY), 0);
  expect_refused(dir, "good", KMS_PERMISSION_DENIED, file, "owned by uid 65534");
  assert_int_equal(chown(file, 0, 0), 0);
  expect_loads(dir, "good");
  /* The group owner does not matter, group write does. */
  assert_int_equal(chown(file, 0, NOBODY), 0);
  expect_loads(dir, "good");
  free(file);
  scratch_remove(dir);
}

/* Little-endian (the xattr format) ACL entry: tag, permissions, id. */
static unsigned char *acl_entry(unsigned char *p, unsigned tag, unsigned perm, uint32_t id) {
  const unsigned char e[8] = {tag & 0xff, tag >> 8, perm & 0xff, perm >> 8,
                              id & 0xff, (id >> 8) & 0xff, (id >> 16) & 0xff, id >> 24};
  memcpy(p, e, sizeof e);
  return p + sizeof e;
}

/* A POSIX ACL that lets another user write: the group bits of the mode are
 * the ACL mask, which bounds every named user and group, so the mode check
 * covers ACLs. (Set as the raw xattr, so the test needs no acl tools.) */
static void test_acl_granting_write_refused(void **state) {
  char dir[PATH_MAX];
  scratch_dir(dir, sizeof dir);
  char *file = copy_plugin_as("good", dir, "good");
  unsigned char acl[4 + 5 * 8] = {2, 0, 0, 0}, *p = acl + 4; /* version 2 */
  p = acl_entry(p, 0x01, 7, UINT32_MAX);   /* user::rwx */
  p = acl_entry(p, 0x02, 7, NOBODY);       /* user:nobody:rwx */
  p = acl_entry(p, 0x04, 5, UINT32_MAX);   /* group::r-x */
  p = acl_entry(p, 0x10, 7, UINT32_MAX);   /* mask::rwx */
  acl_entry(p, 0x20, 5, UINT32_MAX);       /* other::r-x */
  if (setxattr(file, "system.posix_acl_access", acl, sizeof acl, 0) != 0)
    fail_msg("setting an ACL on %s: %s (the build tree's file system must support ACLs)", file,
             strerror(errno));
  expect_refused(dir, "good", KMS_PERMISSION_DENIED, file, "writable by group or others");
  assert_int_equal(removexattr(file, "system.posix_acl_access"), 0);
  assert_int_equal(chmod(file, 0755), 0);
  expect_loads(dir, "good");
  free(file);
  scratch_remove(dir);
}

static void test_directory_owned_by_another_user_refused(void **state) {
  char dir[PATH_MAX], sub[PATH_MAX + 8];
  scratch_dir(dir, sizeof dir);
  snprintf(sub, sizeof sub, "%s/sub", dir);
  assert_int_equal(mkdir(sub, 0755), 0);
  free(copy_plugin_as("good", sub, "good"));
  assert_int_equal(chown(sub, NOBODY, NOBODY), 0);
  expect_refused(sub, "good", KMS_PERMISSION_DENIED, "plugin directory", "owned by uid 65534");
  /* An ancestor owned by someone else: they can rename the subtree away. */
  assert_int_equal(chown(sub, 0, 0), 0);
  assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
  expect_refused(sub, "good", KMS_PERMISSION_DENIED, dir, "owned by uid 65534");
  assert_int_equal(chown(dir, 0, 0), 0);
  expect_loads(sub, "good");
  scratch_remove(dir);
}

static void test_world_writable_parent_refused(void **state) {
  char dir[PATH_MAX], ww[PATH_MAX + 8], sub[PATH_MAX + 16];
  scratch_dir(dir, sizeof dir);
  snprintf(ww, sizeof ww, "%s/ww", dir);
  snprintf(sub, sizeof sub, "%s/sub", ww);
  assert_int_equal(mkdir(ww, 0755), 0);
  assert_int_equal(mkdir(sub, 0755), 0);
  free(copy_plugin_as("good", sub, "good"));
  expect_loads(sub, "good");
  /* /tmp-style: world-writable and sticky, owned by root. */
  assert_int_equal(chmod(ww, 01777), 0);
  expect_refused(sub, "good", KMS_PERMISSION_DENIED, ww, "sticky directories");
  expect_refused(sub, "good", KMS_PERMISSION_DENIED, "owner uid 0", "writable by group or others");
  assert_int_equal(chmod(ww, 0775), 0); /* group-writable, not sticky */
  expect_refused(sub, "good", KMS_PERMISSION_DENIED, ww, "chmod go-w");
  /* The plugin directory itself sticky and world-writable. */
  assert_int_equal(chmod(ww, 0755), 0);
  assert_int_equal(chmod(sub, 01777), 0);
  expect_refused(sub, "good", KMS_PERMISSION_DENIED, "plugin directory", "sticky");
  assert_int_equal(chmod(sub, 0755), 0);
  expect_loads(sub, "good");
  scratch_remove(dir);
}

static void test_symlinks_resolved_and_checked(void **state) {
  char dir[PATH_MAX], ww[PATH_MAX + 8], safe[PATH_MAX + 8], real[PATH_MAX + 8];
  char link[PATH_MAX + 16], target[PATH_MAX + 16];
  scratch_dir(dir, sizeof dir);
  snprintf(ww, sizeof ww, "%s/ww", dir);
  snprintf(safe, sizeof safe, "%s/safe", dir);
  snprintf(real, sizeof real, "%s/real", dir);
  assert_int_equal(mkdir(ww, 01777), 0);
  assert_int_equal(chmod(ww, 01777), 0); /* mkdir applies the umask */
  assert_int_equal(mkdir(safe, 0755), 0);
  assert_int_equal(mkdir(real, 0755), 0);
  free(copy_plugin_as("good", ww, "good"));
  free(copy_plugin_as("good", real, "good"));

  /* safe/good.so -> ww/good.so: the link sits in a trusted directory, the
   * file it resolves to does not. */
  snprintf(link, sizeof link, "%s/good.so", safe);
  snprintf(target, sizeof target, "%s/good.so", ww);
  assert_int_equal(symlink(target, link), 0);
  expect_refused(safe, "good", KMS_PERMISSION_DENIED, ww, "sticky");
  /* safe/good.so -> real/good.so: both places trusted. */
  assert_int_equal(unlink(link), 0);
  snprintf(target, sizeof target, "%s/good.so", real);
  assert_int_equal(symlink(target, link), 0);
  expect_loads(safe, "good");

  /* A plugin directory that is a symlink into an untrusted place ... */
  snprintf(link, sizeof link, "%s/dirlink", safe);
  assert_int_equal(symlink(ww, link), 0);
  expect_refused(link, "good", KMS_PERMISSION_DENIED, ww, NULL);
  /* ... or a symlink inside an untrusted place (whoever can write there
   * chooses where it points), even to a trusted directory. */
  snprintf(link, sizeof link, "%s/dirlink", ww);
  assert_int_equal(symlink(real, link), 0);
  expect_refused(link, "good", KMS_PERMISSION_DENIED, ww, NULL);
  scratch_remove(dir);
}

static void test_not_regular_file_does_not_hang(void **state) {
  char dir[PATH_MAX], fifo[PATH_MAX + 16];
  scratch_dir(dir, sizeof dir);
  snprintf(fifo, sizeof fifo, "%s/pipe.so", dir);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  expect_refused(dir, "pipe", KMS_UNSUPPORTED, "not a regular file", NULL);
  scratch_remove(dir);
}

/* The swap race: between the checks and dlopen, the checked file is
 * replaced by one another user owns (and that would fail the table check if
 * it ran). Loading by descriptor loads the file that was checked. */
static char swap_from[PATH_MAX], swap_to[PATH_MAX];
static int swaps;

static void swap_file(const char *path) {
  assert_string_equal(path, swap_to);
  assert_int_equal(rename(swap_from, swap_to), 0);
  swaps++;
}

static void test_file_swapped_after_check_is_not_loaded(void **state) {
  char dir[PATH_MAX];
  scratch_dir(dir, sizeof dir);
  char *good = copy_plugin_as("good", dir, "good");
  char *evil = copy_plugin_as("misnamed", dir, "evil");
  assert_int_equal(chown(evil, NOBODY, NOBODY), 0);
  snprintf(swap_from, sizeof swap_from, "%s", evil);
  snprintf(swap_to, sizeof swap_to, "%s", good);
  kms_loader_test_before_dlopen = swap_file;
  kms_module *m = NULL;
  kms_error err;
  kms_status st = kms_module_load(dir, "good", &m, &err);
  kms_loader_test_before_dlopen = NULL;
  assert_int_equal(swaps, 1);
  if (st != KMS_OK) fail_msg("the swapped-in file was loaded: %s", err.message);
  assert_string_equal(kms_module_plugin(m)->name, "good");
  kms_module_unload(m);
  /* The file now at that path is the other user's, and is refused. */
  expect_refused(dir, "good", KMS_PERMISSION_DENIED, "owned by uid 65534", NULL);
  free(good);
  free(evil);
  scratch_remove(dir);
}

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

/* dlopen knows objects by the /proc/self/fd/N name they were opened with.
 * With the same file loaded twice, unloading the first must not let its
 * descriptor number (reused by the next load) name the still-loaded file. */
static void test_descriptor_names_not_reused_while_loaded(void **state) {
  int fds = open_fds();
  kms_module *a = NULL, *b = NULL, *c = NULL;
  kms_error err;
  assert_int_equal(kms_module_load(TEST_PLUGIN_DIR, "good", &a, &err), KMS_OK);
  assert_int_equal(kms_module_load(TEST_PLUGIN_DIR, "good", &b, &err), KMS_OK);
  kms_module_unload(a);
  if (kms_module_load(TEST_PLUGIN_DIR, "old", &c, &err) != KMS_OK)
    fail_msg("loading old after unloading one of two goods: %s", err.message);
  assert_string_equal(kms_module_plugin(c)->name, "old");
  assert_string_equal(kms_module_plugin(b)->name, "good");
  kms_module_unload(b);
  kms_module_unload(c);
  assert_int_equal(open_fds(), fds); /* nothing kept open once all is unloaded */
}

/* Files owned by the process's effective user are trusted like root's:
 * checked in a child that drops to nobody. */
static void test_effective_user_may_own_plugins(void **state) {
  char dir[PATH_MAX];
  scratch_dir(dir, sizeof dir);
  char *file = copy_plugin_as("good", dir, "good");
  assert_int_equal(chown(file, NOBODY, NOBODY), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    kms_module *m = NULL;
    kms_error err;
    free(file); /* the child's copy, freed so valgrind sees no leak at _exit */
    if (setegid(NOBODY) != 0 || seteuid(NOBODY) != 0) _exit(2);
    if (kms_module_load(dir, "good", &m, &err) != KMS_OK) {
      fprintf(stderr, "as uid %d: %s\n", NOBODY, err.message);
      _exit(1);
    }
    kms_module_unload(m);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  free(file);
  scratch_remove(dir);
}

int main(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "test_loader_trust must run as root (it chowns files to uid %d)\n", NOBODY);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_owned_by_another_user_refused),
      cmocka_unit_test(test_acl_granting_write_refused),
      cmocka_unit_test(test_directory_owned_by_another_user_refused),
      cmocka_unit_test(test_world_writable_parent_refused),
      cmocka_unit_test(test_symlinks_resolved_and_checked),
      cmocka_unit_test(test_not_regular_file_does_not_hang),
      cmocka_unit_test(test_file_swapped_after_check_is_not_loaded),
      cmocka_unit_test(test_descriptor_names_not_reused_while_loaded),
      cmocka_unit_test(test_effective_user_may_own_plugins),
  };
  return cmocka_run_group_tests_name("loader_trust", tests, NULL, NULL);
}
