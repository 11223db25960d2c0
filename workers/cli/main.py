"""`adsapp`: set up the database, tenants, numbers and keys; run the fake Graph API; work dead letters."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from config.errors import ConfigurationError
from db.token_cipher import TokenUndecryptable
from domain.errors import FleetError
from workers.cli import bulk, demo, devsetup, dlq, graph, setup, tokens

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# Each module adds its own subcommands; later groups (dlq, templates, fake-graph, demo) join here.
REGISTRARS: list[Registrar] = [
    setup.register,
    graph.register,
    tokens.register,
    bulk.register,
    dlq.register,
    devsetup.register,
    demo.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adsapp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except (ConfigurationError, ValidationError, ValueError, TokenUndecryptable, FleetError) as exc:
        print(f"adsapp: error: {exc}", file=sys.stderr)
        return 2
    except IntegrityError as exc:
        # A foreign key or unique key said no: show the database's own one-line reason.
        diag = getattr(exc.orig, "diag", None)
        detail = (
            getattr(diag, "message_detail", None) or getattr(diag, "message_primary", None) or str(exc.orig)
        )
        print(f"adsapp: error: {detail}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
