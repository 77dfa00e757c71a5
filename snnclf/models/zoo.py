"""The named models. Layer sizes follow ``in_shape``; nothing is sized for one data set."""
from collections import OrderedDict

from torch import nn

from ..errors import UsageError
from ..flags import checked
from ..registry import Registry
from . import arch
from .layers import Folded, Network, TimeDropout
from .neurons import make_neuron, options_for

# Each model declares whether it spikes and which neurons it is built of; the options it accepts
# are its own keyword-only arguments and the options those neurons read (see ``model_options``).
MODELS = Registry("model", declares=("spiking", "neurons"))

MLP = "FC256-FC128-FC{k}"
CSNN = "32C3p1-{p}2-64C3p1-{p}2-FC512-FC{k}"  # snnTorch's tutorial CSNN, padded convolutions
CNN = "32C3p1-{p}2-64C3p1-{p}2-128C3p1-{p}2-FC256-FC{k}"
# --pool: the pooling token the conv models are written with (``{p}``); max is snnTorch's
# tutorials', avg and sum are what NIR can express (see snnclf.export)
POOLINGS = {"max": "MP", "avg": "AP", "sum": "SP"}


def _build(spec, name, in_shape, num_classes, spiking, batch_norm, dropout, pool="max", chip=None, **neuron):
    """Model ``name`` written in the --arch notation as ``spec``, with ``{k}`` the classes and
    ``{p}`` the pooling token of ``pool``."""
    if pool not in POOLINGS:
        raise UsageError(f"--pool: invalid choice: {pool!r} (choose from {', '.join(map(repr, POOLINGS))})")
    return arch.build(spec.format(k=num_classes, p=POOLINGS[pool]), in_shape, num_classes, spiking=spiking,
                      batch_norm=batch_norm, dropout=dropout, where=f"model {name}", chip=chip, **neuron)


# Each builder's keyword-only arguments are the options the model takes: --pool where it pools,
# the neuron options (**neuron) where it spikes, --chip where it can be built in a chip's integers.

@MODELS.register("ann-mlp", spiking=False, neurons=())
def ann_mlp(in_shape, num_classes, *, batch_norm=False, dropout=0.0):
    """ReLU MLP: inputs -> 256 -> 128 -> classes."""
    return _build(MLP, "ann-mlp", in_shape, num_classes, False, batch_norm, dropout)


@MODELS.register("ann-cnn", spiking=False, neurons=())
def ann_cnn(in_shape, num_classes, *, batch_norm=False, dropout=0.0, pool="max"):
    """ReLU CNN with the conv stack of csnn."""
    return _build(CSNN, "ann-cnn", in_shape, num_classes, False, batch_norm, dropout, pool)


@MODELS.register("snn-mlp", spiking=True, neurons=("leaky",))
def snn_mlp(in_shape, num_classes, *, batch_norm=False, dropout=0.0, chip=None, **neuron):
    """LIF MLP (T=1 is the single-step SNN)."""
    return _build(MLP, "snn-mlp", in_shape, num_classes, True, batch_norm, dropout, chip=chip, **neuron)


@MODELS.register("csnn", spiking=True, neurons=("leaky",))
def csnn(in_shape, num_classes, *, batch_norm=False, dropout=0.0, pool="max", chip=None, **neuron):
    """snnTorch's tutorial CSNN."""
    return _build(CSNN, "csnn", in_shape, num_classes, True, batch_norm, dropout, pool, chip, **neuron)


@MODELS.register("cnn", spiking=True, neurons=("leaky",))
def cnn(in_shape, num_classes, *, batch_norm=False, dropout=0.2, pool="max", chip=None, **neuron):
    """SpikingCNN: three conv layers with LIF and pooling, an FC LIF layer, an LIF output layer,
    dropout before each FC layer (0.2 unless --dropout says otherwise)."""
    return _build(CNN, "cnn", in_shape, num_classes, True, batch_norm, dropout, pool, chip, **neuron)


@MODELS.register("arch", spiking=True, neurons=("leaky",))
def from_arch(in_shape, num_classes, *, spec, batch_norm=False, dropout=0.0, chip=None, **neuron):
    """Any conv SNN written in the papers' notation (see :mod:`snnclf.models.arch`)."""
    return arch.build(spec, in_shape, num_classes, batch_norm=batch_norm, dropout=dropout, chip=chip, **neuron)


class ResidualBlock(nn.Module):
    """Spiking basic block: LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x)), on spikes [T, B, C, H, W].
    The shortcut adds input spikes (or their 1x1-conv projection) to the second current, before
    the block's last neurons fire (Hu et al.'s Spiking ResNet)."""

    def __init__(self, cin, cout, stride, neuron):
        super().__init__()
        self.conv1 = Folded(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.lif1 = make_neuron("leaky", **options_for("leaky", neuron))
        self.conv2 = Folded(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (Folded(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())
        self.lif2 = make_neuron("leaky", **options_for("leaky", neuron))

    def forward(self, x):  # [T, B, cin, H, W] -> (spikes, membrane) [T, B, cout, H/stride, W/stride]
        spk, _ = self.lif1(self.conv1(x))
        return self.lif2(self.conv2(spk) + self.shortcut(x))


@MODELS.register("resnet", spiking=True, neurons=("alif", "leaky", "synaptic"))
def resnet(in_shape, num_classes, *, dropout=0.0, **neuron):
    """SpikingResNet: a conv stem with adaptive-threshold LIF neurons, two residual blocks of LIF
    neurons (the second halves the resolution), global average pooling, a Synaptic (two-state)
    LIF layer of 256 and an LIF output layer. Batch norm is built in."""
    checked("dropout", arch.CHECKS["dropout"], dropout)
    channels, height, width = in_shape
    if min(height, width) < 2:
        raise UsageError(f"model resnet needs images of at least 2x2, got {height}x{width}")
    layers = OrderedDict(
        stem=Folded(nn.Conv2d(channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32)),
        stem_alif=make_neuron("alif", **options_for("alif", neuron)),
        block1=ResidualBlock(32, 32, 1, neuron),
        block2=ResidualBlock(32, 64, 2, neuron),
        pool=Folded(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        drop=TimeDropout(dropout),
        fc1=Folded(nn.Linear(64, 256)),
        fc1_syn=make_neuron("synaptic", **options_for("synaptic", neuron)),
        fc2=Folded(nn.Linear(256, num_classes)),
        fc2_lif=make_neuron("leaky", **options_for("leaky", neuron)),
    )
    return Network(layers)
