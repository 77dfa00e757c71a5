"""Models: a registry of spiking networks and their non-spiking baselines.

Every model takes [T, B, C, H, W] and returns (output spikes, output membrane), each [T, B, K]."""
import contextlib
import inspect

import torch

from ..errors import UsageError
from ..flags import given
from .layers import Folded
from .neurons import NEURON_OPTIONS, NEURONS, NeuronFlags, SpikingLayer, make_neuron
from .zoo import MODELS, POOLINGS


def list_models():
    return MODELS.names()


def model_options(name):
    """The option names model ``name`` accepts: its builder's keyword-only arguments and the
    options read by the neurons it declares."""
    builder = MODELS.lookup(name, "--model")
    own = [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]
    neurons = [o for kind in MODELS.info(name)["neurons"] for o in NEURONS.info(kind)["options"]]
    return own + list(dict.fromkeys(neurons))


def get_model(name, in_shape, num_classes, **options):
    """Build the registered model ``name`` for inputs of ``in_shape`` (C, H, W) and
    ``num_classes`` outputs. Options that are ``None`` keep the model's own defaults; an option the
    model does not have is refused, naming the flag."""
    builder = MODELS.lookup(name, "--model")
    options = given(options)
    accepted = model_options(name)
    for key in options:
        if key not in accepted:
            raise UsageError(f"--{key} does not apply to model {name}; leave it out")
    return builder(tuple(in_shape), num_classes, **options)


def compile_model(model):
    """``model`` under ``torch.compile`` (``--compile``). Shapes are static: with dynamic shapes
    inductor failed on the direct encoder's stride-0 time dimension."""
    return torch.compile(model, dynamic=False)


@contextlib.contextmanager
def step_by_step(model):
    """Run ``model`` the way snnTorch's tutorials do while the block lasts: every layer called
    once per time step and every neuron cell stepped by its own ``forward``. Used to check that
    the fast execution gives the same spikes."""
    modules = [m for m in model.modules() if isinstance(m, (Folded, SpikingLayer))]
    for m in modules:
        m.step_by_step = True
    try:
        yield model
    finally:
        for m in modules:
            del m.step_by_step


def is_spiking(name):
    """Whether model ``name`` spikes (declared when it was registered)."""
    return MODELS.info(name, "--model")["spiking"]


__all__ = ["compile_model", "get_model", "is_spiking", "step_by_step", "list_models",
           "make_neuron", "model_options", "NEURON_OPTIONS", "NEURONS", "MODELS", "NeuronFlags", "POOLINGS"]
