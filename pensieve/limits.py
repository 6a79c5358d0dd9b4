"""How big and how deep a request body may be, checked before it is parsed.

The body limit follows the model's context window: no prompt that fits the
window needs more than `BYTES_PER_TOKEN` bytes of JSON a token, so a larger
body is refused (413) before anything reads it whole. The depth limit keeps
the parser, the validators and the grammar builder, all recursive, well
inside Python's recursion limit; a scan of the bytes finds it in
milliseconds.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

# JSON bytes a prompt token may take at most: escapes (\n, \", \uXXXX) and a
# tool schema's punctuation make some tokens long, none this long.
BYTES_PER_TOKEN = 128
# The least body limit, for small windows (Claude Code's tools alone are ~100 KB).
MINIMUM_BODY_BYTES = 1024 * 1024
# Until the model is loaded (requests then get 503 anyway).
PROVISIONAL_BODY_BYTES = 32 * 1024 * 1024

OPENERS = np.zeros(256, np.int8)
OPENERS[[ord("{"), ord("[")]] = 1
OPENERS[[ord("}"), ord("]")]] = -1


def body_limit(context_window: int) -> int:
    """The largest body a request to a model with this window needs."""
    return max(MINIMUM_BODY_BYTES, context_window * BYTES_PER_TOKEN)


def size_body_limit(config: MutableMapping[str, Any], context_window: int) -> None:
    """Set the app's body limit from the loaded model's window, unless the
    MAX_REQUEST_BYTES setting gives one."""
    if config.get("MAX_REQUEST_BYTES") is None:
        config["MAX_CONTENT_LENGTH"] = body_limit(context_window)


def json_depth(raw: bytes) -> int:
    """How deeply the JSON text `raw` nests arrays and objects.

    Brackets inside strings do not count. For text that is not JSON the
    figure means nothing, and the parser rejects the text anyway.
    """
    data = np.frombuffer(raw, np.uint8)
    if data.size == 0:
        return 0
    quote = data == ord('"')
    if quote.any():
        quote &= ~escaped(data)
        # Inside a string after an odd number of unescaped quotes.
        inside = (np.cumsum(quote) & 1).astype(bool)
        steps = np.where(inside, 0, OPENERS[data])
    else:
        steps = OPENERS[data]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def escaped(data: np.ndarray) -> np.ndarray:
    """Where a character follows an odd run of backslashes (is escaped)."""
    backslash = data == ord("\\")
    if not backslash.any():
        return np.zeros(data.size, bool)
    positions = np.arange(data.size)
    # The index of the last character that is not a backslash, at or before each.
    last_other = np.maximum.accumulate(np.where(backslash, -1, positions))
    run_before = np.empty(data.size, np.int64)
    run_before[0] = 0
    run_before[1:] = positions[:-1] - last_other[:-1]
    return (run_before & 1).astype(bool)
