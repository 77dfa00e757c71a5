"""Name -> builder registries: models, neurons, surrogates, encoders, losses, optimizers,
schedulers and data sets are looked up by name here, never through if/elif chains."""
from .errors import UsageError


class Registry(dict):
    """A dict filled by a ``register`` decorator; registering a name twice raises."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind  # what the names are, for error messages: "model", "loss", ...

    def register(self, name=None):
        def wrap(fn):
            key = name or fn.__name__.replace("_", "-")
            if key in self:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self[key] = fn
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

    def names(self):
        return sorted(self)
