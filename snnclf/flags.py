"""What makes a setting a command-line flag: its help, how its default reads, the facts about it
(resumable, a model option, an event option, a hyper-parameter), and the one check that
argparse (on the text typed), a configuration and a Python caller (on a value) all apply."""
import argparse
import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Optional

from .errors import UsageError


@dataclass(frozen=True)
class Flag:
    """The command-line side of a configuration field (kept in the field's metadata), and the
    facts that other parts read from it instead of keeping lists of option names."""

    help: str
    group: str  # the --help section: "data", "model", "training", ...
    parse: Optional[Callable] = None  # text or value -> value; raises argparse.ArgumentTypeError
    choices: Optional[Callable] = None  # () -> the allowed names, read when the parser is built
    default_text: object = None  # how --help states the default (a text, or a function giving it)
    action: Optional[str] = None  # "store_true" for switches
    nargs: Optional[str] = None
    const: object = None
    metavar: Optional[str] = None
    aliases: tuple = ()
    # facts about the option
    resumable: bool = False  # may change when a run is resumed (where and how long it runs)
    model: bool = False  # a keyword option of the model builders (recorded in the checkpoint)
    event: bool = False  # an option of the event data sets' loading and framing
    augment: bool = False  # a training augmentation of event data (refused for other data)
    hparam: bool = True  # a hyper-parameter (TensorBoard's HParams); False: where files go

    def stated_default(self, default):
        """How --help states the default: the flag's own text, or the default value."""
        if self.default_text is None:
            return default
        return self.default_text() if callable(self.default_text) else self.default_text


def flag(default, help, group, fallback=None, **kwargs):
    """A dataclass field that is also a flag. ``fallback`` is what a builder uses when the flag is
    not given (the field then stays ``None``); --help states it as the default."""
    if fallback is not None:
        kwargs.setdefault("default_text", str(fallback))
    metadata = {"flag": Flag(help, group, **kwargs)}
    if fallback is not None:
        metadata["fallback"] = fallback
    return field(default=default, metadata=metadata)


def shown(value, limit=60):
    """``repr(value)`` for a message, cut to ``limit`` characters: an error line quotes what it
    refuses, never a whole (possibly huge, or alias-expanded) value."""
    if isinstance(value, (list, tuple, dict)) and (len(value) > 20 or any(isinstance(v, (list, tuple, dict))
                                                                          for v in value)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)} values"
    text = repr(value[:limit] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def given(values):
    """The values that were given: ``None`` means not given, and never overrides a default."""
    return {k: v for k, v in values.items() if v is not None}


def number(kind, low=None, high=None, low_open=False, high_open=False):
    """A parser of ``kind`` (int or float) within [low, high] (an end excluded when ``*_open``)."""
    def parse(text):
        if kind is int and isinstance(text, float) and not text.is_integer():
            raise argparse.ArgumentTypeError(f"expected an integer, got {shown(text)}")
        try:
            value = kind(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {shown(text)}") from None
        if value != value or value in (math.inf, -math.inf):  # NaN, infinities
            raise argparse.ArgumentTypeError(f"expected a finite number, got {shown(text)}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if low_open else 'at least'} {low}, got {str(text)[:60]}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'below' if high_open else 'at most'} {high}, got {str(text)[:60]}")
        return value
    parse.kind = "int" if kind is int else "float"  # what a range of this option holds (snnclf tune)
    return parse


def flag_of(f):
    """The :class:`Flag` of a dataclass field, or ``None`` for a field that is not a flag."""
    return f.metadata.get("flag")


def options(cls, fact=None):
    """The names of the flag fields of dataclass ``cls``; with ``fact``, those that have it."""
    return tuple(f.name for f in fields(cls) if flag_of(f) and (fact is None or getattr(flag_of(f), fact)))


def check_field(cls, name, value):
    """``value`` of option ``name`` (a flag field of dataclass ``cls``) as its flag would take
    it, or the flag's one-line error: the one check of a value, whoever gives it."""
    spec = next(flag_of(f) for f in fields(cls) if f.name == name)
    return check(name, spec, value)


def checked(name, parse, value):
    """``value`` of option ``name`` through ``parse`` (a :func:`number` parser), with the flag's
    one-line error: what a builder applies to a value a Python caller gave, with the same parser
    its flag uses (see ``CHECKS`` in :mod:`snnclf.optim`, :mod:`snnclf.models` and :mod:`snnclf.data`)."""
    return value if value is None else check(name, Flag("", "", parse=parse), value)


def check(name, spec, value):
    """``value`` of flag --name (described by ``spec``) as the flag would take it, or a one-line error."""
    def fail(message):
        raise UsageError(f"--{name}: {message}")
    if spec.action == "store_true":
        if not isinstance(value, bool):
            fail(f"expected true or false, got {shown(value)}")
        return value
    if spec.nargs == "+":
        if not isinstance(value, (list, tuple)) or not value:
            fail(f"expected a list of values, got {shown(value)}")
        return [check(name, replace(spec, nargs=None), v) for v in value]
    if spec.parse is not None:
        if isinstance(value, bool):
            fail(f"expected a number, got {shown(value)}")
        try:
            return spec.parse(value)
        except argparse.ArgumentTypeError as err:
            fail(str(err))
    if not isinstance(value, str):
        fail(f"expected a text value, got {shown(value)}")
    if spec.choices is not None and value not in spec.choices():
        fail(f"invalid choice: {shown(value)} (choose from {', '.join(map(repr, spec.choices()))})")
    return value
