/*
 * hello_host.c -- the smallest kmsplug host: load a plugin by name, read one
 * secret, print it. Built against the installed loader:
 *
 *   cc $(pkg-config --cflags kmsplug) hello_host.c $(pkg-config --libs kmsplug) -o hello_host
 *   ./hello_host PLUGIN_DIR PLUGIN_NAME SECRET_NAME
 */
#include <kms_loader.h>

#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PLUGIN_DIR PLUGIN_NAME SECRET_NAME\n", argv[0]);
    return 2;
  }
  kms_error err;
  kms_module *module = NULL;
  kms_client *client = NULL;
  kms_secret *secret = NULL;
  int rc = 1;
  if (kms_module_load(argv[1], argv[2], &module, &err) != KMS_OK ||
      kms_client_create(module, NULL, NULL, 0, &client, &err) != KMS_OK ||
      kms_client_read(client, argv[3], &secret, &err) != KMS_OK) {
    fprintf(stderr, "error: %s: %s\n", kms_status_str(err.status), err.message);
  } else {
    printf("%s = %s\n", argv[3], secret->value);
    rc = 0;
  }
  kms_client_free_secret(client, secret);
  kms_client_destroy(client);
  kms_module_unload(module);
  return rc;
}
