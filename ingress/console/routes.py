"""The console's routes: sign-in, overview and numbers, each a thin page over `services/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ingress.console import auth
from ingress.console.bulkjobs import bulk_routes
from ingress.console.deadletters import deadletter_routes
from ingress.console.session import COOKIE, LOGIN_COOKIE, ConsoleSession
from ingress.console.state import ConsoleState
from ingress.console.web import Console
from services import audit, breaker_keys, breakers, number_status, overview, queue_stats


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

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return await login_form(request)
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
        queues: list[queue_stats.QueueDepth] = []
        queue_error = None
        # The API-wide breaker and the queues are the whole fleet's, not one tenant's.
        if session.operator:
            api_breaker = breakers.read(state.redis, options.breaker_namespace, [breaker_keys.API_SCOPE])[
                breaker_keys.API_SCOPE
            ]
            if options.rabbitmq_url:
                try:
                    # No peek at head messages: the console only reads, it never touches a queue.
                    queues = queue_stats.queue_depths(
                        options.rabbitmq_url, options.queues, peek_oldest=False, timeout=2.0
                    )
                except queue_stats.QueueStatsError as exc:
                    queue_error = str(exc)
        return {
            "figures": figures,
            "open_breakers": open_breakers,
            "api_breaker": api_breaker,
            "queues": queues,
            "queue_error": queue_error,
            # Fleet-wide traffic, not one tenant's: shown to operators only.
            "webhook_answers": state.webhook_answers() if session.operator else {},
        }

    async def home(request: Request, session: ConsoleSession) -> Response:
        context = await run_in_threadpool(_overview_context, session)
        return console.render(request, "overview.html", session, **context)

    async def home_fragment(request: Request, session: ConsoleSession) -> Response:
        context = await run_in_threadpool(_overview_context, session)
        return console.render(request, "_overview.html", session, **context)

    async def number_list(request: Request, session: ConsoleSession) -> Response:
        listed = await run_in_threadpool(
            number_status.list_numbers, state.engine, state.redis, session.scope, options.breaker_namespace
        )
        return console.render(request, "numbers.html", session, numbers=listed)

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
