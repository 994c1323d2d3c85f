/*
 * test_aws_sm_unit.c -- unit tests of the aws_secret_manager plugin's pure
 * parts (sm.c, errors.c): names, request bodies, GetSecretValue answers
 * (SecretString, SecretBinary), primary_secret_name documents, AWS error
 * types -> kms_status, retry classification, redaction, ListSecrets
 * bodies and answers, and which fields of a primary_secret_name document
 * changed between two versions (primary_watch.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kms_plugin_util.h"
#include "primary_watch.h"
#include "sm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_names(void **state) {
  (void)state;
  kms_error err;
  assert_int_equal(sm_check_name("litellm/sk-abc_1+=.@-", &err), KMS_OK);
  assert_int_equal(sm_check_name("", &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(sm_check_name("a b", &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "0x20"));
  assert_int_equal(sm_check_name("\xc3\xa9", &err), KMS_INVALID_ARGUMENT);
  char longname[SM_NAME_MAX + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[SM_NAME_MAX + 1] = '\0';
  assert_int_equal(sm_check_name(longname, &err), KMS_INVALID_ARGUMENT);
  longname[SM_NAME_MAX] = '\0';
  assert_int_equal(sm_check_name(longname, &err), KMS_OK);
  /* primary_secret_name keys: any UTF-8 text */
  assert_int_equal(sm_check_field("OPENAI key \xc3\xa9", &err), KMS_OK);
  assert_int_equal(sm_check_field("a\nb", &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(sm_check_field("\xff", &err), KMS_INVALID_ARGUMENT);
}

static void test_bodies(void **state) {
  (void)state;
  kms_error err;
  char *b;
  size_t n;
  sm_tag tags[] = {{"Environment", "Prod"}, {"Owner", "AI \"team\""}};
  assert_int_equal(sm_body_create("k", "sk-1", 4, "desc", tags, 2, "tok", &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"Name\":\"k\",\"ClientRequestToken\":\"tok\",\"SecretString\":\"sk-1\","
                         "\"Description\":\"desc\",\"Tags\":[{\"Key\":\"Environment\",\"Value\":"
                         "\"Prod\"},{\"Key\":\"Owner\",\"Value\":\"AI \\\"team\\\"\"}]}");
  assert_int_equal(n, strlen(b));
  sm_free_body(b, n);
  /* binary (a NUL, invalid UTF-8): SecretBinary, base64 */
  assert_int_equal(sm_body_put("k", "\x00\xff", 2, "tok", &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"SecretId\":\"k\",\"ClientRequestToken\":\"tok\",\"SecretBinary\":\"AP8=\"}");
  sm_free_body(b, n);
  assert_int_equal(sm_body_put("k", "", 0, "tok", &b, &n, &err), KMS_INVALID_ARGUMENT);
  char *big = malloc(SM_VALUE_MAX + 1);
  memset(big, 'x', SM_VALUE_MAX + 1);
  assert_int_equal(sm_body_put("k", big, SM_VALUE_MAX + 1, "t", &b, &n, &err),
                   KMS_INVALID_ARGUMENT);
  assert_int_equal(sm_body_put("k", big, SM_VALUE_MAX, "t", &b, &n, &err), KMS_OK);
  sm_free_body(b, n);
  free(big);
  assert_int_equal(sm_body_delete("k", 7, 0, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"SecretId\":\"k\",\"RecoveryWindowInDays\":7}");
  sm_free_body(b, n);
  assert_int_equal(sm_body_delete("k", 7, 1, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"SecretId\":\"k\",\"ForceDeleteWithoutRecovery\":true}");
  sm_free_body(b, n);
  assert_int_equal(sm_body_get("k", "AWSPREVIOUS", NULL, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"SecretId\":\"k\",\"VersionStage\":\"AWSPREVIOUS\"}");
  sm_free_body(b, n);
  assert_int_equal(sm_body_get("k", NULL, "0123456789abcdef0123456789abcdef", &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"SecretId\":\"k\",\"VersionId\":\"0123456789abcdef0123456789abcdef\"}");
  sm_free_body(b, n);
  assert_int_equal(sm_check_version_id("0123456789abcdef0123456789abcdef", &err), KMS_OK);
  assert_int_equal(sm_check_version_id("short", &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(sm_check_version_id("0123456789abcdef0123456789abcde?", &err),
                   KMS_INVALID_ARGUMENT);
  assert_int_equal(sm_check_version_stage("AWSPREVIOUS", &err), KMS_OK);
  assert_int_equal(sm_check_version_stage("a?b", &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(sm_check_version_stage("", &err), KMS_INVALID_ARGUMENT);
  char t1[37], t2[37];
  assert_int_equal(sm_request_token(t1, &err), KMS_OK);
  assert_int_equal(sm_request_token(t2, &err), KMS_OK);
  assert_int_equal(strlen(t1), 36);
  assert_int_equal(t1[14], '4');
  assert_string_not_equal(t1, t2);
}

static void test_parse_value(void **state) {
  (void)state;
  kms_error err;
  char *v;
  size_t n;
  const char *s = "{\"ARN\":\"arn\",\"Name\":\"k\",\"SecretString\":\"sk-\\u00e9\"}";
  assert_int_equal(sm_parse_value(s, strlen(s), &v, &n, &err), KMS_OK);
  assert_string_equal(v, "sk-\xc3\xa9");
  assert_int_equal(n, 5);
  free(v);
  const char *b = "{\"SecretBinary\":\"AP8AYQ==\"}";
  assert_int_equal(sm_parse_value(b, strlen(b), &v, &n, &err), KMS_OK);
  assert_int_equal(n, 4);
  assert_memory_equal(v, "\x00\xff\x00" "a", 4);
  free(v);
  const char *bad[] = {"{\"SecretBinary\":\"AP8\"}", "{\"SecretBinary\":\"!!!!\"}",
                       "{\"Name\":\"k\"}", "[1]", "not json", "{\"SecretString\":5}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(sm_parse_value(bad[i], strlen(bad[i]), &v, &n, &err), KMS_INTERNAL);
    assert_null(v);
  }
  /* a raw NUL inside the JSON is refused, not truncated */
  const char nul[] = "{\"SecretString\":\"a\0b\"}";
  assert_int_equal(sm_parse_value(nul, sizeof nul - 1, &v, &n, &err), KMS_INTERNAL);
}

static void test_primary_fields(void **state) {
  (void)state;
  kms_error err;
  char *doc, *v;
  size_t dn, n;
  int changed;
  assert_int_equal(sm_field_set(NULL, 0, "K1", "v1", 2, &doc, &dn, &changed, &err), KMS_OK);
  assert_true(changed);
  assert_string_equal(doc, "{\"K1\":\"v1\"}");
  char *doc2;
  size_t dn2;
  assert_int_equal(sm_field_set(doc, dn, "K2", "v2", 2, &doc2, &dn2, &changed, &err), KMS_OK);
  assert_string_equal(doc2, "{\"K1\":\"v1\",\"K2\":\"v2\"}");
  sm_free_body(doc, dn);
  assert_int_equal(sm_field_get(doc2, dn2, "K2", &v, &n, &err), KMS_OK);
  assert_string_equal(v, "v2");
  free(v);
  assert_int_equal(sm_field_get(doc2, dn2, "K3", &v, &n, &err), KMS_NOT_FOUND);
  assert_int_equal(sm_field_set(doc2, dn2, "K1", NULL, 0, &doc, &dn, &changed, &err), KMS_OK);
  assert_true(changed);
  assert_string_equal(doc, "{\"K2\":\"v2\"}");
  sm_free_body(doc2, dn2);
  assert_int_equal(sm_field_set(doc, dn, "K9", NULL, 0, &doc2, &dn2, &changed, &err), KMS_OK);
  assert_false(changed);
  sm_free_body(doc2, dn2);
  /* binary values do not fit a JSON document; a non-object is not overwritten */
  assert_int_equal(sm_field_set(doc, dn, "K", "\x00", 1, &doc2, &dn2, &changed, &err),
                   KMS_INVALID_ARGUMENT);
  sm_free_body(doc, dn);
  assert_int_equal(sm_field_set("[1]", 3, "K", "v", 1, &doc, &dn, &changed, &err), KMS_INTERNAL);
  assert_int_equal(sm_field_get("{\"K\":1}", 7, "K", &v, &n, &err), KMS_INTERNAL);
  assert_int_equal(sm_field_get("plain text", 10, "K", &v, &n, &err), KMS_INTERNAL);
  /* a key written twice: set and delete replace every copy (found by fuzz_aws_response) */
  const char *dup = "{\"K\":\"old\",\"J\":\"j\",\"K\":2}";
  assert_int_equal(sm_field_get(dup, strlen(dup), "K", &v, &n, &err), KMS_INTERNAL); /* last: 2 */
  const char *dup2 = "{\"K\":\"first\",\"K\":\"last\"}";
  assert_int_equal(sm_field_get(dup2, strlen(dup2), "K", &v, &n, &err), KMS_OK);
  assert_string_equal(v, "last");
  free(v);
  assert_int_equal(sm_field_set(dup, strlen(dup), "K", "v", 1, &doc, &dn, &changed, &err), KMS_OK);
  assert_string_equal(doc, "{\"J\":\"j\",\"K\":\"v\"}");
  sm_free_body(doc, dn);
  assert_int_equal(sm_field_set(dup, strlen(dup), "K", NULL, 0, &doc, &dn, &changed, &err), KMS_OK);
  assert_true(changed);
  assert_string_equal(doc, "{\"J\":\"j\"}");
  sm_free_body(doc, dn);
}

static kms_status map(long status, const char *body, kms_error *err) {
  return sm_map_error("read (GetSecretValue)", status, body, strlen(body), 1, NULL, 0, err);
}

static void test_error_mapping(void **state) {
  (void)state;
  kms_error err;
  struct {
    const char *body;
    long status;
    kms_status want;
  } cases[] = {
      {"{\"__type\":\"ResourceNotFoundException\",\"Message\":\"Secrets Manager can't find the "
       "specified secret.\"}", 400, KMS_NOT_FOUND},
      {"{\"__type\":\"com.amazonaws.secretsmanager#AccessDeniedException\",\"Message\":\"no\"}",
       400, KMS_PERMISSION_DENIED},
      {"{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}", 400, KMS_UNAVAILABLE},
      {"{\"__type\":\"InvalidRequestException\",\"Message\":\"x\"}", 400, KMS_INVALID_ARGUMENT},
      {"{\"__type\":\"InvalidParameterException\",\"Message\":\"x\"}", 400, KMS_INVALID_ARGUMENT},
      {"{\"__type\":\"ExpiredTokenException\",\"message\":\"expired\"}", 400, KMS_UNAUTHENTICATED},
      {"{\"__type\":\"UnrecognizedClientException\",\"message\":\"x\"}", 400, KMS_UNAUTHENTICATED},
      {"{\"__type\":\"InvalidSignatureException\",\"message\":\"x\"}", 400, KMS_UNAUTHENTICATED},
      {"{\"__type\":\"ResourceExistsException\",\"Message\":\"x\"}", 400, KMS_CONFLICT},
      {"{\"__type\":\"InternalServiceError\",\"Message\":\"x\"}", 500, KMS_UNAVAILABLE},
      {"{\"__type\":\"DecryptionFailure\",\"Message\":\"x\"}", 400, KMS_PERMISSION_DENIED},
      {"<html>gateway</html>", 502, KMS_UNAVAILABLE},
      {"", 403, KMS_PERMISSION_DENIED},
      {"", 418, KMS_INTERNAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    kms_status st = map(cases[i].status, cases[i].body, &err);
    if (st != cases[i].want) fail_msg("case %zu: %s: %s", i, kms_status_str(st), err.message);
    assert_int_equal(err.backend_status, cases[i].status);
    assert_non_null(strstr(err.message, "read (GetSecretValue)"));
  }
  map(400, cases[0].body, &err);
  assert_non_null(strstr(err.message, "ResourceNotFoundException"));
  assert_non_null(strstr(err.message, "can't find the specified secret"));
  map(400, "{\"__type\":\"InvalidSignatureException\",\"message\":\"Signature expired: x\"}", &err);
  assert_non_null(strstr(err.message, "clock"));
}

static void test_redaction(void **state) {
  (void)state;
  kms_error err;
  const char *b = "{\"__type\":\"ValidationException\",\"message\":\"1 validation error detected: "
                  "Value 'sk-very-secret' at 'secretString' failed\"}";
  sm_map_error("write", 400, b, strlen(b), 1, NULL, 0, &err);
  assert_null(strstr(err.message, "sk-very-secret"));
  assert_non_null(strstr(err.message, "at 'secretString'"));
  const char *c = "{\"__type\":\"InvalidRequestException\",\"Message\":\"bad sk-hidden-1 here\"}";
  sm_map_error("write", 400, c, strlen(c), 2, "sk-hidden-1", 11, &err);
  assert_null(strstr(err.message, "sk-hidden-1"));
  assert_non_null(strstr(err.message, "2 attempts"));
  /* Quoted values shorter than "..." do not lengthen a message that fills its
   * buffer (found by fuzz_aws_response: a stack overflow under ASan). */
  char big[1024];
  size_t n = (size_t)snprintf(big, sizeof big, "{\"__type\":\"ValidationException\",\"message\":\"");
  while (n < 700) n += (size_t)snprintf(big + n, sizeof big - n, "Value '' Value 'a' ");
  snprintf(big + n, sizeof big - n, "\"}");
  sm_map_error("write", 400, big, strlen(big), 1, NULL, 0, &err);
  assert_int_equal(err.status, KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "Value '' Value '.' "));
}

static void test_retry_classes(void **state) {
  (void)state;
  const char *thr = "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}";
  const char *nf = "{\"__type\":\"ResourceNotFoundException\",\"Message\":\"x\"}";
  assert_true(sm_retryable(400, thr, strlen(thr)));
  assert_false(sm_retryable(400, nf, strlen(nf)));
  assert_true(sm_retryable(500, "", 0));
  assert_true(sm_retryable(503, "", 0));
  assert_true(sm_retryable(429, "", 0));
  assert_false(sm_retryable(501, "", 0));
  assert_false(sm_retryable(403, "", 0));
  const char *sch = "{\"__type\":\"InvalidRequestException\",\"Message\":\"You can't perform this "
                    "operation on the secret because it was marked for deletion.\"}";
  assert_true(sm_is_scheduled_for_deletion(400, sch, strlen(sch)));
  assert_false(sm_is_scheduled_for_deletion(400, nf, strlen(nf)));
  assert_true(sm_error_is(400, nf, strlen(nf), "ResourceNotFoundException"));
  assert_false(sm_error_is(200, nf, strlen(nf), "ResourceNotFoundException"));
}

typedef struct names {
  char got[8][32];
  int n, stop_at;
} names;

static int add_name(void *ctx, const char *name) {
  names *l = ctx;
  if (l->n < 8) snprintf(l->got[l->n], sizeof l->got[0], "%s", name);
  l->n++;
  return l->stop_at && l->n >= l->stop_at;
}

static void test_list(void **state) {
  (void)state;
  kms_error err;
  char *b, *next;
  size_t n;
  int stopped;
  assert_int_equal(sm_body_list("vk/", NULL, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"MaxResults\":100,\"IncludePlannedDeletion\":false,\"Filters\":[{"
                         "\"Key\":\"name\",\"Values\":[\"vk/\"]}]}");
  sm_free_body(b, n);
  assert_int_equal(sm_body_list("", "tok==", &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"MaxResults\":100,\"IncludePlannedDeletion\":false,"
                         "\"NextToken\":\"tok==\"}");
  sm_free_body(b, n);
  /* a scheduled deletion, a name AWS's filter matched by a word, a name
   * that is not a string: left out; the NextToken handed back */
  const char *page = "{\"SecretList\":[{\"Name\":\"vk/a\",\"ARN\":\"arn:x\"},"
                     "{\"Name\":\"vk/b\",\"DeletedDate\":1700000000.5},"
                     "{\"Name\":\"x/vk/c\"},{\"Name\":5},{\"Name\":\"vk/d\","
                     "\"DeletedDate\":null}],\"NextToken\":\"t2\"}";
  names l = {0};
  assert_int_equal(sm_parse_list(page, strlen(page), "vk/", add_name, &l, &stopped, &next, &err),
                   KMS_OK);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.got[0], "vk/a");
  assert_string_equal(l.got[1], "vk/d");
  assert_int_equal(stopped, 0);
  assert_string_equal(next, "t2");
  free(next);
  /* the callback stops: no NextToken to follow */
  l = (names){.stop_at = 1};
  assert_int_equal(sm_parse_list(page, strlen(page), "", add_name, &l, &stopped, &next, &err),
                   KMS_OK);
  assert_int_equal(l.n, 1);
  assert_int_equal(stopped, 1);
  assert_null(next);
  /* the last page: no NextToken (or an empty one) */
  const char *last = "{\"SecretList\":[],\"NextToken\":\"\"}";
  assert_int_equal(sm_parse_list(last, strlen(last), "", add_name, &l, &stopped, &next, &err),
                   KMS_OK);
  assert_null(next);
  const char *bad = "{\"Secrets\":[]}";
  assert_int_equal(sm_parse_list(bad, strlen(bad), "", add_name, &l, &stopped, &next, &err),
                   KMS_INTERNAL);
  assert_non_null(strstr(err.message, "SecretList"));
  assert_int_equal(sm_parse_list("<html>", 6, "", add_name, &l, &stopped, &next, &err),
                   KMS_INTERNAL);
  /* primary_secret_name: the document's keys under a prefix */
  const char *doc = "{\"KEY_A\":\"a\",\"OTHER\":\"o\",\"KEY_B\":\"b\"}";
  l = (names){0};
  assert_int_equal(sm_field_names(doc, strlen(doc), "KEY_", add_name, &l, &err), KMS_OK);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.got[1], "KEY_B");
  assert_int_equal(sm_field_names("[1]", 3, "", add_name, &l, &err), KMS_INTERNAL);
}

/* The changes of `doc` against the watch as a "kind:name;..." line (kinds U
 * and D), in the order reported (sorted by name). */
static const char *changes_of(primary_watch *w, const char *doc, int mode) {
  static char line[512];
  pw_changes ch = {0};
  pw_update(w, doc, doc ? strlen(doc) : 0, mode, &ch);
  line[0] = '\0';
  for (size_t i = 0; i < ch.n; i++) {
    size_t l = strlen(line);
    snprintf(line + l, sizeof line - l, "%c:%s;", ch.v[i].kind == KMS_CHANGE_DELETED ? 'D' : 'U',
             ch.v[i].name);
  }
  pw_changes_free(&ch);
  return line;
}

static void test_primary_watch(void **state) {
  (void)state;
  primary_watch *w = pw_new();
  assert_non_null(w);
  /* nothing seen yet: the first document is a baseline, not a change */
  assert_string_equal(changes_of(w, "{\"A\":\"1\",\"B\":\"2\",\"C\":\"3\"}", PW_DIFF), "");
  /* a seed once seeded changes nothing (a later read of the same document) */
  assert_string_equal(changes_of(w, "{\"A\":\"9\"}", PW_SEED), "");
  /* B rotated, C removed, D added (an arrival is not a change) */
  assert_string_equal(changes_of(w, "{\"D\":\"4\",\"B\":\"2b\",\"A\":\"1\"}", PW_DIFF),
                      "U:B;D:C;");
  /* the same document again: nothing */
  assert_string_equal(changes_of(w, "{\"A\":\"1\",\"B\":\"2b\",\"D\":\"4\"}", PW_DIFF), "");
  /* duplicate keys: the last copy counts, as reads take it */
  assert_string_equal(changes_of(w, "{\"A\":\"x\",\"A\":\"1\",\"B\":\"2b\",\"D\":\"4\"}", PW_DIFF),
                      "");
  assert_string_equal(changes_of(w, "{\"A\":\"1\",\"A\":\"x\",\"B\":\"2b\",\"D\":\"4\"}", PW_DIFF),
                      "U:A;");
  /* a value that stops being a string is a change; the empty string is one too */
  assert_string_equal(changes_of(w, "{\"A\":\"x\",\"B\":null,\"D\":\"\"}", PW_DIFF), "U:B;U:D;");
  /* not a JSON object: the last valid document stays the one compared */
  assert_string_equal(changes_of(w, "[1,2]", PW_DIFF), "");
  assert_string_equal(changes_of(w, "{\"A\":\"x\",\"B\":null,\"D\":\"\"}", PW_DIFF), "");
  /* the plugin's own write is the new baseline without a report */
  assert_string_equal(changes_of(w, "{\"A\":\"own\",\"B\":null,\"D\":\"\"}", PW_OWN), "");
  assert_string_equal(changes_of(w, "{\"A\":\"own\",\"B\":null,\"D\":\"\"}", PW_DIFF), "");
  /* the document is gone: every field it held */
  assert_string_equal(changes_of(w, NULL, PW_DIFF), "D:A;D:B;D:D;");
  assert_string_equal(changes_of(w, NULL, PW_DIFF), "");
  pw_free(w);

  /* a seed on a fresh watch is the baseline */
  w = pw_new();
  assert_string_equal(changes_of(w, "{\"K\":\"1\"}", PW_SEED), "");
  assert_string_equal(changes_of(w, "{\"K\":\"2\"}", PW_DIFF), "U:K;");
  pw_free(w);
  pw_free(NULL);

  /* pw_all: every field (a landed never-blocking read), duplicates once */
  pw_changes all = {0};
  const char *doc = "{\"Z\":\"1\",\"A\":\"2\",\"Z\":\"3\"}";
  pw_all(doc, strlen(doc), &all);
  assert_int_equal(all.n, 2);
  assert_string_equal(all.v[0].name, "A");
  assert_string_equal(all.v[1].name, "Z");
  assert_int_equal(all.v[1].kind, KMS_CHANGE_UPDATED);
  pw_changes_free(&all);
  pw_all("nope", 4, &all);
  assert_int_equal(all.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),          cmocka_unit_test(test_bodies),
      cmocka_unit_test(test_parse_value),    cmocka_unit_test(test_primary_fields),
      cmocka_unit_test(test_error_mapping),  cmocka_unit_test(test_redaction),
      cmocka_unit_test(test_retry_classes),  cmocka_unit_test(test_list),
      cmocka_unit_test(test_primary_watch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
