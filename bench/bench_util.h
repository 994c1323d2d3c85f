/* bench/bench_util.h -- what kms-bench and kms-aws-bench both need: the
 * failure report bench/run parses (an "ERROR mode=..." line on stdout) and a
 * monotonic nanosecond clock. One copy, so the two programs report alike. */
#ifndef KMS_BENCH_UTIL_H
#define KMS_BENCH_UTIL_H

#include <stdint.h>

/* Set once by main() before any thread starts: the program's name and the
 * mode being measured, both named in failure reports. */
extern const char *g_prog;
extern const char *g_mode;

/* Print "ERROR mode=<mode> <message>" on stdout (newlines flattened, for
 * bench/run) and the same on stderr, then exit(3). */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_ns(void);

#endif
