"""Loading the app: every failure is one line that names the file and line of the app's own
code that failed (not importlib's, not the library call's)."""

from __future__ import annotations

import sys

import pytest

from server.loader import AppLoadError, load_app


def _error(spec: str) -> str:
    with pytest.raises(AppLoadError) as info:
        load_app(spec)
    return str(info.value)


def test_a_nested_key_error_names_the_line_of_the_app_that_looked_it_up():
    message = _error("tests.apps.nested_import_error:app")
    assert message == ("importing 'tests.apps.nested_import_error' failed: KeyError: "
                       "'CTXSERVER_TEST_SURELY_UNSET_DATABASE_URL' "
                       "(tests/apps/nested_settings.py, line 5)")


def test_a_failure_inside_a_library_names_the_apps_line_that_called_it():
    message = _error("tests.apps.library_import_error:app")
    assert message.startswith("importing 'tests.apps.library_import_error' failed: "
                              "JSONDecodeError: Expecting property name")
    assert message.endswith("(tests/apps/library_import_error.py, line 6)")


def test_a_multi_line_message_stays_one_line_with_its_place():
    message = _error("tests.apps.hostile_import_error:app")
    assert "\n" not in message
    assert message == ("importing 'tests.apps.hostile_import_error' failed: ValueError: first "
                       "line of the reason (tests/apps/hostile_import_error.py, line 3)")


def test_a_failing_factory_names_its_line():
    assert _error("tests.apps.hostile:broken_factory()").endswith(
        "failed: RuntimeError: first line (tests/apps/hostile.py, line 110)")


def test_a_syntax_error_names_the_file_and_line_of_the_bad_code(tmp_path, monkeypatch):
    (tmp_path / "badsyntax_app.py").write_text("x = 1\ndef (:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        message = _error("badsyntax_app:app")
    finally:
        sys.modules.pop("badsyntax_app", None)
    assert message.startswith("importing 'badsyntax_app' failed: SyntaxError: invalid syntax")
    assert message.endswith("badsyntax_app.py, line 2)")


def test_a_missing_module_is_still_plain():
    assert _error("no_such_module_here:app") == \
        "cannot import 'no_such_module_here': no such module"
