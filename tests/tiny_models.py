"""Tiny random-weight mlx-lm models that wear a model family's chat template.

Serving a family means reading its own tool-call and reasoning format. To test
and measure that without real weights, `build_tiny_model` writes a model
directory that `mlx_lm.load` loads: the bundled SmolLM2 tokenizer with the
family's markers added as tokens (special or plain, as the family's own
tokenizer has them), the family's chat template, its bos/eos tokens and
end-of-turn EOS ids, and a small llama-architecture model with random weights
(4-bit, deterministic by seed). Constrained decoding drives such a model; its
free text is noise, but every token, EOS included, can be sampled.

FAMILY_MARKERS holds, per template file stem of the chat-template collection
(see its MANIFEST.md), the markers its templates and tokenizers use. Qwen's
tokenizers add the tool and think markers as plain added tokens; the other
families' markers are special tokens.

Nothing here reads the template collection: callers pass the template text.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUANTIZATION = {"group_size": 32, "bits": 4}
ARCHITECTURE: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class FamilySpec:
    """A family's markers as its tokenizer has them, and its bos/eos."""

    special: tuple[str, ...]  # markers added as special tokens
    eos: tuple[str, ...]  # EOS ids for mlx-lm, the end-of-turn marker first
    plain: tuple[str, ...] = ()  # markers added as plain (not special) tokens
    bos: str | None = None  # the tokenizer's bos_token (None: the bundled one)
    eos_token: str | None = None  # the tokenizer's eos_token (None: eos[0])
    reasoning: bool = False  # the template has a reasoning format
    string_arguments: bool = False  # the template needs JSON-text arguments

    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker the family adds, plain ones first."""
        return self.plain + self.special


QWEN_CONTROL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
QWEN_TOOLS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
QWEN_THINK = ("<think>", "</think>")
QWEN_EOS = ("<|im_end|>", "<|endoftext|>")
PHI_4 = (
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|tool|>",
    "<|/tool|>",
    "<|tool_call|>",
    "<|/tool_call|>",
    "<|tool_response|>",
)
PHI_EOS = ("<|end|>", "<|endoftext|>")
# fmt: off
DEEPSEEK = (
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<think>", "</think>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
    "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
)
# fmt: on

FAMILY_MARKERS: dict[str, FamilySpec] = {
    "qwen2.5": FamilySpec(QWEN_CONTROL, QWEN_EOS, plain=QWEN_TOOLS),
    "qwen3": FamilySpec(
        QWEN_CONTROL, QWEN_EOS, plain=QWEN_TOOLS + QWEN_THINK, reasoning=True
    ),
    "qwen3-coder": FamilySpec(QWEN_CONTROL, QWEN_EOS, plain=QWEN_TOOLS),
    "qwen3.5": FamilySpec(
        QWEN_CONTROL
        + ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
        QWEN_EOS,
        plain=QWEN_TOOLS + QWEN_THINK,
        reasoning=True,
    ),
    "gpt-oss": FamilySpec(
        ("<|startoftext|>", "<|endoftext|>", "<|start|>", "<|channel|>")
        + ("<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"),
        ("<|return|>", "<|call|>", "<|endoftext|>"),
        bos="<|startoftext|>",
        reasoning=True,
    ),
    "glm-4.6": FamilySpec(
        ("[gMASK]", "<sop>", "<|endoftext|>", "<|system|>", "<|user|>")
        + ("<|assistant|>", "<|observation|>", *QWEN_THINK, *QWEN_TOOLS)
        + ("<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"),
        ("<|user|>", "<|observation|>", "<|endoftext|>"),
        eos_token="<|endoftext|>",
        reasoning=True,
    ),
    "mistral-small-3.2": FamilySpec(
        ("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
        + ("[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[CALL_ID]")
        + ("[ARGS]", "[TOOL_RESULTS]", "[TOOL_CONTENT]", "[/TOOL_RESULTS]", "[IMG]"),
        ("</s>",),
        bos="<s>",
    ),
    "llama-3.3": FamilySpec(
        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>")
        + ("<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"),
        ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
        bos="<|begin_of_text|>",
    ),
    "phi-4-mini": FamilySpec(PHI_4, PHI_EOS, eos_token="<|endoftext|>"),
    "phi-4-mini.llama-cpp": FamilySpec(PHI_4, PHI_EOS, eos_token="<|endoftext|>"),
    "phi-3-mini": FamilySpec(
        ("<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
        PHI_EOS,
        bos="<s>",
        eos_token="<|endoftext|>",
    ),
    "kimi-k2-thinking": FamilySpec(
        ("[BOS]", "[EOS]", "<|im_system|>", "<|im_user|>", "<|im_assistant|>")
        + ("<|im_middle|>", "<|im_end|>", *QWEN_THINK, "<|tool_calls_section_begin|>")
        + ("<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_end|>")
        + ("<|tool_call_argument_begin|>", "<|media_start|>", "<|media_content|>")
        + ("<|media_pad|>", "<|media_end|>"),
        ("<|im_end|>", "[EOS]"),
        bos="[BOS]",
        eos_token="[EOS]",
        reasoning=True,
    ),
    "deepseek-v3.1": FamilySpec(
        DEEPSEEK,
        ("<｜end▁of▁sentence｜>",),
        bos="<｜begin▁of▁sentence｜>",
        reasoning=True,
        string_arguments=True,
    ),
    "minimax-m2": FamilySpec(
        ("]~!b[", "]~b]", "[e~[", *QWEN_THINK, "<minimax:tool_call>")
        + ("</minimax:tool_call>",),
        ("[e~[",),
        bos="]~!b[",
        reasoning=True,
    ),
    "gemma-4": FamilySpec(
        ("<bos>", "<eos>", "<|turn>", "<turn|>", "<|tool>", "<tool|>", "<|tool_call>")
        + ("<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>')
        + ("<|channel>", "<channel|>", "<|think|>", "<|image|>", "<|audio|>")
        + ("<|video|>",),
        ("<turn|>", "<eos>"),
        bos="<bos>",
        eos_token="<eos>",
        reasoning=True,
    ),
}


def build_tiny_model(
    target: Path,
    *,
    template: str,
    markers: Sequence[str],
    special: bool | Sequence[str],
    tokenizer_dir: Path,
    seed: int = 0,
    eos: Sequence[str] = (),
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> Path:
    """Write a tiny model wearing `template` into `target`; return `target`.

    The tokenizer is `tokenizer_dir`'s with each of `markers` added as one
    token: special when `special` is True or lists it, plain otherwise.
    `eos` are markers that end a generation (config.json `eos_token_id`);
    `eos_token` (default: the first of `eos`) and `bos_token` become the
    tokenizer's own (the `eos_token`/`bos_token` a template renders); either
    is added as a special token when it is no marker. The weights are random,
    the same for the same `seed`.
    """
    specials = _special_set(markers, special)
    eos_token = eos_token or (eos[0] if eos else None)
    ends = list(dict.fromkeys(t for t in (eos_token, *eos) if t is not None))
    named = ([bos_token] if bos_token is not None else []) + ends
    extra = [t for t in dict.fromkeys(named) if t not in markers]
    target.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(
        target, tokenizer_dir, [*markers, *extra], specials | set(extra)
    )
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    if bos_token is not None:
        config["bos_token"] = bos_token
    if eos_token is not None:
        config["eos_token"] = eos_token
    config["chat_template"] = template  # and chat_template.jinja: either is read
    _write_json(target / "tokenizer_config.json", config)
    (target / "chat_template.jinja").write_text(template, encoding="utf-8")
    eos_ids = [ids[t] for t in ends]
    bos_id = ids.get(config.get("bos_token") or "")
    vocab_size = max(ids.values()) + 1
    write_weights(target, vocab_size, seed=seed, eos_ids=eos_ids, bos_id=bos_id)
    return target


def build_family_model(
    stem: str, template_text: str, target: Path, tokenizer_dir: Path, *, seed: int = 0
) -> Path:
    """build_tiny_model for the family FAMILY_MARKERS[`stem`] with its template."""
    spec = FAMILY_MARKERS[stem]
    return build_tiny_model(
        target,
        template=template_text,
        markers=spec.markers,
        special=spec.special,
        tokenizer_dir=tokenizer_dir,
        seed=seed,
        eos=spec.eos,
        bos_token=spec.bos,
        eos_token=spec.eos_token,
    )


def _special_set(markers: Sequence[str], special: bool | Sequence[str]) -> set[str]:
    if isinstance(special, bool):
        return set(markers) if special else set()
    unknown = set(special) - set(markers)
    if unknown:
        raise ValueError(f"special tokens that are no markers: {sorted(unknown)}")
    return set(special)


def write_tokenizer(
    target: Path, tokenizer_dir: Path, tokens: Sequence[str], specials: set[str]
) -> dict[str, int]:
    """`tokenizer_dir`'s tokenizer.json plus `tokens` into `target`; the vocab.

    A token the tokenizer already has as an added token keeps its id; it must
    then already be special exactly when `specials` names it.
    """
    from tokenizers import AddedToken, Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    added = {
        t.content: t.special for t in tokenizer.get_added_tokens_decoder().values()
    }
    for token in dict.fromkeys(tokens):
        is_special = token in specials
        if token in added:
            if added[token] != is_special:
                kind = "special" if added[token] else "plain"
                raise ValueError(f"{token!r} is already a {kind} token")
            continue
        entry = AddedToken(token, special=is_special, normalized=False)
        if is_special:
            tokenizer.add_special_tokens([entry])
        else:
            tokenizer.add_tokens([entry])
    tokenizer.save(str(target / "tokenizer.json"), pretty=False)
    return tokenizer.get_vocab(with_added_tokens=True)


def write_weights(
    target: Path,
    vocab_size: int,
    *,
    seed: int,
    eos_ids: Sequence[int],
    bos_id: int | None,
) -> None:
    """config.json and model.safetensors of a random 4-bit llama in `target`."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from mlx_lm.utils import quantize_model

    config: dict[str, Any] = {**ARCHITECTURE, "vocab_size": vocab_size}
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    model.set_dtype(mx.float16)
    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints bits/weight
        model, config = quantize_model(model, config, **QUANTIZATION)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(target / "model.safetensors"), weights)
    config["eos_token_id"] = list(eos_ids)
    if bos_id is not None:
        config["bos_token_id"] = bos_id
    _write_json(target / "config.json", config)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
