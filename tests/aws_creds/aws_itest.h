/*
 * aws_itest.h -- what the aws_creds integration tests need around a real
 * tests/aws_server process: start/stop it on a loopback port, drive its test
 * controls, and a test-only libcurl transport implementing
 * aws_creds_http_fn (tests may use libcurl directly; the plugin uses
 * plugins/common's client).
 *
 * Environment: KMS_SOURCE_DIR (set by CTest) locates tests/aws_server;
 * KMS_PYTHON (default /usr/bin/python3) runs it.
 * Thread-safety: ait_start/ait_stop from the main thread; ait_http and
 * ait_curl_http from any thread.
 */
#ifndef AWS_ITEST_H
#define AWS_ITEST_H

#include "creds.h"

typedef struct ait_server ait_server;

/* Start tests/aws_server/server.py --test-controls with `args` (NULL-
 * terminated, may be NULL) added. NULL (reason on stderr) on failure. */
ait_server *ait_start(const char *const *args);
void ait_stop(ait_server *s);
const char *ait_url(const ait_server *s);

/* One request to the server (`path` starts with '/'): returns the HTTP
 * status or -1; *body (if body) receives the malloc'ed answer. */
long ait_http(ait_server *s, const char *method, const char *path, const char *json, char **body);

/* The aws_creds_http_fn: ctx is the const kpc_clock * the provider uses
 * (NULL: real clock), so deadlines convert to libcurl timeouts. */
kms_status ait_curl_http(void *ctx, const char *method, const char *url,
                         const char *const *headers, const char *body, size_t body_len,
                         int64_t deadline_ms, long *status, char **resp_body, size_t *resp_len,
                         kms_error *err);

#endif
