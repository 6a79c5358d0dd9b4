"""`gunicorn -c gunicorn.conf.py wsgi:app`: Pensieve's gunicorn settings and hooks.

They live in pensieve/gunicorn_conf.py, where `pensieve start` finds them in
any install: both commands run the same server.
"""

from pensieve.gunicorn_conf import *  # noqa: F403
