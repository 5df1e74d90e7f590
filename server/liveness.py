"""The page of shared memory a worker reports through: heartbeat, state, boot error, and
the ids of the requests in flight.

The master maps it before the fork (an anonymous ``MAP_SHARED`` mmap, so both processes see
one page) and only ever reads it; the worker writes.  Shared memory rather than gunicorn's
``fchmod`` of a temporary file (``workers/workertmp.py``) or a pipe:

* the heartbeat is a plain store of ``time.monotonic()`` (``CLOCK_MONOTONIC`` is one clock
  for every process on Linux), refreshed by a greenlet — a blocked event loop stops it, and
  reading it costs the master no system call and never blocks on a slow disk;
* the request ids in flight are where the master can read them *while the worker is stuck*:
  the worker's stack comes from a C signal handler (``faulthandler``), which can dump frames
  but not Python objects, so the ids must already sit outside the worker's heap;
* a worker that cannot import the app writes why (one line) and exits with
  :data:`BOOT_ERROR`; the master prints that line and stops.

A torn read (the master reading a slot as the worker rewrites it) can garble one id in one
log line, nothing more: the master never acts on the ids.
"""

from __future__ import annotations

import mmap
import struct
from enum import IntEnum
from time import monotonic

__all__ = ["BOOT_ERROR", "MAX_REQUEST_ID", "MAX_SLOTS", "WorkerState", "WorkerStatus"]

#: Exit code of a worker that failed to boot (its reason is in the page); gunicorn's
#: ``WORKER_BOOT_ERROR`` is 3 as well.
BOOT_ERROR = 3

#: Longest request id kept (the sanitised ``X-Request-ID`` is at most this long).
MAX_REQUEST_ID = 128
#: In-flight slots per worker at most: one per connection up to ``--worker-connections``;
#: beyond that requests are counted but not named in a timeout report.
MAX_SLOTS = 4096
_MAX_ERROR = 1024


class WorkerState(IntEnum):
    BOOTING = 0  # forked; importing the app, starting its servers
    SERVING = 1  # accepting and serving
    RETIRING = 2  # reached --max-requests: still serving, asks the master for a successor


# The layout: header fields at fixed offsets, then one fixed-size slot per request.
_BEAT = struct.Struct("=d")  # offset 0: last heartbeat, time.monotonic()
_STATE_AT = 8  # one byte: WorkerState
_ERROR_LEN = struct.Struct("=H")  # offset 16: length of the boot error, then its UTF-8
_ERROR_LEN_AT, _ERROR_AT = 16, 18
_SLOTS_AT = 2048
#: A slot: id length (0: free), padding, started (time.monotonic()), the id (truncated).
_SLOT = struct.Struct(f"=B7xd{MAX_REQUEST_ID}s")
_SLOT_HEAD = struct.Struct("=B7xd")
_SLOT_STRIDE = 144  # _SLOT.size (144), a multiple of 16


class WorkerStatus:
    """One worker's page. Created by the master before the fork, used by both processes."""

    def __init__(self, slots: int) -> None:
        self.slots = max(0, min(slots, MAX_SLOTS))
        self.mem = mmap.mmap(-1, _SLOTS_AT + self.slots * _SLOT_STRIDE)
        # Worker side: the offsets of free slots, lowest on top so that few pages are ever
        # touched. Per request this is a pop, one pack_into and one byte store (~0.5 µs).
        self._free = [_SLOTS_AT + slot * _SLOT_STRIDE for slot in range(self.slots - 1, -1, -1)]
        self._pack = _SLOT.pack_into
        self.beat()

    def close(self) -> None:
        self.mem.close()

    # -- written by the worker --------------------------------------------------------------
    def beat(self) -> None:
        _BEAT.pack_into(self.mem, 0, monotonic())

    def set_state(self, state: WorkerState) -> None:
        self.mem[_STATE_AT] = state

    def fail_boot(self, reason: str) -> None:
        """Record why the worker could not boot (truncated to 1 KiB at a character edge)."""
        data = reason.encode("utf-8")[:_MAX_ERROR].decode("utf-8", "ignore").encode("utf-8")
        self.mem[_ERROR_AT:_ERROR_AT + len(data)] = data
        _ERROR_LEN.pack_into(self.mem, _ERROR_LEN_AT, len(data))

    def request_started(self, request_id: str) -> int:
        """Name a request in flight; returns its slot for :meth:`request_finished` (-1 when
        every slot is taken). Ids are sanitised, ASCII; longer than the slot: truncated."""
        free = self._free
        if not free:
            return -1
        at = free.pop()
        data = request_id.encode("ascii", "replace")
        self._pack(self.mem, at, min(len(data), MAX_REQUEST_ID), monotonic(), data)
        return at

    def request_finished(self, slot: int) -> None:
        if slot >= 0:
            self.mem[slot] = 0  # the length byte: free
            self._free.append(slot)

    # -- read by the master -----------------------------------------------------------------
    def last_beat(self) -> float:
        return _BEAT.unpack_from(self.mem, 0)[0]

    def state(self) -> WorkerState:
        return WorkerState(self.mem[_STATE_AT])

    def boot_error(self) -> str:
        (length,) = _ERROR_LEN.unpack_from(self.mem, _ERROR_LEN_AT)
        return self.mem[_ERROR_AT:_ERROR_AT + min(length, _MAX_ERROR)].decode("utf-8", "replace")

    def in_flight(self) -> list[tuple[str, float]]:
        """``(request id, started)`` of every request in flight, oldest first."""
        found = []
        for slot in range(self.slots):
            at = _SLOTS_AT + slot * _SLOT_STRIDE
            length, started = _SLOT_HEAD.unpack_from(self.mem, at)
            if length:
                start = at + _SLOT_HEAD.size
                found.append((self.mem[start:start + length].decode("ascii", "replace"),
                              started))
        return sorted(found, key=lambda item: item[1])
