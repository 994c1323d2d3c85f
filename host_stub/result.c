/*
 * result.c -- the host's one error convention (host_result) and its clock.
 *
 * Library code reports failure by filling a host_result and returning its
 * status; only main.c prints it and turns it into an exit code. The clock
 * is injectable so code that waits (the delivery lock) is tested without
 * sleeping.
 */
#include "host.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

host_status host_fail(host_result *r, host_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof r->msg, fmt, ap);
  va_end(ap);
  r->status = status;
  return status;
}

static uint64_t system_now_ms(void *ctx) {
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void system_sleep_ms(void *ctx, unsigned ms) {
  (void)ctx;
  struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

const host_clock *host_clock_system(void) {
  static const host_clock c = {system_now_ms, system_sleep_ms, NULL};
  return &c;
}
