"""snnTorch's ``Leaky`` neuron run over all T steps in one autograd node.

Calling ``snn.Leaky`` once per step, as the tutorials do, builds about ten autograd nodes per
step, keeps each step's temporaries alive for the backward pass and stacks the outputs with
``torch.stack`` (whose backward is another full copy). snnTorch has no multi-step kernel and
SpikingJelly's needs CuPy on a GPU, so this module writes one: the forward pass is a plain loop of
in-place operations into preallocated [T, ...] outputs, and the backward pass is the same
recurrence run in reverse, one step at a time so that each step's temporaries stay in cache,
with the surrogate gradient of snnTorch's function (in place, for surrogates that carry their
derivative; through the function's own backward otherwise). Only the membrane is kept for the
backward pass.

The arithmetic is snnTorch's, operation for operation, so spikes and membranes are bit-for-bit
those of ``snn.Leaky`` called step by step (``reset_delay=True``, the default)::

    reset[t] = H(mem[t-1] - threshold)                     # detached, as snnTorch's mem_reset
    mem[t]   = beta * mem[t-1] + x[t] - reset[t] * threshold   # "subtract"
    mem[t]   = beta * ((1 - reset[t]) * mem[t-1]) + x[t]       # "zero"
    mem[t]   = beta * mem[t-1] + x[t]                          # "none"
    spk[t]   = H(mem[t] - threshold), with the surrogate gradient in the backward pass
"""
import snntorch as snn
import torch

SUBTRACT, ZERO, NONE = 0, 1, 2  # snnTorch's reset_mechanism_val


def supports(cell):
    """Whether ``cell`` is a plain ``snn.Leaky`` this kernel reproduces exactly."""
    return (type(cell) is snn.Leaky and cell.reset_delay and not cell.inhibition
            and not cell.state_quant and not cell.init_hidden
            and float(cell.graded_spikes_factor) == 1.0)


def reset_mode(cell):
    """The cell's reset as a plain int (snnTorch keeps it in a tensor buffer, which a compiled
    graph would have to branch on)."""
    return int(cell.reset_mechanism_val)


def leaky(x, cell, reset, derivative=None):
    """Spikes and membrane [T, ...] of ``cell`` (an ``snn.Leaky`` with reset mode ``reset``)
    driven by currents ``x`` [T, ...]. ``derivative(z)``, when the surrogate declares one,
    overwrites ``z`` with the surrogate's gradient; without it autograd computes it."""
    beta = cell.beta.clamp(0, 1)  # as snnTorch; autograd takes the clamp's gradient
    return _Leaky.apply(x, beta.to(x.dtype), cell.threshold.to(x.dtype), cell.spike_grad, reset,
                        derivative)


def leaky_unrolled(x, cell, reset_mode):
    """The same as :func:`leaky`, written as plain per-step tensor operations for
    ``torch.compile``: the compiler unrolls the loop and fuses each step's element-wise work
    (forward and backward) into a few kernels, which the hand-written backward would hide."""
    beta, threshold = cell.beta.clamp(0, 1), cell.threshold
    mem = torch.zeros_like(x[0])
    reset = torch.zeros_like(mem)
    spikes, membrane = [], []
    for x_t in x.unbind(0):
        if reset_mode == SUBTRACT:
            mem = beta * mem + x_t - reset * threshold
        elif reset_mode == ZERO:
            mem = beta * ((1 - reset) * mem) + x_t
        else:
            mem = beta * mem + x_t
        spk = cell.spike_grad(mem - threshold)
        reset = spk.detach()
        spikes.append(spk)
        membrane.append(mem)
    return torch.stack(spikes), torch.stack(membrane)


class _Leaky(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, beta, threshold, spike_grad, reset, derivative):
        mem = torch.empty_like(x)  # keeps x's step layout (channels-last stays channels-last)
        spk = torch.empty_like(mem)
        prev = torch.zeros_like(mem[0])
        prev_spk = torch.zeros_like(prev)
        scratch = torch.empty_like(prev)  # one step's temporary, reused at every step
        for t, x_t in enumerate(x.unbind(0)):
            m = mem[t]
            if reset == ZERO:  # beta * ((1 - reset) * mem) + x
                torch.mul(prev_spk, -1, out=scratch).add_(1).mul_(prev)  # exact: spikes are 0/1
                torch.mul(scratch, beta, out=m)
            else:
                torch.mul(prev, beta, out=m)
            m.add_(x_t)
            if reset == SUBTRACT:  # reset is 0 or 1, so reset * threshold is exact either way
                m.sub_(torch.mul(prev_spk, threshold, out=scratch))
            torch.gt(m, threshold, out=spk[t])  # H(mem - threshold): equal for IEEE floats
            prev, prev_spk = m, spk[t]
        ctx.save_for_backward(mem, beta, threshold)
        ctx.spike_grad, ctx.reset, ctx.derivative = spike_grad, reset, derivative
        ctx.set_materialize_grads(False)
        return spk, mem

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk, grad_mem):
        mem, beta, threshold = ctx.saved_tensors
        need_x, need_beta, need_threshold = ctx.needs_input_grad[:3]
        zero_reset = ctx.reset == ZERO
        derivative = ctx.derivative
        grad = torch.empty_like(mem)
        grad_beta = torch.zeros_like(beta) if need_beta else None
        grad_threshold = torch.zeros_like(threshold) if need_threshold else None
        # One step at a time, last to first, so that each step's temporaries stay in cache.
        fired = None  # mem[t] > threshold (spk[t], the reset of step t+1), from the step after
        for t in range(mem.shape[0] - 1, -1, -1):
            g = grad[t]
            if grad_spk is None:
                g.zero_()
            else:
                if derivative is not None:  # the surrogate in place
                    derivative(torch.sub(mem[t], threshold, out=g)).mul_(grad_spk[t])
                else:  # through the surrogate function's own backward
                    with torch.enable_grad():
                        shifted = (mem[t] - threshold).requires_grad_()
                        g.copy_(torch.autograd.grad(ctx.spike_grad(shifted), shifted, grad_spk[t])[0])
                if need_threshold:  # spk = H(mem - threshold)
                    grad_threshold -= g.sum_to_size(threshold.shape)
            if grad_mem is not None:
                g.add_(grad_mem[t])
            if t + 1 < mem.shape[0]:  # d mem[t+1] / d mem[t] = beta (times 1 - spk[t], "zero")
                g.addcmul_(grad[t + 1], beta * fired.logical_not() if zero_reset else beta)
            fired = mem[t - 1] > threshold if t > 0 and (zero_reset or need_beta or need_threshold) else None
            if fired is not None and need_beta:  # fired: spk[t-1], the reset applied at step t
                prev = mem[t - 1] * fired.logical_not() if zero_reset else mem[t - 1]
                grad_beta += (g * prev).sum_to_size(beta.shape)
            if fired is not None and need_threshold and ctx.reset == SUBTRACT:  # mem[t] -= reset * thr
                grad_threshold -= (g * fired).sum_to_size(threshold.shape)
        return grad if need_x else None, grad_beta, grad_threshold, None, None, None
