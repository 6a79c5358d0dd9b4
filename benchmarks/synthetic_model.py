"""Build a random-weight model of a real architecture's shape, for speed figures.

No weights can be downloaded on the GPU machines the benchmarks run on, and
speed depends on a model's shape, not on its weights: this writes an mlx-lm
model directory of the named shape with random weights, quantized as the
shape says, and the bundled model's tokenizer (its vocabulary size replaces
the shape's). The lm_head rows of the tokenizer's special tokens are zeroed,
so random weights never end a generation early on an end-of-turn token.

    python benchmarks/synthetic_model.py phi3-mini-4bit OUT_DIR --tokenizer DIR

`--layers N` keeps only N layers (a quick check of the builder itself). The
weights are created lazily and evaluated layer by layer, so building the
~30B-parameter MoE shape needs about one layer's float32 weights beside the
quantized model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Shapes of the models the product's users run, from their config.json files.
SHAPES: dict[str, dict[str, Any]] = {
    # microsoft/Phi-3-mini-128k-instruct (the default model): no GQA.
    "phi3-mini-4bit": {
        "model_type": "phi3",
        "hidden_size": 3072,
        "num_hidden_layers": 32,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [1.0] * 48,
            "short_factor": [1.0] * 48,
        },
        "tie_word_embeddings": False,
        "bits": 4,
    },
    # Qwen/Qwen3-Coder-30B-A3B-Instruct: 128 experts, 8 active, GQA 32/4.
    "qwen3-coder-30b-a3b-4bit": {
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "num_hidden_layers": 48,
        "intermediate_size": 6144,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 768,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000000.0,
        "max_position_embeddings": 262144,
        "tie_word_embeddings": False,
        "bits": 4,
    },
}


def special_ids(tokenizer_dir: Path) -> list[int]:
    """The ids of the tokenizer's added (special) tokens."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return sorted(token["id"] for token in data.get("added_tokens", []))


def vocab_size(tokenizer_dir: Path) -> int:
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    ids = list(data["model"]["vocab"].values()) + special_ids(tokenizer_dir)
    return max(ids) + 1


def build(
    shape: str, out: Path, tokenizer_dir: Path, layers: int | None
) -> dict[str, Any]:
    """Write the model directory; return what was built."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes as model_classes
    from mlx_lm.utils import quantize_model, save_config, save_model

    started = time.perf_counter()
    config = {k: v for k, v in SHAPES[shape].items() if k != "bits"}
    bits = SHAPES[shape]["bits"]
    config["vocab_size"] = vocab_size(tokenizer_dir)
    if layers is not None:
        config["num_hidden_layers"] = layers
    model_class, args_class = model_classes(config)
    mx.random.seed(0)
    model = model_class(args_class.from_dict(config))  # lazy: nothing computed yet
    model.set_dtype(mx.bfloat16)
    head = model.lm_head
    keep = mx.ones((config["vocab_size"], 1), dtype=mx.bfloat16)
    keep[mx.array(special_ids(tokenizer_dir))] = 0
    head.weight = head.weight * keep
    model, config = quantize_model(model, config, group_size=64, bits=bits)
    for layer in model.layers:  # one layer's float weights at a time
        mx.eval(layer.parameters())
    mx.eval(model.parameters())
    parameters = sum(v.size for _, v in tree_flatten(model.parameters()))
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, model, donate_model=True)
    config["torch_dtype"] = "bfloat16"
    save_config(config, out / "config.json")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    size = sum(path.stat().st_size for path in out.glob("*.safetensors"))
    return {
        "shape": shape,
        "dir": str(out),
        "layers": config["num_hidden_layers"],
        "stored_parameters": parameters,
        "bytes": size,
        "seconds": round(time.perf_counter() - started, 1),
        "device": str(mx.default_device()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--layers", type=int)
    args = parser.parse_args()
    built = build(args.shape, args.out, args.tokenizer, args.layers)
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
