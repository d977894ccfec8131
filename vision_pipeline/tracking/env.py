"""ClearML configuration from the environment, with ClearML's own variable names (see docs/configuration.md).

Commands call this at run time (never at import time) so tests and operators can change the
environment between calls.
"""

from __future__ import annotations

import os

from .clearml_session import ClearMLConfig

_TRUE = ("1", "true", "yes", "on")


def offline_flag(value: str | None) -> bool:
    """``CLEARML_OFFLINE_MODE``: ``1``/``true``/``yes``/``on`` (any case) means offline."""
    return str(value or "").strip().lower() in _TRUE


def clearml_config_from_env() -> ClearMLConfig:
    """``CLEARML_API_HOST`` etc.; no host, or ``CLEARML_OFFLINE_MODE=1`` (see :func:`offline_flag`), records offline."""
    return ClearMLConfig(
        api_host=os.environ.get("CLEARML_API_HOST") or None,
        web_host=os.environ.get("CLEARML_WEB_HOST") or None,
        files_host=os.environ.get("CLEARML_FILES_HOST") or None,
        access_key=os.environ.get("CLEARML_API_ACCESS_KEY") or None,
        secret_key=os.environ.get("CLEARML_API_SECRET_KEY") or None,
        offline_mode=offline_flag(os.environ.get("CLEARML_OFFLINE_MODE")),
    )
