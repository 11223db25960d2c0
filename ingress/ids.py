"""Unique ids in UUID text form, cheap enough to make two per request.

`uuid.uuid4()` reads the OS random source and builds an object each call, a visible share of a
webhook's cost; a random per-process prefix (74 random bits, version 4 marked) plus a counter is
unique just the same. The prefix is drawn again in a forked child.
"""

from __future__ import annotations

import itertools
import os
import uuid

_prefix = ""
_counter: itertools.count[int] = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = str(uuid.uuid4())[:24]  # "xxxxxxxx-xxxx-4xxx-yxxx-"
    _counter = itertools.count()


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFF:012x}"
