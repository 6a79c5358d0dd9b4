"""CPU-profile benchmark: prefill and decode speed of the bundled model, side by side.

One run measures, on this machine, one after the other (nothing overlaps):

(a) before: plain MLX, `load_model(dir, CPUProfile(enabled=False))`, in a fresh
    Python subprocess;
(b) after: the CPU profile on, `CPUProfile(enabled=True)` (OpenBLAS routed in
    before mlx is imported, float32 weights), in another fresh subprocess: the
    BLAS routing is process-wide, so each setting needs a process of its own;
(c) server: `python -m gunicorn -c gunicorn.conf.py wsgi:app` on 127.0.0.1 and
    a free port (CPU profile at its default, on), through streaming
    `POST /v1/messages`, temperature 0;
(d) llama.cpp: `llama-cpp-python` on the same GGUF, in a virtual environment of
    the benchmark's own (`--llama-venv`, not Pensieve's: llama.cpp is no
    Pensieve dependency), n_ctx 4096, 2 threads.

Figures:

- prefill tok/s at 128, 1,024 and 2,048 prompt tokens: a synthetic prompt of
  exactly N tokens (a paragraph's token ids repeated, capped to N). MLX: time
  of `mlx_lm.generate_step(..., max_tokens=0, prefill_step_size=512)` (the
  engine's PREFILL_STEP_SIZE), which processes the prompt and samples the
  first token. llama.cpp: time of `Llama.eval(tokens)` (n_batch 512).
  Server: input_tokens (from message_start) / time to the first
  content_block_delta, for a prompt of about 1,024 tokens (sized with
  /v1/messages/count_tokens); the server column puts it in the 1,024 row.
  Each of these prompts starts with its own number, so the server's prompt
  cache can only supply the chat template's header, which message_start
  reports as cache_read_input_tokens, not as input_tokens.
- decode tok/s: greedy, --decode-tokens (128) new tokens after the chat prompt
  "Count from 1 to 300, separated by commas." (llama.cpp gets the token ids
  the "after" child rendered: the vocabulary is the GGUF's), computed as
  (tokens - 1) / (time from the first token to the last). MLX and llama.cpp
  ignore the end-of-turn token; the server uses output_tokens from the final
  message_delta and the time from the first content_block_delta to
  message_stop.

Every child first warms up (a short prefill and a few decode steps). Each
figure is the best of --repeats runs (default 3), except the "before" column,
measured once: plain MLX prefills at about 10 tok/s, so 2,048 tokens take
minutes. `--quick` skips the before-2048 measurement.

Run it from the repository root with the project's virtualenv active:

    python benchmarks/cpu_profile.py [--quick] [--repeats 3] [--build-llama]

Without llama_cpp in --llama-venv (default /tmp/pensieve-bench-llama) the
llama.cpp column is skipped and the command that builds it is printed;
`--build-llama` runs that command before measuring llama.cpp (6 to 11
minutes on a 2-core VM; it is in the runtime estimate). The build flags
avoid `-march=native`, whose default build dies with "illegal instruction" on
some VMs.

The script prints the estimated runtime, the load average at start and end, a
table, the goals, and one `JSON:` line holding every figure; it exits 1 when
the server misses the prefill or the decode goal (the stretch goals relative
to llama.cpp are printed, but do not decide the exit status). The server it
starts is stopped in a `finally`; it only talks to 127.0.0.1. Figures are
wall-clock and noisy when other processes share the CPU. The measuring code
is in _cpu_profile/, the children in children/, the prompts in data/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _cpu_profile.run import run


def main() -> int:
    """Parse the command line and run the benchmark; its exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="skip the slow before-2048 prefill"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument(
        "--llama-venv", type=Path, default=Path("/tmp/pensieve-bench-llama")
    )
    parser.add_argument(
        "--build-llama",
        action="store_true",
        help="build llama-cpp-python in --llama-venv if it is missing",
    )
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
