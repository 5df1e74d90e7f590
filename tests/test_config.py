"""Settings: defaults, environment, flags, precedence, and the errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from gunicorn.config import KNOWN_SETTINGS

from server.config import SETTINGS, Config, ConfigError, load_config
from server.config_docs import gunicorn_table, markdown_table, reload_table


def test_defaults():
    config, _ = load_config([], environ={})
    assert config == Config()


def test_flags_override_environment():
    config, _ = load_config(["--workers", "3"], environ={"SERVER_WORKERS": "5",
                                                         "SERVER_KEEP_ALIVE": "2.5"})
    assert config.workers == 3 and config.keep_alive == 2.5


def test_repeatable_bind_from_flags_and_environment():
    config, _ = load_config(["--bind", "127.0.0.1:1", "--bind", "unix:/tmp/s.sock"], {})
    assert config.bind == ("127.0.0.1:1", "unix:/tmp/s.sock")
    config, _ = load_config([], {"SERVER_BIND": "127.0.0.1:1, [::1]:2"})
    assert config.bind == ("127.0.0.1:1", "[::1]:2")


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers: invalid value '0': must be >= 1"),
    (["--keep-alive", "-1"], "--keep-alive: invalid value '-1': must be a finite number >= 0"),
    (["--bind", "localhost"], "--bind: invalid value 'localhost': expected HOST:PORT or unix:PATH"),
    (["--bind", "h:99999"], "--bind: invalid value 'h:99999': bad port '99999'"),
    (["--log-format", "xml"], "--log-format: invalid value 'xml': must be one of text, json"),
    (["--read-timeout", "0"], "--read-timeout: invalid value '0': must be > 0"),
])
def test_bad_values(argv, message):
    with pytest.raises(ConfigError) as info:
        load_config(argv, {})
    assert str(info.value) == message


def test_bad_boolean_in_environment():
    with pytest.raises(ConfigError, match="SERVER_UNSAFE_PROBE"):
        load_config([], {"SERVER_UNSAFE_PROBE": "maybe"})


def test_every_setting_is_a_config_field_and_in_the_table():
    table = markdown_table()
    for setting in SETTINGS:
        assert hasattr(Config(), setting.name)
        assert setting.env in table and setting.flag in table


def test_readme_options_table_is_current():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "README options table is stale: paste " \
        "`python -m server --print-config-table`"


def test_readme_gunicorn_table_is_current():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert gunicorn_table() in readme, "README 'coming from gunicorn' table is stale: paste " \
        "`python -m server --print-gunicorn-table`"


def test_readme_reload_table_is_current():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert reload_table() in readme, "README table of the settings a HUP cannot change is " \
        "stale: paste `python -c 'from server.config_docs import reload_table as t; print(t())'`"


def test_every_gunicorn_flag_in_the_table_is_a_real_gunicorn_option():
    """The table names gunicorn's flags as gunicorn 27 spells them (installed for the bench)."""
    theirs = {flag for setting in KNOWN_SETTINGS for flag in setting.cli or ()}
    named = {flag.strip() for s in SETTINGS if s.gunicorn for flag in s.gunicorn.split(",")}
    assert named and named <= theirs, named - theirs
