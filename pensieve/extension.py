"""The app's engine, as flaskr keeps its database: `init_app` and `get_engine`.

`create_app` calls `init_app(app, engine)`: the engine passed in (a test's
fake) or a new one built from the app's settings. Views reach it with
`get_engine()`, gunicorn's hooks with `engine_of(app)`.
"""

from __future__ import annotations

from flask import Flask, current_app

from .config import engine_settings
from .engine import Engine

EXTENSION = "pensieve.engine"


def init_app(app: Flask, engine: Engine | None = None) -> None:
    """Give `app` its engine. Cheap: nothing is loaded until the worker starts it."""
    app.extensions[EXTENSION] = engine or Engine(engine_settings(app.config))


def engine_of(app: Flask) -> Engine:
    """The engine of an app built by `create_app`."""
    return app.extensions[EXTENSION]


def get_engine() -> Engine:
    """The current app's engine."""
    return engine_of(current_app)
