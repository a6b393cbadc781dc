"""Does `harness bisect` name the commit that made a model 3 % slower, and decline when none did?

    python scripts/validate_bisect.py [--trials 10] [--null-trials 10] [--commits 32]
                                      [--slowdown 3] [--out DIR] [--seed 0]
    python scripts/validate_bisect.py --analyse DIR

Each trial builds a throwaway git history of the validation plugin package of
``scripts/validate_ab.py`` (a Conv1d, an MLP and an LSTM whose work scales exactly with
one dimension): ``--commits`` commits after a base, each editing the plugin module (a
comment), one of them, at a random position, also giving one model ``--slowdown`` percent
more work (exact: more samples, blocks or steps). Then ``harness bisect`` runs in that
checkout as a user would, between the base and the last commit, and the culprit it names
is checked. The null trials have no such commit: ``bisect`` should decline. Models take
turns, so each is tried at several positions. Every trial's JSON output is kept under
``--out``; trials already there are not run again.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from validate_ab import MODELS, PLUGIN, PYPROJECT, WORK, _git

BASE = WORK["base"]  # (LSTM steps, Conv1d samples, MLP blocks)


def _scaled(model: str, percent: float) -> tuple[int, ...]:
    index = MODELS.index(model)
    return tuple(round(w * (1 + percent / 100)) if i == index else w for i, w in enumerate(BASE))


def make_history(repo: Path, commits: int, culprit: int | None, work: tuple[int, ...]) -> None:
    """Base, then ``commits`` commits; from commit ``culprit`` on (1-based), ``work``."""
    (repo / "src" / "abval").mkdir(parents=True)
    (repo / "src" / "abval" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text(PYPROJECT.lstrip())
    _git(repo, "init", "-q")
    for index in range(commits + 1):
        level = work if culprit is not None and index >= culprit else BASE
        source = textwrap.dedent(PLUGIN.format(work=level)).lstrip()
        (repo / "src" / "abval" / "plugin.py").write_text(f"{source}\n# revision {index}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", "slower" if index == culprit else f"revision {index}")


def trial(
    out: Path, name: str, model: str, culprit: int | None, commits: int, percent: float
) -> dict[str, Any]:
    repo = out / "repos" / name
    if repo.exists():
        subprocess.run(["rm", "-rf", str(repo)], check=True)
    repo.mkdir(parents=True)
    make_history(repo, commits, culprit, _scaled(model, percent))
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "bisect",
            "HEAD~" + str(commits),
            "HEAD",
            "-m",
            model,
            "--json",
            "-q",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if not done.stdout.startswith("{"):
        raise SystemExit(f"{name}: harness bisect failed ({done.returncode}): {done.stderr}")
    found = json.loads(done.stdout)
    expected = _git(repo, "rev-parse", f"HEAD~{commits - culprit}") if culprit else None
    return {
        "name": name,
        "model": model,
        "position": culprit,
        "expected": expected,
        "culprit": found["culprit"],
        "right": found["culprit"] == expected,
        "declined": found["declined"],
        "ratio": found["ratio"],
        "confirmation": found["confirmation"]["ratio"],
        "steps": len(found["steps"]),
        "skipped": sum(s["verdict"] == "skipped" for s in found["steps"]),
        "sessions": found["sessions"],
        "pairs": found["pairs"],
        "time_s": time.monotonic() - started,
    }


def analyse(out: Path) -> dict[str, Any]:
    trials = [json.loads(p.read_text()) for p in sorted((out / "json").glob("*.json"))]
    summary: dict[str, Any] = {}
    for kind, mine in (
        ("regression", [t for t in trials if t["position"]]),
        ("null", [t for t in trials if not t["position"]]),
    ):
        if not mine:
            continue
        times = sorted(t["time_s"] for t in mine)
        summary[kind] = {
            "trials": len(mine),
            "right": sum(t["right"] for t in mine),
            "by_model": {
                m: [t["right"] for t in mine if t["model"] == m].count(True) for m in MODELS
            },
            "wrong": [
                {k: t[k] for k in ("name", "model", "position", "culprit", "declined")}
                for t in mine
                if not t["right"]
            ],
            "time_s": {
                "median": statistics.median(times),
                "max": times[-1],
                "all": [round(x) for x in times],
            },
            "sessions": sorted(t["sessions"] for t in mine),
            "pairs": sorted(t["pairs"] for t in mine),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="histories with a culprit")
    parser.add_argument("--null-trials", type=int, default=10, help="histories without one")
    parser.add_argument("--commits", type=int, default=32)
    parser.add_argument("--slowdown", type=float, default=3.0, help="percent (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/validation/bisect"))
    parser.add_argument("--analyse", type=Path, metavar="DIR", help="summarise recorded trials")
    args = parser.parse_args()
    out = (args.analyse or args.out).resolve()
    if not args.analyse:
        rng = random.Random(args.seed)
        plan = [
            (i, MODELS[i % len(MODELS)], rng.randint(1, args.commits)) for i in range(args.trials)
        ]
        plan += [(args.trials + i, MODELS[i % len(MODELS)], None) for i in range(args.null_trials)]
        rng.shuffle(plan)
        (out / "json").mkdir(parents=True, exist_ok=True)
        for done, (index, model, position) in enumerate(plan, 1):
            name = f"{index:03d}-{model}-{position or 'none'}"
            path = out / "json" / f"{name}.json"
            if path.exists():
                continue
            result = trial(out, name, model, position, args.commits, args.slowdown)
            path.write_text(json.dumps(result, indent=2))
            print(
                f"[{done}/{len(plan)}] {name}: culprit {(result['culprit'] or '-')[:10]} "
                f"({'right' if result['right'] else 'WRONG'}), {result['steps']} steps, "
                f"{result['sessions']} sessions, {result['pairs']} pairs, "
                f"{result['time_s']:.0f} s",
                flush=True,
            )
    summary = analyse(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
