"""The operator console: server-rendered pages under `/console` over the same services as `/api/v1`."""

from ingress.console.routes import console_mount
from ingress.console.state import ConsoleOptions, ConsoleState

__all__ = ["ConsoleOptions", "ConsoleState", "console_mount"]
