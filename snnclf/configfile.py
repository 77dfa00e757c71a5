"""``snnclf train --config FILE``: training options read from a YAML or JSON file, and
``--print_config``: the resolved options written in the form the file takes.

A file holds one mapping of option names to values, spelled as the flags are (``time_steps`` or
``time-steps``; ``run_name`` for ``run``); ``null`` means "not given". A run's own
``config.json`` is such a file: the facts snnclf records beside the options there (``num_params``,
``processes``, ...) are skipped. Every value passes the same check as its flag, and an unknown key
is refused, each in one line naming the file. YAML is read with PyYAML, the usual reader for
LightningCLI and timm configs; JSON is YAML too, so one reader serves both.

This module is the file format only; which options exist and how each is checked is
:mod:`snnclf.config`'s (``config.read_file``, ``config.dump``)."""
import difflib
from pathlib import Path

import yaml

from .errors import UsageError
from .flags import shown
from .runs import RECORDED


def load(path, spellings):
    """The options ``path`` holds, as written (``None`` values left out), under their names
    (``spellings`` maps every accepted spelling to the option's name); a file that cannot be read
    or parsed, or an unknown option, is a one-line error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"--config {path}: cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--config {path}: not a text file; give a YAML or JSON file") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise UsageError(f"--config {path}: not valid YAML or JSON{at}: "
                         f"{getattr(err, 'problem', None) or err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a mapping of option names to values "
                         f"(time_steps: 10, ...), got a {type(values).__name__}")
    found = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in RECORDED:
            continue
        if name not in spellings:
            close = difflib.get_close_matches(name, spellings, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"--config {path}: unknown option {shown(key)}{hint}; the keys are "
                             "'snnclf train' flags without the dashes")
        if value is not None:
            found[spellings[name]] = _plain(value, f"--config {path}: {key}")
    return found


MAX_ITEMS = 1000  # values a list in a config file may hold (sweep axes included)


def _plain(value, where, depth=0):
    """``value`` if it is what a flag takes: a scalar, or a short list of them (a sweep's axis of a
    list option: a list of such lists). Anything else (a mapping, a deep or huge list, which is
    how a YAML alias bomb arrives) is refused without being expanded or quoted whole."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and len(value) > MAX_ITEMS:
            raise UsageError(f"{where}: a text of {len(value):,} characters; options are short values")
        return value
    if isinstance(value, list) and depth < 2:
        if len(value) > MAX_ITEMS:
            raise UsageError(f"{where}: a list of {len(value):,} values (at most {MAX_ITEMS})")
        return [_plain(v, where, depth + 1) for v in value]
    if isinstance(value, dict) and depth == 0 and len(value) <= 4:  # a range of snnclf tune: {low, high, log, step}
        return {str(k): _plain(v, where, 2) for k, v in value.items()}
    kind = "a nested list" if isinstance(value, list) else f"a {type(value).__name__}"
    raise UsageError(f"{where}: {kind}, not a value or a list of values")


def dump(values, derived):
    """The options ``values`` as YAML that ``--config`` reads back, in their order. A value equal
    to the one ``derived`` from others holds (the encoding an event data set implies, the default
    run name) is written as ``null`` with the value in a comment, so that a file edited to another
    data set or model derives it again."""
    lines = []
    for key, value in values.items():
        text = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False)
        if key in derived and value == derived[key]:
            text = f"{key}: null  # {value}, derived\n"
        lines.append(text)
    return "".join(lines)
