"""gunicorn settings for Pensieve: one gevent worker owning one model.

The master imports the app (preload) and resolves the model: it may download
or import files but never initialises mlx. The worker, after the fork and
gevent's patching, loads the weights on its inference thread.
"""

import logging

from pensieve.config import load_settings
from pensieve.server import engine_of

_settings = load_settings()
logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
)

bind = f"{_settings['HOST']}:{_settings['PORT']}"
worker_class = "gevent"
workers = 1  # one model per process; more workers would each load it
worker_connections = 100
preload_app = True
# The worker's heartbeat runs on the gevent hub, which inference never blocks;
# the timeout only has to cover a stuck hub, not a long prefill.
timeout = 120
graceful_timeout = 30
keepalive = 75
accesslog = "-"


def on_starting(server):
    """In the master, before forking: find, download or import the model."""
    resolved = engine_of(server.app.wsgi()).resolve()
    server.log.info("model %s at %s", resolved.model_id, resolved.path)
    if resolved.fallback_reason:
        server.log.warning("FALLBACK: %s", resolved.fallback_reason)


def post_worker_init(worker):
    """In the worker, after fork and gevent patching: start loading the model."""
    engine_of(worker.wsgi).start()
