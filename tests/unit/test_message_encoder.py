"""Messages decode the same whichever parser reads them, including what only the standard
library's parser accepts."""

from __future__ import annotations

import pytest
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import DecodeError

from workers.encoder import OrjsonDecodingEncoder

_STANDARD = JSONEncoder()
_FAST = OrjsonDecodingEncoder()


@pytest.mark.parametrize(
    "data",
    [
        {"queue_name": "outbound", "args": ["é 😀 \u2028 \x00"], "kwargs": {"n": 3, "f": 0.1}, "options": {}},
        {"args": ["\ud83d"], "kwargs": {}},  # a lone surrogate: orjson refuses it, json does not
        {"args": [float("nan")]},
    ],
)
def test_what_dramatiq_writes_reads_back_the_same(data: dict[str, object]) -> None:
    encoded = _STANDARD.encode(data)  # type: ignore[arg-type]
    assert repr(_FAST.decode(encoded)) == repr(_STANDARD.decode(encoded))


def test_what_no_parser_reads_is_still_a_decode_error() -> None:
    for garbage in (b"\xff\xfe", b"{not json"):
        with pytest.raises(DecodeError):
            _FAST.decode(garbage)
