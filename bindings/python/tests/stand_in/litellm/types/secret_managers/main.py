"""STAND-IN: KeyManagementSystem and KeyManagementSettings.

KeyManagementSettings is a pydantic model in LiteLLM with no `extra` config,
so unknown keys in key_management_settings are dropped; this plain class
keeps that rule (and model_dump()) without needing pydantic."""

import enum


class KeyManagementSystem(enum.Enum):
    GOOGLE_KMS = "google_kms"
    AZURE_KEY_VAULT = "azure_key_vault"
    AWS_SECRET_MANAGER = "aws_secret_manager"
    GOOGLE_SECRET_MANAGER = "google_secret_manager"
    HASHICORP_VAULT = "hashicorp_vault"
    CYBERARK = "cyberark"
    LOCAL = "local"
    AWS_KMS = "aws_kms"
    CUSTOM = "custom"


_FIELDS = {  # field -> default, as LiteLLM declares them
    "hosted_keys": None, "store_virtual_keys": False, "prefix_for_stored_virtual_keys": "litellm/",
    "access_mode": "read_only", "primary_secret_name": None, "description": None, "tags": None,
    "custom_secret_manager": None, "aws_region_name": None, "aws_role_name": None,
    "aws_session_name": None, "aws_external_id": None, "aws_profile_name": None,
    "aws_web_identity_token": None, "aws_sts_endpoint": None, "replica_regions": None}


class KeyManagementSettings:
    def __init__(self, **values):
        if values.get("access_mode", "read_only") not in ("read_only", "write_only", "read_and_write"):
            raise ValueError("access_mode must be read_only, write_only or read_and_write")
        for name, default in _FIELDS.items():
            setattr(self, name, values.get(name, default))

    def model_dump(self):
        return {name: getattr(self, name) for name in _FIELDS}
