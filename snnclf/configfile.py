"""``snnclf train --config FILE``: training options read from a YAML or JSON file, and
``--print_config``: the resolved options written in the form the file takes.

A file holds one mapping of option names to values, spelled as the flags are (``time_steps`` or
``time-steps``; ``run_name`` for ``run``); ``null`` means "not given". A run's own
``config.json`` is such a file: the facts snnclf records beside the options there (``num_params``,
``processes``, ...) are skipped. Every value passes the same check as its flag, and an unknown key
is refused, each in one line naming the file. YAML is read with PyYAML, the usual reader for
LightningCLI and timm configs; JSON is YAML too, so one reader serves both."""
import difflib
from dataclasses import fields
from pathlib import Path

import yaml

from .config import RECORDED, RunConfig, check_option, resolve_encoding
from .errors import UsageError
from .flags import flag_of

ALIASES = {"run_name": "run"}


def _options():
    """Option name -> field, with every spelling the flags accept."""
    names = {}
    for f in fields(RunConfig):
        for name in (f.name, *flag_of(f).aliases):
            names[name] = f
    return names


def load(path):
    """The options ``path`` holds, as written (``None`` values left out), under their field names;
    a file that cannot be read or parsed, or an unknown option, is a one-line error."""
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
    options, found = _options(), {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in RECORDED:
            continue
        if name not in options:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"--config {path}: unknown option {key!r}{hint}; the keys are "
                             "'snnclf train' flags without the dashes")
        if value is not None:
            found[ALIASES.get(name, name)] = value
    return found


def read(path):
    """The options ``path`` gives, each checked like its flag."""
    given = {}
    for name, value in load(path).items():
        try:
            given[name] = check_option(name, value)
        except UsageError as err:
            raise UsageError(f"--config {path}: {err}") from None
    return given


def dump(cfg):
    """``cfg`` as YAML that ``--config`` reads back: every option, in --help order. Values derived
    from others (the encoding an event data set implies, the default run name) are written as
    ``null`` with the value in a comment, so that a file edited to another data set or model
    derives them again."""
    values = cfg.to_dict()
    derived = {"encoding": resolve_encoding(cfg.dataset, None), "run": cfg.default_run_name()}
    lines = []
    for key, value in values.items():
        text = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False)
        if key in derived and value == derived[key]:
            text = f"{key}: null  # {value}, derived\n"
        lines.append(text)
    return "".join(lines)
