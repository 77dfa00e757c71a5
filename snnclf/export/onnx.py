"""The ONNX backend of ``snnclf export``: a non-spiking baseline as a per-image network written
as ONNX, and the file run back by onnxruntime."""
import contextlib
import io
import warnings

import torch
from torch import nn

from ..models.layers import TimeDropout
from ..utils import need

EXTRA = "pip install 'snnclf[export]'"


def require(module):
    """Import the optional package ``module`` this backend runs on, or a one-line error naming the install."""
    return need(module, "snnclf export --format onnx", EXTRA)


def onnx_network(model):
    """The non-spiking ``model`` as a plain per-image network [N, C, H, W] -> logits [N, K]:
    its layers in order, without the time dimension (over T frames its readout averages the
    logits) and without dropout."""
    layers = [layer for stage in model.children() if not isinstance(stage, TimeDropout) for layer in stage]
    return nn.Sequential(*layers).eval()  # eval at the top too: the exporter reads the top's mode


def write_onnx(net, example, path):
    """``net`` as an ONNX file with a free batch size. The TorchScript-based exporter: the
    torch.export-based one needs one more package (onnxscript) for these plain feed-forward
    networks, and gives them the same operators."""
    require("onnx")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice, on every call
        torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)


def onnxruntime_logits(path, inputs):
    """Logits [T, N, K] of the ONNX file ``path`` run by onnxruntime on ``inputs`` [T, N, ...]."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    T, N = inputs.shape[:2]
    flat = inputs.reshape(T * N, *inputs.shape[2:]).contiguous().numpy()
    out = session.run(["logits"], {"input": flat})[0]
    return torch.from_numpy(out).reshape(T, N, -1)
