"""`adsapp tokens reencrypt`: every stored Graph access token encrypted with the first key of
TOKEN_ENCRYPTION_KEYS (the step of a key rotation that lets the old key be dropped)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import sqlalchemy as sa

from config import get_settings
from db.engine import check_database, create_db_engine
from db.tables import whatsapp_numbers
from db.token_cipher import cipher
from db.uow import UnitOfWork

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Commands) -> None:
    tokens = commands.add_parser("tokens", help="stored Graph access tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    again = tokens.add_parser("reencrypt", help="re-encrypt every access token with the first key")
    again.set_defaults(handler=_reencrypt)


def _reencrypt(args: argparse.Namespace) -> int:
    engine = create_db_engine(get_settings(), pool_size=1)
    try:
        check_database(engine)
        count = reencrypt_all(engine)
    finally:
        engine.dispose()
    print(f"re-encrypted {count} access token{'s' if count != 1 else ''}")
    return 0


def reencrypt_all(engine: sa.Engine) -> int:
    """In one transaction, so a failure (a token no key decrypts) changes nothing."""
    box = cipher()
    with UnitOfWork(engine, system=True) as uow:
        rows = uow.conn.execute(
            sa.select(whatsapp_numbers.c.id, whatsapp_numbers.c.access_token)
            .where(whatsapp_numbers.c.access_token.is_not(None))
            .with_for_update()
        ).all()
        for row in rows:
            uow.conn.execute(
                sa.update(whatsapp_numbers)
                .where(whatsapp_numbers.c.id == row.id)
                .values(access_token=box.reencrypt(row.access_token), updated_at=sa.func.now())
            )
        uow.commit()
    return len(rows)
