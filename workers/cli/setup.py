"""Setup commands: `db upgrade|downgrade`, `org create`, `number add`, `apikey create`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from config import get_settings
from db import admin
from db.engine import check_database, create_db_engine
from db.repos import audit
from db.repos import organizations as orgs
from db.uow import UnitOfWork
from domain.apikeys import generate_key, parse_expiry, parse_scopes
from workers.cli import apikeys as apikey_commands

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Commands) -> None:
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="create the database if missing and migrate to a revision")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)
    down = db.add_parser("downgrade", help="migrate down to a revision (e.g. base or -1)")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)

    org = commands.add_parser("org", help="organizations").add_subparsers(dest="org_command", required=True)
    create = org.add_parser("create", help="create an organization and print its id")
    create.add_argument("name")
    create.add_argument("--id", type=UUID, default=None)
    create.set_defaults(handler=_org_create)

    number = commands.add_parser("number", help="WhatsApp numbers").add_subparsers(
        dest="number_command", required=True
    )
    add = number.add_parser("add", help="attach a WhatsApp phone number to an organization")
    add.add_argument("org_id", type=UUID)
    add.add_argument("--phone-number-id", required=True)
    add.add_argument("--display-number", required=True)
    add.add_argument("--waba-id")
    add.add_argument("--access-token")
    add.add_argument(
        "--mps", type=int, default=80, help="messages per second (80, 1000, or 20 for app numbers)"
    )
    add.set_defaults(handler=_number_add)

    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        dest="apikey_command", required=True
    )
    key = apikey.add_parser("create", help="create an API key and print it once")
    key.add_argument("org_id", type=UUID)
    key.add_argument("--name", required=True)
    key.add_argument("--scopes", required=True, help="comma-separated, e.g. messages:write,messages:read")
    key.add_argument("--expires", help="ISO 8601 time (UTC unless zoned) or a duration: 90d, 12h, 30m")
    key.set_defaults(handler=_apikey_create)
    apikey_commands.register(apikey)


def _db_upgrade(args: argparse.Namespace) -> int:
    settings = get_settings()
    created = admin.ensure_database(settings)
    admin.upgrade(settings, args.revision)
    print(f"database {'created and ' if created else ''}migrated to {args.revision}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    admin.downgrade(get_settings(), args.revision)
    print(f"database migrated down to {args.revision}")
    return 0


def _system_uow() -> UnitOfWork:
    engine = create_db_engine(get_settings(), pool_size=1)
    check_database(engine)
    return UnitOfWork(engine, system=True)


def _org_create(args: argparse.Namespace) -> int:
    with _system_uow() as uow:
        org_id = orgs.create_organization(uow.conn, args.name, args.id)
        uow.commit()
    print(org_id)
    return 0


def _number_add(args: argparse.Namespace) -> int:
    if args.mps <= 0:
        raise ValueError("--mps must be positive")
    with UnitOfWork(create_db_engine(get_settings(), pool_size=1), organization_id=args.org_id) as uow:
        number_id = orgs.add_number(
            uow.conn,
            args.org_id,
            phone_number_id=args.phone_number_id,
            display_phone_number=args.display_number,
            waba_id=args.waba_id,
            access_token=args.access_token,
            mps=args.mps,
        )
        uow.commit()
    print(number_id)
    return 0


def _apikey_create(args: argparse.Namespace) -> int:
    scopes = parse_scopes(args.scopes)
    expires_at = parse_expiry(args.expires, datetime.now(UTC)) if args.expires else None
    key = generate_key()
    with UnitOfWork(create_db_engine(get_settings(), pool_size=1), organization_id=args.org_id) as uow:
        key_id = orgs.add_api_key(uow.conn, args.org_id, args.name, key, scopes, expires_at=expires_at)
        audit.append(
            uow.conn, args.org_id, audit.API_KEY, key_id, "api_key.created",
            {"prefix": key.prefix, "name": args.name, "scopes": list(scopes), "via": "cli",
             "expires_at": expires_at.isoformat() if expires_at else None},
        )  # fmt: skip
        uow.commit()
    print(key.plaintext)
    return 0
