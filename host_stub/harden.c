/*
 * harden.c -- keep kms-host's secrets out of core files and debuggers.
 *
 * kms-host holds provider keys, Vault tokens and fresh virtual keys in
 * memory, some of them in buffers of curl, OpenSSL and SQLite that it
 * cannot wipe. A core dump would write them to disk, and another process of
 * the same user could read them with ptrace or /proc/<pid>/mem. So, unless
 * --allow-debugging asks otherwise: RLIMIT_CORE is 0 (soft and hard) and
 * the process is not dumpable (which also makes /proc/<pid>/ files root's
 * and refuses ptrace attach to non-root users). The umask is 077 always,
 * so the database, its journal and the lock file are never created readable
 * by others.
 */
#include "host.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

host_status host_harden(int allow_debugging, host_result *r) {
  umask(077);
  if (allow_debugging) return HOST_OK;
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    return host_fail(r, HOST_FAILED, "cannot disable core dumps (setrlimit RLIMIT_CORE): %s",
                     strerror(errno));
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return host_fail(r, HOST_FAILED, "cannot disable ptrace and core dumps "
                     "(prctl PR_SET_DUMPABLE): %s", strerror(errno));
  return HOST_OK;
}
