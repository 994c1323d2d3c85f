/*
 * layout.c -- prints the sizes and field offsets of the ABI structs the
 * Python binding mirrors with ctypes, one "struct.field offset" or
 * "struct size" per line, so tests/test_abi11.py can compare them with
 * kmsplug._lib (a ctypes layout that drifts from the header fails there).
 */
#include "kms_loader.h"

#include <stddef.h>
#include <stdio.h>

#define SIZE(t) printf("%s %zu\n", #t, sizeof(t))
#define OFF(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(t, f))

int main(void) {
  SIZE(kms_error);
  SIZE(kms_secret);
  SIZE(kms_setting);
  SIZE(kms_write_options);
  SIZE(kms_host);
  OFF(kms_host, notify);
  SIZE(kms_plugin_info);
  SIZE(kms_call_options);
  OFF(kms_call_options, location);
  OFF(kms_call_options, version);
  OFF(kms_call_options, delete_mode);
  OFF(kms_call_options, recovery_window_days);
  SIZE(kms_secret_info);
  OFF(kms_secret_info, flags);
  SIZE(kms_health);
  OFF(kms_health, errors_by_status);
  OFF(kms_health, last_error_status);
  OFF(kms_health, last_error_time);
  OFF(kms_health, last_error);
  SIZE(kms_change);
  OFF(kms_change, kind);
  OFF(kms_change, version);
  OFF(kms_change, location);
  OFF(kms_change, n_location);
  SIZE(kms_plugin);
  OFF(kms_plugin, free_secret);
  OFF(kms_plugin, read_secret_opt);
  OFF(kms_plugin, read_secret_into);
  OFF(kms_plugin, health);
  return 0;
}
