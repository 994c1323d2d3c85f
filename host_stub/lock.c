/*
 * lock.c -- the delivery lock: one kms-host at a time changes keys or
 * delivers the outbox.
 *
 * An exclusive flock on <db>.lock (0600, checked like the database). The
 * holder writes its pid into the file so a process that gives up can say
 * who holds it. Waiting is bounded (--lock-timeout / KMS_HOST_LOCK_TIMEOUT)
 * and polls on an injectable clock. Read-only commands never come here.
 */
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define LOCK_POLL_MS 50u

/* The pid the holder recorded, or 0 when unknown. */
static long holder_pid(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *end;
  long pid = strtol(buf, &end, 10);
  return pid > 0 && (*end == '\n' || *end == '\0') ? pid : 0;
}

static void record_pid(int fd) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) == 0) (void)!pwrite(fd, buf, (size_t)n, 0);
}

static host_status open_lock(const char *lp, int *fd, host_result *r) {
  *fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
  if (*fd < 0)
    return host_fail(r, HOST_FAILED, "cannot open the delivery lock %s: %s", lp,
                     strerror(errno));
  struct stat st;
  host_status s = fstat(*fd, &st) == 0 ? host_file_private("delivery lock", lp, &st, r)
                                       : host_fail(r, HOST_FAILED, "cannot stat %s: %s", lp,
                                                   strerror(errno));
  if (s != HOST_OK) {
    close(*fd);
    *fd = -1;
  }
  return s;
}

host_status host_lock_acquire(const char *db_path, unsigned timeout_ms, const host_clock *clock,
                              int *out, host_result *r) {
  *out = -1;
  size_t n = strlen(db_path) + 6;
  char *lp = malloc(n);
  if (!lp) return host_fail(r, HOST_FAILED, "out of memory");
  snprintf(lp, n, "%s.lock", db_path);
  int fd;
  host_status s = open_lock(lp, &fd, r);
  if (s != HOST_OK) {
    free(lp);
    return s;
  }
  uint64_t start = clock->now_ms(clock->ctx);
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      record_pid(fd);
      free(lp);
      *out = fd;
      return HOST_OK;
    }
    if (errno != EWOULDBLOCK && errno != EINTR) {
      s = host_fail(r, HOST_FAILED, "cannot lock %s: %s", lp, strerror(errno));
      break;
    }
    uint64_t waited = clock->now_ms(clock->ctx) - start;
    if (waited >= timeout_ms) {
      long pid = holder_pid(fd);
      char who[48] = "another process";
      if (pid) snprintf(who, sizeof who, "process %ld", pid);
      s = host_fail(r, HOST_FAILED, "the delivery lock %s is held by %s (another kms-host "
                    "changing keys or delivering queued work); gave up after %u ms: try again "
                    "when it is done, or raise --lock-timeout", lp, who, timeout_ms);
      break;
    }
    uint64_t left = timeout_ms - waited;
    clock->sleep_ms(clock->ctx, left < LOCK_POLL_MS ? (unsigned)left : LOCK_POLL_MS);
  }
  close(fd);
  free(lp);
  return s;
}

void host_lock_release(int fd) {
  if (fd >= 0) close(fd);
}
