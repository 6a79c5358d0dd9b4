"""gunicorn settings and hooks for Pensieve: one gevent worker owning one model.

`gunicorn -c gunicorn.conf.py wsgi:app` (from a checkout) and `pensieve start`
(any install) both load this module, so they run the same server. The master
imports the app (preload) and resolves the model: it may download or import
files but never initialises mlx. The worker, after the fork and gevent's
patching, loads the weights on its inference thread.

gevent patches the standard library here, before the master imports anything
that uses ssl (huggingface-hub's HTTP client, when the model is downloaded):
patched only in the worker, as gunicorn does it, those modules would keep the
unpatched ssl (gevent warns). The worker's own patching is then a no-op.
"""

from gevent import monkey

monkey.patch_all()

from pensieve.config import load_settings  # noqa: E402
from pensieve.daemon import Address, connect_lines  # noqa: E402
from pensieve.engine.loading import LoadedModel  # noqa: E402
from pensieve.exposure import exposure_problem  # noqa: E402
from pensieve.extension import engine_of  # noqa: E402
from pensieve.guard import connection_cap  # noqa: E402
from pensieve.limits import size_body_limit  # noqa: E402
from pensieve.logs import ACCESS_LOG_FORMAT, logging_config  # noqa: E402
from pensieve.settings import SETTINGS_BY_NAME  # noqa: E402

_settings = load_settings()
_host = _settings["HOST"]

bind = (
    f"[{_host}]:{_settings['PORT']}" if ":" in _host else f"{_host}:{_settings['PORT']}"
)
# Drains on SIGTERM: requests in flight finish, new ones get 529 (server.py).
worker_class = "pensieve.server.DrainingGeventWorker"
workers = 1  # one model per process; more workers would each load it
# Well above what clients use; idle and slow ones are shed near it (guard.py).
worker_connections = connection_cap(_settings["MAX_CONNECTIONS"])
preload_app = True
# The worker's heartbeat runs on the gevent hub, which inference never blocks;
# the timeout only has to cover a stuck hub, not a long prefill.
timeout = 120
graceful_timeout = _settings["GRACEFUL_TIMEOUT"]
keepalive = _settings["IDLE_TIMEOUT"]
# gunicorn's control socket is one per user ($HOME/.gunicorn): servers on other
# ports would contend for it. `pensieve stop` / `status` do its job here.
control_socket_disable = True
# One log format for the app, gunicorn's errors and its access lines.
loglevel = _settings["LOG_LEVEL"]
logconfig_dict = logging_config(_settings)
accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT


def on_starting(server):
    """In the master, before forking: refuse an exposed default key, then
    find, download or import the model."""
    if problem := exposure_problem(server.app.wsgi().config):
        server.log.error("cannot start: %s", problem)
        server.halt(exit_status=1)
    try:
        resolved = engine_of(server.app.wsgi()).resolve()
    except Exception as error:  # its message is the whole story for the user
        server.log.error("cannot start: %s", error)
        server.halt(exit_status=1)
    server.log.info("model %s at %s", resolved.model_id, resolved.path)


def post_worker_init(worker):
    """In the worker, after fork and gevent patching: start loading the model,
    and say when it answers (gunicorn's "Listening at" comes before that)."""
    engine = engine_of(worker.wsgi)
    engine.start()

    def loaded(model: LoadedModel) -> None:
        size_body_limit(worker.wsgi.config, model.context_length)
        worker.log.info(ready_lines(_settings))

    engine.when_loaded(loaded)


def ready_lines(settings):
    """The ready line and what to paste into a shell (a key of the user's own
    is not written to the log)."""
    url = Address(settings["HOST"], settings["PORT"]).url
    key = settings["API_KEY"]
    shown = key if key == SETTINGS_BY_NAME["API_KEY"].default else "$PENSIEVE_API_KEY"
    return f"ready: {url} answers requests\n{connect_lines(url, shown)}"
