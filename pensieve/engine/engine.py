"""The model owner: one inference thread, one lock, generation as typed events.

Construction is cheap and touches no device, so the app can be created in the
gunicorn master. `resolve()` may run there (it downloads or imports files);
`start()` runs in the worker, after the fork, and loads weights on the thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..config import model_is_default
from ..models.resolve import ResolvedModel, default_cache_dir, resolve_model
from .events import (
    ChatMessage,
    Event,
    Finished,
    KeepAlive,
    Prompt,
    SamplingParams,
    TextDelta,
    ToolSpec,
    Usage,
)
from .model import CPUProfile, LoadedModel, Step, decode, load_model
from .prompt import render_prompt
from .runner import InferenceThread, new_lock
from .stops import StopSequenceFilter

log = logging.getLogger(__name__)
T = TypeVar("T")
Status = Literal["starting", "loading", "ready", "failed"]


class EngineUnavailable(RuntimeError):
    """The model could not be resolved or loaded."""


class PromptTooLong(ValueError):
    """The prompt leaves no room in the context window."""

    def __init__(self, tokens: int, maximum: int) -> None:
        super().__init__(f"prompt is too long: {tokens} tokens > {maximum} maximum")
        self.tokens = tokens
        self.maximum = maximum


class Engine:
    """Owns the model; every request reaches it through `prepare` and `generate`."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        self.started_at = time.time()
        self.resolved: ResolvedModel | None = None
        self.error: str | None = None
        self.waiting = 0
        self._thread: InferenceThread | None = None
        self._lock: Any = None
        self._loading: concurrent.futures.Future[LoadedModel] | None = None

    def resolve(self) -> ResolvedModel:
        """Find (download, import) the model's directory. Touches no device."""
        if self.resolved is None:
            cache = self._config["CACHE_DIR"]
            try:
                self.resolved = resolve_model(
                    self._config["MODEL"],
                    cache_dir=Path(cache) if cache else default_cache_dir(),
                    fallback=model_is_default(self._config),
                    offline_timeout=self._config["OFFLINE_TIMEOUT"],
                )
            except Exception as error:
                self.error = str(error)
                raise
        return self.resolved

    def start(self) -> None:
        """Start the inference thread and load the model on it (idempotent)."""
        if self._thread is not None:
            return
        resolved = self.resolve()
        self._thread = InferenceThread()
        self._lock = new_lock()
        profile = CPUProfile(
            enabled=self._config["CPU_PROFILE"] == "auto",
            threads=self._config["CPU_THREADS"],
            dequantize_max_bytes=self._config["CPU_DEQUANTIZE_MAX_MB"] * 1024**2,
        )
        self._loading = self._thread.submit(load_model, resolved.path, profile)
        self._loading.add_done_callback(self._log_loaded)

    def _log_loaded(self, future: concurrent.futures.Future[LoadedModel]) -> None:
        if future.exception() is not None:
            self.error = f"loading the model failed: {future.exception()}"
            log.error(self.error)
        else:
            loaded = future.result()
            log.info(
                "model loaded in %.2f s on %s; CPU profile: %s",
                loaded.load_seconds,
                loaded.backend,
                ", ".join(loaded.profile) or "off",
            )

    @property
    def status(self) -> Status:
        if self.error is not None:
            return "failed"
        if self._loading is None:
            return "starting"
        return "ready" if self._loading.done() else "loading"

    def loaded(self) -> LoadedModel:
        """The loaded model, waiting (cooperatively) for the load to finish."""
        try:
            self.start()
        except Exception as error:
            raise EngineUnavailable(str(error)) from error
        if self.error is not None or self._loading is None:
            raise EngineUnavailable(self.error or "the model is not loaded")
        try:
            return self._loading.result()
        except Exception as error:
            raise EngineUnavailable(self.error or str(error)) from error

    def loaded_now(self) -> LoadedModel | None:
        """The loaded model if loading has finished, without waiting."""
        if self.status != "ready" or self._loading is None:
            return None
        return self._loading.result()

    def prepare(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None
    ) -> Prompt:
        """Render and tokenise a conversation; raise PromptTooLong if it cannot fit."""
        loaded = self.loaded()
        token_ids = render_prompt(loaded.tokenizer, messages, tools or [])
        maximum = loaded.context_length - 1  # room for at least one new token
        if len(token_ids) > maximum:
            raise PromptTooLong(len(token_ids), maximum)
        return Prompt(token_ids, loaded.context_length - len(token_ids))

    def generate(self, prompt: Prompt, sampling: SamplingParams) -> Iterator[Event]:
        """Events for one generation: deltas, keep-alives, then one Finished.

        Waits for the model lock first; closing the iterator releases it.
        """
        loaded = self.loaded()
        self.waiting += 1
        try:
            while not self._lock.acquire(timeout=self._config["KEEPALIVE_SECONDS"]):
                yield KeepAlive()
        finally:
            self.waiting -= 1
        try:
            yield from self._run(loaded, prompt, sampling)
        finally:
            self._lock.release()

    def _run(
        self, loaded: LoadedModel, prompt: Prompt, sampling: SamplingParams
    ) -> Iterator[Event]:
        assert self._thread is not None  # loaded() started it
        sampling = replace(
            sampling, max_tokens=min(sampling.max_tokens, prompt.max_new_tokens)
        )
        steps = decode(
            loaded,
            prompt.token_ids,
            sampling,
            prefill_step_size=self._config["PREFILL_STEP_SIZE"],
        )
        stops = StopSequenceFilter(sampling.stop_sequences)
        log.info(
            "generating: %d prompt tokens, up to %d new tokens",
            prompt.input_tokens,
            sampling.max_tokens,
        )
        output_tokens = 0
        started = time.monotonic()
        first_token_at = None
        try:
            while True:
                step = yield from self._wait(self._thread.submit(next, steps))
                first_token_at = first_token_at or time.monotonic()
                if step.finish != "end_turn":
                    output_tokens += 1
                if text := stops.feed(step.text):
                    yield TextDelta(text)
                if stops.matched is not None:
                    reason, matched = "stop_sequence", stops.matched
                    break
                if step.finish is not None:
                    if rest := stops.flush():
                        yield TextDelta(rest)
                    reason, matched = step.finish, None
                    break
        finally:
            # Closing the mlx generator must happen on the inference thread too.
            self._thread.submit(steps.close)
        usage = Usage(input_tokens=prompt.input_tokens, output_tokens=output_tokens)
        log_generation(usage, reason, started, first_token_at or started)
        yield Finished(reason, matched, usage)  # type: ignore[arg-type]

    def _wait(
        self, future: concurrent.futures.Future[Step]
    ) -> Generator[KeepAlive, None, Step]:
        """Wait for `future`, yielding a KeepAlive every keep-alive interval."""
        while True:
            try:
                return future.result(timeout=self._config["KEEPALIVE_SECONDS"])
            except TimeoutError:
                yield KeepAlive()


def log_generation(usage: Usage, reason: str, started: float, first: float) -> None:
    decode_seconds = time.monotonic() - first
    log.info(
        "generated %d tokens from a %d-token prompt: first token after %.2f s, "
        "%.1f tokens/s, stop: %s",
        usage.output_tokens,
        usage.input_tokens,
        first - started,
        (usage.output_tokens - 1) / decode_seconds if decode_seconds > 0 else 0.0,
        reason,
    )
