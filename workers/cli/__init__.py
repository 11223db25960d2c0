"""The `adsapp` command line: one subcommand group per module in this package."""

from workers.cli.main import main

__all__ = ["main"]
