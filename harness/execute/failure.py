"""How a case's failure is told, wherever it ran: one line, the frames where it
raised (bounded), and its status (``oom``, ``shape_mismatch`` or ``error``).
"""

from __future__ import annotations

import traceback

from harness.measure.devices import is_out_of_memory
from harness.models.shapes import OutputShapeMismatch

MAX_ERROR_CHARS = 500


MAX_TRACEBACK_CHARS = 4000


def error_message(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0][:MAX_ERROR_CHARS]


def error_traceback(exc: BaseException) -> str:
    """Where a case failed, for the plugin's author (``--debug`` shows it): the innermost
    frames, then the one-line message; bounded however deep the stack or long the text."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    if len(frames) > MAX_TRACEBACK_CHARS:
        frames = "...\n" + frames[-MAX_TRACEBACK_CHARS:].partition("\n")[2]
    return frames + error_message(exc)


def failure_status(exc: BaseException) -> str:
    """A failed case's status: ``oom``, ``shape_mismatch`` or ``error``."""
    if isinstance(exc, OutputShapeMismatch):
        return "shape_mismatch"
    return "oom" if is_out_of_memory(exc) else "error"
