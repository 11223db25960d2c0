"""Prometheus metrics of the inbound path (module-level, one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from domain.whatsapp.model import MEDIA_TYPES

KNOWN_TYPES = frozenset(
    {
        "text",
        "reaction",
        "location",
        "contacts",
        "interactive",
        "button",
        "order",
        "system",
        "request_welcome",
        "unsupported",
        "unknown",
        "edit",
        "revoke",
    }
    | MEDIA_TYPES
)

MESSAGES_STORED = Counter(
    "adsapp_inbound_messages_stored_total", "Inbound messages stored, by Meta type", ["type"]
)
DUPLICATES_SKIPPED = Counter(
    "adsapp_inbound_duplicates_skipped_total", "Inbound messages skipped because their wamid was stored"
)
STATUSES = Counter(
    "adsapp_inbound_statuses_total",
    "Status webhooks: applied (message moved forward), stale (kept, not applied), pending (message unknown), "
    "reconciled (an ambiguous send identified by its callback data)",
    ["result"],
)
UNKNOWN_TENANTS = Counter(
    "adsapp_inbound_unknown_tenants_total", "Changes for a number or account no organization owns", ["field"]
)
PARKED = Counter(
    "adsapp_inbound_parked_changes_total",
    "Webhook changes parked: unknown_number (replayed when added), unparseable, unstorable",
    ["reason"],
)
PARKED_REPLAYED = Counter(
    "adsapp_inbound_parked_replayed_total", "Parked changes handed back to the inbound queue"
)
PARKED_EXPIRED = Counter(
    "adsapp_inbound_parked_expired_total", "Parked changes deleted after the retention", ["reason"]
)
UNPARSEABLE = Counter(
    "adsapp_inbound_unparseable_items_total",
    "Items of a delivery that could not be read, stored raw with the reason",
    ["kind"],
)
ACCOUNT_EVENTS = Counter(
    "adsapp_inbound_account_events_total", "Non-message webhook changes recorded", ["field"]
)
INVALID_DELIVERIES = Counter(
    "adsapp_inbound_invalid_deliveries_total", "Deliveries refused as unreadable (dead-lettered)"
)
MEDIA_FETCHES = Counter("adsapp_media_fetch_total", "Media fetch attempts by result", ["result"])
COMMIT_LATENCY = Histogram(
    "adsapp_inbound_commit_latency_seconds",
    "Webhook receipt at the ingress to commit of its change",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

STATUS_LAG = Histogram(
    "adsapp_inbound_status_lag_seconds",
    "From a status's time at Meta (its webhook timestamp, whole seconds) to its event committed here",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600, 24 * 3600),
)


def type_label(message_type: str) -> str:
    return message_type if message_type in KNOWN_TYPES else "other"
