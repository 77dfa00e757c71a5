"""Spiking neurons: snnTorch's cells run over time, surrogate gradients by name, and the one
neuron snnTorch lacks (adaptive threshold), written in its conventions."""
import math
from dataclasses import dataclass, fields
from typing import Optional

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from ..errors import UsageError
from ..flags import check_field, flag, given, number
from ..registry import Registry
from . import fused
from .quant import ChipIF, XyloLIF

SURROGATES = Registry("surrogate", declares=("derivative",))
NEURONS = Registry("neuron", declares=("options",))
RESETS = ("subtract", "zero")


@dataclass(frozen=True)
class NeuronFlags:
    """The options of every spiking layer, each also a ``snnclf train`` flag. ``None`` means not
    given: the neuron uses the fallback stated here (and in --help). A new option is one field
    here and its use in the builders below; the CLI, the run configuration and the models'
    accepted options follow from it."""

    beta: Optional[float] = flag(None, "membrane decay per step, in [0, 1]", "model", model=True, fallback=0.9,
                                 parse=number(float, 0, 1))
    threshold: Optional[float] = flag(None, "firing threshold, > 0", "model", model=True, fallback=1.0,
                                      parse=number(float, 0, low_open=True))
    alpha: Optional[float] = flag(None, "decay of the second state: the adaptive threshold (ALIF) and "
                                  "the synaptic current (Synaptic), in [0, 1]", "model", model=True, fallback=0.9,
                                  parse=number(float, 0, 1))
    reset: Optional[str] = flag(None, "membrane reset after a spike", "model", model=True, fallback="subtract",
                                choices=lambda: RESETS)
    surrogate: Optional[str] = flag(None, "surrogate gradient of the spike", "model", model=True, fallback="atan",
                                    choices=lambda: SURROGATES.names())
    slope: Optional[float] = flag(None, "steepness of the surrogate (atan: its alpha)", "model", model=True,
                                  default_text="snnTorch's: 25, atan 2", parse=number(float, 0, low_open=True))
    learn_beta: Optional[bool] = flag(None, "learn the membrane decay", "model", model=True, default_text="off",
                                      action="store_true")
    learn_threshold: Optional[bool] = flag(None, "learn the threshold", "model", model=True, default_text="off",
                                           action="store_true")


NEURON_OPTIONS = tuple(f.name for f in fields(NeuronFlags))
SECOND_STATE = ("alpha",)  # read only by the two-state neurons (ALIF and Synaptic)
SHARED = tuple(o for o in NEURON_OPTIONS if o not in SECOND_STATE)  # read by every neuron


def _sloped(fn, keyword="slope"):
    def build(slope=None):
        return fn() if slope is None else fn(**{keyword: slope})
    return build


def _unsloped(fn, name):
    def build(slope=None):
        if slope is not None:
            raise UsageError(f"--slope does not apply to --surrogate {name}; leave it out")
        return fn()
    return build


# A surrogate may declare ``derivative(z, slope)``: it overwrites ``z`` with d spike / d z, the
# formula of the snnTorch function's own backward. The fused neuron (:mod:`.fused`) uses it to
# apply the surrogate in place, step by step, without an autograd call per step; surrogates that
# declare none go through autograd.

def _atan_derivative(z, alpha):  # snnTorch ATan: alpha / 2 / (1 + (pi / 2 * alpha * z) ** 2)
    alpha = 2.0 if alpha is None else alpha
    return z.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)


def _fast_sigmoid_derivative(z, slope):  # snnTorch FastSigmoid: 1 / (slope * |z| + 1) ** 2
    slope = 25 if slope is None else slope
    return z.abs_().mul_(slope).add_(1).square_().reciprocal_()


SURROGATES.register("fast_sigmoid", derivative=_fast_sigmoid_derivative)(
    _sloped(surrogate.fast_sigmoid))  # slope 25


class _StableSigmoid(torch.autograd.Function):
    """snnTorch's sigmoid surrogate with its gradient computed stably. snnTorch 1.0 writes it as
    ``k * exp(-k x) / (exp(-k x) + 1) ** 2``, which is inf / inf = NaN once ``exp`` overflows
    (x below about -3.5 at the default slope of 25): a membrane far below threshold turned the
    loss into NaN. Same forward, same derivative ``k * s * (1 - s)`` with ``s = sigmoid(k x)``."""

    @staticmethod
    def forward(ctx, input_, slope):
        ctx.save_for_backward(input_)
        ctx.slope = slope
        return (input_ > 0).float()

    @staticmethod
    def backward(ctx, grad_output):
        (input_,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * input_)
        return grad_output * ctx.slope * s * (1 - s), None


def stable_sigmoid(slope=25):
    """A spike function with the stable sigmoid surrogate, made like snnTorch's ``sigmoid``."""
    return lambda x: _StableSigmoid.apply(x, slope)


SURROGATES.register("sigmoid", derivative=None)(_sloped(stable_sigmoid))  # slope 25
SURROGATES.register("atan", derivative=_atan_derivative)(_sloped(surrogate.atan, "alpha"))  # alpha 2
SURROGATES.register("spike_rate_escape", derivative=None)(_sloped(surrogate.spike_rate_escape))  # slope 25
SURROGATES.register("triangular", derivative=None)(_unsloped(surrogate.triangular, "triangular"))
SURROGATES.register("straight_through", derivative=None)(
    _unsloped(surrogate.straight_through_estimator, "straight_through"))


class AdaptiveLeaky(snn.Leaky):
    """LIF neuron whose threshold rises with its own recent firing (ALIF, Bellec et al. 2018).

    snnTorch has no adaptive-threshold neuron, so it is written here on top of ``snn.Leaky``
    (same beta, threshold, surrogate, reset and learnable parameters) with snnTorch's calling
    convention: state passed in and returned, reset delayed by one step as in ``Leaky``::

        b[t]   = alpha * b[t-1] + (1 - alpha) * S[t-1]         # trace of the neuron's spikes
        thr[t] = threshold * (1 + adapt * b[t])
        U[t]   = beta * U[t-1] + X[t] - S[t-1] * thr[t-1]      # reset by subtraction ("zero": U *= 1 - S)
        S[t]   = H(U[t] - thr[t])

    forward(input_, b, mem) -> (spk, b, mem), each shaped like ``input_``.
    """

    def __init__(self, beta, alpha=0.9, adapt=1.0, **kwargs):
        super().__init__(beta, **kwargs)
        self.register_buffer("alpha", torch.as_tensor(alpha))
        self.register_buffer("adapt", torch.as_tensor(adapt))

    def forward(self, input_, b, mem):
        thr_prev = self.threshold * (1 + self.adapt * b)
        reset = self.spike_grad(mem - thr_prev).detach()
        beta = self.beta.clamp(0, 1)
        if self.reset_mechanism_val == 1:  # reset to zero
            mem = beta * mem * (1 - reset) + input_
        else:  # subtract the threshold that was crossed
            mem = beta * mem + input_ - reset * thr_prev
        b = self.alpha * b + (1 - self.alpha) * reset
        spk = self.spike_grad(mem - self.threshold * (1 + self.adapt * b))
        return spk, b, mem


class SpikingLayer(nn.Module):
    """One population of neurons run over time: current [T, B, ...] -> (spikes, membrane), each
    [T, B, ...]. State lives only inside ``forward`` and starts at zero on every call, so no
    state leaks between batches and there is nothing to reset.

    A plain ``snn.Leaky`` runs through the fused multi-step kernel (:mod:`.fused`), which gives
    the same spikes (under ``torch.compile``, its traceable twin); other cells, and every cell while ``step_by_step`` is set, are called once
    per step as snnTorch's tutorials do."""

    step_by_step = False  # the reference execution (see :func:`snnclf.models.step_by_step`)

    def __init__(self, cell, num_states, derivative=None):
        super().__init__()
        self.cell = cell
        self.num_states = num_states  # Leaky: (mem,); Synaptic: (syn, mem); AdaptiveLeaky: (b, mem)
        self.derivative = derivative  # d spike / d z of the surrogate, in place (see SURROGATES)
        self.multistep = fused.supports(cell)
        self.reset_mode = fused.reset_mode(cell) if self.multistep else None

    def forward(self, x):
        if self.multistep and not self.step_by_step:
            if torch.compiler.is_compiling():
                return fused.leaky_unrolled(x, self.cell, self.reset_mode)
            return fused.leaky(x, self.cell, self.reset_mode, self.derivative)
        steps = x.unbind(0)  # never x[t]: its backward writes a full zero tensor per step
        state = [torch.zeros_like(steps[0]) for _ in range(self.num_states)]
        spikes, membrane = [], []
        for x_t in steps:
            spk, *state = self.cell(x_t, *state)
            spikes.append(spk)
            membrane.append(state[-1])
        return torch.stack(spikes), torch.stack(membrane)


class ChipLayer(SpikingLayer):
    """A population of a chip's neurons (:class:`~.quant.ChipIF`, :class:`~.quant.XyloLIF`, on
    the integers of their layer) run over time: current [T, B, ...] -> (spikes, membrane), each
    [T, B, ...], state from zero at every call. A cell returns (spikes, membrane, *state): its
    membrane (the value compared with the threshold) is not one of its states."""

    def __init__(self, cell):
        nn.Module.__init__(self)
        self.cell = cell
        self.num_states = cell.num_states
        self.derivative, self.multistep, self.reset_mode = None, False, None

    def forward(self, x):
        state = [torch.zeros_like(x[0]) for _ in range(self.num_states)]
        spikes, membrane = [], []
        constants = self.cell.chip_threshold()  # the layer's threshold and scale, once for all steps
        for x_t in x.unbind(0):
            spk, mem, *state = self.cell.step(x_t, *constants, *state)
            spikes.append(spk)
            membrane.append(mem)
        return torch.stack(spikes), torch.stack(membrane)


def spiking_layers(model):
    """(name, layer) of every :class:`SpikingLayer` of ``model``, named as in the bare model: the
    prefixes of the wrappers around it (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``)
    left out, so that a layer has one name in every file that reports it."""
    return [(name.replace("_orig_mod.", "").replace("module.", ""), m) for name, m in model.named_modules()
            if isinstance(m, SpikingLayer)]


def _resolved(options):
    """(every neuron option, its fallback where not given; the given ones). Models and neurons are
    built from Python as well, so the given values pass their flags' checks here (one check,
    whoever gives the value)."""
    given_options = {k: check_field(NeuronFlags, k, v) for k, v in given(options).items()}
    return {**{f.name: f.metadata.get("fallback") for f in fields(NeuronFlags)}, **given_options}, given_options


def _cell_options(options):
    """snnTorch's keyword arguments for the neuron options (fallbacks filled in), and the
    surrogate's declared in-place derivative."""
    o, _ = _resolved(options)
    derivative = SURROGATES.info(o["surrogate"], "--surrogate")["derivative"]
    slope = o["slope"]
    cell = dict(beta=o["beta"], threshold=o["threshold"], reset_mechanism=o["reset"],
                spike_grad=SURROGATES[o["surrogate"]](slope), learn_beta=bool(o["learn_beta"]),
                learn_threshold=bool(o["learn_threshold"]))
    return cell, o, derivative and (lambda z: derivative(z, slope))


@NEURONS.register("leaky", options=SHARED)
def leaky(**options):
    """snnTorch ``Leaky`` (first-order LIF)."""
    cell, _, derivative = _cell_options(options)
    return SpikingLayer(snn.Leaky(**cell), 1, derivative)


@NEURONS.register("synaptic", options=SHARED + SECOND_STATE)
def synaptic(**options):
    """snnTorch ``Synaptic``: a synaptic current decaying with ``alpha`` feeds the membrane."""
    cell, o, derivative = _cell_options(options)
    return SpikingLayer(snn.Synaptic(alpha=o["alpha"], **cell), 2, derivative)


@NEURONS.register("alif", options=SHARED + SECOND_STATE)
def alif(**options):
    """:class:`AdaptiveLeaky`: the threshold adapts with decay ``alpha``."""
    cell, o, derivative = _cell_options(options)
    return SpikingLayer(AdaptiveLeaky(alpha=o["alpha"], **cell), 2, derivative)


def make_neuron(kind, **options):
    """A :class:`SpikingLayer` of the named neuron. ``None`` options keep their fallbacks; an
    option the neuron does not read is refused (see :func:`options_for`)."""
    builder = NEURONS.lookup(kind, "neuron")
    used = NEURONS.info(kind)["options"]
    for key, value in options.items():
        if key not in NEURON_OPTIONS:
            raise TypeError(f"{key!r} is not a neuron option ({', '.join(NEURON_OPTIONS)})")
        if value is not None and key not in used:
            raise UsageError(f"--{key} does not apply to {kind} neurons; leave it out")
    return builder(**given(options))


def chip_neuron(chip, layer, last=False, **options):
    """The neurons of ``chip`` (``--chip``) after its quantized ``layer`` (:mod:`.quant`), one
    threshold for the layer, reset by subtracting it. Speck's integrate and fire without leak;
    Xylo's have a synaptic current that halves each step (a bit shift of 1) and a membrane that
    decays by a bit shift of d, ``--beta`` being ``1 - 2^-d`` (d from 1 to 15; 0.9375 unless
    given). The options that would change what the chip computes are refused in one line."""
    o, given_options = _resolved(options)
    if o["reset"] != "subtract":
        raise UsageError(f"--reset {o['reset']}: {chip}'s neurons, as its software runs them, reset by subtracting "
                         "the threshold: leave --reset out with --chip")
    if "learn_beta" in given_options:
        raise UsageError(f"--learn_beta: {chip}'s decay is fixed on the chip; leave it out with --chip")
    spike_grad = SURROGATES.lookup(o["surrogate"], "--surrogate")(o["slope"])
    threshold, learn = o["threshold"], bool(o["learn_threshold"])
    if chip == "xylo":
        return ChipLayer(XyloLIF(threshold, spike_grad, learn, dash_syn=1, dash_mem=_bit_shift(given_options.get("beta")),
                                 max_spikes=1 if last else 31).attach(layer))
    if "beta" in given_options and o["beta"] != 1.0:
        raise UsageError(f"--beta {o['beta']:g}: {chip}'s neurons integrate without leak (beta 1): leave --beta out "
                         "with --chip")
    return ChipLayer(ChipIF(threshold, spike_grad, learn).attach(layer))


def _bit_shift(beta, default=4):
    """The bit shift d of Xylo's membrane decay given as ``--beta`` = 1 - 2^-d (``default`` when not given)."""
    if beta is None:
        return default
    d = -math.log2(1 - beta) if beta < 1 else math.inf
    if not (1 <= d <= 15 and d == round(d)):
        raise UsageError(f"--beta {beta:g}: Xylo's membrane decays by a bit shift, so --beta is 1 - 2^-d for d from 1 "
                         "to 15 (0.5, 0.75, 0.875, 0.9375, ...)")
    return int(round(d))


def options_for(kind, options):
    """The part of a model's neuron ``options`` that neuron ``kind`` reads: for a model built of
    several kinds (resnet's ALIF, LIF and Synaptic layers), where ``--alpha`` is meant for the
    two-state ones only."""
    used = NEURONS.info(kind)["options"]
    return {k: v for k, v in options.items() if k in used}
