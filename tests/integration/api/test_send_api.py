"""POST/GET /api/v1/messages on the real services: auth, limits, window, opt-out, templates,
idempotency, billing, pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from db.tables import api_keys, messages, organizations, outbox
from db.uow import UnitOfWork
from devkit.tenants import TEMPLATE, Tenant, make_tenant, recipient, template_send
from ingress.api import ApiOptions
from tests.support.api import bearer, build_app

pytestmark = pytest.mark.integration


def send(client: TestClient, key: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/api/v1/messages", json=body, headers={**bearer(key), **headers})


def text(to: str, body: str = "hello") -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": body}}


def error_code(response: Any) -> str:
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details", "timestamp"}
    return str(body["error"]["code"])


# --- auth ---------------------------------------------------------------------------------------


def test_auth_failures_name_their_reason(client: TestClient, tenant: Tenant) -> None:
    body = text(tenant.contact())
    assert error_code(client.post("/api/v1/messages", json=body)) == "auth_missing"
    assert (
        error_code(client.post("/api/v1/messages", json=body, headers={"Authorization": "Basic x"}))
        == "auth_missing"
    )
    assert error_code(send(client, "ads_not-a-real-key", body)) == "auth_invalid"
    assert error_code(send(client, "something-else", body)) == "auth_invalid"

    expired = tenant.api_key(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    response = send(client, expired, body)
    assert response.status_code == 401 and error_code(response) == "auth_expired"

    revoked = tenant.api_key()
    assert send(client, revoked, body).status_code == 202
    tenant.revoke(revoked)
    response = send(client, revoked, body)
    assert response.status_code == 401 and error_code(response) == "auth_revoked"

    reader = tenant.api_key(("messages:read",))
    response = send(client, reader, body)
    assert response.status_code == 403 and error_code(response) == "scope_missing"
    assert response.json()["error"]["details"] == {"scope": "messages:write"}


def test_last_used_at_is_written_once_a_minute(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    key = tenant.api_key()
    key_id = tenant.keys[key]

    def last_used() -> datetime | None:
        with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
            value = uow.conn.execute(
                sa.select(api_keys.c.last_used_at).where(api_keys.c.id == key_id)
            ).scalar()
            return value if isinstance(value, datetime) else None

    assert last_used() is None
    client.get("/api/v1/messages", headers=bearer(key))
    first = last_used()
    assert first is not None
    client.get("/api/v1/messages", headers=bearer(key))
    assert last_used() == first


def test_rate_limit_headers_and_429(settings: Settings, tenant: Tenant, api_options: ApiOptions) -> None:
    options = ApiOptions(
        rate_limit=3, rate_window_seconds=60, redis_namespace=api_options.redis_namespace + ":rl"
    )
    app, _ = build_app(settings, options)
    key = tenant.api_key()
    with TestClient(app) as client:
        answers = [client.get("/api/v1/messages", headers=bearer(key)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers)
    assert 0 < int(answers[-1].headers["X-RateLimit-Reset"]) <= 60
    assert answers[-1].headers["Retry-After"] == answers[-1].headers["X-RateLimit-Reset"]
    assert "Retry-After" not in answers[0].headers
    assert error_code(answers[-1]) == "rate_limited"


# --- accepting a send ---------------------------------------------------------------------------


def test_text_in_window_is_queued_with_its_job(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    key = tenant.api_key()
    to = tenant.contact()
    response = send(client, key, {**text(to), "context": {"message_id": "wamid.earlier"}})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    message_id = body["data"]["id"]
    assert body["data"] == {
        "id": message_id,
        "status": "queued",
        "links": {"self": f"/api/v1/messages/{message_id}"},
    }
    assert response.headers["Location"] == f"/api/v1/messages/{message_id}"

    row = tenant.message(message_id)
    assert (row["status"], row["direction"], row["type"], row["text"]) == (
        "queued",
        "outbound",
        "text",
        "hello",
    )
    assert row["context_wamid"] == "wamid.earlier"
    assert row["raw"]["biz_opaque_callback_data"] == message_id
    assert row["raw"]["to"] == to and row["phone_number_id"] == tenant.number
    with UnitOfWork(engine, system=True) as uow:  # published after commit, so nothing left behind
        left = uow.conn.execute(
            sa.select(outbox).where(outbox.c.kwargs["message_id"].astext == message_id)
        ).all()
    assert left == []

    view = client.get(f"/api/v1/messages/{message_id}", headers=bearer(key)).json()["data"]
    assert view["status"] == "queued" and view["attempts"] == 0 and view["error"] is None
    assert view["to"] == to and view["context_message_id"] == "wamid.earlier"


def test_outside_the_window_only_a_template(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    tenant.templates([TEMPLATE])
    stale = tenant.contact(wrote_ago=timedelta(hours=25))
    response = send(client, key, text(stale))
    assert response.status_code == 422
    assert error_code(response) == "outside_customer_window"
    assert "24 hours" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["rule"] == "24h_customer_window"

    stranger = recipient()  # never wrote at all
    assert error_code(send(client, key, text(stranger))) == "outside_customer_window"
    reaction = {"to": stranger, "type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}}
    assert error_code(send(client, key, reaction)) == "outside_customer_window"
    assert send(client, key, template_send(stranger)).status_code == 202
    assert send(client, key, template_send(stale)).status_code == 202


def test_opted_out_contacts_are_refused(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    tenant.templates([TEMPLATE])
    to = tenant.contact(opted_out=True)
    for body in (text(to), template_send(to)):
        response = send(client, key, body)
        assert response.status_code == 422 and error_code(response) == "contact_opted_out"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"name": "nope"}, "template_not_found"),
        ({"language": {"code": "de"}}, "template_language_missing"),
        ({"components": []}, "template_parameters_mismatch"),
    ],
)
def test_template_sends_are_checked_before_queueing(
    client: TestClient, tenant: Tenant, change: dict[str, Any], code: str
) -> None:
    key = tenant.api_key()
    tenant.templates([TEMPLATE])
    body = template_send(recipient())
    body["template"] = {**body["template"], **change}
    response = send(client, key, body)
    assert response.status_code == 422 and error_code(response) == code, response.text
    if code == "template_parameters_mismatch":
        mismatches = response.json()["error"]["details"]["mismatches"]
        assert {m["component"] for m in mismatches} == {"header", "body", "button:0"}


def test_unapproved_templates_are_refused(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    tenant.templates([{**TEMPLATE, "status": "PAUSED"}])
    response = send(client, key, template_send(recipient()))
    assert error_code(response) == "template_not_approved"
    assert response.json()["error"]["details"]["status"] == "PAUSED"


def test_choosing_the_sending_number(client: TestClient, engine: Engine) -> None:
    tenant = make_tenant(engine, numbers=2)
    key = tenant.api_key()
    to = tenant.contact()
    assert error_code(send(client, key, text(to))) == "phone_number_required"
    assert (
        error_code(send(client, key, {**text(to), "phone_number_id": "pn-other"})) == "phone_number_unknown"
    )
    response = send(client, key, {**text(to), "phone_number_id": tenant.numbers[1]})
    assert response.status_code == 202
    assert tenant.message(response.json()["data"]["id"])["phone_number_id"] == tenant.numbers[1]


def test_billing_refusals_answer_402_with_the_billing_code(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    to = tenant.contact()
    with UnitOfWork(tenant.engine, system=True) as uow:
        uow.conn.execute(
            sa.update(organizations)
            .where(organizations.c.id == tenant.organization_id)
            .values(subscription_status="canceled")
        )
        uow.commit()
    response = send(client, key, text(to))
    assert response.status_code == 402
    assert error_code(response) == "subscription_canceled"


# --- idempotency --------------------------------------------------------------------------------


def test_idempotency_key_replays_and_refuses_reuse(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    to = tenant.contact()
    first = send(client, key, text(to), **{"Idempotency-Key": "order-42"})
    # Same request, keys in another order: the same answer and no second message.
    again = client.post(
        "/api/v1/messages",
        content=f'{{"text": {{"body": "hello"}}, "type": "text", "to": "{to}"}}',
        headers={**bearer(key), "Idempotency-Key": "order-42", "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["data"] == first.json()["data"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers

    other = send(client, key, text(to, "something else"), **{"Idempotency-Key": "order-42"})
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"

    # Another tenant's identical key is a different key.
    stranger = make_tenant(tenant.engine)
    theirs = send(client, stranger.api_key(), text(stranger.contact()), **{"Idempotency-Key": "order-42"})
    assert theirs.status_code == 202 and theirs.json()["data"]["id"] != first.json()["data"]["id"]

    bad = send(client, key, text(to), **{"Idempotency-Key": "x" * 300})
    assert bad.status_code == 400 and error_code(bad) == "idempotency_key_invalid"


def test_idempotency_key_is_kept_24_hours(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    to = tenant.contact()
    first = send(client, key, text(to), **{"Idempotency-Key": "daily"}).json()["data"]["id"]
    tenant.execute(
        sa.update(messages)
        .where(messages.c.id == first)
        .values(created_at=datetime.now(UTC) - timedelta(hours=25))
    )
    second = send(client, key, text(to, "new day"), **{"Idempotency-Key": "daily"})
    assert second.status_code == 202
    assert second.json()["data"]["id"] != first
    assert tenant.message(first)["idempotency_key"] is None


def test_a_refused_request_keeps_no_key(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    stale = tenant.contact(wrote_ago=timedelta(days=2))
    assert send(client, key, text(stale), **{"Idempotency-Key": "k1"}).status_code == 422
    tenant.templates([TEMPLATE])
    assert send(client, key, template_send(stale), **{"Idempotency-Key": "k1"}).status_code == 202


# --- reading ------------------------------------------------------------------------------------


def test_bad_bodies_get_clear_errors(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    response = client.post(
        "/api/v1/messages", content=b"{nope", headers={**bearer(key), "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and error_code(response) == "invalid_json"
    response = send(client, key, {"to": "123", "type": "text"})
    assert response.status_code == 422 and error_code(response) == "validation_failed"
    locs = {d["loc"] for d in response.json()["error"]["details"]}
    assert any("text" in loc for loc in locs) and any("to" in loc for loc in locs)
    response = send(client, key, {**text(tenant.contact()), "biz_opaque_callback_data": "mine"})
    assert error_code(response) == "validation_failed"
    response = send(client, key, text(tenant.contact(), "nul\u0000"))
    assert error_code(response) == "validation_failed"


def test_messages_are_private_to_their_tenant(client: TestClient, tenant: Tenant) -> None:
    mine = send(client, tenant.api_key(), text(tenant.contact())).json()["data"]["id"]
    other = make_tenant(tenant.engine)
    response = client.get(f"/api/v1/messages/{mine}", headers=bearer(other.api_key()))
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert client.get("/api/v1/messages/not-a-uuid", headers=bearer(other.api_key())).status_code == 422


def test_list_pages_by_cursor(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    to = tenant.contact()
    ids = [send(client, key, text(to, f"m{i}")).json()["data"]["id"] for i in range(3)]
    first = client.get("/api/v1/messages", params={"limit": 2}, headers=bearer(key)).json()
    assert [m["id"] for m in first["data"]] == ids[::-1][:2]
    cursor = first["meta"]["next_cursor"]
    assert cursor
    second = client.get("/api/v1/messages", params={"limit": 2, "cursor": cursor}, headers=bearer(key)).json()
    assert [m["id"] for m in second["data"]] == ids[:1]
    assert second["meta"]["next_cursor"] is None
    bad = client.get("/api/v1/messages", params={"cursor": "garbage!"}, headers=bearer(key))
    assert bad.status_code == 400 and error_code(bad) == "invalid_cursor"


def test_openapi_document_is_generated_and_public(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    send_op = document["paths"]["/api/v1/messages"]["post"]
    assert send_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendMessageRequest"
    }
    assert "202" in send_op["responses"] and "422" in send_op["responses"]
    assert "TemplateMessage" in document["components"]["schemas"]
    unknown = client.get("/api/v1/nothing-here")
    assert unknown.status_code == 404 and error_code(unknown) == "not_found"
