"""The loop guard of constrained decoding: finding loops, tracking strings."""

from __future__ import annotations

import pytest

from pensieve.engine.constrain import JSONScanner, ends_in_loop


@pytest.mark.parametrize(
    ("tokens", "run"),
    [
        ([7] * 32, [7]),
        ([1, 2] + [3, 4, 5, 6] * 8, [3, 4, 5, 6]),
        ([9] + list(range(20)) * 3, list(range(20))),
    ],
)
def test_a_repeated_run_is_a_loop(tokens: list[int], run: list[int]) -> None:
    assert ends_in_loop(tokens) == run


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        [7] * 31,  # too short a span
        list(range(40)) * 2,  # too few repeats
        [3, 4, 5, 6] * 8 + [1],  # the loop is not at the end
        list(range(200)),
    ],
)
def test_other_runs_are_not_loops(tokens: list[int]) -> None:
    assert ends_in_loop(tokens) == []


@pytest.mark.parametrize(
    ("pieces", "inside"),
    [
        (['{"a": "b'], True),
        (['{"a": "b"'], False),
        (['{"a": "say \\', '"hi'], True),
        (['{"a": "x\\\\', '"'], False),
        (['{"a": ["x", "y"], "b": '], False),
    ],
)
def test_scanner_knows_when_it_is_in_a_string(pieces: list[str], inside: bool) -> None:
    scanner = JSONScanner()
    for piece in pieces:
        scanner.feed(piece)
    assert scanner.in_string is inside
