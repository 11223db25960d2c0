"""Start-up errors that name what is wrong and which variable fixes it."""

from __future__ import annotations


class ConfigurationError(Exception):
    """Raised at start when a setting is malformed or a dependency cannot be reached."""


class DependencyUnavailable(ConfigurationError):
    def __init__(self, service: str, variable: str, url: str, cause: BaseException) -> None:
        self.service = service
        self.variable = variable
        reason = " ".join(str(cause).split())  # drivers put hints on extra lines; keep one line
        super().__init__(
            f"{service} is not reachable at {url} ({type(cause).__name__}: {reason}); "
            f"start it or set {variable}"
        )
