/*
 * aws_itest.h -- a test-only libcurl transport implementing aws_creds_http_fn
 * for the aws_creds integration tests (tests may use libcurl directly; the
 * plugin hands creds.c plugins/common's client instead). The server itself
 * comes from tests/support/vault_fixture (.server = "aws").
 *
 * Thread-safety: ait_curl_http may be called from any thread.
 */
#ifndef AWS_ITEST_H
#define AWS_ITEST_H

#include "creds.h"

/* The aws_creds_http_fn: ctx is the const kpc_clock * the provider uses
 * (NULL: real clock), so deadlines convert to libcurl timeouts. Plain
 * http:// (the tests' loopback server) or https:// with the system trust. */
kms_status ait_curl_http(void *ctx, const char *method, const char *url,
                         const char *const *headers, const char *body, size_t body_len,
                         int64_t deadline_ms, long *status, char **resp_body, size_t *resp_len,
                         kms_error *err);

#endif
