"""Outside development, the processes refuse to start on missing or published development secrets
(a webhook signed with `dev-app-secret` would otherwise be accepted), naming each variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devkit.processes import ROOT, free_port

pytestmark = pytest.mark.integration

SECRETS = (
    "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "STRIPE_WEBHOOK_SECRET", "TOKEN_ENCRYPTION_KEYS", "CONSOLE_SECRET",
)  # fmt: skip


def _production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env["APP_ENV"] = "production"
    env.update(overrides)
    return env


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "uvicorn", "ingress.app:app", "--host", "127.0.0.1", "--port", "{port}"],
        ["-m", "workers.scheduler"],
    ],
    ids=["ingress", "scheduler"],
)
def test_outside_development_default_secrets_refuse_to_start(argv: list[str]) -> None:
    args = [a.replace("{port}", str(free_port())) for a in argv]
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_production_env(WHATSAPP_VERIFY_TOKEN="dev-verify-token"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    for name in SECRETS:
        assert name in out.stderr, (name, out.stderr[-2000:])


def test_the_cli_names_the_missing_secret() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "org", "create", "x"], cwd=ROOT, env=_production_env(),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "WHATSAPP_APP_SECRET" in out.stderr and "Traceback" not in out.stderr
