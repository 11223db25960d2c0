"""Every error code the API answers with, its HTTP status and default message: one catalogue.

Clients match on `error.code`, never on the message, so codes are stable; a new situation gets a
new code here. Billing refusals reuse the billing policy's own codes (`domain.billing.policy`) and
answer 402 Payment Required: each of them is lifted by paying or changing plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from domain.billing.policy import RefusalCode


class ErrorCode(StrEnum):
    AUTH_MISSING = "auth_missing"
    AUTH_INVALID = "auth_invalid"
    AUTH_EXPIRED = "auth_expired"
    AUTH_REVOKED = "auth_revoked"
    SCOPE_MISSING = "scope_missing"
    RATE_LIMITED = "rate_limited"
    INVALID_JSON = "invalid_json"
    VALIDATION_FAILED = "validation_failed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_CURSOR = "invalid_cursor"
    OUTSIDE_CUSTOMER_WINDOW = "outside_customer_window"
    CONTACT_OPTED_OUT = "contact_opted_out"
    NO_PHONE_NUMBER = "no_phone_number"
    PHONE_NUMBER_REQUIRED = "phone_number_required"
    PHONE_NUMBER_UNKNOWN = "phone_number_unknown"
    TEMPLATE_NOT_FOUND = "template_not_found"
    TEMPLATE_LANGUAGE_MISSING = "template_language_missing"
    TEMPLATE_NOT_APPROVED = "template_not_approved"
    TEMPLATE_PARAMETERS_MISMATCH = "template_parameters_mismatch"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    MESSAGING_LIMIT_EXCEEDED = "messaging_limit_exceeded"
    NO_RECIPIENTS = "no_recipients"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    TOO_MANY_ROWS = "too_many_rows"
    INVALID_CSV = "invalid_csv"
    ASSIGNEE_UNKNOWN = "assignee_unknown"
    BULK_JOB_NOT_PAUSABLE = "bulk_job_not_pausable"
    BULK_JOB_NOT_RESUMABLE = "bulk_job_not_resumable"
    BULK_JOB_FINISHED = "bulk_job_finished"
    DEAD_LETTER_NOT_DEAD = "dead_letter_not_dead"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


# What every operation's pipeline may answer before its handler runs (authentication, rate limit,
# a dependency down).
AUTH_ERRORS: Final = (
    ErrorCode.AUTH_MISSING, ErrorCode.AUTH_INVALID, ErrorCode.AUTH_EXPIRED, ErrorCode.AUTH_REVOKED,
    ErrorCode.SCOPE_MISSING, ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE,
)  # fmt: skip
# Reading a JSON body (its schema's 422 is VALIDATION_FAILED, listed where an operation takes input).
BODY_ERRORS: Final = (ErrorCode.INVALID_JSON, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
# The sending number and the template, checked alike for one message and for a broadcast.
SENDER_ERRORS: Final = (
    ErrorCode.NO_PHONE_NUMBER,
    ErrorCode.PHONE_NUMBER_REQUIRED,
    ErrorCode.PHONE_NUMBER_UNKNOWN,
    ErrorCode.TEMPLATE_NOT_FOUND,
    ErrorCode.TEMPLATE_LANGUAGE_MISSING,
    ErrorCode.TEMPLATE_NOT_APPROVED,
    ErrorCode.TEMPLATE_PARAMETERS_MISMATCH,
)


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    message: str


CATALOGUE: Final[Mapping[str, ErrorSpec]] = {
    ErrorCode.AUTH_MISSING: ErrorSpec(401, "Send an API key as 'Authorization: Bearer <key>'."),
    ErrorCode.AUTH_INVALID: ErrorSpec(401, "The API key is not valid."),
    ErrorCode.AUTH_EXPIRED: ErrorSpec(401, "The API key has expired."),
    ErrorCode.AUTH_REVOKED: ErrorSpec(401, "The API key has been revoked."),
    ErrorCode.SCOPE_MISSING: ErrorSpec(403, "The API key lacks the scope this operation needs."),
    ErrorCode.RATE_LIMITED: ErrorSpec(429, "Too many requests for this API key; retry after the reset."),
    ErrorCode.INVALID_JSON: ErrorSpec(400, "The request body is not valid JSON."),
    ErrorCode.VALIDATION_FAILED: ErrorSpec(422, "The request does not match the schema."),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "The request body is too large."),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(
        415, "Send the body as application/json (or text/csv and multipart/form-data where accepted)."
    ),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "Not found."),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(405, "Method not allowed."),
    ErrorCode.IDEMPOTENCY_KEY_INVALID: ErrorSpec(
        400, "Idempotency-Key must be 1 to 255 printable ASCII characters."
    ),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: ErrorSpec(
        422, "This Idempotency-Key was used with a different request in the last 24 hours."
    ),
    ErrorCode.INVALID_CURSOR: ErrorSpec(400, "The cursor is not one this API issued."),
    ErrorCode.OUTSIDE_CUSTOMER_WINDOW: ErrorSpec(
        422,
        "More than 24 hours have passed since the customer's last message (or they never wrote): "
        "only an approved template may be sent.",
    ),
    ErrorCode.CONTACT_OPTED_OUT: ErrorSpec(422, "The customer opted out of messages from this business."),
    ErrorCode.NO_PHONE_NUMBER: ErrorSpec(422, "The organization has no WhatsApp number to send from."),
    ErrorCode.PHONE_NUMBER_REQUIRED: ErrorSpec(
        422, "The organization has several WhatsApp numbers: name one in phone_number_id."
    ),
    ErrorCode.PHONE_NUMBER_UNKNOWN: ErrorSpec(
        422, "phone_number_id is not one of this organization's numbers."
    ),
    ErrorCode.TEMPLATE_NOT_FOUND: ErrorSpec(422, "No template with this name is known."),
    ErrorCode.TEMPLATE_LANGUAGE_MISSING: ErrorSpec(422, "The template has no translation in this language."),
    ErrorCode.TEMPLATE_NOT_APPROVED: ErrorSpec(422, "The template is not approved."),
    ErrorCode.TEMPLATE_PARAMETERS_MISMATCH: ErrorSpec(422, "The parameters do not match the template."),
    ErrorCode.IDEMPOTENCY_CONFLICT: ErrorSpec(
        409, "This Idempotency-Key was used with a different request in the last 24 hours."
    ),
    ErrorCode.MESSAGING_LIMIT_EXCEEDED: ErrorSpec(
        422, "The number's messaging limit (unique recipients per 24 hours) cannot hold this job."
    ),
    ErrorCode.NO_RECIPIENTS: ErrorSpec(422, "No recipient matches: nothing to send."),
    ErrorCode.TOO_MANY_RECIPIENTS: ErrorSpec(413, "A bulk job takes at most 100,000 recipients."),
    ErrorCode.TOO_MANY_ROWS: ErrorSpec(413, "An import takes at most 100,000 rows."),
    ErrorCode.INVALID_CSV: ErrorSpec(400, "The CSV cannot be read (UTF-8, a header row with wa_id)."),
    ErrorCode.ASSIGNEE_UNKNOWN: ErrorSpec(422, "assigned_to is not one of this organization's profiles."),
    ErrorCode.BULK_JOB_NOT_PAUSABLE: ErrorSpec(409, "Only a pending or running job can be paused."),
    ErrorCode.BULK_JOB_NOT_RESUMABLE: ErrorSpec(409, "The job cannot be resumed in its current state."),
    ErrorCode.BULK_JOB_FINISHED: ErrorSpec(409, "The job has already finished."),
    ErrorCode.DEAD_LETTER_NOT_DEAD: ErrorSpec(
        409, "The dead letter is not dead (already retrying, retried or discarded): nothing was done."
    ),
    ErrorCode.UNAVAILABLE: ErrorSpec(503, "A service this API depends on is unavailable; retry shortly."),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(500, "Internal error."),
    **{code.value: ErrorSpec(402, f"Sending is not allowed: {code.value}.") for code in RefusalCode},
}


class ApiError(Exception):
    """An answer other than success, carrying everything its envelope needs."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        details: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        spec = CATALOGUE[code]
        self.code = str(code)
        self.status = spec.status
        self.message = message or spec.message
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(f"{self.code}: {self.message}")
