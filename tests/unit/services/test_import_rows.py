"""Contact import rows checked one by one: each bad row is a skipped item with its reason and row
number; good rows carry their normalised values."""

from __future__ import annotations

from services.bulk_plans import import_row_items


def test_each_row_is_checked_on_its_own_and_numbered_from_one() -> None:
    items = import_row_items(
        [
            {"wa_id": "+15551230001", "name": " Ann ", "tags": "vip;new|vip", "opt_in": "yes"},
            {"wa_id": "12x"},
            {"wa_id": 15551230002, "opt_in": False},
            {"wa_id": "15551230001"},
            {"wa_id": "15551230003", "name": "x" * 257},
            {"wa_id": "15551230004", "tags": ["ok", "not ok"]},
            {"wa_id": "15551230005", "opt_in": "maybe"},
            {},
        ]
    )
    assert [i.seq for i in items] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [(i.status, i.error_code) for i in items] == [
        ("pending", None),
        ("skipped", "invalid_wa_id"),
        ("pending", None),
        ("skipped", "duplicate_row"),
        ("skipped", "invalid_name"),
        ("skipped", "invalid_tags"),
        ("skipped", "invalid_opt_in"),
        ("skipped", "invalid_wa_id"),
    ]
    assert items[0].recipient == "15551230001"
    assert items[0].params == {"wa_id": "15551230001", "name": "Ann", "tags": ["new", "vip"], "opt_in": True}
    assert items[2].params == {"wa_id": "15551230002", "tags": [], "opt_in": False}
    assert items[1].recipient == "12x" and items[7].recipient == "row 8"


def test_rows_fall_into_chunks_of_500() -> None:
    items = import_row_items([{"wa_id": f"1555{i:07d}"} for i in range(1001)])
    assert [items[0].chunk, items[499].chunk, items[500].chunk, items[1000].chunk] == [0, 0, 1, 2]
