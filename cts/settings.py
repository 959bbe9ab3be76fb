"""Settings for CLI commands: configuration errors end the command with one line and exit code 2."""

from __future__ import annotations

import sys

from common.config import Settings, load_settings
from common.errors import ConfigError
from common.logs import configure_logging


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"cts: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, service="cts")
    return settings
