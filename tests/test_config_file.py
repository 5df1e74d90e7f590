"""The config file (-c, ./ctxserver.conf.py): our names and gunicorn's, precedence against
SERVER_* and flags, PORT / WEB_CONCURRENCY, warnings, and one-line errors for bad values."""

from __future__ import annotations

import textwrap

import pytest
from gunicorn.config import KNOWN_SETTINGS

from server.config import SETTINGS, Config, ConfigError, load_config
from server.config_docs import resolved_config
from server.config_file import APP_NAMES, COMMAND_LINE_ONLY, GUNICORN_UNSUPPORTED
from server.hooks import HOOKS
from tests.support import run_cli

#: A gunicorn.conf.py as people write them: gunicorn's names, Python values, helpers.
GUNICORN_CONF = """
import multiprocessing
import os

bind = ["127.0.0.1:9001", "unix:/tmp/ctx-test.sock"]
workers = 3
worker_class = "gevent"
worker_connections = 50
timeout = 12
graceful_timeout = 7
keepalive = 4
max_requests = 100
max_requests_jitter = 10
accesslog = "-"
errorlog = "-"
loglevel = "warning"
access_log_format = '%(h)s "%(r)s" %(s)s'
preload_app = True
pidfile = "/tmp/ctx-test.pid"
umask = 0o22
raw_env = ["GREETING=hi", "EMPTY="]
limit_request_line = 1000
limit_request_fields = 20
limit_request_field_size = 4000
capture_output = False
wsgi_app = "tests.apps.bare:app"

def _helper():
    return 1

def post_fork(server, worker):
    pass

def post_request(worker, req):
    pass
"""


def _conf(tmp_path, text: str, name: str = "gunicorn.conf.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _load(argv, environ=None):
    warnings: list[str] = []
    config, _ = load_config(argv, environ or {}, warn=warnings.append)
    return config, warnings


def test_a_gunicorn_conf_py_sets_our_settings(tmp_path):
    config, warnings = _load(["-c", _conf(tmp_path, GUNICORN_CONF)])
    assert warnings == []
    assert config.bind == ("127.0.0.1:9001", "unix:/tmp/ctx-test.sock")
    assert (config.workers, config.worker_connections, config.timeout,
            config.graceful_timeout, config.keep_alive) == (3, 50, 12, 7, 4)
    assert (config.max_requests, config.max_requests_jitter) == (100, 10)
    assert (config.access_log, config.error_log, config.log_level) == ("-", "-", "warning")
    assert config.access_log_format == '%(h)s "%(r)s" %(s)s'
    assert config.preload is True and config.pid == "/tmp/ctx-test.pid"
    assert config.umask == 0o22 and config.env == ("GREETING=hi", "EMPTY=")
    assert (config.max_request_line, config.max_header_count,
            config.max_header_size) == (1000, 20, 4000)
    assert config.app == "tests.apps.bare:app"
    assert set(config.hooks) == {"post_fork", "post_request"}


def test_our_own_names_work_too(tmp_path):
    path = _conf(tmp_path, "keep_alive = 1.5\npreload = True\nmax_body_size = 10\n"
                           "app = 'tests.apps.bare:app'\n")
    config, _ = _load(["-c", path])
    assert (config.keep_alive, config.preload, config.max_body_size) == (1.5, True, 10)
    assert config.app == "tests.apps.bare:app"


def test_precedence_flags_over_environment_over_file_over_conventions(tmp_path):
    path = _conf(tmp_path, "workers = 4\nkeepalive = 3\ntimeout = 9\nbind = '127.0.0.1:1'\n")
    environ = {"SERVER_WORKERS": "5", "SERVER_KEEP_ALIVE": "2", "WEB_CONCURRENCY": "7",
               "PORT": "5000"}
    config, _ = _load(["-c", path, "-w", "6"], environ)
    assert config.workers == 6  # flag
    assert config.keep_alive == 2  # environment over the file
    assert config.timeout == 9  # the file over the default
    assert config.bind == ("127.0.0.1:1",)  # the file over PORT
    config, _ = _load(["-c", path], environ)
    assert config.workers == 5


def test_port_and_web_concurrency_are_defaults():
    config, _ = _load([], {"PORT": "5000", "WEB_CONCURRENCY": "3"})
    assert config.bind == ("0.0.0.0:5000",) and config.workers == 3
    config, _ = _load(["-b", "127.0.0.1:1", "-w", "2"], {"PORT": "5000",
                                                         "WEB_CONCURRENCY": "3"})
    assert config.bind == ("127.0.0.1:1",) and config.workers == 2
    assert _load([], {})[0] == Config()


@pytest.mark.parametrize("environ, message", [
    ({"PORT": "http"}, "PORT: invalid value '0.0.0.0:http': bad port 'http'"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY: invalid value '0': must be >= 1"),
])
def test_bad_conventions(environ, message):
    with pytest.raises(ConfigError) as info:
        load_config([], environ)
    assert str(info.value) == message


def test_ctxserver_conf_py_in_the_current_directory_is_loaded(tmp_path, monkeypatch):
    _conf(tmp_path, "workers = 2\n", name="ctxserver.conf.py")
    monkeypatch.chdir(tmp_path)
    config, _ = _load([])
    assert config.workers == 2 and config.config == "ctxserver.conf.py"
    config, _ = _load([], {"SERVER_CONFIG": _conf(tmp_path, "workers = 3\n", "other.py")})
    assert config.workers == 3


def test_a_gunicorn_conf_py_is_not_picked_up_by_itself(tmp_path, monkeypatch):
    _conf(tmp_path, "workers = 2\n")
    monkeypatch.chdir(tmp_path)
    assert _load([])[0].workers == 1


def test_unsupported_and_unknown_names_are_one_warning_each(tmp_path):
    path = _conf(tmp_path, """
        import os
        from server import g, request_id
        from os.path import join as threads_helper
        threads = 4
        ssl_version = 2
        daemon = True
        wokers = 3
        bind_host = "0.0.0.0"
        check_config = True
        def post_frok(server, worker):
            pass
        def pre_exec(server):
            pass
        if os.environ.get("NEVER_SET_X") is None:
            max_request = 10
        """)
    _, warnings = _load(["-c", path])
    assert warnings == [
        f"{path}: gunicorn setting 'threads' is not supported, ignored: gevent greenlets "
        "instead of threads",
        f"{path}: gunicorn setting 'ssl_version' is not supported, ignored: not supported: "
        "TLS is set by --certfile, --keyfile, --ca-certs, --cert-reqs, --ciphers",
        f"{path}: gunicorn setting 'daemon' is not supported, ignored: run it under "
        "systemd, a container or supervisord",
        f"{path}: unknown setting 'wokers' ignored (did you mean 'workers'?)",
        f"{path}: unknown setting 'bind_host' ignored (name helpers _like_this to silence "
        "this)",
        f"{path}: 'check_config' ignored: use the --check-config flag",
        f"{path}: 'post_frok' is not a hook, ignored (did you mean 'post_fork'?)",
        f"{path}: gunicorn setting 'pre_exec' is not supported, ignored: USR2 binary "
        "upgrade is not supported, so there is no exec",
        f"{path}: unknown setting 'max_request' ignored (did you mean 'max_requests'?)",
    ]


@pytest.mark.parametrize("text, message", [
    ("workers = 0", "{path}: workers: invalid value '0': must be >= 1"),
    ("workers = 'many'", "{path}: workers: invalid value 'many': not a number"),
    ("workers = [2]", "{path}: workers: invalid value [2]: expected a string or a number"),
    ("keepalive = -1", "{path}: keepalive: invalid value '-1': must be a finite number >= 0"),
    ("bind = 'localhost'", "{path}: bind: invalid value 'localhost': expected HOST:PORT or "
                           "unix:PATH"),
    ("bind = [1]", "{path}: bind: invalid value [1]: expected a list of strings"),
    ("preload_app = 'sometimes'", "{path}: preload_app: invalid value 'sometimes': must be "
                                  "one of 1/0, true/false, yes/no, on/off"),
    ("worker_class = 'sync'", "{path}: worker_class: invalid value 'sync': only gevent is "
                              "supported (every request runs in a greenlet of its own)"),
    ("loglevel = 'loud'", "{path}: loglevel: invalid value 'loud': must be one of debug, "
                          "info, warning, error, critical"),
    ("raw_env = ['NOEQUALS']", "{path}: raw_env: invalid value 'NOEQUALS': expected "
                               "KEY=VALUE"),
    ("user = 'no-such-user-here'", "{path}: user: invalid value 'no-such-user-here': no "
                                   "such user"),
    ("chdir = '/no/such/dir'", "{path}: chdir: invalid value '/no/such/dir': no such "
                               "directory"),
    ("access_log_format = '%(h)s %'", "{path}: access_log_format: invalid value '%(h)s %': "
                                      "not a %(atom)s format: incomplete format"),
    ("keepalive = 1\nkeep_alive = 2", "{path}: 'keep_alive' and 'keepalive' both set "
                                      "keep_alive; keep one"),
    ("def post_fork(server):\n    pass", "{path}: post_fork: must take 2 argument(s): "
                                         "(server, worker)"),
    ("on_exit = 3", "{path}: on_exit: must be a function taking (server)"),
    ("wsgi_app = 3", "{path}: wsgi_app: invalid value 3: expected 'module:attr'"),
    ("import nosuchmodule_x", "config file '{path}' failed: ModuleNotFoundError: No module "
                              "named 'nosuchmodule_x' ({path}, line 1)"),
    ("workers = = 2", "config file '{path}': invalid syntax ({path}, line 1)"),
])
def test_bad_values_in_the_file(tmp_path, text, message):
    path = _conf(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(["-c", path], {})
    assert str(info.value) == message.format(path=path)


def test_a_missing_config_file_is_an_error():
    with pytest.raises(ConfigError, match=r"config file '/no/such\.py' not found"):
        load_config(["-c", "/no/such.py"], {})


@pytest.mark.parametrize("argv, message", [
    (["-k", "sync"], "--worker-class: invalid value 'sync': only gevent is supported"),
    (["--wokers", "3"], "unknown flag --wokers (did you mean --workers?)"),
    (["--wokers=3", "tests.apps.bare:app"], "unknown flag --wokers (did you mean --workers?)"),
    (["-x"], "unknown flag -x"),
    (["--env", "X"], "--env: invalid value 'X': expected KEY=VALUE"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, message):
    result = run_cli(*argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_gunicorn_short_and_long_flags_are_accepted():
    config, _ = _load(["-b", "127.0.0.1:1", "-w", "2", "-t", "5", "-k", "gevent",
                       "--keep-alive", "3", "--limit-request-line", "100",
                       "--limit-request-fields", "7", "--access-logfile", "-",
                       "--error-logfile", "-", "--access-logformat", "%(h)s", "-e", "A=1",
                       "--pid", "/tmp/x.pid", "-m", "007"])
    assert (config.bind, config.workers, config.timeout) == (("127.0.0.1:1",), 2, 5)
    assert (config.max_request_line, config.max_header_count) == (100, 7)
    assert (config.access_log, config.access_log_format, config.env) == ("-", "%(h)s",
                                                                          ("A=1",))
    assert (config.pid, config.umask) == ("/tmp/x.pid", 0o7)


def test_every_gunicorn_setting_is_handled_somewhere():
    """Each of gunicorn 27's settings is one of ours, a hook, or warned about with a reason
    — so a name a gunicorn.conf.py uses is never silently dropped."""
    ours = {name for s in SETTINGS for name in s.file_names}
    handled = ours | set(HOOKS) | set(GUNICORN_UNSUPPORTED) | set(COMMAND_LINE_ONLY) \
        | set(APP_NAMES)
    theirs = {setting.name for setting in KNOWN_SETTINGS}
    assert theirs - handled == set()
    assert set(GUNICORN_UNSUPPORTED) <= theirs, set(GUNICORN_UNSUPPORTED) - theirs


def test_every_declared_gunicorn_name_is_a_real_gunicorn_setting():
    theirs = {setting.name for setting in KNOWN_SETTINGS}
    declared = {s.gunicorn_name for s in SETTINGS if s.gunicorn_name}
    assert declared and declared <= theirs, declared - theirs


def test_print_config_is_the_resolved_settings_and_a_valid_config_file(tmp_path):
    path = _conf(tmp_path, "workers = 3\nkeepalive = 4\n")
    result = run_cli("-c", path, "--print-config", env={"SERVER_TIMEOUT": "11"})
    assert result.returncode == 0, result.stderr
    assert "workers = 3" in result.stdout and "keep_alive = 4.0" in result.stdout
    assert "timeout = 11.0" in result.stdout and "# backlog = 2048  (default)" in result.stdout
    again = _conf(tmp_path, result.stdout, "printed.py")
    config, warnings = _load(["-c", again])
    assert warnings == [] and (config.workers, config.keep_alive, config.timeout) == (3, 4, 11)
    assert resolved_config(config).splitlines()[1:] == result.stdout.splitlines()[1:]


def test_check_config_loads_the_app(tmp_path):
    good = _conf(tmp_path, "wsgi_app = 'tests.apps.bare:app'\n")
    result = run_cli("-c", good, "--check-config")
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    bad_app = _conf(tmp_path, "wsgi_app = 'tests.apps.nosuch:app'\n", "bad_app.py")
    result = run_cli("-c", bad_app, "--check-config")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "tests.apps.nosuch" in result.stderr
    bad_value = _conf(tmp_path, "timeout = 'soon'\n", "bad_value.py")
    result = run_cli("-c", bad_value, "--check-config")
    assert result.returncode == 2
    assert result.stderr == f"server: error: {bad_value}: timeout: invalid value 'soon': " \
                            "not a number\n"


def test_user_and_group_need_root_and_capture_output_needs_a_file(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("os.getegid", lambda: 1000)
    with pytest.raises(ConfigError, match=r"^--user 0: changing the workers' user or group "
                                          r"needs the master to run as root$"):
        load_config(["-u", "0"], {})
    with pytest.raises(ConfigError, match=r"^--group 0: "):
        load_config(["-g", "0"], {})
    assert load_config(["-u", "1000", "-g", "1000"], {})[0].user == 1000  # no change: fine
    with pytest.raises(ConfigError, match="--capture-output needs --error-log PATH"):
        load_config(["--capture-output"], {})
    assert load_config(["--capture-output", "--error-log", "/tmp/e.log"], {})[0].capture_output


def test_help_lists_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for setting in SETTINGS:
        assert setting.flag in result.stdout
    assert "%(h)s remote address" in result.stdout and "--check-config" in result.stdout
