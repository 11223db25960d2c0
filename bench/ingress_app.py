"""uvicorn factory for the ingress benchmark: the real app, or with publishing switched off.

`INGRESS_BENCH_NO_PUBLISH=1` swaps in a publisher that sends nothing, to measure the plain ceiling of
the same process; production never imports this module.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from ingress.app import create_app
from ingress.publisher import NullPublisher


def create() -> Starlette:
    if os.environ.get("INGRESS_BENCH_NO_PUBLISH") == "1":
        return create_app(publisher=NullPublisher())
    return create_app()
