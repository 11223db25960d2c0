"""The HTTP API under test: the app and its bearer headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from config import Settings
from ingress.api import ApiOptions, ApiState, api_mount


def build_app(settings: Settings, options: ApiOptions) -> tuple[Starlette, ApiState]:
    state = ApiState(settings, options)
    return api_app(state), state


def api_app(state: ApiState, *more: BaseRoute) -> Starlette:
    """The API (and `more` routes beside it, e.g. the console), opening and closing `state` with the app."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.open()
        try:
            yield
        finally:
            state.close()

    return Starlette(routes=[api_mount(state), *more], lifespan=lifespan)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
