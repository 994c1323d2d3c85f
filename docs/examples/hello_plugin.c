/*
 * hello_plugin.c -- the smallest complete kmsplug plugin, built out of tree
 * against the installed header and helpers (see README "Writing a plugin"):
 *
 *   cc $(pkg-config --cflags kmsplug-plugin) -shared -fPIC -fvisibility=hidden \
 *      hello_plugin.c $(pkg-config --libs kmsplug-plugin) -o hello.so
 *
 * or with CMake and find_package(kmsplug): see CMakeLists.txt here.
 * It serves one secret, "greeting", and refuses everything else.
 */
#include <kms_plugin_util.h> /* kms_plugin.h + kms_error_set, kms_secret_new, ... */

#include <stdlib.h>
#include <string.h>

struct kms_instance {
  int unused;
};

static kms_status hello_create(const kms_host *host, const kms_setting *settings, size_t n,
                               kms_instance **out, kms_error *err) {
  (void)host, (void)settings, (void)n; /* this plugin has no settings */
  *out = calloc(1, sizeof **out);
  return *out ? KMS_OK : kms_error_set(err, KMS_NO_MEMORY, 0, "hello: out of memory");
}

static void hello_destroy(kms_instance *in) { free(in); }

static kms_status hello_read(kms_instance *in, const char *name, kms_secret **out,
                             kms_error *err) {
  (void)in;
  *out = NULL;
  if (strcmp(name, "greeting") != 0)
    return kms_error_set(err, KMS_NOT_FOUND, 0, "hello: only 'greeting' exists, not '%s'", name);
  static const char text[] = "hello, world";
  return kms_secret_new(text, strlen(text), out, err); /* a copy the host frees */
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
    .free_secret = kms_secret_free, /* wipes the bytes, then frees */
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor; /* any 1.x host can use a 1.0 table */
  return host_major == KMS_ABI_MAJOR ? &hello : NULL;
}
