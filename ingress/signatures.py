"""Webhook signature checks, always over the exact bytes received.

Each check returns None when the request is authentic, or a short reason (a metric label) when not.
Several secrets may be configured at once so a secret can be rotated without dropping deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

import stripe

from ingress.payload import NOT_UTF8, InvalidBody

MISSING: Final = "missing"
MALFORMED: Final = "malformed"
MISMATCH: Final = "mismatch"
TIMESTAMP: Final = "timestamp"

STRIPE_TOLERANCE_SECONDS: Final = 300

_WHATSAPP_PREFIX: Final = b"sha256="
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")


class WhatsAppVerifier:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._keys = tuple(secret.encode() for secret in secrets)

    def check(self, header: bytes | None, body: bytes) -> str | None:
        if not header:
            return MISSING
        if not header.startswith(_WHATSAPP_PREFIX):
            return MALFORMED
        given = header[len(_WHATSAPP_PREFIX) :].lower()
        if len(given) != 64 or not _HEX_DIGITS.issuperset(given):
            return MALFORMED
        for key in self._keys:
            expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
            if hmac.compare_digest(expected, given):
                return None
        return MISMATCH


class StripeVerifier:
    """`Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, with the stripe library's own check.

    The library decides; the header is parsed here only to name the reason of a failure. Its 300 s
    tolerance applies: the tolerance-less path would accept a replay of any old event.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = tuple(secrets)

    def check(self, header_value: bytes | None, raw: bytes) -> str | None:
        """Raises InvalidBody for a body that is not UTF-8: the library verifies text, not bytes."""
        if not header_value:
            return MISSING
        header = header_value.decode("latin-1")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidBody(NOT_UTF8, f"body is not UTF-8 at byte {exc.start}") from None
        if not _well_formed_stripe_header(header):
            return MALFORMED
        reason = MISMATCH
        for secret in self._secrets:
            try:
                stripe.WebhookSignature.verify_header(
                    body, header, secret, tolerance=STRIPE_TOLERANCE_SECONDS
                )
            except stripe.SignatureVerificationError as exc:
                # The library checks the signature first, so a timestamp failure means it matched.
                if str(exc).startswith("Timestamp outside"):
                    reason = TIMESTAMP
                continue
            return None
        return reason


def _well_formed_stripe_header(header: str) -> bool:
    timestamp_seen = signature_seen = False
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit():
                return False
            timestamp_seen = True
        elif key == "v1":
            signature_seen = signature_seen or bool(value)
    return timestamp_seen and signature_seen
