"""The console's routes: sign-in, overview and numbers, each a thin page over `services/`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ingress.api.ratelimit import RateState
from ingress.console import auth, fleet
from ingress.console.bulkjobs import bulk_routes
from ingress.console.deadletters import deadletter_routes
from ingress.console.session import COOKIE, LOGIN_COOKIE, ConsoleSession
from ingress.console.state import ConsoleState
from ingress.console.web import Console
from services import audit, breaker_keys, breakers, number_status, overview

log = logging.getLogger(__name__)


def _safe_next(console: Console, target: str | None) -> str:
    # Only a path inside the console: never an open redirect to another site.
    base = console.state.options.base_path
    if target and target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return console.url("/")


def console_routes(state: ConsoleState) -> list[BaseRoute]:
    console = Console(state)
    options = state.options

    async def login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
        token, cookie = console.codec.login_token()
        response = console.render(
            request,
            "login.html",
            None,
            status_code=status,
            login_token=token,
            error=error,
            next=request.query_params.get("next") or "",
        )
        response.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=600,
            path=options.base_path,
            httponly=True,
            samesite="strict",
            secure=options.secure_cookies,
        )
        return response

    def limited(request: Request, rate: RateState) -> Response:
        log.warning(
            "console sign-in refused: too many failed attempts from this address",
            extra={
                "address": request.client.host if request.client else None,
                "retry_after": rate.reset_seconds,
            },
        )
        response = console.render(
            request, "sign_in_limited.html", None, status_code=429, retry_after=rate.reset_seconds
        )
        response.headers.update(rate.headers())
        response.headers["Retry-After"] = str(rate.reset_seconds)
        return response

    def _count_failure(address: str) -> RateState | None:
        rate = state.sign_in_limiter.hit(address)
        if rate is None:
            state.api.metrics.limiter_unavailable.labels("console_sign_in").inc()
        return rate

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return await login_form(request)
        address = request.client.host if request.client else "unknown"
        # An address that spent its failed attempts is refused before its key is even looked at.
        before = await run_in_threadpool(state.sign_in_limiter.peek, address)
        if before is not None and before.remaining == 0:
            return limited(request, before)
        form = await request.form()
        if not console.codec.login_token_matches(
            request.cookies.get(LOGIN_COOKIE), str(form.get("csrf_token") or "")
        ):
            return console.refuse(
                "The sign-in form expired or was not sent from this console; reload it.", 403
            )
        try:
            session = await run_in_threadpool(
                auth.sign_in,
                state.engine,
                state.redis,
                console.codec,
                str(form.get("api_key") or ""),
                state.api.options.redis_namespace,
            )
        except auth.SignInRefused as refused:
            after = await run_in_threadpool(_count_failure, address)
            if after is not None and after.remaining == 0:
                return limited(request, after)
            return await login_form(request, error=refused.reason, status=401)
        await run_in_threadpool(
            audit.record_now, state.engine, session.actor, "console.sign_in",
            aggregate_type="api_key", aggregate_id=str(session.key_id),
        )  # fmt: skip
        response = console.redirect("/")
        response.headers["location"] = _safe_next(console, str(form.get("next") or ""))
        response.set_cookie(
            COOKIE,
            console.codec.dumps(session),
            max_age=options.session_seconds,
            path=options.base_path,
            httponly=True,
            samesite="strict",
            secure=options.secure_cookies,
        )
        response.delete_cookie(LOGIN_COOKIE, path=options.base_path)
        return console.secure(response)

    async def logout(request: Request, session: ConsoleSession) -> Response:
        await run_in_threadpool(
            audit.record_now, state.engine, session.actor, "console.sign_out",
            aggregate_type="api_key", aggregate_id=str(session.key_id),
        )  # fmt: skip
        response = console.redirect("/login")
        response.delete_cookie(COOKIE, path=options.base_path)
        return response

    def _overview_context(session: ConsoleSession) -> dict[str, Any]:
        figures = overview.overview(state.engine, session.scope)
        listed = number_status.list_numbers(
            state.engine, state.redis, session.scope, options.breaker_namespace
        )
        open_breakers = [n for n in listed if n.breaker.is_open]
        api_breaker = None
        queues: list[fleet.QueueLine] = []
        queue_error = None
        answers = None
        # The API-wide breaker, the queues and the webhook answers are the whole fleet's, not one
        # tenant's: operators only.
        if session.operator:
            api_breaker = breakers.read(state.redis, options.breaker_namespace, [breaker_keys.API_SCOPE])[
                breaker_keys.API_SCOPE
            ]
            queues, queue_error = fleet.queue_lines(state.redis, options)
            answers = fleet.answers(state.redis, options)
        return {
            "figures": figures,
            "open_breakers": open_breakers,
            "api_breaker": api_breaker,
            "queues": queues,
            "queue_error": queue_error,
            "webhook_answers": answers,
        }

    async def home(request: Request, session: ConsoleSession) -> Response:
        context = await run_in_threadpool(_overview_context, session)
        return console.render(request, "overview.html", session, **context)

    async def home_fragment(request: Request, session: ConsoleSession) -> Response:
        context = await run_in_threadpool(_overview_context, session)
        return console.render(request, "_overview.html", session, **context)

    def _numbers_context(session: ConsoleSession) -> dict[str, Any]:
        listed = number_status.list_numbers(
            state.engine, state.redis, session.scope, options.breaker_namespace
        )
        # Only the numbers in the session's scope are asked for.
        deferred = fleet.number_deferrals(state.redis, options, [n.phone_number_id for n in listed])
        return {"numbers": listed, "deferrals": deferred}

    async def number_list(request: Request, session: ConsoleSession) -> Response:
        context = await run_in_threadpool(_numbers_context, session)
        return console.render(request, "numbers.html", session, **context)

    async def reset_breaker(request: Request, session: ConsoleSession) -> Response:
        phone_number_id = request.path_params["phone_number_id"]
        try:
            await run_in_threadpool(
                number_status.reset_breaker,
                state.engine,
                state.redis,
                session.scope,
                session.actor,
                phone_number_id,
                options.breaker_namespace,
            )
        except number_status.NumberNotFound:
            return console.refuse("No such number in your organization.", 404)
        return console.redirect("/numbers", notice=f"Breaker of {phone_number_id} reset.")

    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", console.page(logout), methods=["POST"]),
        Route("/", console.page(home), methods=["GET"]),
        Route("/fragments/overview", console.page(home_fragment), methods=["GET"]),
        Route("/numbers", console.page(number_list), methods=["GET"]),
        Route("/numbers/{phone_number_id}/breaker/reset", console.page(reset_breaker), methods=["POST"]),
        *deadletter_routes(console),
        *bulk_routes(console),
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="console-static"),
    ]


def console_mount(state: ConsoleState) -> Mount:
    return Mount(state.options.base_path, routes=console_routes(state))
