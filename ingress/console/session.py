"""The console's session: a signed, expiring cookie naming the API key that signed in.

The cookie holds no secret (the key itself is never stored): the key's id, name and organization,
whether it is an operator key, and the session's CSRF token, signed with itsdangerous and checked
against its age on every request. Each request also re-reads the key, so revoking or expiring a
key ends its console sessions at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from itsdangerous import BadSignature, URLSafeTimedSerializer

from domain.deadletters import Scope
from services.audit import Actor

COOKIE: Final = "adsapp_console"
LOGIN_COOKIE: Final = "adsapp_console_login"
LOGIN_SECONDS: Final = 600


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    key_id: UUID
    key_name: str
    organization_id: UUID
    operator: bool
    csrf: str

    @property
    def scope(self) -> UUID | None:
        """The tenant scope of every read and action: None (every tenant) only for an operator."""
        return None if self.operator else self.organization_id

    @property
    def letters(self) -> Scope:
        """The same scope as the dead-letter services spell it."""
        return Scope.everyone() if self.operator else Scope.tenant(self.organization_id)

    @property
    def actor(self) -> Actor:
        return Actor(self.key_id, self.key_name, self.organization_id, self.operator, via="console")


class SessionCodec:
    def __init__(self, secret: str, max_age: int) -> None:
        self._sessions = URLSafeTimedSerializer(secret, salt="adsapp-console-session")
        self._logins = URLSafeTimedSerializer(secret, salt="adsapp-console-login")
        self.max_age = max_age

    def new(self, key_id: UUID, key_name: str, organization_id: UUID, operator: bool) -> ConsoleSession:
        return ConsoleSession(key_id, key_name, organization_id, operator, secrets.token_urlsafe(32))

    def dumps(self, session: ConsoleSession) -> str:
        return self._sessions.dumps(
            [
                str(session.key_id),
                session.key_name,
                str(session.organization_id),
                session.operator,
                session.csrf,
            ]
        )

    def loads(self, cookie: str | None) -> ConsoleSession | None:
        if not cookie:
            return None
        try:
            key_id, name, org, operator, csrf = self._sessions.loads(cookie, max_age=self.max_age)
            return ConsoleSession(UUID(key_id), str(name), UUID(org), bool(operator), str(csrf))
        except (BadSignature, ValueError, TypeError):
            return None

    def login_token(self) -> tuple[str, str]:
        """A token for the sign-in form and the signed cookie that must come back with it."""
        token = secrets.token_urlsafe(32)
        return token, self._logins.dumps(token)

    def login_token_matches(self, cookie: str | None, submitted: str) -> bool:
        if not cookie or not submitted:
            return False
        try:
            expected = self._logins.loads(cookie, max_age=LOGIN_SECONDS)
        except BadSignature:
            return False
        return isinstance(expected, str) and secrets.compare_digest(expected, submitted)
