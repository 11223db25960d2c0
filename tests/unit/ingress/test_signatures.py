from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import stripe

from ingress.payload import InvalidBody
from ingress.signatures import StripeVerifier, WhatsAppVerifier

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def sign(body: bytes, secret: str) -> bytes:
    return b"sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


@pytest.fixture
def whatsapp() -> WhatsAppVerifier:
    return WhatsAppVerifier(["new-secret", "old-secret"])


def test_whatsapp_accepts_any_configured_secret(whatsapp: WhatsAppVerifier) -> None:
    assert whatsapp.check(sign(BODY, "new-secret"), BODY) is None
    assert whatsapp.check(sign(BODY, "old-secret"), BODY) is None
    assert whatsapp.check(sign(BODY, "new-secret").upper().replace(b"SHA256=", b"sha256="), BODY) is None


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        (b"", "missing"),
        (b"sha1=" + b"0" * 40, "malformed"),
        (b"sha256=xyz", "malformed"),
        (b"sha256=" + b"g" * 64, "malformed"),
        (b"sha256=" + b"0" * 64, "mismatch"),
    ],
)
def test_whatsapp_reasons(whatsapp: WhatsAppVerifier, header: bytes | None, reason: str) -> None:
    assert whatsapp.check(header, BODY) == reason


def test_whatsapp_signature_is_over_exact_bytes(whatsapp: WhatsAppVerifier) -> None:
    assert whatsapp.check(sign(BODY, "new-secret"), BODY + b" ") == "mismatch"


EVENT = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'


def stripe_header(secret: str, timestamp: int | None = None, body: bytes = EVENT) -> bytes:
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)).encode()


@pytest.fixture
def stripe_verifier() -> StripeVerifier:
    return StripeVerifier(["whsec_a", "whsec_b"])


def test_stripe_accepts_any_configured_secret(stripe_verifier: StripeVerifier) -> None:
    assert stripe_verifier.check(stripe_header("whsec_a"), EVENT) is None
    assert stripe_verifier.check(stripe_header("whsec_b"), EVENT) is None


def test_stripe_reasons(stripe_verifier: StripeVerifier) -> None:
    now = int(time.time())
    assert stripe_verifier.check(None, EVENT) == "missing"
    assert stripe_verifier.check(b"nonsense", EVENT) == "malformed"
    assert stripe_verifier.check(b"t=abc,v1=00", EVENT) == "malformed"
    assert stripe_verifier.check(f"t={now}".encode(), EVENT) == "malformed"
    assert stripe_verifier.check(stripe_header("whsec_other"), EVENT) == "mismatch"
    assert stripe_verifier.check(stripe_header("whsec_a", now - 301), EVENT) == "timestamp"
    assert stripe_verifier.check(stripe_header("whsec_a", now - 290), EVENT) is None


def test_stripe_body_that_is_not_text_is_invalid(stripe_verifier: StripeVerifier) -> None:
    with pytest.raises(InvalidBody) as caught:
        stripe_verifier.check(stripe_header("whsec_a"), b"\xff\xfe")
    assert caught.value.reason == "not_utf8"
