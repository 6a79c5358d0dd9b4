"""The model owner: one inference thread, one lock, generation as typed events.

Construction is cheap and touches no device, so the app can be created in the
gunicorn master. `resolve()` may run there (it downloads or imports files);
`start()` runs in the worker, after the fork, and loads weights on the thread.
Requests reach the model through `start_generation` (and `count_tokens`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..models.resolve import ResolvedModel, resolve_model
from .admission import Admission, RunningRequest
from .batching import Scheduler, max_batch
from .cache import PromptCache
from .events import Event, Prompt
from .generation import GenerationSettings, never, run_generation
from .loading import LoadedModel, load_model
from .memory import cache_budget, describe
from .persist import load_entries, save_entries
from .prompt import (
    fit_prompt,
    hf_tokenizer,
    opens_reasoning,
    pending_lead,
    render_request,
)
from .request import (
    GenerationRequest,
    SamplingParams,
    check_sampling,
    effective_sampling,
)
from .runner import InferenceThread, off_loop
from .settings import EngineSettings
from .stats import EngineObserver, GenerationStats
from .tools import Constraint

log = logging.getLogger(__name__)
Status = Literal["starting", "loading", "ready", "failed"]


class EngineUnavailable(RuntimeError):
    """The model could not be resolved or loaded."""


@dataclass(frozen=True)
class Generation:
    """A generation admitted to the queue: its prompt, and its events to pull.

    Nothing runs until `events` is iterated; closing it gives up the queue
    place or the model.
    """

    model_id: str
    prompt: Prompt
    events: Iterator[Event]
    caching: bool = False  # the prompt cache is on: the processed prompt is kept


def read_chat_template(path: Path | None) -> str | None:
    """The text of a chat template file, checked for Jinja syntax; errors name it."""
    if path is None:
        return None
    import jinja2

    try:
        text = path.read_text()
        jinja2.Environment().parse(text)
    except OSError as error:
        raise EngineUnavailable(f"chat template {path}: {error.strerror}") from None
    except jinja2.TemplateSyntaxError as error:
        raise EngineUnavailable(
            f"chat template {path}, line {error.lineno}: {error.message}"
        ) from None
    return text


class Engine:
    """Owns the model; every request reaches it through `start_generation`."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.resolved: ResolvedModel | None = None
        self.error: str | None = None
        self.observers: list[EngineObserver] = []
        self.chat_template: str | None = None
        self.prompt_cache = PromptCache(
            max_entries=settings.prompt_cache_entries,
            max_bytes=settings.prompt_cache_bytes,
        )
        self._thread: InferenceThread | None = None
        self._admission: Admission | None = None
        self.scheduler: Scheduler | None = None  # None: requests run one at a time
        self._loading: concurrent.futures.Future[LoadedModel] | None = None

    def resolve(self) -> ResolvedModel:
        """Find (download, import) the model's directory, and read the chat
        template file if one is set. Touches no device."""
        if self.resolved is None:
            try:
                self.chat_template = read_chat_template(self.settings.chat_template)
                self.resolved = resolve_model(
                    self.settings.model,
                    cache_dir=self.settings.cache_dir,
                    fallback=self.settings.fallback,
                    offline_timeout=self.settings.offline_timeout,
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
        # MLX's CUDA backend keeps the kernels it builds (minutes of work on a
        # fresh machine) in this folder; the default, under /tmp, is lost on
        # reboot. Set before the inference thread imports mlx.
        kernels = self.settings.cache_dir / "mlx-kernels"
        os.environ.setdefault("MLX_PTX_CACHE_DIR", str(kernels))
        self._thread = InferenceThread()
        self._admission = Admission(self.settings)
        self._loading = self._thread.submit(self._load, resolved.path)
        self._loading.add_done_callback(self._log_loaded)

    def _load(self, path: Path) -> LoadedModel:
        """On the inference thread: the model, and how many requests it may
        run at once."""
        loaded = load_model(path, self.settings.cpu_profile, self.chat_template)
        limit = max_batch(loaded, self.settings.max_batch, self.settings.kv_bits)
        assert self._admission is not None  # start() made it
        self._admission.lock.slots = limit
        if limit > 1:
            self.scheduler = Scheduler(
                loaded,
                self.prompt_cache,
                max_batch=limit,
                prefill_step_size=self.settings.prefill_step_size,
            )
        return loaded

    def _log_loaded(self, future: concurrent.futures.Future[LoadedModel]) -> None:
        if future.exception() is not None:
            self.error = f"loading the model failed: {future.exception()}"
            log.error(self.error)
        else:
            loaded = future.result()
            log.info(
                "model loaded in %.2f s on %s; CPU profile: %s; batch of up to %d",
                loaded.load_seconds,
                loaded.backend,
                ", ".join(loaded.profile) or "off",
                self.max_batch,
            )
            self.size_prompt_cache(loaded)
            if self.settings.prompt_cache_dir is not None:
                assert self._thread is not None  # start() made it
                self._thread.submit(self._restore_prompt_cache, loaded)

    def _restore_prompt_cache(self, loaded: LoadedModel) -> None:
        """On the inference thread, before any request: last run's entries."""
        folder = self.settings.prompt_cache_dir
        assert folder is not None
        load_entries(self.prompt_cache, folder, self._key(loaded))

    def persist_prompt_cache(self) -> None:
        """Write the prompt cache's entries to PROMPT_CACHE_DIR (at shutdown,
        once no request runs). Waits for the inference thread."""
        loaded, folder = self.loaded_now(), self.settings.prompt_cache_dir
        if folder is not None and loaded is not None and self._thread is not None:
            key = self._key(loaded)
            self._thread.call(save_entries, self.prompt_cache, folder, key)

    def _key(self, loaded: LoadedModel) -> str:
        """What a kept entry must have been made with to be reused."""
        kv, profile = self.settings.kv_bits or "full", ", ".join(loaded.profile)
        return f"{self.resolve().path}; KV {kv}; CPU profile {profile or 'off'}"

    def when_loaded(self, callback: Callable[[LoadedModel], None]) -> None:
        """Call `callback(loaded)` once the model has loaded (not if it fails)."""
        assert self._loading is not None, "start() first"

        def done(future: concurrent.futures.Future[LoadedModel]) -> None:
            if future.exception() is None:
                callback(future.result())

        self._loading.add_done_callback(done)

    @property
    def status(self) -> Status:
        if self.error is not None:
            return "failed"
        if self._loading is None:
            return "starting"
        return "ready" if self._loading.done() else "loading"

    def size_prompt_cache(self, loaded: LoadedModel) -> None:
        """PROMPT_CACHE_MB=auto: the budget the device's free memory allows."""
        if self.prompt_cache.max_bytes is not None or loaded.memory is None:
            return
        budget = cache_budget(loaded.memory)
        self.prompt_cache.max_bytes = budget
        log.info("prompt cache budget %s", describe(budget, loaded.memory))

    def loaded(self) -> LoadedModel:
        """The loaded model, waiting (cooperatively) for the load to finish."""
        try:
            self.start()
        except Exception as error:
            raise EngineUnavailable(str(error)) from error
        if self.error is not None or self._loading is None:
            raise EngineUnavailable(self.error or "the model is not loaded")
        try:
            loaded = self._loading.result()
        except Exception as error:
            raise EngineUnavailable(self.error or str(error)) from error
        self.size_prompt_cache(loaded)  # once: _log_loaded may not have run yet
        return loaded

    def loaded_now(self) -> LoadedModel | None:
        """The loaded model if loading has finished, without waiting."""
        if self.status != "ready" or self._loading is None:
            return None
        return self._loading.result()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot of the model."""
        return self._admission.waiting if self._admission is not None else 0

    @property
    def running(self) -> list[RunningRequest]:
        """Requests holding a slot, oldest first."""
        return list(self._admission.running) if self._admission is not None else []

    @property
    def max_batch(self) -> int:
        """How many requests run at once (known once the model has loaded)."""
        return self._admission.lock.slots if self._admission is not None else 1

    def count_tokens(self, request: GenerationRequest) -> int:
        """The prompt tokens `request` would use, rendered exactly as to
        generate; counted also past the context window (Claude Code counts
        conversations before it compacts them): only generating refuses them."""
        return off_loop(self._count, request)

    def _count(self, request: GenerationRequest) -> int:
        loaded = self.loaded()
        if request.text is not None:
            return len(loaded.tokenizer.encode(request.text))
        return len(render_request(loaded, request).token_ids)

    def start_generation(
        self,
        request: GenerationRequest,
        *,
        request_id: str = "",
        client_gone: Callable[[], bool] = never,
    ) -> Generation:
        """Fit the prompt, admit the request to the queue, and prepare its events.

        Raises PromptTooLong, or EngineBusy while the queue is full. The
        events are keep-alives while queued, then deltas, then Finished.
        """
        prompt, constraint = off_loop(self._prepare, request)
        if self._admission is not None:
            self._admission.check()
        sampling = effective_sampling(
            request.sampling,
            room=prompt.max_new_tokens,
            max_temperature=self.settings.max_temperature,
        )
        events = self._generate(prompt, sampling, constraint, request_id, client_gone)
        caching = self.prompt_cache.enabled
        return Generation(self.resolve().model_id, prompt, events, caching)

    def _prepare(self, request: GenerationRequest) -> tuple[Prompt, Constraint]:
        """The request's prompt and constraint: the CPU-heavy part of a
        request (rendering, tokenising, building grammars), run off the loop."""
        check_sampling(request.sampling, len(hf_tokenizer(self.loaded().tokenizer)))
        prompt = self._fit(request)
        return prompt, request.constraint(
            in_reasoning=prompt.in_reasoning, lead=prompt.lead
        )

    def _fit(self, request: GenerationRequest) -> Prompt:
        """Render and tokenise the request's prompt; PromptTooLong if it cannot
        fit. The prompt is spelt in a cached entry's tokens where they write
        the same text."""
        loaded = self.loaded()
        if request.text is not None:
            token_ids = loaded.tokenizer.encode(request.text)
            cached = self.prompt_cache.peek(token_ids)
            return fit_prompt(token_ids, loaded.context_length, cached)
        rendered = render_request(loaded, request)
        token_ids = self.prompt_cache.align(rendered)
        cached = self.prompt_cache.peek(token_ids)
        prompt = fit_prompt(
            token_ids,
            loaded.context_length,
            cached,
            in_reasoning=opens_reasoning(loaded, rendered.text),
        )
        return replace(prompt, lead=pending_lead(loaded, rendered.text))

    def _generate(
        self,
        prompt: Prompt,
        sampling: SamplingParams,
        constraint: Constraint,
        request_id: str,
        client_gone: Callable[[], bool],
    ) -> Iterator[Event]:
        """Wait for a slot of the model in arrival order, then run the
        generation (in the batch, where the model batches).

        A request that waits longer than the queue timeout gets EngineBusy.
        Closing the iterator, or `client_gone()` turning true (ClientGone),
        leaves the queue or frees the slot.
        """
        loaded = self.loaded()
        admission = self._admission
        assert self._thread is not None and admission is not None  # loaded() did
        ticket = admission.lock.enter()
        running = RunningRequest(request_id, prompt.input_tokens, time.time())
        try:
            waited = yield from admission.wait(ticket, client_gone)
            for observer in self.observers:
                observer.queue_waited(waited)
            admission.running.append(running)
            yield from run_generation(
                self._thread,
                loaded,
                prompt,
                sampling,
                cache=self.prompt_cache,
                settings=GenerationSettings(
                    prefill_step_size=self.settings.prefill_step_size,
                    kv_bits=self.settings.kv_bits,
                    keepalive_seconds=self.settings.keepalive_seconds,
                ),
                constraint=constraint,
                scheduler=self.scheduler,
                client_gone=client_gone,
                report=self._report,
            )
        finally:
            if running in admission.running:
                admission.running.remove(running)
            admission.lock.leave(ticket)

    def _report(self, stats: GenerationStats) -> None:
        for observer in self.observers:
            observer.generation_finished(stats)
