"""The parts of benchmarks/agent_session.py, whose docstring says what it measures.

fixtures: the settings and the Claude-Code-shaped data it sends; client: one
streamed request as a client sees it (Anthropic or OpenAI); servers: Pensieve
and mlx_lm.server, started and stopped; session: the 5-turn agent session;
concurrency: the 20 concurrent clients and the disconnects; report: the
table and the goals; run: the five parts in order.
"""
