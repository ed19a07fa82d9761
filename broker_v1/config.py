"""Configuration: the search path, YAML loading and validation of broker_v1's config shape.

The one shape every layout is translated into::

    description: CSX raw data
    timezone: US/Eastern          # optional; default: this machine's zone
    store:
      backend: memory             # memory | files | mongo | an entry-point backend
      ...                         # the backend's own options (path, uri, read_only, validate)
    handlers: {SPEC: {module: package.module, class: HandlerClass}}
    root_map: {/old/root: /new/root}
    transforms: {start: dotted.path.to.function}

Files are searched, highest precedence first, in the folders of ``BROKER_V1_CONFIG_PATH``
(``os.pathsep``-separated), then ``DATABROKER_CONFIG_PATH`` if set, then the user folder
(``~/.config/databroker``; ``%APPDATA%\\databroker`` on Windows), the environment's
(``sys.prefix/etc/databroker``) and the system folder (``/etc/databroker``;
``%PROGRAMDATA%\\databroker`` on Windows), and last intake's catalog folders where databroker
1.x kept its YAML (``INTAKE_PATH``, ``~/.local/share/intake``, ``sys.prefix/share/intake``).

Every layout (databroker 0.x, intake, databroker-pack, broker_v1's own) is translated into the
shape above by :mod:`broker_v1._layouts`.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "ConfigNotFound",
    "TOP_LEVEL_KEYS",
    "config_search_path",
    "default_store_path",
    "describe_configs",
    "list_configs",
    "lookup_config",
    "redact_config",
    "validate_config",
]

TOP_LEVEL_KEYS = (
    "description",
    "timezone",
    "store",
    "handlers",
    "root_map",
    "transforms",
    "api_version",
)


def config_search_path(
    environ: Mapping[str, str] | None = None, *, platform: str | None = None
) -> list[Path]:
    """The folders searched for ``<name>.yml``, highest precedence first.

    Parameters
    ----------
    environ
        Environment to read (default ``os.environ``); a parameter so tests can vary it.
    platform
        ``sys.platform`` value to compute the path for (default: this machine's).
    """
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    windows = platform.startswith("win")
    sep = ";" if windows else ":"
    paths: list[str] = []
    for var in ("BROKER_V1_CONFIG_PATH", "DATABROKER_CONFIG_PATH"):
        paths.extend(p for p in env.get(var, "").split(sep) if p)
    if windows:
        if env.get("APPDATA"):
            paths.append(env["APPDATA"] + "\\databroker")
        paths.append(sys.prefix + "\\etc\\databroker")
        paths.append(env.get("PROGRAMDATA", "C:\\ProgramData") + "\\databroker")
    else:
        home = env.get("HOME") or str(Path.home())
        paths.append(os.path.join(home, ".config", "databroker"))
        paths.append(os.path.join(sys.prefix, "etc", "databroker"))
        paths.append("/etc/databroker")
    # databroker 1.x also read intake catalog files from intake's folders.
    paths.extend(p for p in env.get("INTAKE_PATH", "").split(sep) if p)
    if windows:
        if env.get("APPDATA"):
            paths.append(env["APPDATA"] + "\\intake")
        paths.append(sys.prefix + "\\share\\intake")
    else:
        paths.append(os.path.join(home, ".local", "share", "intake"))
        paths.append(os.path.join(sys.prefix, "share", "intake"))
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(p, None)
    return [Path(p) for p in seen]


def default_store_path() -> Path:
    """The embedded default store: a files store in this user's data folder.

    ``Broker()`` with no store and ``broker-v1 demo`` use it (``platformdirs``:
    ``~/.local/share/broker_v1/runs`` on Linux).
    """
    import platformdirs

    return Path(platformdirs.user_data_dir("broker_v1")) / "runs"


def _candidates(name: str) -> list[Path]:
    files = []
    for folder in config_search_path():
        for suffix in (".yml", ".yaml"):
            files.append(folder / f"{name}{suffix}")
    return files


def load_yaml(path: Path) -> Any:
    """Parse one YAML file with the safe loader, translating errors into ``ConfigError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror}).", source=str(path)) from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: is not UTF-8 text (byte {err.start}: {err.reason}). Save it as UTF-8.",
            source=str(path),
        ) from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(
            f"{path}:{where} is not valid YAML ({problem}). Fix the file or remove it.",
            source=str(path),
        ) from err


def lookup_config(name: str) -> dict[str, Any]:
    """The parsed config called ``name`` (``name.yml`` or ``name.yaml``), first on the path.

    Raises
    ------
    FileNotFoundError
        (a ``ConfigNotFound``) listing every folder searched and every file tried.
    ConfigError
        The file exists but is not valid YAML or not a mapping.
    """
    if name.endswith((".yml", ".yaml")):
        name = name.rsplit(".", 1)[0]
    tried = []
    for path in _candidates(name):
        tried.append(str(path))
        if path.is_file():
            config = load_yaml(path)
            if not isinstance(config, dict):
                raise ConfigError(
                    f"{path}: a config file must hold a mapping of keys, got "
                    f"{type(config).__name__}.",
                    source=str(path),
                )
            return config
    found: list[str] = []
    for folder in config_search_path():
        try:
            found.extend(str(p) for p in sorted(folder.iterdir()) if p.suffix in (".yml", ".yaml"))
        except OSError:
            continue
    raise ConfigNotFound(
        f"No config named {name!r} was found. Searched (highest precedence first):\n  "
        + "\n  ".join(tried)
        + "\nConfig files found (none is named "
        + f"{name!r}): " + (", ".join(found) or "none")
        + f".\nPut {name}.yml in one of these folders, or set BROKER_V1_CONFIG_PATH.",
        name=name,
        tried=tried,
    )


def find_config_file(name: str) -> Path | None:
    """The file ``lookup_config(name)`` would read, or ``None``."""
    for path in _candidates(name):
        if path.is_file():
            return path
    return None


class ConfigNotFound(ConfigError, FileNotFoundError):
    """No config file of that name on the search path."""

    def __init__(self, message: str, *, name: str, tried: list[str]) -> None:
        super().__init__(message, key=name)
        self.name = name
        self.tried = tried


def list_configs() -> list[str]:
    """Sorted names of every config file on the search path."""
    names = set()
    for folder in config_search_path():
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.suffix in (".yml", ".yaml") and entry.is_file():
                names.add(entry.stem)
    return sorted(names)


def describe_configs() -> dict[str, str | None]:
    """``{name: description}`` for every config (``None`` where a file gives none)."""
    out: dict[str, str | None] = {}
    for name in list_configs():
        try:
            config = lookup_config(name)
        except ConfigError:
            out[name] = None
            continue
        description = config.get("description")
        out[name] = None if description is None else str(description)
    return out


_SECRET_KEY = re.compile(r"(^|_)(pass(word|wd)?|pwd)$|secret|token|credential", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")
_URI_SECRET_OPTION = re.compile(
    r"(?P<head>[?&;][^=&;#\s]*(?:password|secret|token|authmechanismproperties)[^=&;#\s]*=)"
    r"[^&;#\s]*",
    re.IGNORECASE,
)


def redact_config(value: Any) -> Any:
    """A copy of a config with credentials replaced by ``***``.

    Passwords in URIs (``mongodb://user:secret@host`` → ``mongodb://user:***@host``), secret
    URI options (``password=``, ``authMechanismProperties=``, ...) and the values of keys that
    name a secret (``password``, ``mongo_pwd``, ``token``, ...) are hidden; everything else is
    copied unchanged.  Used wherever a config is shown: ``db.get_config()``, ``broker-v1
    config show``.
    """
    if isinstance(value, Mapping):
        return {
            k: "***" if isinstance(k, str) and _SECRET_KEY.search(k) and value[k] not in (None, "")
            else redact_config(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_config(v) for v in value)
    if isinstance(value, str) and ("://" in value or "=" in value):
        value = _URI_PASSWORD.sub(r"\g<head>:***@", value)
        return _URI_SECRET_OPTION.sub(r"\g<head>***", value)
    return value


def _did_you_mean(key: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def validate_config(config: Any, *, source: str | None = None) -> dict[str, Any]:
    """Check a config in broker_v1's own shape and return a normalised copy.

    Raises
    ------
    ConfigError
        Naming the file (``source``) and the offending key, listing what is allowed.
    """
    where = source or "config"
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{where}: a config must be a mapping, got {type(config).__name__}.", source=source
        )
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{where}: unknown key {key!r} (allowed: {', '.join(TOP_LEVEL_KEYS)})."
                + _did_you_mean(key, TOP_LEVEL_KEYS),
                source=source,
                key=str(key),
            )
    if "store" not in config:
        raise ConfigError(
            f"{where}: the 'store' section is missing; e.g. store: {{backend: files, path: "
            "/data/csx}}.",
            source=source,
            key="store",
        )
    out = dict(config)
    tz = out.get("timezone")
    if tz is not None:
        if not isinstance(tz, str):
            raise ConfigError(f"{where}: timezone must be a string such as 'US/Eastern'.",
                              source=source, key="timezone")
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ConfigError(
                f"{where}: timezone {tz!r} is not a known IANA timezone (e.g. 'US/Eastern').",
                source=source,
                key="timezone",
            ) from err
    for key in ("handlers", "root_map", "transforms"):
        value = out.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}: {key} must be a mapping, got {type(value).__name__}.",
                source=source,
                key=key,
            )
    for spec, entry in (out.get("handlers") or {}).items():
        if not (isinstance(entry, Mapping) and {"module", "class"} <= set(entry)):
            raise ConfigError(
                f"{where}: handlers.{spec} must be {{module: ..., class: ...}}, got {entry!r}.",
                source=source,
                key=f"handlers.{spec}",
            )
    for kind, path in (out.get("transforms") or {}).items():
        if kind not in ("start", "stop", "resource", "descriptor"):
            raise ConfigError(
                f"{where}: transforms.{kind} is not supported (allowed: start, stop, resource, "
                "descriptor).",
                source=source,
                key=f"transforms.{kind}",
            )
        if not isinstance(path, str):
            raise ConfigError(f"{where}: transforms.{kind} must be a dotted path string.",
                              source=source, key=f"transforms.{kind}")
    description = out.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string.", source=source,
                          key="description")
    return out
