"""A year of a fleet's nights: the results store against the JSON Lines files, side by side.

    python scripts/store_scale.py generate [--kinds 5] [--cases 500] [--nights 365]
                                           [--samples 30] [--out DIR]
    python scripts/store_scale.py ingest [--out DIR] [--store OTHER --kinds K --nights N]
    python scripts/store_scale.py measure [--out DIR] [--limit S] [--json PATH]

**generate** writes ``DIR/jsonl/KIND/NIGHT.jsonl``: for each of ``--kinds`` hardware kinds
(a CPU-only kind and GPU kinds, each with its own environment fingerprint), one run a
night of ``--cases`` cases (``--cases / 5`` models at five batch sizes), realistic case
records as the harness writes them (the lines of ``ResultsWriter``: latency statistics
with ``--samples`` samples, memory, FLOPs, heartbeats). Each case's level is scaled every
night by independent 2 % noise, its samples scatter by 1 % inside the run, and
``STEPS`` cases of each kind take a lasting 5 % step (slower or faster) at a random night
(``DIR/truth.json``).

**ingest** puts every night into ``DIR/store``, one ``Store.ingest`` a night, timed.

**measure** times, each in a fresh process (wall time and peak RSS, as ``/usr/bin/time``
reads them), the store's and the files' answers to the same questions: ``history`` for
one model over the year of every kind; ``history`` of everything (the files per kind, as
one would run it today: a folder of results mixes kinds); ``report`` of one kind's last 30
nights; ``compare`` of two nights. It checks that the steps found from the store and from
each kind's files are the same, and against the injected truth.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness.measure import environment
from harness.store.columnar import Store
from harness.store.record import CaseRecord, RunHeader

START = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)  # the first night, 02:00 UTC
BATCHES = (1, 2, 4, 8, 16)
STEPS = 4  # cases a kind with a 5 % step
NOISE, SCATTER, STEP = 0.02, 0.01, 0.05
KINDS = (
    ("cpu-x86", None),
    ("a100", "NVIDIA A100-SXM4-80GB"),
    ("h100", "NVIDIA H100 80GB HBM3"),
    ("l4", "NVIDIA L4"),
    ("cpu-arm", None),
)
HARNESS = [sys.executable, "-m", "harness"]


def _environment(
    base: dict[str, Any], kind: str, gpu: str | None, night: int, commit: str
) -> dict[str, Any]:
    env = dict(base)
    env.update(
        hostname=f"{kind}-node-{night % 7:02d}",
        time=(START + timedelta(days=night)).isoformat(),
        git={"commit": commit, "dirty": False},
        gpus=[{"name": gpu, "memory_bytes": 80 * 2**30, "capability": [9, 0]}] if gpu else [],
        cpu_model="Neoverse-V2" if kind == "cpu-arm" else env.get("cpu_model"),
        machine="aarch64" if kind == "cpu-arm" else env.get("machine"),
    )
    return env


def _case(model: str, batch: int, draw: np.ndarray, q: np.ndarray) -> CaseRecord:
    """A record as a run writes it, from its samples and their quantiles (5, 25, 50, 75, 95)."""
    median = float(q[2])
    return CaseRecord(
        model=model,
        batch_size=batch,
        dims={"H": 64, "C": 3},
        suite="fleet",
        plugin="harness_plugins.synthetic",
        threads=16,
        params=1_234_567,
        latency={
            "median": median,
            "mean": float(draw.mean()),
            "q25": float(q[1]),
            "q75": float(q[3]),
            "p5": float(q[0]),
            "p95": float(q[4]),
            "min": float(draw.min()),
            "max": float(draw.max()),
            "iqr": float(q[3] - q[1]),
            "n": len(draw),
            "per": "call",
            "block_size": 1,
            "warmup": 5,
            "samples": draw.tolist(),
        },
        throughput=batch / median,
        heartbeat={"before": 0.00101, "after": 0.00102},
        memory={"cpu_peak_rss_bytes": 512 * 2**20 + batch * 2**20, "params_bytes": 4_938_268},
        flops={"per_step": 2.1e9 * batch, "achieved_per_s": 2.1e9 * batch / median},
        isolation="process",
    )


def generate(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    models = [f"fleet_{i:03d}" for i in range(args.cases // len(BATCHES))]
    truth: dict[str, list[dict[str, Any]]] = {}
    started = time.monotonic()
    base = environment.collect()
    for kind, gpu in KINDS[: args.kinds]:
        folder = args.out / "jsonl" / kind
        folder.mkdir(parents=True, exist_ok=True)
        levels = rng.uniform(np.log(2e-4), np.log(2e-1), (len(models), len(BATCHES)))
        noise = rng.normal(0, NOISE, (args.nights, len(models), len(BATCHES)))
        stepped = rng.choice(len(models) * len(BATCHES), STEPS, replace=False)
        truth[kind] = []
        for j, flat in enumerate(stepped):
            night = int(rng.integers(14, args.nights - 14))
            ratio = 1 + STEP if j % 2 == 0 else 1 / (1 + STEP)
            m, b = divmod(int(flat), len(BATCHES))
            noise[night:, m, b] += math.log(ratio)
            truth[kind].append(
                {"model": models[m], "batch_size": BATCHES[b], "night": night, "ratio": ratio}
            )
        for night in range(args.nights):
            commit = f"{night:08x}" + "c0ffee" * 5 + "ab"
            header = RunHeader(
                command=("harness", "run", "--suite", "fleet"),
                environment=_environment(base, kind, gpu, night, commit),
                settings={"max_time": 0.5, "warmup": 5},
            )
            level = np.exp(levels + noise[night])[..., None]
            draws = level * rng.lognormal(0, SCATTER, (*levels.shape, args.samples))
            quantiles = np.percentile(draws, [5, 25, 50, 75, 95], axis=-1)
            lines = [header.to_json()]
            for m, model in enumerate(models):
                for b, batch in enumerate(BATCHES):
                    record = _case(model, batch, draws[m, b], quantiles[:, m, b])
                    lines.append(replace(record, run_id=header.run_id).to_json())
            # the lines ResultsWriter writes, without its fsync after each case
            text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)
            (folder / f"night-{night:03d}.jsonl").write_text(text)
        print(f"{kind}: {args.nights} nights ({time.monotonic() - started:.0f} s)", flush=True)
    (args.out / "truth.json").write_text(json.dumps(truth, indent=2))


def ingest(args: argparse.Namespace) -> None:
    """Every night into ``DIR/store``, or with ``--store`` the first ``--nights`` of
    ``--kinds`` kinds into another (the time a night takes, on its own)."""
    store = Store.open(args.store or args.out / "store", create=True)
    times = []
    for folder in sorted((args.out / "jsonl").iterdir())[: args.kinds]:
        for path in sorted(folder.glob("*.jsonl"))[: args.nights]:
            started = time.perf_counter()
            store.ingest(path, kind=folder.name)  # as a fleet names its kinds
            times.append(time.perf_counter() - started)
        print(f"{folder.name}: ingested ({len(times)} nights so far)", flush=True)
    if not args.store:
        (args.out / "ingest.json").write_text(json.dumps({"seconds": times}))
    print(_spread("ingest a night", times))


def _spread(what: str, times: list[float]) -> str:
    times = sorted(times)
    return (
        f"{what}: median {statistics.median(times):.3f} s, p90 "
        f"{times[int(0.9 * (len(times) - 1))]:.3f} s, max {times[-1]:.3f} s ({len(times)})"
    )


def timed(command: list[str], limit: float) -> dict[str, Any]:
    """Wall seconds and peak RSS of one command in a fresh process; its stdout kept."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"seconds": None, "peak_rss_bytes": None, "error": f"over {limit:.0f} s"}
    seconds = time.perf_counter() - started
    usage = _children_peak()
    result = {"seconds": seconds, "peak_rss_bytes": usage, "returncode": process.returncode}
    if process.returncode not in (0, 1):
        result["error"] = err.decode(errors="replace").strip().splitlines()[-1:]
    result["stdout"] = out.decode(errors="replace")
    return result


def _children_peak() -> int:
    """The largest resident set of any child waited for so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def _fresh(command: list[str], limit: float) -> dict[str, Any]:
    """``timed`` in its own interpreter, so each peak is that command's alone."""
    probe = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import store_scale as s; "
        "print(json.dumps(s.timed(json.loads(sys.argv[2]), float(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(Path(__file__).parent), json.dumps(command), str(limit)],
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def _steps(document: str) -> list[tuple[str, str, float]]:
    data = json.loads(document)
    return sorted((s["case"], s["run_id"], s["ratio"], s["q_value"]) for s in data["steps"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    store, jsonl = args.out / "store", args.out / "jsonl"
    kinds = sorted(p.name for p in jsonl.iterdir())
    last = sorted((jsonl / kinds[0]).glob("*.jsonl"))
    since = json.loads(last[-30].read_text().splitlines()[0])["environment"]["time"][:10]
    model = "fleet_007"
    limit = args.limit
    rows: dict[str, dict[str, Any]] = {}

    def both(name: str, from_store: list[str], from_files: list[list[str]]) -> list[str]:
        """Times both; the files' outputs back, one per command."""
        row = {"store": _fresh([*HARNESS, *from_store], limit)}
        parts = [_fresh([*HARNESS, *c], limit) for c in from_files]
        failed = [p for p in parts if p.get("seconds") is None]
        row["jsonl"] = failed[0] if failed else {
            "seconds": sum(p["seconds"] for p in parts),
            "peak_rss_bytes": max(p["peak_rss_bytes"] for p in parts),
        }  # fmt: skip
        row["store"].pop("stdout", None)
        rows[name] = row
        print(f"{name}: {_line(row)}", flush=True)
        return [p.get("stdout", "") for p in parts]

    both("history, one model, all kinds",
         ["history", str(store), "--model", model, "--json"],
         [["history", str(jsonl / k), "--model", model, "--json"] for k in kinds])  # fmt: skip
    per_kind = both("history, everything", ["history", str(store), "--json"],
                    [["history", str(jsonl / k), "--json"] for k in kinds])  # fmt: skip
    both("report, one kind's last 30 nights",
         ["report", str(store), "--kind", kinds[0], "--since", since, "-o", "/tmp/scale-s.html"],
         [["report", *map(str, last[-30:]), "-o", "/tmp/scale-j.html"]])  # fmt: skip
    first_id = json.loads(last[-2].read_text().splitlines()[0])["run_id"]
    second_id = json.loads(last[-1].read_text().splitlines()[0])["run_id"]
    both("compare, two nights",
         ["compare", f"{store}#{first_id}", f"{store}#{second_id}", "--json"],
         [["compare", str(last[-2]), str(last[-1]), "--json"]])  # fmt: skip

    # the same steps from the store, one kind at a time, as from that kind's files
    same = {}
    for kind, theirs in zip(kinds, per_kind):
        mine = _fresh([*HARNESS, "history", str(store), "--kind", kind, "--json"], limit)
        a, b = _steps(mine["stdout"]), _steps(theirs) if theirs else None
        same[kind] = {"identical": a == b, "steps": len(a), "steps_from_files": b and len(b)}
    rows["steps identical"] = same
    print(f"steps identical, per kind: {same}", flush=True)
    truth = json.loads((args.out / "truth.json").read_text())
    rows["truth"] = {k: len(v) for k, v in truth.items()}
    ingest_times = json.loads((args.out / "ingest.json").read_text())["seconds"]
    rows["ingest"] = {"line": _spread("ingest a night", ingest_times)}
    sizes = {name: _size(args.out / name) for name in ("jsonl", "store")}
    rows["sizes"] = sizes
    print(rows["ingest"]["line"], f"sizes: {sizes}")
    return rows


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _line(row: dict[str, Any]) -> str:
    def one(side: dict[str, Any] | None) -> str:
        if not side:
            return "-"
        if side.get("seconds") is None:
            return side.get("error", "failed")
        return f"{side['seconds']:.1f} s, {side['peak_rss_bytes'] / 2**20:.0f} MiB"

    return f"store {one(row.get('store'))}; files {one(row.get('jsonl'))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("generate", "ingest", "measure"))
    parser.add_argument("--out", type=Path, default=Path("results/scale"))
    parser.add_argument("--kinds", type=int, default=5)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=900, help="seconds a command may take")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--store", type=Path, help="ingest: into this store instead")
    args = parser.parse_args()
    if args.what == "generate":
        generate(args)
    elif args.what == "ingest":
        ingest(args)
    else:
        rows = measure(args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
