"""Who may reach the server: the Host and Origin a request names, and the bind.

A web page the user visits can reach a server on 127.0.0.1 through DNS
rebinding (its own name resolving to 127.0.0.1): the request then names the
page's host. Requests are answered only when their `Host` (and `Origin`, if
any) is a localhost name, a loopback address, the address the server binds,
or a name in PENSIEVE_ALLOWED_HOSTS (`*`: any). And a server bound beyond
loopback refuses to start with the public default key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from .errors import PermissionDenied
from .settings import SETTINGS_BY_NAME

WILDCARD_BINDS = {"", "0.0.0.0", "::"}


def is_loopback(host: str) -> bool:
    """localhost, a name under .localhost, or a loopback address."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host of a `Host` header (`name`, `name:port`, `[v6]:port`)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed(host: str, config: Mapping[str, Any]) -> bool:
    extra = {name.strip().lower() for name in config["ALLOWED_HOSTS"].split(",")}
    if "*" in extra or is_loopback(host):
        return True
    bind = config["HOST"].strip("[]").lower()
    return host in extra - {""} or (bind not in WILDCARD_BINDS and host == bind)


def check_host() -> None:
    """403 for a request addressed to, or sent from a page of, another host."""
    config = current_app.config
    host = host_name(request.host)
    if not allowed(host, config):
        raise PermissionDenied(
            f"host not allowed: {host!r}; Pensieve answers requests addressed to "
            "localhost (add other names to PENSIEVE_ALLOWED_HOSTS)"
        )
    origin = request.headers.get("Origin")
    if origin is not None:
        origin_host = (urlsplit(origin).hostname or "") if origin != "null" else ""
        if not allowed(origin_host, config):
            raise PermissionDenied(f"origin not allowed: {origin!r}")


def exposure_problem(config: Mapping[str, Any]) -> str | None:
    """Why the server must not start as configured, or None: bound beyond
    loopback with the default key, which every README shows."""
    if is_loopback(config["HOST"]):
        return None
    if config["API_KEY"] != SETTINGS_BY_NAME["API_KEY"].default:
        return None
    return (
        f"PENSIEVE_HOST={config['HOST']} would serve the network with the public "
        "default key: set PENSIEVE_API_KEY to a key of your own first (e.g. "
        "export PENSIEVE_API_KEY=$(openssl rand -hex 16))"
    )


def init_app(app: Flask) -> None:
    app.before_request(check_host)
