"""Import a llama-family GGUF file into a standard mlx-lm model directory.

The quantised blocks stay as they are: `mx.load` already reads Q4_0, Q4_1 and
Q8_0 tensors as MLX affine-quantised arrays (group size 32), so the import only
renames tensors, undoes llama.cpp's RoPE row permutation of attn_q / attn_k and
writes config.json, the weights and a tokenizer rebuilt from the GGUF metadata.

This module imports mlx. Call `import_gguf` in a process that will not fork
afterwards (the gunicorn master runs it through `import_in_subprocess`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

IMPORTER_VERSION = 1
GGUF_BLOCK_SIZE = 32

# llama.cpp's LLAMA_FTYPE values that mx.load reads natively.
SUPPORTED_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0"}

# The regular expressions llama.cpp uses for its GPT-2 style pre-tokenizers.
GPT2_SPLIT = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


class GGUFImportError(ValueError):
    """The GGUF file cannot be imported (unsupported architecture or type)."""


def _scalar(value: Any) -> Any:
    """GGUF scalars arrive as 0-d mx.arrays; lists and strings as Python values."""
    return value.item() if hasattr(value, "item") else value


def _mlx_name(gguf_name: str) -> str:
    block = re.match(r"blk\.(\d+)\.(\w+)\.(weight|scales|biases)$", gguf_name)
    if block:
        layer, tensor, part = block.groups()
        return f"model.layers.{layer}.{TENSOR_NAMES[tensor]}.{part}"
    tensor, part = gguf_name.rsplit(".", 1)
    return f"{TENSOR_NAMES[tensor]}.{part}"


def _unpermute_rows(array: Any, n_head: int) -> Any:
    """Undo llama.cpp's interleaving of each head's rows for RoPE.

    The rows of weight, scales and biases all follow the output dimension, so the
    same permutation applies to each of them.
    """
    rows, cols = array.shape
    head_dim = rows // n_head
    return (
        array.reshape(n_head, head_dim // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
    )


def _model_config(meta: dict[str, Any], weights: dict[str, Any]) -> dict[str, Any]:
    arch = meta["general.architecture"]
    if arch != "llama":
        raise GGUFImportError(f"GGUF architecture {arch!r} is not supported yet")
    file_type = int(_scalar(meta.get("general.file_type", 0)))
    if file_type not in SUPPORTED_FILE_TYPES:
        raise GGUFImportError(
            f"GGUF file type {file_type} is not supported yet "
            f"(supported: {', '.join(SUPPORTED_FILE_TYPES.values())})"
        )

    def get(key: str) -> Any:
        return _scalar(meta[f"{arch}.{key}"])

    hidden = int(get("embedding_length"))
    n_head = int(get("attention.head_count"))
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(get("attention.head_count_kv")),
        "head_dim": int(
            _scalar(meta.get(f"{arch}.rope.dimension_count", hidden // n_head))
        ),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_scalar(meta.get(f"{arch}.rope.freq_base", 10000.0))),
        "max_position_embeddings": int(get("context_length")),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "tie_word_embeddings": "output.weight" not in weights,
        "bos_token_id": int(_scalar(meta["tokenizer.ggml.bos_token_id"])),
        "eos_token_id": int(_scalar(meta["tokenizer.ggml.eos_token_id"])),
    }
    return config


def _quantization(weights: dict[str, Any]) -> dict[str, Any]:
    """Describe each quantised tensor's bits and group size for mlx-lm.

    GGUF's Q4_0, Q4_1 and Q8_0 blocks all hold 32 values, so the group size is
    known and the bit width follows from the packed width.
    """
    per_layer: dict[str, dict[str, int]] = {}
    for name, scales in weights.items():
        if name.endswith(".scales"):
            layer = name[: -len(".scales")]
            in_dims = scales.shape[-1] * GGUF_BLOCK_SIZE
            bits = weights[f"{layer}.weight"].shape[-1] * 32 // in_dims
            per_layer[layer] = {"group_size": GGUF_BLOCK_SIZE, "bits": bits}
    if not per_layer:
        return {}
    # The most common setting is the default; the others are per-layer entries.
    bit_widths = [v["bits"] for v in per_layer.values()]
    default = {
        "group_size": GGUF_BLOCK_SIZE,
        "bits": max(bit_widths, key=bit_widths.count),
    }
    quantization: dict[str, Any] = dict(default)
    quantization.update({k: v for k, v in per_layer.items() if v != default})
    return quantization


def _tokenizer_files(meta: dict[str, Any], max_length: int) -> dict[str, Any]:
    """Rebuild tokenizer.json and tokenizer_config.json from GGUF metadata."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    model = meta["tokenizer.ggml.model"]
    pre = meta.get("tokenizer.ggml.pre", "default")
    if model != "gpt2":
        raise GGUFImportError(f"GGUF tokenizer model {model!r} is not supported yet")
    split = {"smollm": GPT2_SPLIT, "gpt-2": GPT2_SPLIT, "default": GPT2_SPLIT}.get(
        pre, LLAMA3_SPLIT if pre == "llama-bpe" else None
    )
    if split is None:
        raise GGUFImportError(f"GGUF pre-tokenizer {pre!r} is not supported yet")

    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    bpe = models.BPE(
        vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False
    )
    tokenizer = Tokenizer(bpe)
    steps = [pre_tokenizers.Split(Regex(split), behavior="isolated")]
    if pre == "smollm":
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()
    types = meta["tokenizer.ggml.token_type"].tolist()
    special = [t for t, kind in zip(tokens, types, strict=True) if kind == 3]
    tokenizer.add_special_tokens(special)

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return None if index is None else tokens[int(_scalar(index))]

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "unk_token": token("unknown"),
        "pad_token": token("padding"),
        "add_bos_token": bool(_scalar(meta.get("tokenizer.ggml.add_bos_token", False))),
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "chat_template": meta.get("tokenizer.chat_template"),
    }
    return {"tokenizer.json": tokenizer.to_str(), "tokenizer_config.json": config}


def import_gguf(gguf_path: Path, output_dir: Path) -> Path:
    """Write an mlx-lm model directory for `gguf_path` at `output_dir`.

    The directory appears atomically: it is built beside the target and renamed.
    """
    import mlx.core as mx

    weights, meta = mx.load(str(gguf_path), return_metadata=True)
    config = _model_config(meta, weights)
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    converted = {}
    for name, array in weights.items():
        if ".attn_q." in name:
            array = _unpermute_rows(array, n_head)
        elif ".attn_k." in name:
            array = _unpermute_rows(array, n_kv)
        converted[_mlx_name(name)] = array
    if quantization := _quantization(converted):
        config["quantization"] = quantization
    files = _tokenizer_files(meta, config["max_position_embeddings"])

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=".import-"))
    staging.chmod(0o755)
    try:
        mx.save_safetensors(
            str(staging / "model.safetensors"), converted, metadata={"format": "mlx"}
        )
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        (staging / "tokenizer.json").write_text(files["tokenizer.json"])
        (staging / "tokenizer_config.json").write_text(
            json.dumps(files["tokenizer_config.json"], indent=2)
        )
        (staging / "pensieve_import.json").write_text(
            json.dumps({"source": str(gguf_path), "importer": IMPORTER_VERSION})
        )
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def import_in_subprocess(gguf_path: Path, output_dir: Path) -> Path:
    """Run `import_gguf` in a fresh interpreter so this process never touches mlx."""
    result = subprocess.run(
        [sys.executable, "-m", "pensieve.models.gguf", str(gguf_path), str(output_dir)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["unknown error"]
        raise GGUFImportError(f"importing {gguf_path} failed: {lines[-1]}")
    return output_dir


if __name__ == "__main__":
    import_gguf(Path(sys.argv[1]), Path(sys.argv[2]))
