"""tiny_models: random-weight models wearing a family's chat template and markers.

The template here is a small ChatML-like one of this file's own (the family
templates are not part of the repository).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm import load, stream_generate
from mlx_lm.sample_utils import make_sampler
from tiny_models import FAMILY_MARKERS, build_family_model, build_tiny_model

TEMPLATE = (
    "{{ bos_token }}"
    "{%- if tools %}<|im_start|>system\n{% for t in tools %}"
    "{{ t.function.name }}\n{% endfor %}<|im_end|>\n{% endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{%- for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }}"
    "</tool_call>{% endfor %}<|turn_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n<think>{% endif %}"
)
PLAIN = ("<tool_call>", "</tool_call>", "<think>", "</think>")
SPECIAL = ("<|im_start|>", "<|im_end|>", "<|turn_end|>")  # the first two: bundled
MARKERS = PLAIN + SPECIAL
EOS = ("<|turn_end|>",)
BOS = "<|begin|>"  # no marker: added as a special token
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def build(target: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    return build_tiny_model(
        target,
        template=TEMPLATE,
        markers=MARKERS,
        special=SPECIAL,
        tokenizer_dir=tokenizer_dir,
        seed=seed,
        eos=EOS,
        bos_token=BOS,
        eos_token="<|im_end|>",
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, bundled_model_dir: Path) -> Path:
    return build(tmp_path_factory.mktemp("tiny"), bundled_model_dir)


@pytest.fixture(scope="module")
def loaded(tiny_dir: Path) -> tuple[Any, Any]:
    return load(str(tiny_dir))


def test_small_and_fast(tmp_path: Path, bundled_model_dir: Path) -> None:
    started = time.monotonic()
    target = build(tmp_path / "m", bundled_model_dir)
    took = time.monotonic() - started
    size = sum(f.stat().st_size for f in target.iterdir())
    assert size < 5 * 1024**2
    assert took < 10  # about 1 s; generous for a busy machine


def test_each_marker_is_one_token_special_as_asked(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    vocab = tokenizer.get_vocab()
    for marker in (*MARKERS, BOS):
        ids = tokenizer.encode(f"a{marker}b", add_special_tokens=False)
        assert vocab[marker] in ids and len(ids) == 3, marker
        kept = tokenizer.decode([vocab[marker]], skip_special_tokens=True)
        assert kept == ("" if marker in (*SPECIAL, BOS) else marker), marker


def test_template_renders_with_bos_and_eos(tiny_dir: Path, loaded: Any) -> None:
    _, tokenizer = loaded
    assert tokenizer.chat_template == TEMPLATE
    assert (tiny_dir / "chat_template.jinja").read_text() == TEMPLATE
    assert (tokenizer.bos_token, tokenizer.eos_token) == (BOS, "<|im_end|>")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {}}}
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    text = tokenizer.apply_chat_template(
        turns, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|begin|><|im_start|>system\nget_weather\n<|im_end|>\n"
        "<|im_start|>user\nHi<|turn_end|>\n"
        "<|im_start|>assistant\n<tool_call>get_weather</tool_call><|turn_end|>\n"
        "<|im_start|>assistant\n<think>"
    )


def test_eos_markers_are_eos_ids(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    vocab = tokenizer.get_vocab()
    assert tokenizer.eos_token_ids == {vocab["<|im_end|>"], vocab["<|turn_end|>"]}


def test_generates(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    steps = list(
        stream_generate(
            model, tokenizer, prompt, max_tokens=4, sampler=make_sampler(temp=1.0)
        )
    )
    assert 1 <= len(steps) <= 4
    assert all(0 <= s.token < len(tokenizer.get_vocab()) for s in steps)


def test_same_seed_same_weights(tmp_path: Path, bundled_model_dir: Path) -> None:
    a, b, c = (
        mx.load(
            str(build(tmp_path / name, bundled_model_dir, seed) / "model.safetensors")
        )
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    assert a.keys() == b.keys() == c.keys()
    assert all(mx.array_equal(a[k], b[k]).item() for k in a)
    assert not all(mx.array_equal(a[k], c[k]).item() for k in a)


def test_a_marker_cannot_change_kind(tmp_path: Path, bundled_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="already a special token"):
        build_tiny_model(
            tmp_path,
            template=TEMPLATE,
            markers=("<|im_end|>",),  # special in the bundled tokenizer
            special=False,
            tokenizer_dir=bundled_model_dir,
        )


@pytest.mark.parametrize("stem", sorted(FAMILY_MARKERS))
def test_family_table_is_consistent(stem: str) -> None:
    spec = FAMILY_MARKERS[stem]
    assert len(set(spec.markers)) == len(spec.markers)
    named = [t for t in (spec.bos, spec.eos_token, *spec.eos) if t]
    assert set(named) <= set(spec.special), "bos/eos are special markers"
    assert spec.eos, "an end-of-turn marker"
    if stem.startswith("qwen"):
        assert "<tool_call>" in spec.plain
    else:
        assert not spec.plain


def test_family_model(tmp_path: Path, bundled_model_dir: Path) -> None:
    spec = FAMILY_MARKERS["deepseek-v3.1"]
    template = (
        "{{ bos_token }}{% for m in messages %}<｜User｜>{{ m.content }}{% endfor %}"
    )
    target = build_family_model("deepseek-v3.1", template, tmp_path, bundled_model_dir)
    _, tokenizer = load(str(target))
    vocab = tokenizer.get_vocab()
    for marker in spec.markers:
        assert tokenizer.encode(marker, add_special_tokens=False) == [vocab[marker]]
    assert tokenizer.eos_token_ids == {vocab[m] for m in spec.eos}
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False
    )
    assert text == "<｜begin▁of▁sentence｜><｜User｜>Hi"
