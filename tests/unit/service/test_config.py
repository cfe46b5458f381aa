"""Settings: defaults, TOML file, environment, flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldsmith.config import ConfigError, load_settings


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"data_dir": tmp_path}, environ={})
    assert (s.host, s.port, s.regions) == ("127.0.0.1", 4566, ())
    assert s.catalog_url == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert s.region_dir("eu-west-1") == tmp_path / "regions" / "eu-west-1"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "goldsmith.toml").write_text(
        'port = 1000\nhost = "127.0.0.2"\nregions = ["us-east-1"]\n'
    )
    env = {"GOLDSMITH_DATA_DIR": str(tmp_path), "GOLDSMITH_PORT": "2000"}
    s = load_settings({}, environ=env)
    assert (s.port, s.host, s.regions) == (2000, "127.0.0.2", ("us-east-1",))
    s = load_settings({"port": 3000}, environ=env)
    assert s.port == 3000
    s = load_settings({}, environ={**env, "GOLDSMITH_REGIONS": "eu-west-1, us-west-2"})
    assert s.regions == ("eu-west-1", "us-west-2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 70000", "port"),
        ("colour = 1", "unknown setting"),
        ("port = [", "cannot read"),
        ("host = 5", "host"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "goldsmith.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings({"data_dir": tmp_path}, environ={})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings({"data_dir": tmp_path}, config_file=tmp_path / "nope.toml", environ={})


def test_platform_build_on_start_from_toml_env_and_flags(tmp_path: Path) -> None:
    assert load_settings(environ={}).platform_build_on_start is True
    for text in ("0", "false", "No", "off"):
        env = {"GOLDSMITH_PLATFORM_BUILD_ON_START": text}
        assert load_settings(environ=env).platform_build_on_start is False
    env = {"GOLDSMITH_PLATFORM_BUILD_ON_START": "1"}
    assert load_settings(environ=env).platform_build_on_start is True
    toml = tmp_path / "g.toml"
    toml.write_text("platform_build_on_start = false\n")
    assert load_settings(config_file=toml, environ={}).platform_build_on_start is False
    flags = {"platform_build_on_start": False}
    env = {"GOLDSMITH_PLATFORM_BUILD_ON_START": "1"}
    assert load_settings(flags, environ=env).platform_build_on_start is False  # flag wins
    with pytest.raises(ConfigError, match="platform_build_on_start"):
        load_settings(environ={"GOLDSMITH_PLATFORM_BUILD_ON_START": "maybe"})
