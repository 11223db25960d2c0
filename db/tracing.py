"""The unit of work's tracing hook: a `db.commit` span, made only inside a recording trace.

Off (no tracer provider, or no trace in progress) it is one context-variable lookup per commit.
"""

from __future__ import annotations

import contextlib
from typing import Final

from opentelemetry import trace

_tracer: Final = trace.get_tracer("adsapp.db")
_NOTHING: Final = contextlib.nullcontext()


def commit_span() -> contextlib.AbstractContextManager[object]:
    if trace.get_current_span().is_recording():
        return _tracer.start_as_current_span("db.commit", kind=trace.SpanKind.CLIENT)
    return _NOTHING
