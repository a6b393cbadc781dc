"""The built-in suites: every ``*.toml`` file in this folder, contributed as a plugin."""

from importlib.resources import files

import harness


@harness.hookimpl
def harness_suites():
    return sorted(str(p) for p in files(__name__).iterdir() if p.name.endswith(".toml"))
