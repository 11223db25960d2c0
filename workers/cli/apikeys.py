"""`adsapp apikey list [ORG_ID]` and `adsapp apikey revoke KEY` (an id or the visible prefix).

Listing shows what identifies a key (id, prefix, name, scopes, state, times), never its secret,
which is stored only as a hash. Revocation takes effect at the key's next request.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from config import get_settings
from db.engine import check_database, create_db_engine
from db.repos import apikeys, audit
from db.uow import UnitOfWork
from domain.apikeys import key_state

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

COLUMNS = ("id", "organization_id", "prefix", "name", "scopes", "state", "created_at", "expires_at",
           "last_used_at")  # fmt: skip


def register(apikey: Commands) -> None:
    listing = apikey.add_parser("list", help="list API keys (tab-separated, with a header line)")
    listing.add_argument("org_id", type=UUID, nargs="?", help="only this organization's keys")
    listing.set_defaults(handler=_list)
    revoke = apikey.add_parser("revoke", help="revoke an API key now")
    revoke.add_argument("key", help="the key's id, or its visible prefix (ads_xxxxxxxx)")
    revoke.set_defaults(handler=_revoke)


def _system_uow() -> UnitOfWork:
    engine = create_db_engine(get_settings(), pool_size=1)
    check_database(engine)
    return UnitOfWork(engine, system=True)


def _time(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _list(args: argparse.Namespace) -> int:
    with _system_uow() as uow:
        keys = apikeys.list_keys(uow.conn, args.org_id)
    now = datetime.now(UTC)
    print("\t".join(COLUMNS))
    for k in keys:
        fields = (
            str(k.id), str(k.organization_id), k.prefix, k.name, ",".join(k.scopes),
            key_state(k.expires_at, k.revoked_at, now), _time(k.created_at), _time(k.expires_at),
            _time(k.last_used_at),
        )  # fmt: skip
        print("\t".join(fields))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with _system_uow() as uow:
        key = apikeys.find_key(uow.conn, args.key)
        if key is None:
            raise ValueError(f"no API key {args.key!r}")
        revoked_at = apikeys.revoke(uow.conn, key.id)
        if key.revoked_at is None:
            audit.append(
                uow.conn, key.organization_id, audit.API_KEY, key.id, "api_key.revoked",
                {"prefix": key.prefix, "name": key.name, "via": "cli"},
            )  # fmt: skip
        uow.commit()
    already = " (already revoked)" if key.revoked_at is not None else ""
    print(f"revoked {key.id} {key.prefix} at {_time(revoked_at)}{already}")
    return 0
