"""The parts of benchmarks/cpu_profile.py, whose docstring says what it measures.

fixtures: the settings, prompts and goals; children: the MLX and llama.cpp
measurements, each in a fresh interpreter (children/mlx_speed.py,
children/llama_speed.py); server: the same figures through /v1/messages;
report: the runtime estimate, the table, the goals and the JSON line; run:
the five steps in order.
"""
