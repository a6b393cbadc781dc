"""Where a command's runs come from: results files, folders of them, or a results store,
one run of any of them as ``SOURCE#RUN``, kept or dropped by :class:`Filters`.

A store answers a filter where its data lies and reads samples only when asked; files
are read whole (``results.load``) and filtered after, by the same rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from harness.errors import ResultsError
from harness.store import results
from harness.store.columnar import Store, is_store
from harness.store.filters import NO_FILTERS, Filters


def load_source(
    source: str | Path,
    filters: Filters = NO_FILTERS,
    samples: bool = True,
    summary: bool = False,
) -> pd.DataFrame:
    """The cases of a file, a folder of files or a store, as ``harness.store.frame``'s
    frame; from a store, ``summary`` gives only its typed columns (``Store.load``)."""
    if is_store(source):
        return Store.open(source).load(filters, samples=samples, summary=summary)
    return filters.keep_cases(results.load(source)).reset_index(drop=True)


def load_selection(
    selection: str | Path, filters: Filters = NO_FILTERS, summary: bool = False
) -> pd.DataFrame:
    """``SOURCE`` or ``SOURCE#RUN``: a file, folder or store, optionally one run (an id
    prefix), its cases kept by ``filters``."""
    path, _, run = str(selection).partition("#")
    if run and is_store(path):
        filters = dataclasses.replace(filters, run_ids=(run,))
    cases = load_source(path, filters, summary=summary)
    if run:
        ids = sorted({i for i in cases.get("run_id", []) if str(i).startswith(run)})
        if len(ids) != 1:
            found = "no run" if not ids else f"{len(ids)} runs ({', '.join(ids)})"
            raise ResultsError(
                f"{found} in {path} has an id starting with {run!r}; "
                "'harness results' lists the run ids"
            )
        cases = cases[cases["run_id"] == ids[0]]
    if cases.empty:
        kept = "" if filters == NO_FILTERS or filters.run_ids == (run,) else " the filters keep"
        raise ResultsError(f"{selection} holds no case records{kept}")
    return cases.reset_index(drop=True)


def load_runs(
    selections: Iterable[str | Path], filters: Filters = NO_FILTERS, summary: bool = False
) -> pd.DataFrame:
    """Cases of every run of ``selections`` (each as ``load_selection`` takes it), each
    run once however often it is named."""
    frames, seen = [], set()
    for selection in selections:
        frame = load_selection(selection, filters, summary)
        runs = list(zip(frame["file"], frame["run_id"]))
        frames.append(frame[[run not in seen for run in runs]])
        seen.update(runs)
    return pd.concat(frames, ignore_index=True)
