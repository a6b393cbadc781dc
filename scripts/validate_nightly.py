"""Does the interleaved nightly gate stay quiet on unchanged nights and name a 3 % regression?

    python scripts/validate_nightly.py [--nights 10] [--suites smoke] [--model mlp]
                                       [--slowdown 3] [--ab-time 120] [--out DIR]

A clone of this repository under ``--out`` lives through ``--nights`` nights: each night
is a commit that changes nothing a model does (a comment in the model's plugin module),
then ``scripts/nightly`` runs in the clone as CI runs it, with the previous night's
results as its baseline, so its gate times the previous night's commit against this
one, turn about. After them, one more night whose commit makes ``--model`` exactly
``--slowdown`` percent slower on this machine: a forward hook that burns that share of
the model's median latency (measured the first night) in a busy loop. The unchanged
nights should pass; the last should fail and name its commit. Each night's files stay
under ``--out``; the summary goes to ``DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.models.registry import load_registry
from harness.store.results import load

ROOT = Path(__file__).resolve().parents[1]
BURN = """

# validate_nightly.py: {percent} % of this model's median latency, burnt in every call
import time as _time

_DELAY = {delay!r}


def _burn(module, inputs, output):
    end = _time.perf_counter() + _DELAY
    while _time.perf_counter() < end:
        pass
    return output


_{name}_unburnt = {name}


def {name}(*args, **kwargs):
    model = _{name}_unburnt(*args, **kwargs)
    model.register_forward_hook(_burn)
    return model
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=v@v", "-c", "user.name=v", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def night(repo: Path, out: Path, baseline: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(ROOT / "scripts" / "nightly"),
        "--out",
        str(out),
        "--suites",
        args.suites,
        "--ab-time",
        str(args.ab_time),
    ]
    if baseline:
        command += ["--baseline", str(baseline)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    (out / "log.txt").write_text(done.stdout + done.stderr)
    cases = json.loads((out / "ab.json").read_text()) if (out / "ab.json").exists() else []
    return {
        "commit": _git(repo, "rev-parse", "HEAD"),
        "exit": done.returncode,
        "time_s": time.monotonic() - started,
        "regressions": [
            line for line in done.stdout.splitlines() if line.startswith("nightly: REGRESSION")
        ],
        "verdicts": {
            v: sum(c["verdict"] == v for c in cases) for v in sorted({c["verdict"] for c in cases})
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=10, help="unchanged nights")
    parser.add_argument("--suites", default="smoke")
    parser.add_argument("--model", default="mlp", help="the model made slower the last night")
    parser.add_argument("--slowdown", type=float, default=3.0, help="percent (default 3)")
    parser.add_argument("--ab-time", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=Path("results/validation/nightly"))
    args = parser.parse_args()
    out = args.out.resolve()
    repo = out / "repo"
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    registered = load_registry().model(args.model)
    plugin = repo / Path(registered.file or "").resolve().relative_to(ROOT)  # its module
    nights: list[dict[str, Any]] = []
    baseline = None
    for index in range(args.nights + 2):  # the first night, the unchanged ones, the slower
        folder = out / f"night-{index:02d}"
        if index == args.nights + 1:
            first = load(out / "night-00" / "results.jsonl")
            median = float(first[first["model"] == args.model]["latency.median"].iloc[0])
            plugin.write_text(
                plugin.read_text()
                + BURN.format(
                    percent=args.slowdown,
                    delay=median * args.slowdown / 100,
                    name=registered.spec.constructor.__name__,
                )
            )
            message = f"{args.model}: {args.slowdown:g} % slower"
        else:
            plugin.write_text(plugin.read_text() + f"# night {index}\n")
            message = f"night {index}: nothing a model does"
        _git(repo, "commit", "-qam", message)
        folder.mkdir(parents=True, exist_ok=True)
        result = night(repo, folder, baseline, args)
        result["kind"] = (
            "first" if index == 0 else "slower" if index == args.nights + 1 else "unchanged"
        )
        nights.append(result)
        baseline = folder / "results.jsonl"
        print(
            f"night {index} ({result['kind']}): exit {result['exit']}, "
            f"{result['verdicts']}, {len(result['regressions'])} regressions "
            f"{result['regressions']}, {result['time_s'] / 60:.1f} min",
            flush=True,
        )
        (out / "summary.json").write_text(json.dumps(nights, indent=2))
    unchanged = [n for n in nights if n["kind"] == "unchanged"]
    print(
        f"unchanged nights failed: {sum(n['exit'] != 0 for n in unchanged)} of "
        f"{len(unchanged)}; the slower night: exit {nights[-1]['exit']}, "
        f"{nights[-1]['regressions']}"
    )


if __name__ == "__main__":
    main()
