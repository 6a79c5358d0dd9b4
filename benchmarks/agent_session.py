"""Agent-session benchmark: prompt cache, queue and cancellation, side by side.

One run measures, on this machine and one after the other (nothing overlaps):

1. A Claude-Code-shaped session through Pensieve's streaming `POST /v1/messages`
   on the bundled model: a ~2k-token system + tools prefix (a long system text
   and five tools with JSON schemas; the real size comes from `usage`), whose
   FIRST system block is `x-anthropic-billing-header: cc_version=2.1.330;
   cch=<random per turn>;` as Claude Code sends it, then 5 turns, each adding
   the previous answer and a short follow-up (~50 tokens), max_tokens 16,
   temperature 0. Time to first token (request start to the first
   `content_block_delta`) of turn 1 (cold) and turns 2-5 (warm, median),
   `usage` per turn, and the server's own log line per turn ("prompt N tokens
   (M from cache)"). Run twice: CPU profile at its default (`auto`: OpenBLAS +
   float32 weights) and `PENSIEVE_CPU_PROFILE=off` (plain MLX, 4-bit), which
   separates the cache effect from the faster prefill of the profile.
2. The same session against `mlx_lm.server` (mlx-lm's own server, OpenAI
   `/v1/chat/completions`, streaming, its prompt-cache options at their
   defaults) on the same imported model directory. Its system message is the
   billing text, then the system text, then the tools in the very text
   Pensieve renders for this model (its chat template knows no tools, so a
   `tools` field would be dropped and the prompt would be ~1k tokens shorter):
   both servers see prompts of the same size, and the stamp is at the start of
   mlx_lm.server's prompt, as an OpenAI proxy in front of it would put it.
   Plain MLX prefills ~10 tokens/s here: a turn that re-prefills everything
   takes minutes; progress is printed every 30 s.
3. 20 concurrent streaming clients (distinct short prompts, max_tokens 16)
   against a Pensieve server started with `PENSIEVE_QUEUE_DEPTH=4`: each
   request completes, or gets 529 `overloaded_error` (with `retry-after`), or
   counts as a failure (other status, error event, or no answer within the
   time bound: a hang). TTFT and total time of completed requests
   (min/median/max) and the time to a 529.
4. On that same server (prompt cache on, at its default size): 20 rounds of
   an undisturbed request (~300-token prompt, max_tokens 16), a stream
   (max_tokens 256) closed right after its first `content_block_delta`, and a
   request sent right after that disconnect. The two measured series
   interleave, so a drift of the machine's speed reaches both alike. Every
   prompt starts with its own nonce, so no request reuses more than the chat
   template's first tokens from the cache (the `cache_read_input_tokens` of
   each measured request is printed). Goal: the median TTFT after a
   disconnect within 10% of the undisturbed median. The server log's
   "cancelled after N generated tokens" lines are counted.

The servers run with a fresh instance folder (no pensieve.toml) and the model
cache of `--cache-dir`; each is stopped in a `finally`. Only 127.0.0.1 is
contacted. The script prints the load average at the start and the end (other
processes sharing the CPU make every figure noisy), a table, the goals and one
`JSON:` line holding every figure, and exits 1 when it missed a goal it
measured (the missed ones are named on stderr). The code is in
_agent_session/, the system text, tools and prompts in data/.

Run it from the repository root with the project's virtualenv active:

    python benchmarks/agent_session.py [--skip-mlx-lm-server] [--skip-profile-off]

A full run takes about 25 minutes on an idle 2-core machine (36 minutes were
measured with a load average of 4-8), most of it in mlx_lm.server's prefills;
`--skip-mlx-lm-server --skip-profile-off` takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from _agent_session.run import run
from pensieve.config import resolve_cache_dir


def interrupted(signum: int, frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """Parse the command line and run the benchmark; its exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-mlx-lm-server",
        action="store_true",
        help="leave out the mlx_lm.server session (the longest part)",
    )
    parser.add_argument(
        "--skip-profile-off",
        action="store_true",
        help="leave out the PENSIEVE_CPU_PROFILE=off session",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=resolve_cache_dir(os.environ.get("PENSIEVE_CACHE_DIR", "")),
        help="Pensieve cache folder holding the imported bundled model",
    )
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the servers' `finally`
    # blocks run and stop them.
    signal.signal(signal.SIGTERM, interrupted)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
