/*
 * aws_bench.c -- kms-aws-bench, the measuring half of bench/aws_bench:
 * aws_secret_manager.so called through the ABI (kms_client_read) against a
 * Secrets Manager-compatible server on loopback (tests/aws_server).
 *
 *   kms-aws-bench uncached|cached --plugin-dir DIR --url URL [--cacert PEM]
 *                 --region R --name SECRET --value EXPECTED
 *                 [--secs S] [--max N] [--warmup N]
 *
 *   uncached  setting refresh_interval=0 (no cache): every read is one
 *             signed GetSecretValue on the plugin's pooled connection.
 *             Prints "RESULT mode=uncached n= rps= p50_us= p99_us=".
 *   cached    the default refresh interval: one read fills the cache, then
 *             reads are timed in batches of 1,000 for --secs.
 *             Prints "RESULT mode=cached n= ns=" (ns per read + free).
 *
 * Every read's value is compared with --value, so a figure is never made of
 * failed reads; any failure prints "ERROR ..." and exits 3 (bench/aws_bench
 * then shows n/a with the reason). The credentials are the test server's
 * fixed ones (tests/aws_server/README.md), handed to the plugin through the
 * host's getenv; nothing of the machine's own AWS setup is read.
 * Single-threaded.
 */
#include "kms_loader.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

typedef struct opts {
  const char *mode, *plugin_dir, *url, *cacert, *region, *name, *value;
  double secs;
  long max, warmup;
} opts;

/* fail(), now_ns(), g_mode: bench_util.c */

/* The host's environment, as the operator would export it for the plugin. */
static const char *host_getenv(void *ctx, const char *name) {
  const opts *o = ctx;
  if (!strcmp(name, "AWS_ENDPOINT_URL_SECRETS_MANAGER")) return o->url;
  if (!strcmp(name, "AWS_REGION")) return o->region;
  if (!strcmp(name, "AWS_ACCESS_KEY_ID")) return "AKIAKMSPLUGTEST00001";
  if (!strcmp(name, "AWS_SECRET_ACCESS_KEY")) return "kmsplug/test/secret/access/key/0000000000";
  if (!strcmp(name, "AWS_CA_BUNDLE")) return o->cacert;
  if (!strcmp(name, "AWS_EC2_METADATA_DISABLED")) return "true";
  if (!strcmp(name, "AWS_SHARED_CREDENTIALS_FILE") || !strcmp(name, "AWS_CONFIG_FILE"))
    return "/nonexistent";
  return NULL;
}

static void host_log(void *ctx, kms_log_level level, const char *msg) {
  (void)ctx;
  if (level <= KMS_LOG_WARN) fprintf(stderr, "kms-aws-bench: plugin: %s\n", msg);
}

static kms_client *open_client(const opts *o, kms_host *host, kms_module **mod) {
  kms_error err;
  if (kms_module_load(o->plugin_dir, "aws_secret_manager", mod, &err) != KMS_OK)
    fail("load: %s", err.message);
  *host = (kms_host){.struct_size = sizeof *host, .abi_major = KMS_ABI_MAJOR,
                     .abi_minor = KMS_ABI_MINOR, .ctx = (void *)o, .log = host_log,
                     .getenv = host_getenv};
  /* uncached: refresh interval 0 disables the cache (CONFIG.md) */
  const kms_setting uncached[] = {{"refresh_interval", "0"}};
  int nocache = !strcmp(o->mode, "uncached");
  kms_client *c = NULL;
  if (kms_client_create(*mod, host, nocache ? uncached : NULL, nocache ? 1 : 0, &c, &err) !=
      KMS_OK)
    fail("create: %s", err.message);
  return c;
}

/* One read, its value checked, the secret freed. */
static void read_once(kms_client *c, const opts *o) {
  kms_secret *s = NULL;
  kms_error err;
  if (kms_client_read(c, o->name, &s, &err) != KMS_OK)
    fail("read %s: %s: %s", o->name, kms_status_str(err.status), err.message);
  if (s->length != strlen(o->value) || memcmp(s->value, o->value, s->length) != 0) {
    kms_client_free_secret(c, s);
    fail("read %s: the value differs from --value", o->name);
  }
  kms_client_free_secret(c, s);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* p in (0, 100]: the nearest-rank percentile of n sorted values. */
static double pct_us(const uint64_t *lat, size_t n, double p) {
  size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return (double)lat[k - 1] / 1e3;
}

static void run_uncached(kms_client *c, const opts *o) {
  for (long i = 0; i < o->warmup; i++) read_once(c, o);
  uint64_t *lat = malloc(sizeof *lat * (size_t)o->max);
  if (!lat) fail("out of memory");
  size_t n = 0;
  uint64_t t0 = now_ns(), end = t0 + (uint64_t)(o->secs * 1e9);
  while (n < (size_t)o->max) {
    uint64_t a = now_ns();
    read_once(c, o);
    uint64_t b = now_ns();
    lat[n++] = b - a;
    if (b >= end) break;
  }
  double el = (double)(now_ns() - t0) / 1e9;
  qsort(lat, n, sizeof *lat, cmp_u64);
  printf("RESULT mode=uncached n=%zu rps=%.1f p50_us=%.1f p99_us=%.1f\n", n, (double)n / el,
         pct_us(lat, n, 50), pct_us(lat, n, 99));
  free(lat);
}

static void run_cached(kms_client *c, const opts *o) {
  read_once(c, o); /* fills the cache: the one request of this mode */
  for (long i = 0; i < o->warmup; i++) read_once(c, o);
  long n = 0;
  uint64_t t0 = now_ns(), end = t0 + (uint64_t)(o->secs * 1e9), t = t0;
  while (n < o->max && t < end) {
    for (int i = 0; i < 1000; i++) read_once(c, o);
    n += 1000;
    t = now_ns();
  }
  printf("RESULT mode=cached n=%ld ns=%.1f\n", n, (double)(t - t0) / (double)n);
}

static void usage(void) {
  fputs("usage: kms-aws-bench uncached|cached --plugin-dir DIR --url URL [--cacert PEM]\n"
        "       --region R --name SECRET --value EXPECTED [--secs S] [--max N] [--warmup N]\n",
        stderr);
  exit(2);
}

static opts parse(int argc, char **argv) {
  opts o = {.secs = 1, .max = 1000000, .warmup = 20};
  if (argc < 2 || (strcmp(argv[1], "uncached") && strcmp(argv[1], "cached"))) usage();
  g_prog = "kms-aws-bench";
  o.mode = g_mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--plugin-dir")) o.plugin_dir = v;
    else if (!strcmp(a, "--url")) o.url = v;
    else if (!strcmp(a, "--cacert")) o.cacert = *v ? v : NULL;
    else if (!strcmp(a, "--region")) o.region = v;
    else if (!strcmp(a, "--name")) o.name = v;
    else if (!strcmp(a, "--value")) o.value = v;
    else if (!strcmp(a, "--secs")) o.secs = atof(v);
    else if (!strcmp(a, "--max")) o.max = atol(v);
    else if (!strcmp(a, "--warmup")) o.warmup = atol(v);
    else fail("unknown option %s", a);
  }
  if (argc % 2) fail("option %s needs a value", argv[argc - 1]);
  if (!o.plugin_dir || !o.url || !o.region || !o.name || !o.value)
    fail("--plugin-dir, --url, --region, --name and --value are required");
  if (o.secs <= 0 || o.secs > 600 || o.max < 1 || o.max > 100000000 || o.warmup < 0)
    fail("--secs must be in (0, 600], --max in [1, 1e8], --warmup >= 0");
  return o;
}

int main(int argc, char **argv) {
  opts o = parse(argc, argv);
  kms_host host;
  kms_module *mod = NULL;
  kms_client *c = open_client(&o, &host, &mod);
  if (!strcmp(o.mode, "uncached")) run_uncached(c, &o);
  else run_cached(c, &o);
  kms_client_destroy(c);
  kms_module_unload(mod);
  return 0;
}
