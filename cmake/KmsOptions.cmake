# KmsOptions.cmake -- warnings, sanitizers, and kms_add_plugin().
option(KMS_WERROR "Treat warnings as errors" ON)
set(KMS_SANITIZE "" CACHE STRING "Sanitizers: '', 'address,undefined' or 'thread'")

add_compile_options(-Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes
                    -Wmissing-prototypes -Wno-unused-parameter -fno-common)
if(KMS_WERROR)
  add_compile_options(-Werror)
endif()
add_compile_definitions(_GNU_SOURCE)

if(KMS_SANITIZE)
  add_compile_options(-fsanitize=${KMS_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${KMS_SANITIZE})
endif()

# kms_add_plugin(<name> SOURCES ... [LIBS ...])
# Builds <KMS_PLUGIN_OUTPUT_DIR>/<name>.so with hidden visibility, so that
# kms_plugin_entry (marked KMS_PLUGIN_EXPORT) is the only exported symbol,
# and installs it into the plugin directory.
function(kms_add_plugin name)
  cmake_parse_arguments(P "NO_INSTALL" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR "${KMS_PLUGIN_OUTPUT_DIR}")
  endif()
  set(target kms_plugin_${name})
  add_library(${target} MODULE ${P_SOURCES})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME ${name} PREFIX "" SUFFIX ".so"
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY "${P_OUTPUT_DIR}")
  target_link_libraries(${target} PRIVATE kms_plugin_headers ${P_LIBS})
  target_link_options(${target} PRIVATE -Wl,--no-undefined -Wl,-z,relro,-z,now)
  if(NOT P_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION "${KMS_INSTALL_PLUGIN_DIR}")
  endif()
endfunction()
