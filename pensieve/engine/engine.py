"""The model owner: one inference thread, one lock, generation as typed events.

Construction is cheap and touches no device, so the app can be created in the
gunicorn master. `resolve()` may run there (it downloads or imports files);
`start()` runs in the worker, after the fork, and loads weights on the thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from .. import metrics
from ..config import model_is_default, resolve_cache_dir
from ..models.resolve import ResolvedModel, resolve_model
from .cache import PromptCache
from .events import ChatMessage, Event, KeepAlive, Prompt, SamplingParams, ToolSpec
from .generation import ClientGone, GenerationSettings, never, run_generation
from .loading import CPUProfile, LoadedModel, load_model
from .prompt import render_prompt
from .runner import FairLock, InferenceThread
from .tools import Constraint, ToolPolicy

log = logging.getLogger(__name__)
Status = Literal["starting", "loading", "ready", "failed"]


class EngineUnavailable(RuntimeError):
    """The model could not be resolved or loaded."""


class EngineBusy(RuntimeError):
    """The queue is full, or a request waited too long for the model."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RunningRequest:
    """What /health shows of the request that holds the model."""

    request_id: str
    prompt_tokens: int
    started_at: float


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
        self.running: RunningRequest | None = None
        self.prompt_cache = PromptCache(
            max_entries=self._config["PROMPT_CACHE_ENTRIES"],
            max_bytes=self._config["PROMPT_CACHE_MB"] * 1024**2,
        )
        self._thread: InferenceThread | None = None
        self._lock: FairLock | None = None
        self._loading: concurrent.futures.Future[LoadedModel] | None = None

    def resolve(self) -> ResolvedModel:
        """Find (download, import) the model's directory. Touches no device."""
        if self.resolved is None:
            try:
                self.resolved = resolve_model(
                    self._config["MODEL"],
                    cache_dir=self.cache_dir,
                    fallback=model_is_default(self._config),
                    offline_timeout=self._config["OFFLINE_TIMEOUT"],
                )
            except Exception as error:
                self.error = str(error)
                raise
        return self.resolved

    @property
    def cache_dir(self) -> Path:
        return resolve_cache_dir(self._config["CACHE_DIR"])

    def start(self) -> None:
        """Start the inference thread and load the model on it (idempotent)."""
        if self._thread is not None:
            return
        resolved = self.resolve()
        # MLX's CUDA backend keeps the kernels it builds (minutes of work on a
        # fresh machine) in this folder; the default, under /tmp, is lost on
        # reboot. Set before the inference thread imports mlx.
        os.environ.setdefault("MLX_PTX_CACHE_DIR", str(self.cache_dir / "mlx-kernels"))
        self._thread = InferenceThread()
        self._lock = FairLock()
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
        return self._fit(loaded, token_ids)

    def prepare_text(self, text: str) -> Prompt:
        """Tokenise raw text (no chat template), as /v1/completions needs."""
        loaded = self.loaded()
        return self._fit(loaded, loaded.tokenizer.encode(text))

    def _fit(self, loaded: LoadedModel, token_ids: list[int]) -> Prompt:
        maximum = loaded.context_length - 1  # room for at least one new token
        if len(token_ids) > maximum:
            raise PromptTooLong(len(token_ids), maximum)
        return Prompt(
            token_ids,
            loaded.context_length - len(token_ids),
            cached_estimate=self.prompt_cache.peek(token_ids),
        )

    def admit(self) -> None:
        """Refuse a new request while the queue is full (the client may retry)."""
        if self.waiting >= self._config["QUEUE_DEPTH"]:
            raise EngineBusy(
                f"the model is busy: {self.waiting} requests are waiting",
                retry_after=self._config["QUEUE_RETRY_AFTER"],
            )

    @property
    def waiting(self) -> int:
        return self._lock.waiting if self._lock is not None else 0

    def generate(
        self,
        prompt: Prompt,
        sampling: SamplingParams,
        *,
        request_id: str = "",
        constraint: Constraint | None = None,
        client_gone: Callable[[], bool] = never,
    ) -> Iterator[Event]:
        """Events for one generation: keep-alives while queued, deltas, Finished.

        Requests get the model in arrival order; one that waits longer than
        the queue timeout gets EngineBusy. Closing the iterator, or
        `client_gone()` turning true (ClientGone), leaves the queue or releases
        the model.
        """
        loaded = self.loaded()
        assert self._thread is not None and self._lock is not None  # loaded() did
        if sampling.temperature > self._config["MAX_TEMPERATURE"]:
            sampling = replace(sampling, temperature=self._config["MAX_TEMPERATURE"])
        ticket = self._lock.enter()
        try:
            queue_timeout = self._config["QUEUE_TIMEOUT"]
            deadline = time.monotonic() + queue_timeout
            while not ticket.wait(timeout=self._config["KEEPALIVE_SECONDS"]):
                if client_gone():
                    raise ClientGone
                if time.monotonic() > deadline:
                    raise EngineBusy(
                        "timed out waiting for the model",
                        retry_after=self._config["QUEUE_RETRY_AFTER"],
                    )
                yield KeepAlive()
            metrics.observe_queue_wait(time.monotonic() - (deadline - queue_timeout))
            self.running = RunningRequest(request_id, prompt.input_tokens, time.time())
            yield from run_generation(
                self._thread,
                loaded,
                prompt,
                sampling,
                cache=self.prompt_cache,
                settings=GenerationSettings(
                    prefill_step_size=self._config["PREFILL_STEP_SIZE"],
                    keepalive_seconds=self._config["KEEPALIVE_SECONDS"],
                ),
                constraint=constraint or Constraint(ToolPolicy()),
                client_gone=client_gone,
            )
        finally:
            if ticket.is_set():
                self.running = None
            self._lock.leave(ticket)
