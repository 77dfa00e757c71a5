"""The manual against the code: the generated flag reference is current, and every flag the
README and the docs show in a command exists in that command's parser."""
import argparse
import re
import runpy
from pathlib import Path

import pytest

from snnclf.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()}


def test_the_flag_reference_is_generated_from_the_parser():
    gen = runpy.run_path(str(ROOT / "scripts" / "gen_reference.py"))
    assert (ROOT / "docs" / "reference.md").read_text() == gen["reference"](), \
        "docs/reference.md is stale: run python scripts/gen_reference.py"


def test_the_reference_lists_every_command_and_flag():
    text = (ROOT / "docs" / "reference.md").read_text()
    for name, flags in _commands().items():
        assert f"## snnclf {name}" in text
        for flag in flags - {"-h", "--help"}:
            assert f"`{flag}`" in text, (name, flag)


@pytest.mark.parametrize("page", [p for p in PAGES if p.is_file()], ids=lambda p: p.name)
def test_every_flag_shown_in_a_command_exists(page):
    """A line of a code block that runs ``snnclf COMMAND ...`` uses only that command's flags."""
    commands, wrong = _commands(), []
    in_code = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            continue
        for found in re.finditer(r"snnclf ([a-z-]+)((?: +[^#|&;]*)?)", line):
            command, rest = found.group(1), found.group(2)
            if command not in commands:
                continue
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                if flag not in commands[command] | {"--help"}:
                    wrong.append(f"{page.name}: snnclf {command} {flag}")
    assert not wrong, wrong


def test_the_set_up_is_two_lines_and_ci_runs_exactly_them():
    """A newcomer runs the README's two lines: the main job, then one that installs what the tests
    need (NeuroBench included: its tests fail without it) and runs them. CI runs those lines."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Install and run\n\n```bash\n(.*?)```", readme, re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.strip().splitlines()]
    assert len(lines) == 2 and lines[0].startswith("pip install -e . &&"), lines
    assert "neurobench" in lines[1] and lines[1].endswith("&& pytest"), lines[1]
    ci = [line.removesuffix(" || exit 1") for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.startswith("pip install")]
    docs = re.search(r"the docs site builds with\n`(.*?)`", readme).group(1)
    assert ci[0] == lines[0] and ci[-1] == lines[1] and ci[1:-1] == [docs + ' -d "$(mktemp -d)/site"'], ci
