"""Graph access tokens encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`).

TOKEN_ENCRYPTION_KEYS is a list: the first key encrypts, every key decrypts, so a key is rotated by
putting the new one first, running `adsapp tokens reencrypt`, then dropping the old one. Stored
values carry a `fernet:` prefix; a value without it is a token written before encryption, read as
it is until `adsapp tokens reencrypt` encrypts it. Decryption happens only in the db-layer lookups
that hand a number's credentials to their callers (`db/tenants.py`, `db/repos/templates.py`):
nothing else ever sees the plaintext, and no error message carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config import get_settings
from config.errors import ConfigurationError

PREFIX: Final = "fernet:"


class TokenUndecryptable(RuntimeError):
    """A stored access token no key of TOKEN_ENCRYPTION_KEYS decrypts (a key was dropped too soon)."""

    def __init__(self) -> None:
        super().__init__(
            "a stored access token cannot be decrypted with any key of TOKEN_ENCRYPTION_KEYS; "
            "put back the key it was encrypted with"
        )


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError("TOKEN_ENCRYPTION_KEYS is empty: set at least one Fernet key")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as exc:
            raise ConfigurationError(
                "TOKEN_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes each; "
                "make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from exc
        # Lookups decrypt on every route resolution; the plaintext is what callers hold anyway.
        self._cached = lru_cache(maxsize=4096)(self._decrypt)

    def encrypt(self, token: str) -> str:
        return PREFIX + self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        return self._cached(stored)

    def _decrypt(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise TokenUndecryptable() from None

    def reencrypt(self, stored: str) -> str:
        """The value encrypted with the first key (a plaintext one encrypted for the first time)."""
        if not stored.startswith(PREFIX):
            return self.encrypt(stored)
        try:
            return PREFIX + self._fernet.rotate(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise TokenUndecryptable() from None


@lru_cache(maxsize=4)
def _cipher_for(keys: tuple[str, ...]) -> TokenCipher:
    return TokenCipher(keys)


def cipher() -> TokenCipher:
    """The cipher of this process's settings (the development key only under APP_ENV=development)."""
    return _cipher_for(tuple(get_settings().token_keys))


def seal(token: str | None) -> str | None:
    return None if token is None else cipher().encrypt(token)


def unseal(stored: str | None) -> str | None:
    return None if stored is None else cipher().decrypt(stored)
