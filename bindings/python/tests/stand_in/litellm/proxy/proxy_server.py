"""STAND-IN: the parts of the proxy's load_config that touch secrets.

Order as in LiteLLM: environment_variables are exported first; then
general_settings.key_management_settings becomes KeyManagementSettings and
`key_management_system: custom` loads the custom manager from the config's
directory; model_list values `os.environ/NAME` are resolved with get_secret."""

import os

import yaml

import litellm
from litellm.secret_managers.custom_secret_manager_loader import load_custom_secret_manager
from litellm.secret_managers.main import get_secret
from litellm.types.secret_managers.main import KeyManagementSettings, KeyManagementSystem


def load_config(config_file_path):
    with open(config_file_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    for key, value in (config.get("environment_variables") or {}).items():
        os.environ[key] = str(get_secret(secret_name=key, default_value=value))
    general = config.get("general_settings") or {}
    if general.get("key_management_settings") is not None:
        litellm._key_management_settings = KeyManagementSettings(**general["key_management_settings"])
    if general.get("key_management_system") == "custom":
        litellm._key_management_system = KeyManagementSystem.CUSTOM
        load_custom_secret_manager(config_file_path)
    models = []
    for model in config.get("model_list") or []:
        params = dict(model.get("litellm_params") or {})
        for k, v in params.items():
            if isinstance(v, str) and v.startswith("os.environ/"):
                params[k] = get_secret(v)
        models.append({"model_name": model["model_name"], "litellm_params": params})
    return config, models
