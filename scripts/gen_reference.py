"""Write docs/reference.md, the flag reference of every snnclf command, from the CLI's own parser
(the same one --help prints), so that the manual's flag tables cannot drift from the code.

    python scripts/gen_reference.py           # rewrite docs/reference.md
    python scripts/gen_reference.py --check   # exit 1 if docs/reference.md is stale

tests/test_docs.py runs the check."""
import argparse
import re
import sys
from pathlib import Path

from snnclf.cli import build_parser

OUT = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
DEFAULT = re.compile(r"\s*\(default: (.*)\)$", re.S)


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _row(action):
    spellings = [s for s in action.option_strings if s.startswith("--")] or [action.metavar or action.dest]
    # the underscore spelling first, its kebab twin after it
    name = " ".join(f"`{s}`" for s in spellings)
    if action.nargs not in (0, None) or action.option_strings == []:
        name += f" {_cell(action.metavar or action.dest.upper())}" if action.option_strings else ""
    raw = (action.help or "").replace("%%", "%")  # as --help prints it
    found = DEFAULT.search(raw)
    help_text = DEFAULT.sub("", raw) if found else raw
    default = found.group(1) if found else ""
    if action.choices and action.option_strings:
        help_text += f" (one of: {', '.join(map(str, action.choices))})"
    return f"| {name} | {_cell(default)} | {_cell(help_text)} |"


def _command(name, parser):
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)  # not the terminal's
    lines = [f"## snnclf {name}", "", _cell(parser.description or ""), "", "```text",
             parser.format_usage().strip().replace("usage: ", ""), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = {"positional arguments": "arguments", "options": "options"}.get(group.title, group.title)
        lines += [f"**{title}**", "", "| flag | default | what it does |", "|---|---|---|"]
        lines += [_row(a) for a in actions] + [""]
    return lines


def reference():
    """The Markdown text of docs/reference.md."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["# Flag reference", "",
             "Every flag of every command, with its default, generated from the parser that "
             "`snnclf COMMAND --help` prints (`python scripts/gen_reference.py`); a test fails when "
             "this page and the parser disagree. Flags take the underscore spelling and its kebab "
             "twin (`--time_steps`, `--time-steps`).", ""]
    for name, command in sub.choices.items():
        lines += _command(name, command)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text = reference()
    if check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python scripts/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
