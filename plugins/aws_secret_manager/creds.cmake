# plugins/aws_secret_manager/creds.cmake -- the configuration and credential
# chain sources (config.c, ini.c, creds.c), owned with them: the plugin's
# CMakeLists.txt includes this file and compiles ${KMS_AWS_CREDS_SOURCES} into
# kms_aws_core (which tests/aws_creds and tests/fuzz link).
set(KMS_AWS_CREDS_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/ini.c
    ${CMAKE_CURRENT_LIST_DIR}/creds.c)
