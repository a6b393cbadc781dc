"""Does `harness ab` catch a true 2 % slowdown in real models, and how often does it cry wolf?

    python scripts/validate_ab.py [--rounds 20] [--aa-rounds 34] [--one-percent-rounds 10]
                                  [--out DIR] [--threshold 0.02] [--time 120]
                                  [--shard I/N] [--from-end]
    python scripts/validate_ab.py --analyse DIR

A throwaway plugin package (``abval``, in a git repository under ``--out``) defines three
models of different kinds from the built-in architectures, each with one dimension its
work scales with exactly:

* ``abval_lstm`` (recurrent): the built-in LSTM layer over ``T`` steps, T = 100, batch 16
  (at batch 4 its 2 % more steps cost only 0.8 % more time, measured on 2026-12-01: the
  per-call overhead does not scale with T; at batch 16 they cost 2.0 %);
* ``abval_conv`` (convolutional): the built-in Conv1d(1, 1024, 3) layer, 'same' padding,
  over a signal of ``T`` = 500 samples;
* ``abval_mlp`` (dense): a stack of ``L`` = 100 identical Linear(256, 256) + ReLU blocks.

Its history has three commits: ``base``; ``slower-2pct`` (T = 102, T = 510, L = 102:
exactly 2 % more steps, samples and blocks); ``slower-1pct`` (T = 101, 505, L = 101). Each
round runs ``harness ab`` inside that checkout, as a user would, once for each model:
``--baseline base --candidate slower-2pct`` (the true slowdown), ``base`` against itself
(A/A) and, in the 1 % rounds, ``base`` against ``slower-1pct``; the kinds of round are
shuffled. Every session's JSON and results files are kept under ``--out``.

The same sessions are also judged by asv's rule (its own ``_is_result_better``, factor
1.1 and 1.02, on each side's pooled samples, as asv pools its processes) and by
pytest-benchmark's ``--benchmark-compare-fail`` with ``min:5%`` and ``min:2%`` (its own
parser), so every rule sees the same samples. Needs the dev extra.

``--shard I/N`` runs every N-th round of the one shuffled schedule, starting at round I:
N runners, each started under ``taskset -c CORE``, share the machine's cores and one
``--out`` (each session's two processes are pinned to the runner's core); a runner with
``--from-end`` takes its rounds last first, so two runners of one shard meet midway
(each round is claimed by the runner that starts it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from other_rules import Rule, asv_rule, pytest_benchmark_rule

from harness.store.results import load

MODELS = ("abval_lstm", "abval_conv", "abval_mlp")
KINDS = {"2pct": "slower-2pct", "aa": "base", "1pct": "slower-1pct"}  # candidate commit
WORK = {"base": (100, 500, 100), "slower-2pct": (102, 510, 102), "slower-1pct": (101, 505, 101)}

PLUGIN = '''
"""Validation models whose work scales exactly with one dimension (scripts/validate_ab.py)."""

from torch import nn

import harness
from harness import Dim, Input, ModelSpec
from harness_plugins.sequence import Conv1dLayer, lstm

T_LSTM, T_CONV, BLOCKS = {work}


def stack(blocks: int = 100, width: int = 256) -> nn.Sequential:
    return nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.ReLU())
                           for _ in range(blocks)))


@harness.hookimpl
def harness_models():
    return [
        ModelSpec(name="abval_lstm", constructor=lstm, inputs=[Input("x", "(B, T, NIN)")],
                  outputs=["(B, T, HID)", "(1, B, HID)", "(1, B, HID)"],
                  dims={{"NIN": Dim(100, kwarg="num_inputs"),
                        "HID": Dim(512, kwarg="hidden_size"), "T": T_LSTM}},
                  batch_sizes=(16,)),
        ModelSpec(name="abval_conv", constructor=Conv1dLayer, inputs=[Input("x", "(B, 1, T)")],
                  outputs=["(B, 1024, T)"], kwargs={{"padding": "same"}},
                  dims={{"T": T_CONV}}, batch_sizes=(8,)),
        ModelSpec(name="abval_mlp", constructor=stack, inputs=[Input("x", "(B, 256)")],
                  outputs=["(B, 256)"], dims={{"L": Dim(BLOCKS, kwarg="blocks")}},
                  batch_sizes=(64,)),
    ]
'''
PYPROJECT = """
[project]
name = "abval"
version = "0.0.1"

[project.entry-points."harness.plugins"]
abval = "abval.plugin"
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=v@v", "-c", "user.name=v", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def make_package(repo: Path) -> None:
    """The plugin package's checkout, one commit per level of work, tagged by name."""
    (repo / "src" / "abval").mkdir(parents=True)
    (repo / "src" / "abval" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text(PYPROJECT.lstrip())
    _git(repo, "init", "-q")
    for name in ("base", "slower-2pct", "slower-1pct"):
        (repo / "src" / "abval" / "plugin.py").write_text(
            textwrap.dedent(PLUGIN.format(work=WORK[name])).lstrip()
        )
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", name)
        _git(repo, "tag", name)
        if name != "base":
            _git(repo, "checkout", "-q", "base")  # each slowdown is a child of base
    _git(repo, "checkout", "-q", "base")


def measure(
    out: Path,
    rounds: Mapping[str, int],
    threshold: float,
    max_time: float,
    shard: tuple[int, int] = (0, 1),
    from_end: bool = False,
) -> None:
    repo = out / "package"
    if not repo.exists():
        make_package(repo)
    (out / "sessions").mkdir(exist_ok=True)  # ab makes only a folder's last part elsewhere
    (out / "json").mkdir(exist_ok=True)
    schedule = [kind for kind, count in rounds.items() for _ in range(count)]
    random.Random(0).shuffle(schedule)
    started = time.monotonic()
    order = list(enumerate(schedule))
    for index, kind in reversed(order) if from_end else order:
        name = f"{index:03d}-{kind}"
        if index % shard[1] != shard[0] or (out / "json" / f"{name}.json").exists():
            continue  # another runner's round, or measured before an interruption
        claim = out / "json" / f".{name}.claim"  # two runners of one shard meet midway
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        try:
            cases = _round(repo, out / "sessions" / name, kind, threshold, max_time)
        finally:
            claim.unlink()
        (out / "json" / f"{name}.json").write_text(json.dumps({"cases": cases}, indent=2))
        verdicts = ", ".join(f"{c['model']} {c['verdict']} {c['time_s']:.0f} s" for c in cases)
        print(
            f"[{index + 1}/{len(schedule)}] {kind}: {verdicts} "
            f"({(time.monotonic() - started) / 60:.0f} min)",
            flush=True,
        )


def _round(
    repo: Path, sessions: Path, kind: str, threshold: float, max_time: float
) -> list[dict[str, Any]]:
    """One round: ``harness ab`` inside the package's checkout, once for each model (each
    judged on its own: no Benjamini-Hochberg across them)."""
    cases = []
    for model in MODELS:
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "ab", "-m", model, "--baseline", "base",
             "--candidate", KINDS[kind], "--threshold", str(threshold), "--time",
             str(max_time), "--out", str(sessions), "--json", "-q"],
            cwd=repo,
            capture_output=True,
            text=True,
        )  # fmt: skip
        if not done.stdout.startswith("{"):
            raise SystemExit(
                f"{sessions.name}: harness ab failed ({done.returncode}): {done.stderr}"
            )
        cases += json.loads(done.stdout)["cases"]
    return cases


def analyse(out: Path) -> dict[str, Any]:
    """Verdicts, times and the other rules' calls, per kind of round and model."""
    rules: dict[str, Rule] = {
        "asv compare (factor 1.1)": asv_rule(1.1),
        "asv compare (factor 1.02)": asv_rule(1.02),
        "pytest-benchmark min:5%": pytest_benchmark_rule("min:5%"),
        "pytest-benchmark min:2%": pytest_benchmark_rule("min:2%"),
    }
    sessions: list[dict[str, Any]] = []
    for path in sorted((out / "json").glob("*.json")):
        kind = path.stem.split("-", 1)[1]
        folders = sorted((out / "sessions" / path.stem).iterdir())
        frames = [
            load([f / f"{role}.jsonl" for f in folders]) for role in ("baseline", "candidate")
        ]
        for case in json.loads(path.read_text())["cases"]:
            rows = [
                f[(f["model"] == case["model"]) & (f["status"] == "ok")].to_dict("records")
                for f in frames
            ]
            sessions.append(
                {
                    "kind": kind,
                    "model": case["model"],
                    "verdict": case["verdict"],
                    "ratio": case.get("ratio"),
                    "time_s": case.get("time_s"),
                    "pairs": case.get("pairs"),
                    "rules": {name: rule(*rows) for name, rule in rules.items()}
                    if all(rows)
                    else {},
                }
            )
    summary: dict[str, Any] = {}
    for kind in KINDS:
        mine = [s for s in sessions if s["kind"] == kind]
        if not mine:
            continue
        alarm = "slower" if kind != "aa" else ("slower", "faster")
        times = sorted(s["time_s"] for s in mine if s["time_s"] is not None)
        summary[kind] = {
            "sessions": len(mine),
            "harness": sum(s["verdict"] in alarm for s in mine) / len(mine),
            "verdicts": {
                v: sum(s["verdict"] == v for s in mine)
                for v in sorted({s["verdict"] for s in mine})
            },
            "by_model": {
                m: sum(s["verdict"] in alarm for s in mine if s["model"] == m)
                / max(1, sum(s["model"] == m for s in mine))
                for m in MODELS
            },
            "time_s": {
                "median": statistics.median(times),
                "p90": times[int(0.9 * len(times))],
                "max": times[-1],
            },
            "ratios": {
                m: statistics.median(s["ratio"] for s in mine if s["model"] == m) for m in MODELS
            },
            "rules": {
                name: sum(s["rules"].get(name, False) for s in mine) / len(mine) for name in rules
            },
        }
    all_times = sorted(s["time_s"] for s in sessions if s["time_s"] is not None)
    summary["all_time_s"] = {
        "median": statistics.median(all_times),
        "p90": all_times[int(0.9 * len(all_times))],
        "max": all_times[-1],
    }
    return summary


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"--shard {text!r}: give I/N with 0 <= I < N, e.g. 0/2")
    return int(index), int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the 2 %% slowdown")
    parser.add_argument("--aa-rounds", type=int, default=34, help="rounds of A/A")
    parser.add_argument("--one-percent-rounds", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.02)
    parser.add_argument("--time", type=float, default=120.0, help="harness ab --time")
    parser.add_argument("--out", type=Path, default=Path("results/validation/ab"))
    parser.add_argument("--analyse", type=Path, metavar="DIR", help="judge recorded rounds")
    parser.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N", help="run rounds I, I+N, ..."
    )
    parser.add_argument(
        "--from-end", action="store_true", help="take the rounds last first (a second runner)"
    )
    args = parser.parse_args()
    out = args.analyse or args.out
    if not args.analyse:
        out.mkdir(parents=True, exist_ok=True)
        measure(
            out.resolve(),
            {"2pct": args.rounds, "aa": args.aa_rounds, "1pct": args.one_percent_rounds},
            args.threshold,
            args.time,
            args.shard,
            args.from_end,
        )
    summary = analyse(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    names = {"2pct": "2 % slowdown", "aa": "A/A (no change)", "1pct": "1 % slowdown"}
    for kind, row in summary.items():
        if kind == "all_time_s":
            continue
        what = "false alarms" if kind == "aa" else "detected"
        print(
            f"{names[kind]}: {row['sessions']} sessions, harness {what} {row['harness']:.1%} "
            f"{row['verdicts']}, by model {row['by_model']}; time to verdict median "
            f"{row['time_s']['median']:.0f} s, p90 {row['time_s']['p90']:.0f} s, max "
            f"{row['time_s']['max']:.0f} s; median ratios {row['ratios']}"
        )
        for name, share in row["rules"].items():
            print(f"    {name}: {share:.1%}")
    t = summary["all_time_s"]
    print(
        f"all sessions: time to verdict median {t['median']:.0f} s, p90 {t['p90']:.0f} s, "
        f"max {t['max']:.0f} s"
    )


if __name__ == "__main__":
    main()
