"""The worker entry module: `dramatiq workers.app --queues ...`.

It sets the broker first, then imports every actor module so that all actors are registered.
"""

from __future__ import annotations

from config import get_settings
from config.logging import configure_logging
from services.telemetry import tracing
from workers.broker import setup_broker
from workers.gc_freeze import FreezeAfterBoot

configure_logging(get_settings().log_level, only=True)
tracing.configure_tracing(
    get_settings().otel_service_name or "adsapp-worker", get_settings().otel_exporter_otlp_endpoint
)
broker = setup_broker()
broker.add_middleware(FreezeAfterBoot())

from workers import actors  # noqa: E402,F401  (registers every actor on the broker set above)
