"""``broker-v1 serve``: a store over tiled's HTTP API (tiled's server run by uvicorn).

The API key comes from ``--api-key`` or the ``BROKER_V1_SERVE_API_KEY`` environment
variable (not ``TILED_API_KEY``, which broker_v1 and tiled read as the key a *client* sends
to some server: serving with it by accident would publish it).  It is never printed, and
uvicorn's access log (which would show a key given as ``?api_key=`` in a URL) is off.
With ``--workers N`` uvicorn starts N processes, each rebuilding the app through
:func:`app_from_environment` from the NAME and key this command puts in their environment.
"""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import ConfigError, MissingDependency
from ._common import CLIError, open_broker

__all__ = ["app_from_environment", "serve"]

_INSTALL_HINT = 'pip install "broker_v1[serve]"'


def _environment_names() -> tuple[str, str, str]:
    from ..serve._app import API_KEY_ENV, NAME_ENV, PUBLIC_ENV

    return API_KEY_ENV, NAME_ENV, PUBLIC_ENV


def _import_server() -> Any:
    try:
        import uvicorn

        from ..serve import _app
    except ImportError as err:
        raise MissingDependency(
            f"broker-v1 serve needs tiled's server, which is not installed ({err}). "
            f"Install it with: {_INSTALL_HINT}") from err
    return uvicorn, _app


def app_from_environment() -> Any:
    """The app of one uvicorn worker: the store named by ``BROKER_V1_SERVE_NAME``.

    Raises
    ------
    ConfigError
        The NAME is not set, or neither a key nor public access is.
    """
    _uvicorn, app = _import_server()
    name = os.environ.get(app.NAME_ENV)
    if not name:
        raise ConfigError(f"{app.NAME_ENV} is not set: it names the store to serve, as "
                          "'broker-v1 serve NAME' sets it for its workers.", key=app.NAME_ENV)
    public = os.environ.get(app.PUBLIC_ENV) == "1"
    api_key = None if public else (os.environ.get(app.API_KEY_ENV) or None)
    if not public and api_key is None:
        raise ConfigError(f"{app.API_KEY_ENV} is not set and {app.PUBLIC_ENV} is not 1: "
                          "refusing to serve without a key.", key=app.API_KEY_ENV)
    db = open_broker(name)
    return app.build_app(db.store, api_key=api_key, public=public,
                         filler=db.reg.filler(db.store))


@click.command("serve")
@click.argument("name")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port.")
@click.option("--api-key", default=None, metavar="KEY",
              help="The key clients must send (letters and digits); default: the "
                   "BROKER_V1_SERVE_API_KEY environment variable.")
@click.option("--public", is_flag=True,
              help="Serve without a key: anyone who reaches the port reads every run.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes (uvicorn workers) over the same store.")
def serve(name: str, host: str, port: int, api_key: str | None, public: bool,
          workers: int) -> None:
    """Serve the runs of NAME read-only over tiled's HTTP API.

    Clients read it with tiled's client and bluesky-tiled-plugins
    (from_uri('http://HOST:PORT', api_key=KEY) is a catalog of Bluesky
    runs), or with broker_v1's tiled store. SIGTERM or Ctrl-C stops it.

    \b
    Examples:
        BROKER_V1_SERVE_API_KEY=$(openssl rand -hex 32) broker-v1 serve csx
        broker-v1 serve ./runs --port 8001 --public
        broker-v1 serve mongodb://db:27017/csx --api-key KEY --workers 4
    """
    api_key_env, name_env, public_env = _environment_names()
    if public and api_key:
        raise CLIError("give either --api-key or --public, not both.", exit_code=2)
    key = None if public else (api_key or os.environ.get(api_key_env) or None)
    if not public and key is None:
        raise CLIError(
            f"refusing to serve without an API key: give --api-key KEY or set {api_key_env}, "
            "or pass --public to let anyone who reaches the port read every run.",
            exit_code=2)
    uvicorn, app = _import_server()
    if key is not None:
        app.check_api_key(key)
    db = open_broker(name)  # a bad NAME fails here, before the server starts
    access = "public, no key" if public else "API key required"
    click.echo(f"broker-v1 serve: {db.store.describe()} at http://{host}:{port} ({access}, "
               f"{workers} worker{'s' if workers > 1 else ''}); Ctrl-C stops.", err=True)
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False,
                               "log_level": "warning"}
    if workers == 1:
        # The config's handlers and root_map fill external fields on the server.
        served = app.build_app(db.store, api_key=key, public=public,
                               filler=db.reg.filler(db.store))
        uvicorn.run(served, **options)
        return
    db.store.close()
    os.environ[name_env] = name
    os.environ[public_env] = "1" if public else "0"
    if key is not None:
        os.environ[api_key_env] = key
    uvicorn.run("broker_v1.cli._serve:app_from_environment", factory=True, workers=workers,
                **options)
