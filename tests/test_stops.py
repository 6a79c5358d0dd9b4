"""Stop-sequence hold-back on streamed text."""

from __future__ import annotations

from pensieve.engine.stops import StopSequenceFilter


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[list[str], str | None]:
    stop_filter = StopSequenceFilter(stops)
    out = []
    for piece in pieces:
        out.append(stop_filter.feed(piece))
        if stop_filter.matched:
            return out, stop_filter.matched
    out.append(stop_filter.flush())
    return out, None


def test_without_stops_text_passes_through() -> None:
    assert run((), ["a", "b"]) == (["a", "b", ""], None)


def test_match_across_pieces_is_cut_and_never_emitted() -> None:
    out, matched = run(("END",), ["hello E", "N", "D more"])
    assert "".join(out) == "hello " and matched == "END"


def test_partial_prefix_is_held_until_disproved() -> None:
    out, matched = run(("END",), ["a E", "Nx"])
    assert out == ["a ", "ENx", ""] and matched is None


def test_earliest_of_several_stops_wins() -> None:
    out, matched = run(("b", "a"), ["xab"])
    assert out == ["x"] and matched == "a"
