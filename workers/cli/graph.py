"""Graph API commands: `templates sync ORG_ID` and `fake-graph` (serve the fake Graph API)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING
from uuid import UUID

from config import get_settings
from db.engine import check_database, create_db_engine
from domain.errors import FleetError
from workers.fake_graph import serve
from workers.graph import GraphClient
from workers.templates import sync_organization

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Commands) -> None:
    templates = commands.add_parser("templates", help="message templates").add_subparsers(
        dest="templates_command", required=True
    )
    sync = templates.add_parser("sync", help="fetch an organization's templates from the Graph API")
    sync.add_argument("org_id", type=UUID)
    sync.set_defaults(handler=_templates_sync)

    fake = commands.add_parser("fake-graph", help="serve the fake Graph API (tests, demos, benchmarks)")
    fake.add_argument("--port", type=int, default=None, help="default: FAKE_GRAPH_PORT (8900)")
    fake.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to be reachable from other hosts")
    fake.add_argument(
        "--webhook-url",
        default=os.environ.get("FAKE_GRAPH_WEBHOOK_URL"),
        help="post signed status webhooks for each send here (default: FAKE_GRAPH_WEBHOOK_URL)",
    )
    fake.set_defaults(handler=_fake_graph)


def _templates_sync(args: argparse.Namespace) -> int:
    settings = get_settings()
    engine = create_db_engine(settings, pool_size=1)
    try:
        check_database(engine)
        with GraphClient.from_settings(settings) as graph:
            written = sync_organization(engine, graph, args.org_id)
    except FleetError as exc:
        print(f"adsapp: error: template sync failed: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"{written} templates synced")
    return 0


def _fake_graph(args: argparse.Namespace) -> int:
    serve(args.port, host=args.host, webhook_url=args.webhook_url)
    return 0
