"""What cpu_profile.py measures with: lengths, prompts, llama.cpp build, goals.

The prompts are data (data/cpu_profile_prompts.json): a paragraph whose token
ids, repeated, make the synthetic prefill prompts, the decode prompt, and the
request that ends the server's prefill prompt.
"""

from __future__ import annotations

from _files import data_json

API_KEY = "pensieve-local-key"
PREFILL_LENGTHS = (128, 1024, 2048)
SERVER_PREFILL_TOKENS = 1024

_PROMPTS = data_json("cpu_profile_prompts.json")
FILLER: str = _PROMPTS["filler"]
DECODE_PROMPT: str = _PROMPTS["decode_prompt"]
SUMMARY_REQUEST: str = _PROMPTS["summary_request"]

LLAMA_THREADS = 2
LLAMA_N_CTX = 4096
LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
    "-DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON -DGGML_AMX_TILE=OFF "
    "-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
GOAL_PREFILL_TPS = 100.0  # at ~1,024 tokens, through /v1/messages
GOAL_DECODE_TPS = 25.0  # through /v1/messages
STRETCH_FRACTION = 0.5  # of llama.cpp

# Rough speeds for the runtime estimate (2-core x86_64 VM).
EST_BEFORE_PREFILL_TPS = 10.0
EST_BEFORE_DECODE_TPS = 7.0
EST_AFTER_PREFILL_TPS = 250.0
EST_AFTER_DECODE_TPS = 20.0
EST_LLAMA_PREFILL_TPS = 300.0
EST_LLAMA_DECODE_TPS = 100.0
EST_BUILD_S = 420.0

CHILD_TIMEOUT_S = 1500.0
SERVER_READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 1800.0
