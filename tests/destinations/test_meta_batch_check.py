"""The batch-wide SHA-256 check the Meta client runs before sending: it must never pass a batch
holding a value the per-value check refuses (a raw identifier must not reach an ad platform)."""

from __future__ import annotations

import hashlib

import pytest

from destinations.base import Row
from destinations.meta import all_sha256_hex, is_sha256_hex, rows_from_response

GOOD = [hashlib.sha256(f"p{i}@example.com".encode()).hexdigest() for i in range(3)]

ODD_VALUES = [
    GOOD[0].upper(),
    GOOD[0][:63],
    GOOD[0] + "0",
    GOOD[0][:63] + "g",
    GOOD[0][:62] + " a",
    GOOD[0][:63] + "é",
    "jane.doe@example.com",
    "",
    None,
    b"0" * 64,
]


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_one_odd_value_fails_the_whole_batch_as_it_fails_alone(odd) -> None:
    assert not is_sha256_hex(odd)
    assert not all_sha256_hex([*GOOD, odd]) and not all_sha256_hex([odd, *GOOD])


def test_lengths_that_only_add_up_do_not_pass() -> None:
    short, long = GOOD[0][:63], GOOD[1] + "a"  # 63 + 65 = 2 x 64 characters
    assert not all_sha256_hex([short, long])


def test_a_batch_of_hashes_passes() -> None:
    assert all_sha256_hex(GOOD) and all_sha256_hex([])


def test_an_all_accepted_answer_acknowledges_every_row_in_order() -> None:
    rows = [Row(k, k) for k in GOOD]
    body = {"num_received": 3, "num_invalid_entries": 0, "invalid_entry_samples": {}}
    results = rows_from_response(rows, body)
    assert [(r.subject_key, r.ok) for r in results] == [(k, True) for k in GOOD]
    unnamed = rows_from_response(rows, {"num_received": 3, "num_invalid_entries": 1})
    assert not any(r.ok for r in unnamed)  # one invalid but unnamed: none claimed
