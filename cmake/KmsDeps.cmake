# KmsDeps.cmake -- find every third-party dependency the conventional way and
# fail with the Debian package to install when one is missing.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

# kms_require_pkg(<prefix> <pkg-config module> <debian package>)
# Defines the imported target PkgConfig::<prefix>.
function(kms_require_pkg prefix module debpkg)
  pkg_check_modules(${prefix} IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "${module} not found (pkg-config module '${module}'): apt-get install ${debpkg}")
  endif()
endfunction()

kms_require_pkg(CURL libcurl libcurl4-openssl-dev)
execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --static --libs libcurl
                OUTPUT_VARIABLE _kms_curl_ssl OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _kms_curl_ssl MATCHES "-lssl")
  message(FATAL_ERROR "libcurl must be the OpenSSL flavour (libcurl's pkg-config does not link -lssl): apt-get install libcurl4-openssl-dev")
endif()
kms_require_pkg(CJSON libcjson libcjson-dev)
# Only what is being built is required: the host's and the tests' own
# dependencies are not needed to build the loader and the plugins.
if(BUILD_TESTING)
  kms_require_pkg(CMOCKA cmocka libcmocka-dev)
endif()
if(KMS_BUILD_HOST)
  kms_require_pkg(YAML yaml-0.1 libyaml-dev)
  kms_require_pkg(SQLITE3 sqlite3 libsqlite3-dev)
  kms_require_pkg(LIBPQ libpq libpq-dev) # kms-host on PostgreSQL (host_stub/store_pg.c)
endif()

find_package(OpenSSL 3.0)
if(NOT OPENSSL_FOUND)
  message(FATAL_ERROR "OpenSSL 3 development files not found: apt-get install libssl-dev")
endif()
find_package(Threads REQUIRED)

set(KMS_PYTHON /usr/bin/python3 CACHE FILEPATH "Debian's python3 (tests/vault_server, pytest suites)")
