"""Do two separate runs of identical code cry wolf? Is a doubled workload still slower?

    python scripts/validate_runs.py [--pairs 20] [--doubled 5] [--out DIR] [--json PATH]
    python scripts/validate_runs.py --analyse DIR [--json PATH]

An A/A pair is two back-to-back ``harness run --suite gan`` of identical code (one
process per case, default settings), then ``harness compare --json`` of the second
against the first: any ``slower`` or ``faster`` verdict is a false alarm. A doubled
pair is a plain run and a run of the same cases whose models run their forward twice
(``gan_twice.py``: same names, dimensions and suites, so the same case keys), in
alternating order, compared plain -> doubled: every case should be ``slower``. Beside
the verdicts the table shows what the samples alone (``samples_verdict``, unadjusted)
would call a change: the false alarms of issue 13. Runs, comparisons and the figures
(``--json``) are kept under ``--out``; ``--analyse DIR`` judges them again. Not a
test: it measures for half an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.analysis.significance import VERDICTS

SCRIPTS = Path(__file__).resolve().parent
DOUBLED = ["--disable-plugin", "gan", "--plugin", "gan_twice"]


def harness(*args: str) -> str:
    """Run the harness of this interpreter (``scripts/`` importable for gan_twice)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(SCRIPTS), os.environ.get("PYTHONPATH")) if p),
    }
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args], env=env, text=True, capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(
            f"harness {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        )
    return done.stdout


def _paths(kind: str, index: int, out: Path) -> dict[str, Path]:
    return {role: out / f"{kind}-{index:02d}-{role}.jsonl" for role in ("base", "cand")}


def measure_pair(kind: str, index: int, out: Path) -> dict[str, Any]:
    """Two runs (the doubled one first in odd pairs), then their comparison."""
    started = time.monotonic()
    paths = _paths(kind, index, out)
    order = ["base", "cand"] if kind == "aa" or index % 2 == 0 else ["cand", "base"]
    for role in order:
        extra = DOUBLED if kind == "doubled" and role == "cand" else []
        harness("run", "--suite", "gan", "-q", "--out", str(paths[role]), *extra)
    return {**judge_pair(kind, index, out), "order": order, "wall_s": time.monotonic() - started}


def judge_pair(kind: str, index: int, out: Path) -> dict[str, Any]:
    """``harness compare --json`` of a measured pair, kept beside its runs."""
    paths = _paths(kind, index, out)
    report = json.loads(harness("compare", str(paths["base"]), str(paths["cand"]), "--json"))
    (out / f"{kind}-{index:02d}.compare.json").write_text(json.dumps(report, indent=2))
    cases = report["cases"]
    return {
        "kind": kind,
        "pair": index,
        "summary": report["summary"],
        "samples_alone": {
            v: sum(c["samples_verdict"] == v for c in cases) for v in ("slower", "faster")
        },
        "ratios": [c["ratio"] for c in cases],
        "noise": [c[f"{side}_noise"] for c in cases for side in ("baseline", "candidate")],
    }


def totals(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One kind's pairs added up."""
    ratios = [r for p in pairs for r in p["ratios"]]
    noise = sorted(n for p in pairs for n in p["noise"] if n is not None)
    return {
        "pairs": len(pairs),
        "cases": len(ratios),
        **{v: sum(p["summary"][v] for p in pairs) for v in VERDICTS},
        "pairs_with_a_change": sum(
            p["summary"]["slower"] + p["summary"]["faster"] > 0 for p in pairs
        ),
        "samples_alone": {
            v: sum(p["samples_alone"][v] for p in pairs) for v in ("slower", "faster")
        },
        "ratio_range": [min(ratios), max(ratios)],
        "machine_noise_range": [noise[0], noise[-1]] if noise else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help="A/A pairs (default 20)")
    parser.add_argument("--doubled", type=int, default=5, help="doubled pairs (default 5)")
    parser.add_argument("--out", type=Path, help="default results/validation/runs-TIME")
    parser.add_argument("--json", type=Path, help="default OUT/validate_runs.json")
    parser.add_argument(
        "--analyse",
        type=Path,
        metavar="DIR",
        help="judge the pairs measured into DIR again, measuring nothing",
    )
    args = parser.parse_args()
    out = (
        args.analyse or args.out or Path(f"results/validation/runs-{datetime.now():%Y%m%d-%H%M%S}")
    )
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pairs = []
    for kind, count in (("aa", args.pairs), ("doubled", args.doubled)):
        if args.analyse:
            count = len(list(out.glob(f"{kind}-*-cand.jsonl")))
        for index in range(count):
            pairs.append(
                judge_pair(kind, index, out) if args.analyse else measure_pair(kind, index, out)
            )
            print(f"{kind} pair {index + 1}/{count}: {pairs[-1]['summary']}", flush=True)
    result = {
        "command": ["scripts/validate_runs.py", *sys.argv[1:]],
        "wall_s": time.monotonic() - started,
        "kinds": {
            kind: totals([p for p in pairs if p["kind"] == kind])
            for kind in ("aa", "doubled")
            if any(p["kind"] == kind for p in pairs)
        },
        "pairs": pairs,
    }
    print(
        f"\n{'pairs':<10} {'cases':>5} {'slower':>6} {'faster':>6} {'no change':>9} "
        f"{'inconcl.':>8} {'samples alone s/f':>17} {'ratios':>13} {'machine noise':>13}"
    )
    for kind, row in result["kinds"].items():
        alone = row["samples_alone"]
        low, high = row["machine_noise_range"] or (float("nan"),) * 2
        label = f"{kind} x{row['pairs']}"
        print(
            f"{label:<10} {row['cases']:>5} {row['slower']:>6} {row['faster']:>6} "
            f"{row['no change']:>9} {row['inconclusive']:>8} "
            f"{alone['slower']:>8}/{alone['faster']:<8} {row['ratio_range'][0]:>6.2f}-"
            f"{row['ratio_range'][1]:<6.2f} {low:>6.1%}-{high:<6.1%}"
        )
    path = args.json or out / "validate_runs.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"{result['wall_s']:.0f} s; figures: {path}")


if __name__ == "__main__":
    main()
