"""A case's process, whoever starts it: the isolation's forked child or an ab side started
with another interpreter. How it starts (:func:`enter`), how what it prints is kept
(:class:`CaseOutput`), how it is ended with everything it started (:func:`kill_group`,
:func:`end_when_unread`) and how its death is told (:func:`describe_exit`)."""

from __future__ import annotations

import io
import os
import select
import signal
import sys
import threading
import time
from multiprocessing.connection import wait
from typing import Any

OUTPUT_TAIL_BYTES = 4096  # of a failed case's own output, kept in its record


_CHUNK = 65536


class CaseOutput(io.TextIOBase):
    """What a case wrote to stdout and stderr: drained from its process's output pipe,
    or written here by ``redirect_stdout`` (``--isolation none``). Only the last
    :data:`OUTPUT_TAIL_BYTES` are kept, so a model printing megabytes per call neither
    floods the tables on the harness's stdout nor fills a disk, and a failed case's
    record still shows what it said last."""

    def __init__(self) -> None:
        super().__init__()
        self.fd: int | None = None  # the read end of the case's output pipe; None at its end
        self._tail = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._keep(text.encode("utf-8", "replace"))
        return len(text)

    def _keep(self, data: bytes) -> None:
        self._tail += data
        del self._tail[:-OUTPUT_TAIL_BYTES]

    def _pump(self) -> None:
        assert self.fd is not None
        chunk = os.read(self.fd, _CHUNK)
        if chunk:
            self._keep(chunk)
        else:
            self.fd = None

    def _drain(self) -> None:
        """Keep what is in the pipe now, without waiting for a writer that goes on."""
        for _ in range(64):
            if self.fd is None or not wait([self.fd], 0):
                return
            self._pump()

    def wait_for(self, answer: Any, timeout: float) -> bool:
        """Whether ``answer`` (anything with a file descriptor) became readable within
        ``timeout`` seconds; the output is drained meanwhile, so a case never blocks on
        a full pipe."""
        deadline = time.monotonic() + timeout
        while True:
            watched = [answer] if self.fd is None else [answer, self.fd]
            ready = wait(watched, max(0.0, deadline - time.monotonic()))
            if self.fd is not None and self.fd in ready:
                self._pump()
            if answer in ready:
                self._drain()
                return True
            if time.monotonic() >= deadline:
                return False

    def finish(self, timeout: float) -> None:
        """Keep the rest of the pipe: to its end, or ``timeout`` seconds' silence."""
        while self.fd is not None and wait([self.fd], timeout):
            self._pump()

    def tail(self) -> str | None:
        return self._tail.decode("utf-8", "replace") or None


def kill_group(process: Any) -> None:
    """Kill ``process`` (a multiprocessing Process or a Popen) and every process it
    started: it leads its own process group, so a model that forks leaves no orphan."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not its group yet, or all gone
        alive = process.is_alive() if hasattr(process, "is_alive") else process.poll() is None
        if alive:
            process.kill()


def end_when_unread(fd: int) -> None:
    """Kill this process's group once nobody can read ``fd``, its answers' pipe: the
    harness is gone (even by kill -9), and an orphaned case would go on running beside
    the next one, or hang, only to fail to send its answer; what it started goes too
    where it leads its process group."""

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # a pipe's writer is told POLLERR once its reader is gone
        for _, event in poller.poll():
            if event & (select.POLLERR | select.POLLHUP):
                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-orphan-watch", daemon=True).start()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return f"process killed by {name}{hint}"
    return f"process exited with status {exitcode} without a result"


def enter(answers: int, output: int | None = None, sys_path: list[str] | None = None) -> None:
    """What every case process does first: lead its own process group (a forked child;
    a process started in a session of its own leads one already), so that it and what it
    starts are killed as one; end once nobody reads ``answers``; send what the model
    prints (file descriptors 1 and 2, C code's too) to ``output``, or to stderr, never
    into the answers; and import from the driver's ``sys_path`` where given."""
    if os.getpgrp() != os.getpid():
        os.setpgrp()
    end_when_unread(answers)
    if output is None:
        os.dup2(2, 1)
    else:
        os.dup2(output, 1)
        os.dup2(output, 2)
    if sys_path is not None:
        sys.path[:] = sys_path
