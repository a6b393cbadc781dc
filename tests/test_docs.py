"""The docs hold together: every relative link in README.md and docs/*.md leads to a file
(and, with an anchor, to a heading in it), and every option of every ``harness`` command
is documented somewhere, so a page can move or an option ship without leaving a reader
at a dead end."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import build_parser

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto:


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks: a ``# comment`` in a shell block is no heading,
    and a ``[x](y)`` in a code sample no link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped except - and _,
    spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for line in _prose(page.read_text()):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = anchor(match.group(1))
            found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
            seen[slug] += 1
    return found


def links(page: Path) -> list[str]:
    """Every link target in a page's prose (inline code spans left out)."""
    text = INLINE_CODE.sub("", "\n".join(_prose(page.read_text())))
    return LINK.findall(text)


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that lead to no file, or to no heading of that file."""
    broken = []
    for target in links(page):
        if SCHEME.match(target):
            continue
        path, _, fragment = target.partition("#")
        destination = (page.parent / path) if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and (destination.suffix != ".md" or fragment not in anchors(destination)):
            broken.append(f"{target}: no heading #{fragment} in {destination.name}")
    return broken


def command_options() -> dict[str, list[str]]:
    """Every long option (--help aside) of ``harness`` and of each subcommand, by command."""
    found: dict[str, list[str]] = {}

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        parser.format_help()  # a subcommand's options are added when it is first used
        found[command] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, subparser in action.choices.items():
                    walk(subparser, f"{command} {name}")
            else:
                found[command] += [
                    option
                    for option in action.option_strings
                    if option.startswith("--") and option != "--help"
                ]

    walk(build_parser(), "harness")
    return found


def test_anchors_follow_githubs_rule():
    assert (
        anchor("Did my change make it slower? `harness ab`")
        == "did-my-change-make-it-slower-harness-ab"
    )
    assert anchor("One process a side (or fewer than 5)") == "one-process-a-side-or-fewer-than-5"
    assert anchor("Set-up") == "set-up"


def test_a_missing_file_or_heading_is_reported_and_outside_links_are_not(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Same\n\n## Same\n\n```sh\n# not\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Here\n\n[ok](other.md#same-1) [ok](#here) [web](https://example.com/x)"
        " [mail](mailto:a@b.c)\n[gone](missing.md) [no heading](other.md#not)\n"
        "`[in code](missing.md)`\n```\n[in a block](missing.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#not: no heading #not in other.md",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading(page):
    assert not broken_links(page)


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert {page.resolve() for page in PAGES[1:]} <= linked


def test_every_option_of_every_command_is_documented():
    options = command_options()
    assert "--max-time" in options["harness run"] and "--pair-time" in options["harness ab"]
    assert all(options.values()), "a command without options: its options were not loaded"
    docs = "\n".join(page.read_text() for page in PAGES)
    missing = [
        f"{command} {option}"
        for command, found in options.items()
        for option in found
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", docs)
    ]
    assert not missing, f"options no page of the docs mentions: {', '.join(missing)}"
