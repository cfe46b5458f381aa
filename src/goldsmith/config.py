"""Configuration: where Goldsmith keeps its data, where it listens, which regions it serves.

Settings come from three sources, later ones overriding earlier ones:

1. a TOML file (``--config FILE``, else ``$GOLDSMITH_CONFIG``, else ``<data-dir>/goldsmith.toml``
   when it exists);
2. environment variables ``GOLDSMITH_<KEY>`` (``GOLDSMITH_DATA_DIR``, ``GOLDSMITH_PORT``,
   ``GOLDSMITH_REGIONS`` as a comma-separated list, …);
3. command-line flags (passed to :func:`load_settings` as ``overrides``).

Keys (TOML names; see docs/configuration.md): ``data_dir``, ``host``, ``port``,
``database_url``, ``regions``, ``default_region``, ``max_clock_skew_seconds``,
``platform_alias``, ``platform_build_on_start``, ``region_stores`` (a table region → chunk
store directory; ``GOLDSMITH_REGION_STORES`` as ``region=path,region=path``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 4566
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"


class ConfigError(ValueError):
    """The configuration cannot be used (bad value, unreadable file)."""


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. ``regions`` empty means every standard AWS region."""

    data_dir: Path = field(default_factory=lambda: Path("data").absolute())
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str = ""
    regions: tuple[str, ...] = ()
    default_region: str = DEFAULT_REGION
    max_clock_skew_seconds: int = 900
    #: Owner alias of the platform account's images (``Owners=["amazon"]`` finds them).
    platform_alias: str = "amazon"
    #: ``goldsmith serve`` builds and publishes the platform images in the background when
    #: the default region has none (``GOLDSMITH_PLATFORM_BUILD_ON_START=0`` turns it off).
    platform_build_on_start: bool = True
    #: Region → directory of its chunk store, for regions whose store lives elsewhere (another
    #: disk); every other region's store is ``<data-dir>/regions/<region>/store``.
    region_stores: Mapping[str, Path] = field(default_factory=dict)

    @property
    def catalog_url(self) -> str:
        """The catalog database URL: configured, else SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'catalog.db'}"

    def region_dir(self, region: str) -> Path:
        """The directory holding one region's local data (chunk store, volumes)."""
        return self.data_dir / "regions" / region

    def region_store(self, region: str) -> Path:
        """The directory of one region's chunk store (``region_stores``, else the default)."""
        return self.region_stores.get(region) or self.region_dir(region) / "store"


_ENV_PREFIX = "GOLDSMITH_"


def _coerce(name: str, value: Any) -> Any:
    """Convert a raw TOML/env value to the type of field ``name``."""
    try:
        if name == "data_dir":
            return Path(str(value)).expanduser().absolute()
        if name in {"port", "max_clock_skew_seconds"}:
            number = int(value)
            if name == "port" and not 0 <= number <= 65535:
                raise ValueError("out of range")
            return number
        if name == "platform_build_on_start":
            return _boolean(value)
        if name == "regions":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if name == "region_stores":
            return _region_stores(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value for {name!r}: {value!r} ({exc})") from exc
    if not isinstance(value, str):
        raise ConfigError(f"invalid value for {name!r}: expected a string, got {value!r}")
    return value


_REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def _region_stores(value: Any) -> dict[str, Path]:
    """A TOML table ``{region = "path"}`` or an env string ``region=path,region=path``."""
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("expected region=path pairs separated by commas")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping):
        raise TypeError("expected a table of region = path")
    out: dict[str, Path] = {}
    for region, path in value.items():
        if not _REGION_NAME.match(str(region)) or not isinstance(path, str) or not path:
            raise ValueError(f"bad entry {region!r} = {path!r}")
        out[str(region)] = Path(path).expanduser().absolute()
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _boolean(value: Any) -> bool:
    """A TOML boolean, or an environment/flag string such as ``0``/``false``/``yes``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")


def _from_mapping(source: Mapping[str, Any], origin: str) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in source.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} in {origin}")
        out[key] = _coerce(key, value)
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    picked = {
        key[len(_ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(_ENV_PREFIX) and key[len(_ENV_PREFIX) :].lower() in known
    }
    return _from_mapping(picked, "the environment")


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from file, environment and ``overrides`` (flags; None is skipped)."""
    env = os.environ if environ is None else environ
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    env_values = _from_env(env)
    flag_values = _from_mapping(flags, "the command line")
    data_dir = flag_values.get("data_dir") or env_values.get("data_dir") or Settings().data_dir
    path = config_file or (Path(env["GOLDSMITH_CONFIG"]) if env.get("GOLDSMITH_CONFIG") else None)
    file_values: dict[str, Any] = {}
    candidate = path or Path(data_dir) / "goldsmith.toml"
    if path is not None or candidate.exists():
        try:
            file_values = _from_mapping(tomllib.loads(candidate.read_text()), str(candidate))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {candidate}: {exc}") from exc
    return replace(Settings(), **{**file_values, **env_values, **flag_values})
