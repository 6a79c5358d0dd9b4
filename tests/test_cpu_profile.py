"""The CPU profile changes speed, not answers.

The profile serves float32 weights dequantised from the 4-bit ones, so logits
are not bit-identical to MLX's 4-bit kernels: those round the embedding to
float16 and sum in another order. Measured difference: at most ~0.05 on logits
of magnitude ~30. The test allows 0.1, and requires the same greedy token
wherever the plain path's top-2 margin exceeds that tolerance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TOLERANCE = 0.1


def run_profile(model_dir: Path, profile: str, out: Path, *given: Path) -> list[str]:
    command = [sys.executable, str(HERE / "greedy_tokens.py"), str(model_dir), profile]
    result = subprocess.run(
        [*command, str(out), *map(str, given)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["profile"]


@pytest.mark.skipif(sys.platform != "linux", reason="the profile targets Linux CPUs")
def test_profile_logits_match_the_plain_path(
    bundled_model_dir: Path, tmp_path: Path
) -> None:
    plain_path, fast_path = tmp_path / "plain.npz", tmp_path / "fast.npz"
    assert run_profile(bundled_model_dir, "off", plain_path) == []
    fast_profile = run_profile(bundled_model_dir, "on", fast_path, plain_path)
    assert any("OpenBLAS" in item for item in fast_profile), fast_profile
    assert any("float32" in item for item in fast_profile), fast_profile

    plain, fast = np.load(plain_path), np.load(fast_path)
    for index in range(3):
        sequence = plain[f"sequence{index}"]
        base, other = plain[f"logits{index}"], fast[f"logits{index}"]
        generated = sequence[len(sequence) - len(base) :]
        difference = float(np.abs(base - other).max())
        print(f"prompt {index}: max logit difference {difference:.4f}")
        assert difference < TOLERANCE
        top2 = np.sort(base, axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > TOLERANCE
        assert (base.argmax(-1) == generated).all()  # the plain path was greedy
        assert (other.argmax(-1)[clear] == generated[clear]).all()
