/*
 * hello_plugin.c -- the smallest complete kmsplug plugin, built out of tree
 * against the installed header (see README "Writing a plugin"):
 *
 *   cc $(pkg-config --cflags kmsplug) -shared -fPIC -fvisibility=hidden \
 *      hello_plugin.c -o hello.so
 *
 * It serves one secret, "greeting", and refuses everything else.
 */
#include <kms_plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kms_instance {
  int unused;
};

static kms_status fail(kms_error *err, kms_status st, const char *msg) {
  err->status = st;
  err->backend_status = 0;
  snprintf(err->message, sizeof err->message, "%s", msg);
  return st;
}

static kms_status hello_create(const kms_host *host, const kms_setting *settings, size_t n,
                               kms_instance **out, kms_error *err) {
  (void)host, (void)settings, (void)n; /* this plugin has no settings */
  *out = calloc(1, sizeof **out);
  return *out ? KMS_OK : fail(err, KMS_NO_MEMORY, "hello: out of memory");
}

static void hello_destroy(kms_instance *in) { free(in); }

static kms_status hello_read(kms_instance *in, const char *name, kms_secret **out,
                             kms_error *err) {
  (void)in;
  if (strcmp(name, "greeting") != 0) return fail(err, KMS_NOT_FOUND, "hello: only 'greeting' exists");
  kms_secret *s = calloc(1, sizeof *s);
  static const char text[] = "hello, world";
  char *v = malloc(sizeof text);
  if (!s || !v) {
    free(s);
    free(v);
    return fail(err, KMS_NO_MEMORY, "hello: out of memory");
  }
  memcpy(v, text, sizeof text);
  s->struct_size = sizeof *s; /* tells the host which fields exist */
  s->value = v;
  s->length = strlen(v);
  *out = s;
  return KMS_OK;
}

static void hello_free_secret(kms_secret *s) {
  if (!s) return;
  memset((void *)s->value, 0, s->length); /* real plugins use OPENSSL_cleanse */
  free((void *)s->value);
  free(s);
}

static const kms_plugin hello = {
    .struct_size = sizeof(kms_plugin),
    .abi_major = KMS_ABI_MAJOR,
    .abi_minor = KMS_ABI_MINOR,
    .name = "hello", /* must equal the file name hello.so */
    .version = "1.0.0",
    .capabilities = KMS_CAP_READ | KMS_CAP_THREAD_SAFE,
    .create = hello_create,
    .destroy = hello_destroy,
    .read_secret = hello_read,
    /* write_secret, delete_secret, refresh left NULL: hosts see UNSUPPORTED */
    .free_secret = hello_free_secret,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor; /* any 1.x host can use a 1.0 table */
  return host_major == KMS_ABI_MAJOR ? &hello : NULL;
}
