"""The axes of a sweep, each declared once: its options on the command line and in the
pytest plugin, its key in a suite's ``[sweep]`` table, its field in a request and in a case,
the values it accepts and its default.

The CLI, the suite loader, the plan and the pytest plugin all read :data:`AXES`, so an axis
changed here changes everywhere it is spelled. Standard library only: ``harness --help``
reads this without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")
PRECISIONS = ("cast", "amp")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
MODES = ("infer", "train")
AUTO = "auto"
MAX_BATCH = 2**31
MAX_THREADS = 4096


@dataclass(frozen=True)
class Flag:
    """An option as one command line spells it; ``{role}`` in ab's per-side options."""

    names: tuple[str, ...]
    metavar: str | None = None
    help: str | None = None
    default: str | None = None

    @property
    def dest(self) -> str:
        """The attribute its value is parsed into."""
        return self.names[0].lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Axis:
    """One axis of a sweep under all its names.

    It accepts one of ``values``; without them, integers from 1 to ``most`` (and ``auto``
    if ``auto``); with neither, a name. ``default`` is what a case gets when neither the
    request nor the suite sets the axis (``None``: the model or the machine decides).
    An axis that ``sweeps`` takes several values, one case each.
    """

    name: str  # as messages say it: "unknown compile mode ..."
    suite_key: str | None  # in a suite's [sweep] table; None: a suite cannot set it
    request_field: str  # of harness.sweep.plan.Request; run headers store it, for --resume
    case_field: str  # of harness.sweep.plan.Case
    sweeps: bool
    option: Flag  # harness run, ab and bisect: the sweep
    one: Flag  # harness profile: one case
    values: tuple[str, ...] | None = None
    most: int | None = None
    auto: bool = False
    default: Any = None
    pytest: Flag | None = None  # the pytest plugin's option, if it has one


BATCH = Axis(
    name="batch size",
    suite_key="batch_sizes",
    request_field="batch_sizes",
    case_field="batch_size",
    sweeps=True,
    most=MAX_BATCH,
    auto=True,
    option=Flag(
        ("--batch-sizes", "-b"),
        "N[,N]|auto",
        "batch sizes, or 'auto' for the largest that fits (run only) (default: the "
        "suite's, else each model's)",
    ),
    one=Flag(
        ("--batch-size", "-b"), "N", "batch size (default: the largest of the model's defaults)"
    ),
    pytest=Flag(
        ("--harness-batch-sizes",), "N[,N]", "batch sizes (default: the suite's, else each model's)"
    ),
)
DEVICE = Axis(
    name="device",
    suite_key="devices",
    request_field="devices",
    case_field="device",
    sweeps=True,
    values=DEVICES,
    option=Flag(
        ("--devices", "--device"),
        "cpu,cuda,mps",
        "devices (default: cpu plus any accelerator present)",
    ),
    one=Flag(("--device",), help="default cpu", default="cpu"),
    pytest=Flag(
        ("--harness-devices",),
        "DEVICE[,DEVICE]",
        "devices (default: cpu plus any accelerator present)",
    ),
)
DTYPE = Axis(
    name="dtype",
    suite_key="dtypes",
    request_field="dtypes",
    case_field="dtype",
    sweeps=True,
    values=DTYPES,
    default="float32",
    option=Flag(("--dtypes", "--dtype"), "float32,float16,bfloat16", "dtypes (default float32)"),
    one=Flag(("--dtype",), help="default float32", default="float32"),
    pytest=Flag(("--harness-dtypes",), "DTYPE[,DTYPE]", "dtypes (default float32)"),
)
PRECISION = Axis(
    name="precision",
    suite_key="precision",
    request_field="precision",
    case_field="precision",
    sweeps=False,
    values=PRECISIONS,
    default="cast",
    option=Flag(
        ("--precision",),
        help="'cast' runs model and inputs in the dtype (default); "
        "'amp' keeps float32 weights under torch.autocast",
    ),
    one=Flag(("--precision",), help="cast (default) or amp"),
)
COMPILE = Axis(
    name="compile mode",
    suite_key="compile",
    request_field="compile_modes",
    case_field="compile_mode",
    sweeps=True,
    values=COMPILE_MODES,
    default="none",
    option=Flag(
        ("--compile",),
        "none,default,...",
        "torch.compile modes: none, default, reduce-overhead, max-autotune (default none)",
    ),
    one=Flag(("--compile",), help="torch.compile mode (default none)", default="none"),
)
BACKEND = Axis(
    name="backend",
    suite_key="backend",
    request_field="backend",
    case_field="backend",
    sweeps=False,
    default="inductor",
    option=Flag(("--backend",), "NAME", "torch.compile backend (default inductor)"),
    one=Flag(("--backend",), "NAME", "torch.compile backend (default inductor)"),
)
MODE = Axis(
    name="mode",
    suite_key="modes",
    request_field="modes",
    case_field="mode",
    sweeps=True,
    values=MODES,
    default="infer",
    option=Flag(
        ("--mode",),
        "infer,train",
        "inference and/or a training step: forward, loss, backward, SGD step (default infer)",
    ),
    one=Flag(("--mode",), help="inference or a training step (default infer)", default="infer"),
)
THREADS = Axis(
    name="threads",
    suite_key=None,
    request_field="threads",
    case_field="threads",
    sweeps=False,
    most=MAX_THREADS,
    option=Flag(("--threads",), "N", "torch intra-op threads per case"),
    one=Flag(("--threads",), "N", "torch intra-op threads"),
)

AXES = (BATCH, DEVICE, DTYPE, PRECISION, COMPILE, BACKEND, MODE, THREADS)
"""Every axis, in the order of the command line's help."""

SIDES = (
    (COMPILE, Flag(("--{role}-compile",), "MODE", "the {role}'s torch.compile mode")),
    (DTYPE, Flag(("--{role}-dtype",), "DTYPE")),
    (PRECISION, Flag(("--{role}-precision",), "cast|amp")),
    (BACKEND, Flag(("--{role}-backend",), "NAME")),
    (THREADS, Flag(("--{role}-threads",), "N")),
)
"""What may differ between the sides of ``harness ab``, with its per-side options."""


def requested(args: Any, one: bool = False) -> dict[str, Any]:
    """The request fields of parsed options: a sweep's, or with ``one`` those of one case,
    each value as a sweep of one."""
    fields = {}
    for axis in AXES:
        value = getattr(args, (axis.one if one else axis.option).dest)
        fields[axis.request_field] = (value,) if one and axis.sweeps and value else value
    return fields


def side_options(args: Any, role: str) -> dict[str, Any]:
    """The case fields that ab's ``--ROLE-*`` options set, by case field."""
    given = {axis.case_field: getattr(args, flag.dest.format(role=role)) for axis, flag in SIDES}
    return {field: value for field, value in given.items() if value is not None}


def expand_dims(dims: Mapping[str, Sequence[int]]) -> list[dict[str, int]]:
    """The cartesian product of per-dimension value lists: {H: [64, 128]} -> 2 dicts."""
    combos: list[dict[str, int]] = [{}]
    for name, values in dims.items():
        combos = [{**combo, name: v} for combo in combos for v in values]
    return combos
