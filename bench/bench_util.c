/* bench/bench_util.c -- the failure report and clock kms-bench and
 * kms-aws-bench share (see bench_util.h). */
#include "bench_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

const char *g_prog = "kms-bench";
const char *g_mode = "?";

void fail(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  for (char *p = buf; *p; p++)
    if (*p == '\n') *p = ' ';
  printf("ERROR mode=%s %s\n", g_mode, buf);
  fflush(stdout);
  fprintf(stderr, "%s %s: %s\n", g_prog, g_mode, buf);
  exit(3);
}

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
