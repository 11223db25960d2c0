"""Reading a decoded webhook delivery into typed items.

Each entry, change, contact, message, status and error is read on its own. One that lacks what
every later step relies on (ids, types, timestamps, the phone number a `messages` change belongs
to) becomes an `Unparsed` item carrying the reason and the object as it came, and the rest of the
delivery is read as usual: one broken image must not sink another tenant's messages. Only a body
that is not a WhatsApp delivery at all raises `InvalidPayload`. Lenient about everything else,
which stays in `raw`. Text is taken exactly as decoded: no trimming, no normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from domain.errors import InvalidPayload
from domain.whatsapp.model import (
    MEDIA_TYPES,
    ChangeError,
    Delivery,
    InboundMessage,
    MediaRef,
    NumberChange,
    Profile,
    Reaction,
    StatusUpdate,
    Unparsed,
    WebhookChange,
)

WHATSAPP_OBJECT = "whatsapp_business_account"

T = TypeVar("T")


def parse_delivery(document: object) -> Delivery:
    """Every change of every entry, in the order Meta sent them, and what could not be read."""
    root = _mapping(document, "delivery")
    if root.get("object") != WHATSAPP_OBJECT:
        raise InvalidPayload(f"delivery: object is {root.get('object')!r}, not {WHATSAPP_OBJECT!r}")
    changes: list[WebhookChange] = []
    unparsed: list[Unparsed] = []
    for i, entry_obj in enumerate(_list(root.get("entry"), "entry")):
        where = f"entry[{i}]"
        try:
            entry = _mapping(entry_obj, where)
            entry_id = _id_string(entry.get("id"), f"{where}.id", required=False) or ""
            entry_changes = _list(entry.get("changes", []), f"{where}.changes")
        except InvalidPayload as exc:
            unparsed.append(Unparsed("entry", str(exc), entry_obj))
            continue
        for j, change_obj in enumerate(entry_changes):
            try:
                changes.append(_change(change_obj, entry_id, f"{where}.changes[{j}]"))
            except InvalidPayload as exc:
                unparsed.append(
                    Unparsed("change", str(exc), change_obj, entry_id, _phone_number_id_of(change_obj))
                )
    return Delivery(tuple(changes), tuple(unparsed))


def _change(obj: object, entry_id: str, where: str) -> WebhookChange:
    change = _mapping(obj, where)
    field = change.get("field")
    if not isinstance(field, str) or not field:
        raise InvalidPayload(f"{where}.field is missing")
    value = _mapping(change.get("value"), f"{where}.value")
    metadata = value.get("metadata")
    phone_number_id = display = None
    if isinstance(metadata, Mapping):
        phone_number_id = _id_string(metadata.get("phone_number_id"), f"{where}.metadata", required=False)
        display = _optional_str(metadata.get("display_phone_number"))
    if field != "messages":
        return WebhookChange(entry_id, field, value, phone_number_id, display)
    if phone_number_id is None:
        raise InvalidPayload(f"{where}.value.metadata.phone_number_id is missing")
    where_v = f"{where}.value"
    unparsed: list[Unparsed] = []

    def each(key: str, kind: str, read: Callable[[object, str], T]) -> tuple[T, ...]:
        return _each(value.get(key), f"{where_v}.{key}", kind, read, unparsed, entry_id, phone_number_id)

    contacts = each("contacts", "contact", _profile)
    messages = each("messages", "message", _message)
    statuses = each("statuses", "status", _status)
    errors = each("errors", "error", _error)
    return WebhookChange(
        entry_id=entry_id,
        field=field,
        value=value,
        phone_number_id=phone_number_id,
        display_phone_number=display,
        contacts=contacts,
        messages=messages,
        statuses=statuses,
        errors=errors,
        unparsed=tuple(unparsed),
    )


def _each(
    obj: object,
    where: str,
    kind: str,
    read: Callable[[object, str], T],
    unparsed: list[Unparsed],
    entry_id: str,
    phone_number_id: str,
) -> tuple[T, ...]:
    """Every item of an optional list read on its own; the unreadable ones go to `unparsed`."""
    if obj is None:
        return ()
    if not isinstance(obj, list):
        unparsed.append(Unparsed(kind, f"{where} is not a list", obj, entry_id, phone_number_id))
        return ()
    found: list[T] = []
    for k, item in enumerate(obj):
        try:
            found.append(read(item, f"{where}[{k}]"))
        except InvalidPayload as exc:
            unparsed.append(Unparsed(kind, str(exc), item, entry_id, phone_number_id))
    return tuple(found)


def _phone_number_id_of(change: object) -> str | None:
    """The number a change names, if it names one at all (to park an unreadable change by it)."""
    if not isinstance(change, Mapping):
        return None
    value = change.get("value")
    metadata = value.get("metadata") if isinstance(value, Mapping) else None
    if not isinstance(metadata, Mapping):
        return None
    return _id_string(metadata.get("phone_number_id"), "", required=False)


def _profile(obj: object, where: str) -> Profile:
    contact = _mapping(obj, where)
    wa_id = _id_string(contact.get("wa_id"), f"{where}.wa_id")
    assert wa_id is not None
    profile = contact.get("profile")
    name = _optional_str(profile.get("name")) if isinstance(profile, Mapping) else None
    return Profile(wa_id, name)


def _message(obj: object, where: str) -> InboundMessage:
    message = _mapping(obj, where)
    wamid = _required_str(message.get("id"), f"{where}.id")
    sender = _id_string(message.get("from"), f"{where}.from")
    assert sender is not None
    type_ = _required_str(message.get("type"), f"{where}.type")
    body = message.get(type_)
    body = body if isinstance(body, Mapping) else {}
    context = message.get("context")
    context_wamid = _optional_str(context.get("id")) if isinstance(context, Mapping) else None
    media = reaction = number_change = target = None
    if type_ in MEDIA_TYPES:
        media_id = _id_string(body.get("id"), f"{where}.{type_}.id")
        assert media_id is not None
        media = MediaRef(
            media_id,
            _optional_str(body.get("mime_type")),
            _optional_str(body.get("sha256")),
            _optional_str(body.get("filename")),
        )
    elif type_ == "reaction":
        target_wamid = _required_str(body.get("message_id"), f"{where}.reaction.message_id")
        emoji = _optional_str(body.get("emoji"))
        reaction = Reaction(target_wamid, emoji or None)
    elif type_ == "system":
        number_change = _number_change(body, sender)
    elif type_ in ("edit", "revoke"):
        target = _optional_str(body.get("original_message_id"))
    return InboundMessage(
        wamid=wamid,
        sender=sender,
        timestamp=_timestamp(message.get("timestamp"), f"{where}.timestamp"),
        type=type_,
        text=_text_of(type_, body),
        context_wamid=context_wamid,
        raw=message,
        media=media,
        reaction=reaction,
        number_change=number_change,
        target_wamid=target,
        errors=_errors(message.get("errors"), f"{where}.errors"),
    )


def _number_change(system: Mapping[str, Any], sender: str) -> NumberChange | None:
    form = system.get("type")
    if form == "user_changed_number":
        new = system.get("wa_id")
    elif form == "customer_changed_number":
        new = system.get("new_wa_id") or system.get("wa_id")
    else:
        return None
    new_wa_id = str(new) if isinstance(new, str | int) and str(new) else None
    if new_wa_id is None or new_wa_id == sender:
        return None
    return NumberChange(old_wa_id=sender, new_wa_id=new_wa_id, form=str(form))


def _text_of(type_: str, body: Mapping[str, Any]) -> str | None:
    """The body or caption a person reads, exactly as received."""
    if type_ in ("text",):
        return _optional_str(body.get("body"))
    if type_ in ("image", "video", "document", "audio", "sticker"):
        return _optional_str(body.get("caption"))
    if type_ == "interactive":
        kind = body.get("type")
        reply = body.get(kind) if isinstance(kind, str) else None
        if isinstance(reply, Mapping):
            return _optional_str(reply.get("title")) or _optional_str(reply.get("body"))
        return None
    if type_ in ("button", "order"):
        return _optional_str(body.get("text"))
    if type_ == "reaction":
        return _optional_str(body.get("emoji")) or None
    if type_ == "system":
        return _optional_str(body.get("body"))
    if type_ == "edit":
        inner = body.get("message")
        if isinstance(inner, Mapping):
            inner_type = inner.get("type")
            inner_body = inner.get(inner_type) if isinstance(inner_type, str) else None
            if isinstance(inner_body, Mapping) and isinstance(inner_type, str):
                return _text_of(inner_type, inner_body)
        return None
    return None


def _status(obj: object, where: str) -> StatusUpdate:
    status = _mapping(obj, where)
    conversation = status.get("conversation")
    pricing = status.get("pricing")
    return StatusUpdate(
        wamid=_required_str(status.get("id"), f"{where}.id"),
        status=_required_str(status.get("status"), f"{where}.status"),
        timestamp=_timestamp(status.get("timestamp"), f"{where}.timestamp"),
        recipient_id=_id_string(status.get("recipient_id"), f"{where}.recipient_id", required=False),
        errors=_errors(status.get("errors"), f"{where}.errors"),
        conversation=conversation if isinstance(conversation, Mapping) else None,
        pricing=pricing if isinstance(pricing, Mapping) else None,
        raw=status,
    )


def _errors(obj: object, where: str) -> tuple[ChangeError, ...]:
    if obj is None:
        return ()
    return tuple(_error(item, f"{where}[{k}]") for k, item in enumerate(_list(obj, where)))


def _error(obj: object, where: str) -> ChangeError:
    error = _mapping(obj, where)
    code = error.get("code")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else error.get("details")
    return ChangeError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else _int_or_none(code),
        title=_optional_str(error.get("title")),
        message=_optional_str(error.get("message")),
        details=_optional_str(details),
        raw=error,
    )


# -- small readers ------------------------------------------------------------------------------


def _mapping(obj: object, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidPayload(f"{where} is not an object")
    return obj


def _list(obj: object, where: str) -> list[Any]:
    if not isinstance(obj, list):
        raise InvalidPayload(f"{where} is not a list")
    return obj


def _required_str(obj: object, where: str) -> str:
    if not isinstance(obj, str) or not obj:
        raise InvalidPayload(f"{where} is missing or not a string")
    return obj


def _id_string(obj: object, where: str, *, required: bool = True) -> str | None:
    """Meta sends ids as strings; tolerate plain integers, never floats or booleans."""
    if isinstance(obj, str) and obj:
        return obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        return str(obj)
    if required:
        raise InvalidPayload(f"{where} is missing or not an id")
    return None


def _optional_str(obj: object) -> str | None:
    return obj if isinstance(obj, str) else None


def _int_or_none(obj: object) -> int | None:
    if isinstance(obj, str) and obj.lstrip("-").isdigit():
        return int(obj)
    return None


def _timestamp(obj: object, where: str) -> int:
    """Unix seconds; Meta sends them as a string of digits."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    if isinstance(obj, str) and obj.isdigit():
        return int(obj)
    raise InvalidPayload(f"{where} is missing or not unix seconds")
