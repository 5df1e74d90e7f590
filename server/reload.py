"""What a HUP's re-read configuration changes: the settings resolved again from the sources
of the start, the Config the next generation of workers runs with, and the differences that
need a restart.

gunicorn's HUP "reloads the configuration, starts the new worker processes with a new
configuration and gracefully shuts down older workers"; so does ours. The sources are the
start's (:class:`ConfigSources`): the same argv, the master's environment without what
``--env`` / ``raw_env`` put there (gunicorn's ``env_orig``), and the config file run again —
from the directory the server started in, so relative paths mean what they meant then, even
after ``--chdir``. Precedence is :func:`~server.config.load_config`'s. A file that no longer
loads refuses the reload (the caller logs the start-up error's line and changes nothing);
gunicorn's master exits instead.

A setting the master applies once, at start (each :class:`~server.config.Setting` with a
``restart`` reason: the listeners, ``--user``, ``--chdir``, ``--preload``...), keeps its
running value; :func:`plan_reload` names each one that differs, so the caller can warn.

Isolation: a reload adds no path between requests. The new generation is new processes,
forked after the file ran again; ``runpy`` gives every run a fresh module namespace, so the
new hooks never see what the old ones kept in the file's globals, and the old workers keep
their own copy of the old ones until they exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import SETTINGS, Config, ConfigError, load_config
from .logs import AccessLog, configured_access_log, hand_to_workers

__all__ = ["RESTART_ONLY", "ConfigSources", "ReloadPlan", "changed_hooks", "next_access_log",
           "plan_reload"]

#: With ``--preload`` the master imported the app at start: a different app (or reference
#: app variant) would need that import again.
_PRELOADED = ("app", "unsafe_probe")
_PRELOAD_REASON = "--preload: the master imported the app once, at start"

#: Why each setting cannot change at a reload ("" or absent: it can).
RESTART_ONLY: dict[str, str] = {s.name: s.restart for s in SETTINGS if s.restart}


class ConfigSources:
    """Where the running settings came from, kept by the master so a HUP resolves them anew.

    Also the one place that sets ``--env`` pairs in the environment: it remembers what each
    key held before, so a reload undoes the old pairs before re-reading (an ``--env``
    ``SERVER_TIMEOUT=5`` then means at every reload what it meant at start: nothing to the
    settings) and before setting the new ones (a pair dropped from the file is gone)."""

    def __init__(self, argv: Sequence[str], cwd: str | None = None,
                 environ: MutableMapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.cwd = cwd or os.getcwd()
        self.environ = os.environ if environ is None else environ
        #: key -> its value before ``--env`` set it (None: it was unset).
        self.before_env: dict[str, str | None] = {}

    def apply_env(self, pairs: Sequence[str]) -> None:
        """Set ``KEY=VALUE`` pairs in the environment, replacing the previous ones."""
        self._undo_env()
        for pair in pairs:
            key, _, value = pair.partition("=")
            key = key.strip()
            self.before_env.setdefault(key, self.environ.get(key))
            self.environ[key] = value

    def _undo_env(self) -> None:
        for key, value in self.before_env.items():
            if value is None:
                self.environ.pop(key, None)
            else:
                self.environ[key] = value
        self.before_env.clear()

    def environ_as_at_start(self) -> dict[str, str]:
        """The environment without what ``--env`` set: what the start resolved from."""
        environ = dict(self.environ)
        for key, value in self.before_env.items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        return environ

    def reread(self, warn: Callable[[str], None]) -> Config:
        """The settings resolved again; ConfigError (the start-up error's text) if the file,
        a variable or a flag's value no longer loads (a deleted --certfile...)."""
        with self._in_start_directory():
            config, _ = load_config(self.argv, self.environ_as_at_start(), warn)
        return config

    @contextlib.contextmanager
    def _in_start_directory(self) -> Iterator[None]:
        """The master is one greenlet handling one signal at a time: a brief chdir is safe."""
        here = os.getcwd()
        if here == self.cwd:
            yield
            return
        try:
            os.chdir(self.cwd)
        except OSError as exc:
            raise ConfigError(f"cannot re-read the settings in {self.cwd!r}, where the "
                              f"server started: {exc.strerror or exc}") from None
        try:
            yield
        finally:
            os.chdir(here)


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does: the next generation's Config (restart-only settings at their
    running values), what changes now, and the restart-only settings that differ."""

    config: Config
    changed: tuple[str, ...]
    #: (name, why it needs a restart), for the settings kept at their running value.
    kept: tuple[tuple[str, str], ...]


def plan_reload(running: Config, loaded: Config) -> ReloadPlan:
    """Compare the running settings with the re-read ones; keep what needs a restart."""
    restart = dict(RESTART_ONLY)
    if running.preload:
        restart.update(dict.fromkeys(_PRELOADED, _PRELOAD_REASON))
    changed, kept, keep = [], [], {}
    for name in ("app", *(s.name for s in SETTINGS)):
        before, after = getattr(running, name), getattr(loaded, name)
        if before == after:
            continue
        if name in restart:
            kept.append((name, restart[name]))
            keep[name] = before
        else:
            changed.append(name)
    changed.extend(f"hook {name}" for name in changed_hooks(running.hooks, loaded.hooks))
    return ReloadPlan(dataclasses.replace(loaded, **keep), tuple(changed), tuple(kept))


def changed_hooks(before: Mapping[str, Callable[..., Any]],
                  after: Mapping[str, Callable[..., Any]]) -> list[str]:
    """Hooks added, removed or whose code differs (the file ran again, so every function is
    a new object: compare code; what a hook reads from the file's globals is not seen)."""
    return [name for name in sorted({*before, *after})
            if name not in before or name not in after
            or _code(before[name]) != _code(after[name])]


def _code(func: Callable[..., Any]) -> Any:
    func = inspect.unwrap(func)
    return getattr(func, "__code__", func)


def next_access_log(running: AccessLog, running_cfg: Config, cfg: Config) -> AccessLog:
    """The next generation's access log: the running stream when the target is the same
    (a new format only), else the new target opened — ConfigError in the start-up error's
    words if it cannot be."""
    if cfg.access_log == running_cfg.access_log:
        return AccessLog(running.stream, cfg.log_format, running.path, cfg.access_log_format)
    try:
        access_log = configured_access_log(cfg.access_log, cfg.log_format,
                                           cfg.access_log_format)
    except OSError as exc:
        raise ConfigError(f"cannot open access log {cfg.access_log!r}: "
                          f"{exc.strerror or exc}") from None
    hand_to_workers([access_log.path], cfg.user, cfg.group)
    return access_log
