"""Imported once by the forkserver, so each case's child starts with one-time costs paid.

The FLOP counter's first use imports sympy, mpmath and more (about 1.2 s and 70 MiB).
Paid in the forkserver, every forked child inherits it: cases start faster, and a
case's baseline memory (and its ``--memory-limit`` head-room) is the same for a
batch-size probe as for a measurement.
"""

from harness.execute.worker import initialise_runtime

initialise_runtime()
