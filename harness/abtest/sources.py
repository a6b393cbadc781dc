"""Where a side of ``harness ab`` takes its model code from: a git revision of the
repository the command runs in, its working tree, any folder, or whatever is installed.

A plugin package may call its import package anything and lay it out any way
(``plugins/`` installed as ``harness_plugins`` here, ``src/mypkg/`` or ``mypkg/``
elsewhere), and may be installed editable, from a wheel, or not at all. So a tree is
read as its build backend would read it (pyproject.toml, setup.cfg, else the usual
layouts) into import names and their paths, and a side's process puts an import hook for
those names ahead of every other one (:func:`activate`): they come from the tree whatever
is installed, and the tree's ``harness.plugins`` entry points replace those its
distribution installed. The engine, ``harness``, never comes from a tree: both sides
measure with their interpreter's harness, so a change to the harness itself cannot muddy
a verdict on a model.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import posixpath
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import UsageError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ENGINE = "harness"  # never taken from a tree
ENTRY_POINT_GROUP = "harness.plugins"
# Folders of a flat layout that hold no importable code of the package.
_NOT_PACKAGES = {
    "tests",
    "test",
    "testing",
    "docs",
    "doc",
    "examples",
    "example",
    "benchmarks",
    "scripts",
    "tools",
    "build",
    "dist",
    "results",
    "site-packages",
}


class _View(Protocol):
    """Read-only access to a tree: a folder, or a commit of a repository."""

    def read(self, path: str) -> str | None: ...

    def entries(self, folder: str) -> list[tuple[str, bool]]: ...  # (name, is a folder)

    def is_file(self, path: str) -> bool: ...


class FolderView:
    def __init__(self, root: Path):
        self.root = root

    def read(self, path: str) -> str | None:
        try:
            return (self.root / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def entries(self, folder: str) -> list[tuple[str, bool]]:
        try:
            return [(p.name, p.is_dir()) for p in (self.root / folder).iterdir()]
        except OSError:
            return []

    def is_file(self, path: str) -> bool:
        return (self.root / path).is_file()


class _CommitView:
    def __init__(self, repo: Path, commit: str):
        self.repo, self.commit = repo, commit
        listing = git(repo, "ls-tree", "-r", "--name-only", "-z", commit)
        self.files = set(filter(None, listing.split("\0")))

    def read(self, path: str) -> str | None:
        if path not in self.files:
            return None
        try:
            return git(self.repo, "show", f"{self.commit}:{path}")
        except UsageError:
            return None

    def entries(self, folder: str) -> list[tuple[str, bool]]:
        prefix = f"{folder}/" if folder else ""
        found: dict[str, bool] = {}
        for path in self.files:
            if path.startswith(prefix):
                name, sep, _ = path[len(prefix) :].partition("/")
                found[name] = found.get(name, False) or bool(sep)
        return sorted(found.items())

    def is_file(self, path: str) -> bool:
        return path in self.files


@dataclass(frozen=True)
class Layout:
    """A tree's importable code: import name -> path in the tree (a package's folder or a
    module's file), its ``harness.plugins`` entry points and its distribution's name."""

    modules: Mapping[str, str] = field(default_factory=dict)
    entry_points: tuple[tuple[str, str], ...] = ()
    distribution: str | None = None


def read_layout(view: _View) -> Layout:
    """What a build backend would install from this tree (setuptools, hatch, poetry,
    flit's conventions), then the ``src/`` and flat layouts for anything it does not name."""
    project: dict[str, Any] = {}
    tool: dict[str, Any] = {}
    text = view.read("pyproject.toml")
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        project, tool = data.get("project", {}), data.get("tool", {})
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read_string(view.read("setup.cfg") or "")
    except configparser.Error:
        cfg = configparser.ConfigParser(interpolation=None)
    poetry = tool.get("poetry", {})
    name = project.get("name") or poetry.get("name") or cfg.get("metadata", "name", fallback=None)
    eps = (
        project.get("entry-points", {}).get(ENTRY_POINT_GROUP)
        or poetry.get("plugins", {}).get(ENTRY_POINT_GROUP)
        or _cfg_entry_points(cfg)
    )
    modules = _declared(view, tool, poetry, cfg)
    entry_points = tuple(
        sorted(
            (str(k), v)
            for k, v in (eps if isinstance(eps, dict) else {}).items()
            if isinstance(v, str)
        )
    )  # what a build would accept
    for base in () if modules else ("src", ""):  # what setuptools discovers by itself
        for entry, is_dir in view.entries(base):
            path = posixpath.join(base, entry)
            if (
                is_dir
                and entry.isidentifier()
                and entry not in _NOT_PACKAGES
                and view.is_file(f"{path}/__init__.py")
            ):
                modules.setdefault(entry, path)
    for _, value in entry_points:  # a plugin that is a top-level module, not a package
        top = value.split(":")[0].split(".")[0].strip()
        for base in ("src", ""):
            if view.is_file(posixpath.join(base, f"{top}.py")):
                modules.setdefault(top, posixpath.join(base, f"{top}.py"))
    return Layout(modules, entry_points, name)


def _cfg_entry_points(cfg: configparser.ConfigParser) -> dict[str, str]:
    text = cfg.get("options.entry_points", ENTRY_POINT_GROUP, fallback="")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _declared(
    view: _View, tool: Mapping[str, Any], poetry: Mapping[str, Any], cfg: configparser.ConfigParser
) -> dict[str, str]:
    """Top-level packages and modules the build configuration names explicitly."""
    setuptools = tool.get("setuptools", {})
    dirs = dict(setuptools.get("package-dir", {}))
    for line in cfg.get("options", "package_dir", fallback="").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            dirs[key.strip()] = value.strip()
    base = dirs.get("", "")
    packages = setuptools.get("packages")
    found: dict[str, str] = {}
    if isinstance(packages, dict):  # packages.find: where = [...]
        for where in packages.get("find", {}).get("where", []) or []:
            for entry, is_dir in view.entries(where.strip("/")):
                if is_dir and view.is_file(f"{where.strip('/')}/{entry}/__init__.py"):
                    found.setdefault(entry, posixpath.join(where.strip("/"), entry))
    elif isinstance(packages, list):
        for package in packages:
            if "." not in package:
                default = posixpath.join(base, package)
                found[package] = posixpath.normpath(dirs.get(package, default))
    for module in setuptools.get("py-modules", []) or []:
        found[module] = posixpath.join(base, f"{module}.py")
    wheel = tool.get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    for path in wheel.get("packages", []) or []:
        found[posixpath.basename(path.rstrip("/"))] = path.rstrip("/")
    for entry in poetry.get("packages", []) or []:
        if isinstance(entry, dict) and "include" in entry and "*" not in entry["include"]:
            found[entry["include"]] = posixpath.join(entry.get("from", ""), entry["include"])
    return {name: path for name, path in found.items() if view.is_file(path) or view.entries(path)}


@dataclass(frozen=True)
class CodeSource:
    """A tree of model code that a side imports ahead of anything installed."""

    description: str  # "HEAD~1 (1a2b3c4d5e)", "working tree of /src/pkg", "folder ../old"
    root: str  # the tree: a model is "defined by" it when its plugin's file lies inside
    modules: Mapping[str, str]  # import name -> absolute path
    entry_points: tuple[tuple[str, str], ...] = ()
    distribution: str | None = None
    git: Mapping[str, Any] | None = None  # {"commit", "dirty"} of what the tree holds
    revision: str | None = None  # as the user gave it

    def defines(self, file: str | None) -> bool:
        """Whether ``file`` (a plugin module's) is code of this tree."""
        return bool(file) and Path(file).resolve().is_relative_to(Path(self.root).resolve())

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "root": self.root,
            "modules": dict(self.modules),
            "entry_points": [list(e) for e in self.entry_points],
            "distribution": self.distribution,
            "git": dict(self.git) if self.git else None,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeSource:
        return cls(
            data["description"],
            data["root"],
            dict(data["modules"]),
            tuple(tuple(e) for e in data.get("entry_points", ())),  # type: ignore[misc]
            data.get("distribution"),
            data.get("git"),
            data.get("revision"),
        )


def git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UsageError("git is not installed; give the sides as folders instead") from None
    if done.returncode:
        raise UsageError(
            f"git {args[0]} failed in {repo}: "
            f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}"
        )
    return done.stdout


def repository(start: Path) -> Path | None:
    """The top of the git checkout holding ``start``, or None."""
    try:
        done = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def _absolute(root: Path, layout: Layout) -> dict[str, str]:
    return {name: str(root / rel) for name, rel in layout.modules.items() if name != ENGINE}


def working_tree(repo: Path) -> CodeSource:
    """The checkout as it is now, uncommitted changes included."""
    from harness.measure.environment import git_state

    layout = _require_code(read_layout(FolderView(repo)), f"the checkout {repo}")
    return CodeSource(
        f"working tree of {repo}",
        str(repo),
        _absolute(repo, layout),
        layout.entry_points,
        layout.distribution,
        git_state(repo),
    )


def commit_of(repo: Path, rev: str) -> str | None:
    """The full hash of the commit ``rev`` names in ``repo``; None if it names none."""
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if found.returncode else found.stdout.strip()


def revision(repo: Path, rev: str, into: Path) -> CodeSource:
    """``rev`` of ``repo``, its code extracted under ``into`` (the checkout is not touched)."""
    sha = commit_of(repo, rev)
    if sha is None:
        raise UsageError(
            f"no revision {rev!r} in {repo} (git could not find it) and no folder "
            "of that name; give a commit, branch or tag there, or a folder"
        )
    layout = _require_code(read_layout(_CommitView(repo, sha)), f"{rev} of {repo}")
    paths = sorted({p for n, p in layout.modules.items() if n != ENGINE})
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", sha, "--", *paths],
        capture_output=True,
        check=False,
    )
    if archive.returncode:
        raise UsageError(
            f"git archive of {rev} in {repo} failed: "
            f"{archive.stderr.decode(errors='replace').strip()}"
        )
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return CodeSource(
        f"{rev} ({sha[:10]})",
        str(into),
        _absolute(into, layout),
        layout.entry_points,
        layout.distribution,
        {"commit": sha, "dirty": False},
        rev,
    )


def folder(path: Path, reference: Layout | None = None) -> CodeSource:
    """A checkout or source tree. A folder without build configuration of its own is read
    with ``reference``'s layout where its paths exist (a copy of part of a checkout, such
    as a ``plugins/`` folder), and a package folder itself stands for the reference's
    package of the same folder name."""
    from harness.measure.environment import git_state

    path = path.resolve()
    view = FolderView(path)
    layout = read_layout(view)
    configured = view.is_file("pyproject.toml") or view.is_file("setup.cfg")
    if reference is not None and not configured:
        if view.is_file("__init__.py"):  # the package folder itself
            return CodeSource(
                f"folder {path}",
                str(path),
                {_package_for(path, reference): str(path)},
                reference.entry_points,
                reference.distribution,
                git_state(path),
            )
        mine = {
            n: rel
            for n, rel in reference.modules.items()
            if view.is_file(rel) or view.is_file(f"{rel}/__init__.py")
        }
        if mine:
            modules = {
                **mine,
                **{n: r for n, r in layout.modules.items() if r not in mine.values()},
            }
            layout = Layout(modules, reference.entry_points, reference.distribution)
    layout = _require_code(layout, f"folder {path}")
    return CodeSource(
        f"folder {path}",
        str(path),
        _absolute(path, layout),
        layout.entry_points,
        layout.distribution,
        git_state(path),
    )


def _package_for(folder: Path, reference: Layout) -> str:
    """The reference's package a package folder stands for: the one of the same folder
    name, else the one most of its entry points name (its plugins)."""
    for name, rel in reference.modules.items():
        if posixpath.basename(rel) == folder.name:
            return name
    named = [value.split(":")[0].split(".")[0] for _, value in reference.entry_points]
    return max(set(named), key=named.count) if named else folder.name


def _require_code(layout: Layout, what: str) -> Layout:
    if not {n for n in layout.modules if n != ENGINE}:
        raise UsageError(
            f"{what} holds no Python package of model code (no pyproject.toml or "
            "setup.cfg naming one, no src/<package>/ or <package>/ with an "
            "__init__.py); give a checkout or source tree of the plugin package"
        )
    return layout


class _TreeFinder(importlib.abc.MetaPathFinder):
    """Finds a tree's top-level packages and modules before any other finder does; their
    submodules then follow the package's ``__path__`` into the tree."""

    def __init__(self, modules: Mapping[str, str]):
        self.modules = dict(modules)

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        location = self.modules.get(name)
        if location is None:
            return None
        where = Path(location)
        if where.is_file():
            return importlib.util.spec_from_file_location(name, where)
        init = where / "__init__.py"
        if init.is_file():
            return importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[str(where)]
            )
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)  # namespace
        spec.submodule_search_locations = [str(where)]
        return spec


def activate(source: CodeSource) -> Callable[[], None]:
    """Import ``source``'s packages from its tree from now on, in this process; the
    function returned undoes that, bringing back the modules imported before."""
    modules = {n: p for n, p in source.modules.items() if n != ENGINE}

    def ours(name: str) -> bool:
        return name.partition(".")[0] in modules

    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
    finder = _TreeFinder(modules)
    sys.meta_path.insert(0, finder)
    importlib.invalidate_caches()

    def undo() -> None:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)

    return undo


@contextlib.contextmanager
def activated(source: CodeSource) -> Iterator[None]:
    """:func:`activate` for the length of a block."""
    undo = activate(source)
    try:
        yield
    finally:
        undo()
