"""One case under ``torch.profiler``: where the time and the memory of a step go.

The profiled step is the one the benchmark times (:func:`harness.execute.workload.prepare_workload`
and :func:`~harness.execute.workload.compile_workload`), run in this process: a profile is a
diagnostic, so it needs no isolation, and the profiler's overhead never touches a
measurement. The schedule skips one step (a compiled model compiles there), records
two warm-up steps that it discards, then records ``steps`` steps.

What is written, in the case's folder: the trace, through ``tensorboard_trace_handler``,
which TensorBoard's PyTorch Profiler view (torch-tb-profiler) reads and which is also
the Chrome trace that Perfetto and ``chrome://tracing`` open (kineto saves a trace
once, so the handler's file is the export); on CUDA, the allocator's history as a
snapshot (pytorch.org/memory_viz reads it) and as an HTML timeline. The summary holds
every operator's times and memory, the peak of the memory allocated during the
profiled steps, and for a compiled case its graphs, graph breaks and the kernels the
compiler generated.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.cuda import _memory_viz
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from harness.errors import HarnessError
from harness.execute.failure import error_message
from harness.execute.workload import compile_workload, graph_counts, prepare_workload
from harness.measure.devices import default_threads, synchronize
from harness.models.spec import ModelSpec
from harness.sweep.plan import Case

VIEWER_MODULES = ("tensorboard", "torch_tb_profiler")
DEFAULT_FOLDER = Path("results") / "profiles"
DEFAULT_STEPS = 5
DEFAULT_TOP = 10  # rows of each operator table
WAIT_STEPS, WARMUP_STEPS = 1, 2
HISTORY_ENTRIES = 100_000  # CUDA allocator events kept for the snapshot
STEP_EVENT = "ProfilerStep*"  # key_averages' name for the per-step ranges
NOT_OPERATORS = (STEP_EVENT, "[memory]")
# Inductor's C++ kernels (named when kernel profiling is on) and its Triton kernels.
GENERATED_KERNEL = re.compile(r"cpp_fused|^triton_")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # an import hook that refuses it; a None in sys.modules
        return False


def view_hint(folder: Path) -> str:
    """How to look at the traces under ``folder``: TensorBoard where its PyTorch Profiler
    plugin is installed; otherwise any Chrome-trace viewer, which needs nothing installed."""
    logdir = shlex.quote(str(folder))
    if all(_installed(name) for name in VIEWER_MODULES):
        return f"view: tensorboard --logdir {logdir}"
    return (
        "view: open a *.pt.trace.json under it in ui.perfetto.dev or chrome://tracing; "
        "for TensorBoard's view, pip install 'harness[profile]', then tensorboard "
        f"--logdir {logdir}"
    )


def run_name(label: str) -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{label}"


def case_folder_name(case: Case) -> str:
    """``mlp[B=8,compile=default]`` -> ``mlp-B=8-compile=default``: no shell glob characters."""
    return re.sub(r"[^\w.=+-]", "-", case.label.rstrip("]"))


def output_folder(path: Path) -> Path:
    """Create ``path`` now, so an unwritable folder fails before anything is profiled."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"cannot write profiles to {path}: {exc.strerror}; choose a writable folder with --out"
        ) from None
    return path


@dataclass(frozen=True)
class OperatorStats:
    """One operator's totals over the profiled steps: seconds and bytes.

    Memory is on the case's device and net of what the operator freed itself;
    ``self`` excludes the operators it called.
    """

    name: str
    calls: int
    self_time: float
    total_time: float
    self_device_time: float
    total_device_time: float
    self_memory: int
    total_memory: int


@dataclass(frozen=True)
class CompileNotes:
    backend: str
    graphs: int
    graph_breaks: int
    break_reasons: tuple[tuple[str, int], ...]  # most frequent first
    generated_kernels: tuple[str, ...]


@dataclass(frozen=True)
class ProfileResult:
    case: Case
    folder: Path
    trace: Path  # TensorBoard's file; also the Chrome/Perfetto trace
    steps: int
    threads: int
    step_time: float  # mean wall time of a profiled step (the device synchronised)
    operators: tuple[OperatorStats, ...]  # every operator, in the profiler's order
    cpu_time: float  # self CPU time of everything profiled, the step ranges included
    device_time: float
    memory_peak: int  # bytes allocated on the device above the first profiled step's start
    memory_events: int
    compile: CompileNotes | None = None
    memory_snapshot: Path | None = None  # CUDA only
    memory_timeline: Path | None = None

    def top(self, key: str, n: int) -> list[OperatorStats]:
        """The ``n`` operators with the largest positive ``key`` (an OperatorStats field)."""
        ranked = sorted(self.operators, key=lambda o: getattr(o, key), reverse=True)
        return [o for o in ranked if getattr(o, key) > 0][:n]


def as_mapping(result: ProfileResult, top: int) -> dict[str, Any]:
    """What ``harness profile`` prints, as JSON: the case, its top ``top`` operators by self
    CPU time, by self device time (CUDA only, else null) and by memory, the memory peak,
    a compiled case's notes and the files. Times are seconds, memory bytes."""
    case = result.case

    def ranked(key: str) -> list[dict[str, Any]]:
        return [asdict(o) for o in result.top(key, top)]

    cuda = case.device == "cuda"
    return {
        **case.key().describe(),
        "steps": result.steps,
        "threads": result.threads,
        "step_time_s": result.step_time,
        "cpu_time_s": result.cpu_time,
        "device_time_s": result.device_time if cuda else None,
        "top_self_cpu": ranked("self_time"),
        "top_self_device": ranked("self_device_time") if cuda else None,
        "top_memory": ranked("total_memory"),
        "memory_peak_bytes": result.memory_peak,
        "memory_events": result.memory_events,
        "compile": asdict(result.compile) if result.compile else None,
        "folder": str(result.folder),
        "trace": str(result.trace),
        "memory_snapshot": str(result.memory_snapshot) if result.memory_snapshot else None,
        "memory_timeline": str(result.memory_timeline) if result.memory_timeline else None,
    }


def _operators(prof: profile, on_device: bool) -> list[OperatorStats]:
    """Every operator's totals; Python frames (``--with-stack``) stay in the trace only."""
    frames = {e.name for e in prof.events() if e.is_python_function}
    return [
        OperatorStats(
            e.key,
            e.count,
            e.self_cpu_time_total / 1e6,
            e.cpu_time_total / 1e6,
            e.self_device_time_total / 1e6,
            e.device_time_total / 1e6,
            e.self_device_memory_usage if on_device else e.self_cpu_memory_usage,
            e.device_memory_usage if on_device else e.cpu_memory_usage,
        )
        for e in prof.key_averages()
        if e.key not in frames
    ]


def _memory_peak(prof: profile, device: torch.device) -> tuple[int, int]:
    """The peak of the running sum of the profiler's allocation events on ``device``
    (frees are negative), and how many events there were."""
    kind = getattr(torch.autograd.DeviceType, device.type.upper())
    events = sorted(
        (
            e
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == kind
        ),
        key=lambda e: e.start_ns(),
    )
    level = peak = 0
    for event in events:
        level += event.nbytes()
        peak = max(peak, level)
    return peak, len(events)


def _compile_notes(case: Case, operators: list[OperatorStats]) -> CompileNotes:
    reasons = Counter(torch._dynamo.utils.counters["graph_break"]).most_common()
    kernels = tuple(o.name for o in operators if GENERATED_KERNEL.search(o.name))
    return CompileNotes(
        case.backend,
        **graph_counts(),
        break_reasons=tuple((str(r), int(n)) for r, n in reasons),
        generated_kernels=kernels,
    )


def _save_memory_history(folder: Path) -> tuple[Path, Path]:
    snapshot, timeline = folder / "cuda_memory_snapshot.pickle", folder / "cuda_memory.html"
    torch.cuda.memory._dump_snapshot(str(snapshot))
    timeline.write_text(_memory_viz.trace_plot(torch.cuda.memory._snapshot()))
    return snapshot, timeline


def profile_case(
    spec: ModelSpec, case: Case, folder: Path, steps: int = DEFAULT_STEPS, with_stack: bool = False
) -> ProfileResult:
    """Profile ``case`` (its batch size set) into ``folder``; a failing model is a HarnessError."""
    output_folder(folder)
    # kineto prints "profiler_start" lines on stderr at every level below 6; a user's
    # own KINETO_LOG_LEVEL wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    device = torch.device(case.device)
    torch.set_num_threads(case.threads or default_threads())
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    before = set(folder.glob("*.pt.trace.json"))
    history: tuple[Path | None, Path | None] = (None, None)
    try:
        workload = prepare_workload(spec, case, case.batch_size)
        with ExitStack() as stack:
            stack.enter_context(workload.context)
            if case.compile_mode != "none":
                from torch._inductor import config  # 1.7 s to import: compiled cases only

                # Inductor's C++ kernels appear in a profile under their own names only so.
                stack.enter_context(config.patch({"cpp.enable_kernel_profile": True}))
                compile_workload(workload, case, spec)
            if cuda:
                torch.cuda.memory._record_memory_history(max_entries=HISTORY_ENTRIES, device=device)
                stack.callback(
                    torch.cuda.memory._record_memory_history, enabled=None, device=device
                )
            prof = stack.enter_context(
                profile(
                    activities=activities,
                    schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=steps, repeat=1),
                    on_trace_ready=tensorboard_trace_handler(str(folder), worker_name=case.model),
                    record_shapes=True,
                    profile_memory=True,
                    with_stack=with_stack,
                )
            )
            for _ in range(WAIT_STEPS + WARMUP_STEPS + steps):
                workload.step()
                synchronize(device)  # a step's range ends when its kernels have
                prof.step()
            if cuda:
                history = _save_memory_history(folder)
    except Exception as exc:  # the model's failure, said in one line
        raise HarnessError(f"profiling {case.label} failed: {error_message(exc)}") from exc
    (trace,) = set(folder.glob("*.pt.trace.json")) - before
    every = _operators(prof, on_device=device.type != "cpu")
    steps_event = next(o for o in every if o.name == STEP_EVENT)
    operators = [o for o in every if o.name not in NOT_OPERATORS]
    peak, events = _memory_peak(prof, device)
    return ProfileResult(
        case=case,
        folder=folder,
        trace=trace,
        steps=steps,
        threads=torch.get_num_threads(),
        step_time=steps_event.total_time / steps_event.calls,
        operators=tuple(operators),
        cpu_time=sum(o.self_time for o in every),
        device_time=sum(o.self_device_time for o in every),
        memory_peak=peak,
        memory_events=events,
        compile=_compile_notes(case, operators) if case.compile_mode != "none" else None,
        memory_snapshot=history[0],
        memory_timeline=history[1],
    )
