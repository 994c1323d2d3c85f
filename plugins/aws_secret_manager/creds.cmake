# plugins/aws_secret_manager/creds.cmake -- the configuration and credential
# chain sources (config.c, ini.c, creds.c), for the plugin's CMakeLists.txt
# and tests/aws_creds: include() this file and add ${KMS_AWS_CREDS_SOURCES}
# to a target that links kms_plugin_core (plugins/common).
set(KMS_AWS_CREDS_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/ini.c
    ${CMAKE_CURRENT_LIST_DIR}/creds.c)
