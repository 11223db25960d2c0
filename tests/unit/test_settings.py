from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import Settings
from config.errors import ConfigurationError
from config.settings import mask_url


def test_reads_the_contract_names_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.internal:5433/fleet")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://u:p@mq:5672/%2F")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "old-secret, new-secret")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_a")
    monkeypatch.setenv("GRAPH_API_URL", "http://graph:8900/")
    monkeypatch.setenv("GRAPH_API_VERSION", "v22.0")
    s = Settings()
    assert s.sqlalchemy_url == "postgresql+psycopg://u@db.internal:5433/fleet"
    assert [x.get_secret_value() for x in s.whatsapp_app_secret] == ["old-secret", "new-secret"]
    assert [x.get_secret_value() for x in s.stripe_webhook_secret] == ["whsec_a"]
    assert s.graph_api_url == "http://graph:8900"
    assert s.graph_api_version == "v22.0"
    assert s.redis_url == "redis://cache:6379/2"


def test_defaults_fit_the_local_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "127.0.0.1:5432" in s.database_url
    assert "127.0.0.1:5672" in s.rabbitmq_url
    assert "127.0.0.1:6379" in s.redis_url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/x"),
        ("DATABASE_URL", "not a url"),
        ("RABBITMQ_URL", "http://guest:guest@localhost:5672"),
        ("REDIS_URL", "localhost:6379"),
        ("GRAPH_API_URL", "graph.facebook.com"),
    ],
)
def test_rejects_a_malformed_url_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings()


def test_rejects_an_empty_secret_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", " , ")
    with pytest.raises(ValidationError, match="at least one secret"):
        Settings()


def test_secrets_and_passwords_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "topsecret-app")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_topsecret")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_topsecret")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://user:hunter2@mq:5672/%2F")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pgpass@db/fleet")
    text = repr(Settings()) + str(Settings())
    for secret in ("topsecret", "hunter2", "pgpass"):
        assert secret not in text


def test_mask_url() -> None:
    assert mask_url("amqp://u:p@h:1/v") == "amqp://u:***@h:1/v"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_app_role_must_be_an_identifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x%22%3B%20DROP@db/fleet")
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings()


PRODUCTION_SECRETS = {
    "WHATSAPP_APP_SECRET": "a-real-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "a-real-verify-token",
    "STRIPE_WEBHOOK_SECRET": "whsec_real",
    "TOKEN_ENCRYPTION_KEYS": "x2Yq0eJpHn0uH3fZbTqGqzS1H7m2oU9o6o0bY8c0cXk=",
    "DATABASE_SYSTEM_URL": "postgresql://adsapp_system:pw@db/fleet",
    "CONSOLE_SECRET": "a-real-console-secret",
}


@pytest.mark.parametrize("missing", sorted(PRODUCTION_SECRETS))
def test_outside_development_a_missing_secret_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    for name, value in PRODUCTION_SECRETS.items():
        if name == missing:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=missing):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "dev_value"),
    [
        ("WHATSAPP_APP_SECRET", "new-secret,dev-app-secret"),
        ("WHATSAPP_VERIFY_TOKEN", "dev-verify-token"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_dev"),
        ("TOKEN_ENCRYPTION_KEYS", "yQNWUuBgTU141G-3UHollExNiPCiY5_wwlHzJ-ZVVo8="),
        ("CONSOLE_SECRET", "dev-console-secret"),
    ],
)
def test_outside_development_a_development_secret_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, name: str, dev_value: str
) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    for other, value in PRODUCTION_SECRETS.items():
        monkeypatch.setenv(other, value)
    monkeypatch.setenv(name, dev_value)
    with pytest.raises(ValidationError, match=name):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_production_with_its_own_secrets_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("DATABASE_ADMIN_URL", raising=False)
    for name, value in PRODUCTION_SECRETS.items():
        monkeypatch.setenv(name, value)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not s.is_development
    assert s.token_keys == [PRODUCTION_SECRETS["TOKEN_ENCRYPTION_KEYS"]]
    assert s.database_system_role == "adsapp_system"
    with pytest.raises(ConfigurationError, match="DATABASE_ADMIN_URL"):
        _ = s.admin_sqlalchemy_url


def test_development_defaults_the_admin_and_system_logins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("DATABASE_URL", "postgresql://adsapp_app:pw@db:5433/fleet")
    for name in ("DATABASE_ADMIN_URL", "DATABASE_SYSTEM_URL", "TOKEN_ENCRYPTION_KEYS"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.database_app_role == "adsapp_app"
    assert s.admin_sqlalchemy_url == "postgresql+psycopg://postgres@db:5433/fleet"
    assert s.system_sqlalchemy_url == "postgresql+psycopg://adsapp_system:pw@db:5433/fleet"
    assert s.token_keys == ["yQNWUuBgTU141G-3UHollExNiPCiY5_wwlHzJ-ZVVo8="]


def test_a_malformed_token_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", "not-a-fernet-key")
    with pytest.raises(ValidationError, match="TOKEN_ENCRYPTION_KEYS must be Fernet keys"):
        Settings(_env_file=None)  # type: ignore[call-arg]
