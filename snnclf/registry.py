"""Name -> builder registries: models, neurons, surrogates, encoders, losses, optimizers,
schedulers, data sets and presets are looked up by name here, never through if/elif chains.

A registry says what each entry must declare (``Registry("loss", declares=("needs_spikes",))``)
and every ``register`` call states it (``@LOSSES.register("ce", needs_spikes=True)``): a
forgotten or misspelt declaration fails when the module is imported, not during a run."""
import inspect

from .errors import UsageError


class Registry(dict):
    """A dict of name -> builder filled by a ``register`` decorator, with each entry's
    declarations kept beside it (:meth:`info`); registering a name twice raises."""

    def __init__(self, kind, declares=()):
        super().__init__()
        self.kind = kind  # what the names are, for error messages: "model", "loss", ...
        self.declares = tuple(declares)
        self._info = {}

    def register(self, name=None, **declared):
        missing = [k for k in self.declares if k not in declared]
        unknown = [k for k in declared if k not in self.declares]
        if missing or unknown:
            raise TypeError(f"a {self.kind} must declare {', '.join(self.declares) or 'nothing'}"
                            f"{'; missing: ' + ', '.join(missing) if missing else ''}"
                            f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}")

        def wrap(fn):
            key = name or fn.__name__.replace("_", "-")
            if key in self:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self[key] = fn
            self._info[key] = dict(declared)
            return fn

        return wrap

    def lookup(self, name, flag=None):
        """The builder registered as ``name``; an unknown name is the user's error."""
        if name not in self:
            where = f"{flag} " if flag else ""
            raise UsageError(
                f"unknown {self.kind} {where}{name!r}: choose one of {', '.join(sorted(self))}"
            )
        return self[name]

    def info(self, name, flag=None):
        """What entry ``name`` declared when it was registered."""
        self.lookup(name, flag)
        return dict(self._info[name])

    def names(self):
        return sorted(self)

    def defaults(self, option):
        """{default: [names]} of keyword argument ``option`` over the builders that have it with a
        default: a builder's signature is where its defaults live, and --help reads them there."""
        found = {}
        for name in self.names():
            param = inspect.signature(self[name]).parameters.get(option)
            if param is not None and param.default not in (inspect.Parameter.empty, None):
                found.setdefault(param.default, []).append(name)
        return found
