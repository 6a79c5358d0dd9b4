"""Stop sequences on streamed text: hold back what might be the start of one."""

from __future__ import annotations


class StopSequenceFilter:
    """Feed text pieces in; get out the text that is safe to show.

    Text that could be the beginning of a stop sequence is held back until it is
    known not to be one, so a matched stop sequence never reaches the client.
    """

    def __init__(self, stop_sequences: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stop_sequences if s)
        self._pending = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Add `text`; return what can be emitted now. Sets `matched` on a hit."""
        if not self._stops:
            return text
        self._pending += text
        hits = [(self._pending.find(s), s) for s in self._stops]
        hits = [(at, s) for at, s in hits if at >= 0]
        if hits:
            at, self.matched = min(hits)
            safe, self._pending = self._pending[:at], ""
            return safe
        keep = self._longest_partial_stop()
        cut = len(self._pending) - keep
        safe, self._pending = self._pending[:cut], self._pending[cut:]
        return safe

    def flush(self) -> str:
        """The held-back text, once generation has ended without a match."""
        rest, self._pending = self._pending, ""
        return rest

    def _longest_partial_stop(self) -> int:
        """Length of the longest suffix of pending text that starts a stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest
