"""What makes a setting a command-line flag: its help, how its default reads, and the one check
that argparse (on the text typed) and a configuration (on a value) both apply."""
import argparse
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Flag:
    """The command-line side of a configuration field (kept in the field's metadata)."""

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


def flag(default, help, group, fallback=None, **kwargs):
    """A dataclass field that is also a flag. ``fallback`` is what a builder uses when the flag is
    not given (the field then stays ``None``); --help states it as the default."""
    if fallback is not None:
        kwargs.setdefault("default_text", str(fallback))
    metadata = {"flag": Flag(help, group, **kwargs)}
    if fallback is not None:
        metadata["fallback"] = fallback
    return field(default=default, metadata=metadata)


def number(kind, low=None, high=None, low_open=False, high_open=False):
    """A parser of ``kind`` (int or float) within [low, high] (an end excluded when ``*_open``)."""
    def parse(text):
        if kind is int and isinstance(text, float) and not text.is_integer():
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value:  # NaN
            raise argparse.ArgumentTypeError("expected a number, got nan")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if low_open else 'at least'} {low}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'below' if high_open else 'at most'} {high}, got {text}")
        return value
    return parse


def default_text(spec, default):
    """How --help states the default of a flag: its own text, or the default value."""
    if spec.default_text is None:
        return default
    return spec.default_text() if callable(spec.default_text) else spec.default_text


def flag_of(f):
    """The :class:`Flag` of a dataclass field, or ``None`` for a field that is not a flag."""
    return f.metadata.get("flag")
