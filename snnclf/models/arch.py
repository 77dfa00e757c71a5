"""The layer notation of SNN papers, ``12C5-MP2-64C5-MP2-1024FC10``, parsed and built into a
network. The built-in ``csnn``, ``cnn``, ``snn-mlp`` and their ANN twins are written in it too.

Tokens, joined by ``-``:
  ``12C5``      12 filters 5x5, stride 1, no padding (the notation's meaning);
  ``32C3p1``    the same with padding 1 (snnclf's addition, for "same" convolutions);
  ``MP2``/``AP2``/``SP2`` max / average / sum pooling 2x2, stride 2 (average and sum pooling
                are what NIR, and so neuromorphic hardware, can take: see ``snnclf export``);
  ``1024FC10``  fully connected 1,024 -> 10; ``FC10`` infers its inputs;
  ``LIF``       the neurons of the layer before fire here, so pooling after it pools spikes;
  ``PSUM``      first: the input's channels (an event camera's two polarities) summed into one.
Every conv and FC is followed by neurons; pooling right after a conv pools its currents, before
its neurons fire (as in snnTorch's tutorial CSNN), and after ``LIF`` it pools their spikes (as
Speck does: ``8C3p1-LIF-SP2``). The last FC has one output per class.

With ``chip`` (``--chip``) the convolutions and FC layers compute in the chip's integers and the
neurons are the chip's integrate-and-fire neurons (:mod:`snnclf.models.quant`).
"""
import re
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from ..errors import UsageError
from ..flags import checked, number
from . import quant
from .layers import ChannelSum, FlattenLinear, Folded, Network, TimeDropout
from .neurons import chip_neuron, make_neuron

# The check of --dropout, which the flag uses too (snnclf.config): one check, whoever gives it.
CHECKS = {"dropout": number(float, 0, 1, high_open=True)}

# The pooling tokens. Sum pooling is average pooling without the division (torch has no layer of
# its own for it; NIR has SumPool2d).
POOLS = {"MP": nn.MaxPool2d, "AP": nn.AvgPool2d, "SP": lambda k: nn.AvgPool2d(k, divisor_override=1)}

_TOKEN = re.compile(
    r"(?P<filters>\d+)C(?P<kernel>\d+)(?:p(?P<pad>\d+))?"
    r"|(?P<pool>MP|AP|SP)(?P<size>\d+)"
    r"|(?P<fc_in>\d+)?FC(?P<fc_out>\d+)"
    r"|(?P<fire>LIF)"
    r"|(?P<psum>PSUM)"
)

HELP = ("write NcK for a convolution (12C5, or 32C3p1 with padding), MPk, APk or SPk for pooling, "
        "FCn or mFCn for a fully connected layer, LIF where the neurons before fire (pooling after it pools "
        "spikes), PSUM first to sum the input's channels (an event camera's polarities) into one, joined by '-'")


@dataclass
class Token:
    text: str
    kind: str  # "conv", "pool", "fc", "fire" or "psum"
    a: int = 0  # conv filters, pool size, fc inputs (0: infer)
    b: int = 0  # conv kernel, fc outputs
    pad: int = 0
    pool: str = ""


def parse(spec, where="--arch"):
    """The tokens of ``spec``; a token that cannot be read is named in the error."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"{where}: the spec is empty: {HELP}")
    tokens = []
    parts = spec.strip().split("-")
    for i, text in enumerate(parts, 1):
        m = _TOKEN.fullmatch(text)
        if m is None:
            raise UsageError(f"{where}: cannot read token {i} {text!r} of {spec!r}: {HELP}")
        if m["filters"]:
            tok = Token(text, "conv", int(m["filters"]), int(m["kernel"]), int(m["pad"] or 0))
            zero = tok.a == 0 or tok.b == 0
        elif m["pool"]:
            tok = Token(text, "pool", int(m["size"]), pool=m["pool"])
            zero = tok.a == 0
        elif m["fire"]:
            tok, zero = Token(text, "fire"), False
        elif m["psum"]:
            tok, zero = Token(text, "psum"), False
        else:
            tok = Token(text, "fc", int(m["fc_in"] or 0), int(m["fc_out"]))
            zero = tok.b == 0 or (m["fc_in"] is not None and tok.a == 0)
        if zero:
            raise UsageError(f"{where}: token {i} {text!r} of {spec!r} has a size of 0; sizes start at 1")
        tokens.append(tok)
    return tokens


def build(spec, in_shape, num_classes, *, spiking=True, neuron="leaky", batch_norm=False,
          dropout=0.0, where="--arch", chip=None, **neuron_options):
    """A :class:`Network` of :class:`Folded` stateless stages and neuron layers for ``spec``.

    Sizes are followed from ``in_shape`` (C, H, W); a layer that does not fit is refused with its
    token and the sizes it meets. ``spiking=False`` puts ReLU where the neurons would be (the ANN
    twins), and the last layer then gives logits. ``chip`` (a name of
    :data:`snnclf.chips.CHIPS`) builds the layers in the chip's integers, without bias, and its
    integrate-and-fire neurons.

    One pass over the tokens, longer than most functions here on purpose: the sizes it follows
    (channels, height, width, features) change at every token, and each check reads next to the
    size it checks; split into per-token helpers they would be passed back and forth."""
    checked("dropout", CHECKS["dropout"], dropout)
    tokens = parse(spec, where)
    if chip and batch_norm:
        raise UsageError(f"--batch_norm: {chip} has no batch norm (it would need a bias, which the chip adds "
                         "on its own clock): leave --batch_norm out with --chip")
    if chip and not spiking:
        raise UsageError(f"--chip {chip} runs spiking networks: choose a spiking model")
    channels, height, width = in_shape
    features = None  # set once flattened
    stages, stage = [], []  # stage: the stateless layers waiting for their neurons
    names, counts = [], {"conv": 0, "fc": 0}
    weighted = [i for i, t in enumerate(tokens, 1) if t.kind in ("conv", "fc")]
    arithmetic = quant.ARITHMETIC[chip] if chip else None

    def close(name, last):
        stages.append((name, Folded(*stage)))
        if chip:
            layer = next(m for m in stage if isinstance(m, quant.Quantized))
            stages.append((f"{name}_lif", chip_neuron(chip, layer, last, **neuron_options)))
        elif spiking:
            stages.append((f"{name}_lif", make_neuron(neuron, **neuron_options)))
        elif not last:
            stages.append((f"{name}_relu", Folded(nn.ReLU())))
        stage.clear()

    for i, tok in enumerate(tokens, 1):
        at = f"{where}: token {i} {tok.text!r}"
        if tok.kind == "psum":
            if names or stages:
                raise UsageError(f"{at} sums the input's channels, so it comes first: move it to the start")
            stages.append(("psum", Folded(ChannelSum())))
            channels = 1
        elif tok.kind == "fire":
            if not stage:
                before = [tokens[w - 1].text for w in weighted if w < i]
                raise UsageError(f"{at} fires the neurons of the layer before it, but "
                                 + (f"those of {before[-1]!r} fired already" if before else
                                    "no convolution or FC layer comes before it") + ": remove it")
            close(names[-1], i > weighted[-1])
        elif tok.kind == "conv":
            if features is not None:
                raise UsageError(f"{at} is a convolution after a fully connected layer; "
                                 "put convolutions and pooling before the FC layers")
            h, w = height + 2 * tok.pad - tok.b + 1, width + 2 * tok.pad - tok.b + 1
            if h < 1 or w < 1:
                raise UsageError(f"{at} needs at least {tok.b}x{tok.b} input but gets "
                                 f"{height}x{width} there: use a smaller kernel, padding or fewer pooling layers")
            if stage:
                close(names[-1], False)
            _between(stages, names, arithmetic)
            counts["conv"] += 1
            names.append(f"conv{counts['conv']}")
            if chip:
                stage.append(quant.QuantConv2d(channels, tok.a, tok.b, padding=tok.pad))
            else:
                stage.append(nn.Conv2d(channels, tok.a, tok.b, padding=tok.pad, bias=not batch_norm))
            if batch_norm:
                stage.append(nn.BatchNorm2d(tok.a))
            channels, height, width = tok.a, h, w
        elif tok.kind == "pool":
            if features is not None:
                raise UsageError(f"{at} pools after a fully connected layer; pool before the FC layers")
            if tok.a > height or tok.a > width:
                raise UsageError(f"{at} pools {tok.a}x{tok.a} but the input there is only "
                                 f"{height}x{width}: use a smaller pool or fewer layers before it")
            pool = POOLS[tok.pool](tok.a)
            if not stage:  # pooling spikes (after neurons, or of the input itself)
                counts.setdefault("pool", 0)
                counts["pool"] += 1
                stages.append((f"pool{counts['pool']}", Folded(pool)))
            else:
                stage.append(pool)
            height, width = height // tok.a, width // tok.a
        else:
            if stage:
                close(names[-1], False)
            flat = features is None
            inputs = channels * height * width if flat else features
            if tok.a and tok.a != inputs:
                got = f"{inputs} ({channels}x{height}x{width})" if flat else str(inputs)
                raise UsageError(f"{at} states {tok.a} inputs but gets {got} there: "
                                 f"write {inputs}FC{tok.b} or FC{tok.b}")
            _between(stages, names, arithmetic)
            if dropout > 0:
                stages.append((f"drop{counts['fc'] + 1}", TimeDropout(dropout)))
            counts["fc"] += 1
            names.append(f"fc{counts['fc']}")
            if chip:
                layer = (quant.QuantFlattenLinear((channels, height, width), tok.b) if flat
                         else quant.QuantLinear(inputs, tok.b))
            else:
                layer = FlattenLinear((channels, height, width), tok.b) if flat else nn.Linear(inputs, tok.b)
            stage.append(layer)
            features = tok.b
    if not weighted or tokens[weighted[-1] - 1].kind != "fc" or tokens[-1].kind == "pool":
        raise UsageError(f"{where}: {spec!r} must end with a fully connected layer FC{num_classes} "
                         f"(one output per class)")
    if features != num_classes:
        raise UsageError(f"{where}: the last layer {tokens[weighted[-1] - 1].text!r} has {features} outputs but "
                         f"the data set has {num_classes} classes: end with FC{num_classes}")
    if stage:
        close(names[-1], True)
    return Network(OrderedDict(stages), spiking=spiking)


def _between(stages, names, arithmetic):
    """What a chip's arithmetic puts before a weighted layer: the cap on the input counts before
    the first, a step of delay before each other where the chip has one."""
    if arithmetic and arithmetic.input_most and not names:
        stages.append(("input_clamp", Folded(quant.InputClamp(arithmetic.input_most))))
    if arithmetic and arithmetic.lag and names:
        stages.append((f"{names[-1]}_delay", quant.Delay()))
