"""The shared schema, as SQLAlchemy Core tables. Alembic migrations own the database; these
definitions must match them (a test compares the two).

Every tenant table carries `organization_id` and is protected by row-level security (see
`db/rls.py`). Column names listed in DESIGN.md "Contracts" are read by the web app: keep them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[object]:
    return Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))


def _org(nullable: bool = False) -> Column[object]:
    return Column(
        "organization_id",
        UUID(as_uuid=True),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=nullable,
        index=True,
    )


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column(
            "updated_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.now(),
            onupdate=func.now(),
        ),
    ]


organizations = Table(
    "organizations",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("plan", Text, nullable=False, server_default="free"),
    Column("subscription_status", Text),
    Column("stripe_customer_id", Text, unique=True),
    Column("stripe_subscription_id", Text),
    Column("stripe_price_id", Text),
    Column("cancel_at_period_end", Boolean, nullable=False, server_default=text("false")),
    Column("trial_end", DateTime(timezone=True)),
    Column("current_period_end", DateTime(timezone=True)),
    # Stripe delivers out of order: the `created` of the last event applied, per organization.
    Column("billing_event_at", DateTime(timezone=True)),
    *_timestamps(),
)

whatsapp_numbers = Table(
    "whatsapp_numbers",
    metadata,
    _id(),
    _org(),
    Column("phone_number_id", Text, nullable=False, unique=True),
    Column("display_phone_number", Text, nullable=False),
    Column("waba_id", Text),
    Column("access_token", Text),
    Column("mps", Integer, nullable=False, server_default=text("80")),
    CheckConstraint("mps > 0", name="mps_positive"),
    *_timestamps(),
    # Meta's messaging limit: unique recipients per rolling 24 hours (None: unlimited).
    Column("messaging_limit", Integer),
    CheckConstraint(
        "messaging_limit IS NULL OR messaging_limit IN (250, 2000, 10000, 100000)",
        name="messaging_limit_known",
    ),
)

profiles = Table(
    "profiles",
    metadata,
    _id(),
    _org(),
    Column("email", Text, nullable=False),
    Column("full_name", Text),
    Column("role", Text, nullable=False, server_default="agent"),
    UniqueConstraint("organization_id", "email"),
    *_timestamps(),
)

contacts = Table(
    "contacts",
    metadata,
    _id(),
    _org(),
    Column("wa_id", Text, nullable=False),
    Column("phone", Text),
    Column("profile_name", Text),
    Column("last_inbound_at", DateTime(timezone=True)),
    Column("opted_out", Boolean, nullable=False, server_default=text("false")),
    # Set when the customer changed number: the contact that now carries the conversation.
    Column("replaced_by_contact_id", UUID(as_uuid=True), ForeignKey("contacts.id", ondelete="SET NULL")),
    UniqueConstraint("organization_id", "wa_id"),
    Index("ix_contacts_organization_id_phone", "organization_id", "phone"),
    *_timestamps(),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Index("ix_contacts_tags", "tags", postgresql_using="gin"),
)

conversations = Table(
    "conversations",
    metadata,
    _id(),
    _org(),
    Column("contact_id", UUID(as_uuid=True), ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("status", Text, nullable=False, server_default="open"),
    Column("assigned_to", UUID(as_uuid=True), ForeignKey("profiles.id", ondelete="SET NULL")),
    Column("last_message_at", DateTime(timezone=True)),
    Column("unread_count", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("status in ('open', 'pending', 'resolved')", name="status_known"),
    Index(
        "ix_conversations_org_status_last_message",
        "organization_id",
        "status",
        text("last_message_at DESC"),
    ),
    Index("ix_conversations_contact_id", "contact_id"),
    # At most one open conversation per contact, so concurrent inbound messages cannot open two.
    Index(
        "uq_conversations_one_open_per_contact",
        "contact_id",
        unique=True,
        postgresql_where=text("status <> 'resolved'"),
    ),
    *_timestamps(),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Index("ix_conversations_tags", "tags", postgresql_using="gin"),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    _org(),
    Column("conversation_id", UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE")),
    Column("contact_id", UUID(as_uuid=True), ForeignKey("contacts.id", ondelete="CASCADE")),
    Column("phone_number_id", Text),
    Column("wamid", Text, unique=True),
    Column("direction", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("text", Text),
    Column("context_wamid", Text),
    Column("status", Text, nullable=False),
    Column("error_code", Integer),
    Column("error_title", Text),
    Column("error_details", Text),
    Column("raw", JSONB),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("idempotency_key", Text),
    # A hash of the API request the idempotency key was first used with: a replay must match it.
    Column("request_fingerprint", Text),
    Column("sent_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("read_at", DateTime(timezone=True)),
    Column("failed_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True)),
    # The customer's current reaction to this message (a later reaction replaces it, an empty one
    # clears it); every reaction is also a message row of its own, pointing here by context_wamid.
    Column("reaction_emoji", Text),
    Column("reaction_at", DateTime(timezone=True)),
    CheckConstraint("direction in ('inbound', 'outbound')", name="direction_known"),
    # Only a send is ever queued or in flight: the send path's claim relies on it (see
    # db/repos/outbound.py) instead of naming the direction.
    CheckConstraint(
        "direction = 'outbound' OR status NOT IN ('queued', 'sending', 'ambiguous')",
        name="pending_is_outbound",
    ),
    CheckConstraint(
        "status in ('received', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'ambiguous')",
        name="status_known",
    ),
    Index("ix_messages_conversation_created", "conversation_id", text("created_at DESC")),
    Index("ix_messages_reaction_target", "context_wamid", postgresql_where=text("type = 'reaction'")),
    Index(
        "uq_messages_org_idempotency_key",
        "organization_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    *_timestamps(),
    # The outbound sweeps look for sends left in `queued` or `sending` past a deadline.
    Index(
        "ix_messages_outbound_pending",
        "status",
        "updated_at",
        postgresql_where=text("direction = 'outbound' AND status IN ('queued', 'sending')"),
    ),
)

message_status_events = Table(
    "message_status_events",
    metadata,
    _id(),
    _org(),
    Column("message_id", UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE")),
    Column("wamid", Text, nullable=False, index=True),
    Column("status", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True)),
    Column("recipient_id", Text),
    Column("errors", JSONB),
    Column("conversation", JSONB),
    Column("pricing", JSONB),
    Column("raw", JSONB, nullable=False),
    # False while the message it names is not known yet; applied when that message row appears.
    Column("applied", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("wamid", "status", "occurred_at"),
    *_timestamps(),
)

media = Table(
    "media",
    metadata,
    _id(),
    _org(),
    Column("message_id", UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("media_id", Text, nullable=False),
    Column("mime_type", Text),
    Column("sha256", Text),
    Column("file_size", BigInteger),
    Column("storage_key", Text),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    # A checksum that kept failing: counted, and no new fetch before `retry_after`.
    Column("checksum_mismatches", Integer, nullable=False, server_default=text("0")),
    Column("retry_after", DateTime(timezone=True)),
    UniqueConstraint("organization_id", "media_id"),
    *_timestamps(),
)

message_templates = Table(
    "message_templates",
    metadata,
    _id(),
    _org(),
    Column("waba_id", Text, nullable=False),
    Column("template_id", Text),
    Column("name", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("category", Text),
    Column("status", Text, nullable=False),
    Column("components", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("synced_at", DateTime(timezone=True)),
    UniqueConstraint("organization_id", "name", "language"),
    *_timestamps(),
)

JOB_STATUSES = (
    "'pending', 'running', 'paused', 'cancelling', 'cancelled', 'completed', "
    "'completed_with_errors', 'failed'"
)

bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    _id(),
    _org(),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("phone_number_id", Text),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("total", Integer, nullable=False, server_default=text("0")),
    Column("succeeded", Integer, nullable=False, server_default=text("0")),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    Column("idempotency_key", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    *_timestamps(),
    # Counted per settled chunk, never per item: no hot row while a broadcast runs.
    Column("skipped", Integer, nullable=False, server_default=text("0")),
    Column("cancelled", Integer, nullable=False, server_default=text("0")),
    Column("chunks", Integer, nullable=False, server_default=text("0")),
    Column("chunk_size", Integer, nullable=False, server_default="100"),
    Column("request_fingerprint", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    CheckConstraint(f"status in ({JOB_STATUSES})", name="status_known"),
    CheckConstraint("kind in ('broadcast', 'conversations.update', 'contacts.import')", name="kind_known"),
    Index(
        "uq_bulk_jobs_org_idempotency_key",
        "organization_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    Index("ix_bulk_jobs_org_created", "organization_id", text("created_at DESC"), "id"),
    # The target of its items' and chunks' (job, organization) key.
    UniqueConstraint("id", "organization_id"),
)


def _job_org() -> Column[object]:
    """A job's item or chunk belongs to the job's organization: its key to the job says so, and
    the job's own key cascades from the organization (no second key, nor its index)."""
    return Column("organization_id", UUID(as_uuid=True), nullable=False)


def _job_key() -> ForeignKeyConstraint:
    # One trigger call per inserted row instead of two (job, organization), and it refuses an
    # item or chunk of one tenant under another tenant's job.
    return ForeignKeyConstraint(
        ["bulk_job_id", "organization_id"], ["bulk_jobs.id", "bulk_jobs.organization_id"], ondelete="CASCADE"
    )


bulk_job_items = Table(
    "bulk_job_items",
    metadata,
    _id(),
    _job_org(),
    Column("bulk_job_id", UUID(as_uuid=True), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("message_id", UUID(as_uuid=True), ForeignKey("messages.id", ondelete="SET NULL")),
    UniqueConstraint("bulk_job_id", "seq"),
    *_timestamps(),
    Column("chunk", Integer, nullable=False, server_default=text("0")),
    Column("contact_id", UUID(as_uuid=True), ForeignKey("contacts.id", ondelete="SET NULL")),
    # Meta's code (as text) or ours (contact_opted_out, template_parameters_mismatch, ...).
    Column("error_code", Text),
    Column("error_title", Text),
    Column("settled_at", DateTime(timezone=True)),
    CheckConstraint(
        "status in ('pending', 'submitted', 'succeeded', 'failed', 'skipped', 'cancelled')",
        name="status_known",
    ),
    _job_key(),
    Index("ix_bulk_job_items_job_chunk", "bulk_job_id", "chunk"),
    # Only items with a message: planning inserts none, so the index costs it nothing.
    Index("ix_bulk_job_items_message_id", "message_id", postgresql_where=text("message_id IS NOT NULL")),
)

# A job's unit of execution: released (its job enqueued) a few at a time, submitted (its items'
# messages queued) in one transaction, settled once every item has an outcome.
bulk_job_chunks = Table(
    "bulk_job_chunks",
    metadata,
    _job_org(),
    Column("bulk_job_id", UUID(as_uuid=True), nullable=False),
    Column("chunk", Integer, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("released", Boolean, nullable=False, server_default=text("false")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("submitted_at", DateTime(timezone=True)),
    Column("settled_at", DateTime(timezone=True)),
    *_timestamps(),
    PrimaryKeyConstraint("bulk_job_id", "chunk"),
    _job_key(),
    CheckConstraint("status in ('pending', 'submitted', 'done', 'cancelled')", name="status_known"),
    Index(
        "ix_bulk_job_chunks_unsettled",
        "updated_at",
        postgresql_where=text("released AND status IN ('pending', 'submitted')"),
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    _org(),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("scopes", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    *_timestamps(),
    # An operator key spans tenants for dead letters (created only by `adsapp apikey create --operator`).
    Column("operator", Boolean, nullable=False, server_default=text("false")),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    _id(),
    _org(nullable=True),
    Column("source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text),
    Column("event_created_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("payload", JSONB),
    UniqueConstraint("source", "event_id"),
    *_timestamps(),
)

event_store = Table(
    "event_store",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    _org(),
    Column("aggregate_type", Text, nullable=False),
    Column("aggregate_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_event_store_org_aggregate", "organization_id", "aggregate_type", "aggregate_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    _id(),
    _org(nullable=True),
    Column("queue", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("message_id", Text, nullable=False, unique=True),
    Column("args", JSONB, nullable=False),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("options", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text, nullable=False),
    Column("traceback", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("status", Text, nullable=False, server_default="dead"),
    Column("first_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("retried_at", DateTime(timezone=True)),
    Index("ix_dead_letters_status_last_failed", "status", "last_failed_at"),
    *_timestamps(),
    # 0009: what operators filter and act on.
    Column("error_class", Text),
    Column("error_message", Text),
    # Whether the scheduled sweep may retry it (timeouts, outages, throttling), decided at capture.
    Column("transient", Boolean, nullable=False, server_default=text("false")),
    # The letter whose retry died again as this one.
    Column(
        "retried_from", UUID(as_uuid=True), ForeignKey("dead_letters.id", ondelete="SET NULL"), index=True
    ),
    # The id the retry is (or was) published with: kept so a republish after a crash is the same message.
    Column("retry_message_id", Text),
    Column("sweeps", Integer, nullable=False, server_default=text("0")),
    Column("next_sweep_at", DateTime(timezone=True)),
    Column("discarded_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('dead', 'retrying', 'retried', 'discarded')", name="status"),
    Index("ix_dead_letters_last_failed_at_id", "last_failed_at", "id"),
    Index("ix_dead_letters_status_next_sweep_at", "status", "next_sweep_at"),
)

# A batch retry: its filter is frozen into `dead_letter_redrive_items` when it is created, so
# letters that die later are never swept in. organization_id NULL: an operator's, across tenants.
dead_letter_redrives = Table(
    "dead_letter_redrives",
    metadata,
    _id(),
    _org(nullable=True),
    Column("scope_key", Text, nullable=False),
    Column("idempotency_key", Text),
    Column("fingerprint", Text),
    Column("filter", JSONB, nullable=False),
    Column("max_per_second", Float),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("matched", Integer, nullable=False, server_default=text("0")),
    Column("moved", Integer, nullable=False, server_default=text("0")),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    Column("skipped", Integer, nullable=False, server_default=text("0")),
    Column("lease_until", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    *_timestamps(),
    UniqueConstraint("scope_key", "idempotency_key"),
    CheckConstraint("status IN ('pending', 'running', 'finished', 'cancelled')", name="status"),
    Index("ix_dead_letter_redrives_status_lease_until", "status", "lease_until"),
)

dead_letter_redrive_items = Table(
    "dead_letter_redrive_items",
    metadata,
    Column(
        "redrive_id",
        UUID(as_uuid=True),
        ForeignKey("dead_letter_redrives.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "dead_letter_id",
        UUID(as_uuid=True),
        ForeignKey("dead_letters.id", ondelete="CASCADE"),
        nullable=False,
    ),
    _org(nullable=True),
    # NULL until the runner takes it: moved (re-enqueued) or skipped (no longer dead by then).
    Column("outcome", Text),
    PrimaryKeyConstraint("redrive_id", "dead_letter_id"),
    Index("ix_dead_letter_redrive_items_dead_letter_id", "dead_letter_id"),
)

# Follow-up jobs written in the same transaction as the rows they concern, so a committed row is
# always eventually enqueued; the unit of work publishes them after commit and the scheduler sweeps
# whatever a crash left behind.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    _org(nullable=True),
    Column("queue", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("args", JSONB, nullable=False),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("delay_ms", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
)

# Counted per organization and month, for plan quotas.
usage_counters = Table(
    "usage_counters",
    metadata,
    _org(),
    Column("period", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("value", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("organization_id", "period", "metric"),
)

# The plan catalog: global, not tenant data (no organization_id, no row-level security; the
# application role may only read it). A plan's quota of None means unlimited.
plans = Table(
    "plans",
    metadata,
    Column("name", Text, primary_key=True),
    Column("monthly_message_quota", BigInteger),
    Column("bulk_allowed", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("monthly_message_quota IS NULL OR monthly_message_quota >= 0", name="quota_not_negative"),
    *_timestamps(),
)

# Stripe price lookup keys (e.g. "pro_monthly", "pro_yearly") and the plan each one buys.
plan_lookup_keys = Table(
    "plan_lookup_keys",
    metadata,
    Column("lookup_key", Text, primary_key=True),
    Column(
        "plan",
        Text,
        ForeignKey("plans.name", ondelete="CASCADE", onupdate="CASCADE"),
        nullable=False,
        index=True,
    ),
)

# Webhook changes no tenant can take (yet): for a number nobody owns (replayed when it is added) or
# unreadable. No organization_id: row-level security admits the system scope only.
parked_changes = Table(
    "parked_changes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("digest", Text, nullable=False, unique=True),
    Column("phone_number_id", Text, index=True),
    Column("waba_id", Text, index=True),
    Column("field", Text),
    Column("change", JSONB, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

TENANT_TABLES: tuple[str, ...] = tuple(
    name for name, table in metadata.tables.items() if "organization_id" in table.c
)
