"""The console's request plumbing: templates, the signed-in check, CSRF, and safe response headers."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ingress.console import auth
from ingress.console.session import COOKIE, ConsoleSession, SessionCodec
from ingress.console.state import ConsoleState

CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _age(value: datetime | None) -> str:
    if value is None:
        return "–"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _rate(value: float | None) -> str:
    # Unknown is a dash, never a zero: "nothing moved" and "nobody could say" differ.
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 0.1 or value == 0 else "<0.1"


templates.env.filters["age"] = _age
templates.env.filters["rate"] = _rate

Page = Callable[[Request, ConsoleSession], Awaitable[Response]]


class Console:
    """Wraps each page: a valid session or a redirect to sign in; on POST, a matching CSRF token."""

    def __init__(self, state: ConsoleState) -> None:
        self.state = state
        self.codec = SessionCodec(state.options.secret, state.options.session_seconds)
        # Notices ride in the redirect's query string, signed so a link cannot put words in our mouth.
        self._notices = URLSafeSerializer(state.options.secret, salt="adsapp-console-notice")

    def url(self, path: str = "/") -> str:
        return self.state.options.base_path + path

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.codec.loads(request.cookies.get(COOKIE))
            if session is None or not await run_in_threadpool(auth.still_valid, self.state.engine, session):
                if request.method != "GET":
                    return self.refuse("Your session has ended; sign in again.", 401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response: Response = RedirectResponse(
                    self.url(f"/login?next={quote(target, safe='')}"), status_code=303
                )
                response.delete_cookie(COOKIE, path=self.state.options.base_path)
                return self.secure(response)
            if request.method != "GET":
                form = await request.form()
                submitted = request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD) or "")
                if not secrets.compare_digest(submitted.encode(), session.csrf.encode()):
                    return self.refuse("The form's security token is missing or wrong; reload the page.", 403)
            return self.secure(await handler(request, session))

        return endpoint

    def render(
        self,
        request: Request,
        name: str,
        session: ConsoleSession | None,
        *,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        context.update(
            session=session,
            csrf_field=CSRF_FIELD,
            base=self.state.options.base_path,
            refresh_seconds=self.state.options.refresh_seconds,
            notice=self._notice(request.query_params.get("notice")),
        )
        return self.secure(templates.TemplateResponse(request, name, context, status_code=status_code))

    def redirect(self, path: str, notice: str | None = None) -> Response:
        target = self.url(path) + (f"?notice={quote(self._notices.dumps(notice))}" if notice else "")
        return RedirectResponse(target, status_code=303)

    def _notice(self, signed: str | None) -> str | None:
        if not signed:
            return None
        try:
            return str(self._notices.loads(signed))
        except BadSignature:
            return None

    def refuse(self, message: str, status: int) -> Response:
        body = (
            "<!doctype html><meta charset=utf-8><title>Refused</title>"
            f"<main><h1>Refused</h1><p role=alert>{message}</p>"
            f'<p><a href="{self.url("/")}">Back to the console</a></p></main>'
        )
        return self.secure(HTMLResponse(body, status_code=status))

    def secure(self, response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
