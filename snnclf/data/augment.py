"""Light augmentation of training batches: random shifts (``--shift N``), rotations and zooms
(``--rotate DEG``, ``--scale F``) and, for event frames,
event dropout, background events and per-saccade shifts (``--event_dropout P``, ``--noise_events
N``, ``--saccade_shift N``)."""
import math

import torch
import torch.nn.functional as F


def random_shift(x, pixels):
    """Translate each sample of ``x`` [B, ..., H, W] by its own random whole-pixel offset of up to
    ``pixels`` in each direction, filling with zeros: the small shifts that lift convolutional
    networks on MNIST. Every channel and time step of a sample (event frames) moves together.

    Written here rather than with torchvision's ``RandomAffine``/``RandomCrop``, which draw one
    offset for a whole batch tensor; per-sample offsets are one gather on the batch, on its device."""
    if pixels <= 0:
        return x
    batch, (height, width) = x.shape[0], x.shape[-2:]
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    offsets = torch.randint(0, 2 * pixels + 1, (2, batch), device=x.device)
    lead = [1] * (x.dim() - 3)  # the dims between batch and the image rows
    rows = (offsets[0, :, None] + torch.arange(height, device=x.device)).view(batch, *lead, height, 1)
    out = padded.gather(-2, rows.expand(*padded.shape[:-2], height, padded.shape[-1]))
    cols = (offsets[1, :, None] + torch.arange(width, device=x.device)).view(batch, *lead, 1, width)
    return out.gather(-1, cols.expand(*out.shape[:-1], width))


def random_affine(x, degrees=0.0, scale=0.0):
    """Rotate each sample of ``x`` [B, ..., H, W] about its centre by its own random angle of up
    to ``degrees`` either way and zoom it by its own random factor in [1 - scale, 1 + scale],
    bilinearly, filling with zeros: the small rotations and size changes that handwriting has and
    that lift convolutional networks on digits. Every channel and time step of a sample moves
    together. Written here for the same reason as :func:`random_shift`: torchvision's
    ``RandomAffine`` draws one transform for a whole batch tensor; this is one ``affine_grid`` and
    one ``grid_sample`` on the batch, on its device."""
    if degrees <= 0 and scale <= 0:
        return x
    batch, (height, width) = x.shape[0], x.shape[-2:]
    angle = (torch.rand(batch, device=x.device) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(batch, device=x.device) * 2 - 1) * scale
    # The grid maps each output pixel to where it is read in the input: the inverse rotation and
    # zoom, in coordinates normalised per axis (hence the aspect ratio on the cross terms).
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, sin * height / width, zero], 1),
                         torch.stack([-sin * width / height, cos, zero], 1)], 1)
    flat = x.reshape(batch, -1, height, width)
    grid = F.affine_grid(theta.to(flat.dtype), list(flat.shape), align_corners=False)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False).view(x.shape)


def saccade_shift(x, pixels, saccades):
    """Frames ``x`` [B, T, P, H, W] with the frames of each saccade (``saccades``: a slice of T
    each, covering them in order) moved by their own random whole-pixel offset of up to
    ``pixels``, per sample: where the digit sits in each saccade varies between recordings (by
    0.5-0.9 px in N-MNIST), and between a simulated camera and a real one."""
    if pixels <= 0:
        return x
    return torch.cat([random_shift(x[:, part], pixels) for part in saccades], dim=1)


# Event frames hold counts of events per (step, polarity, pixel), made once into the frame cache.
# Dropping events and adding background events are done on the counts: dropping each event with
# probability p leaves a binomial share of each count, and background events spread uniformly
# over the sample give Poisson counts, so both equal what they would give on the events before
# framing, without re-reading them. (tonic's transforms work on event arrays, before the cache.)

def event_dropout(x, p):
    """Frames ``x`` [B, T, P, H, W] with each event dropped with probability ``p``."""
    return torch.binomial(x, torch.full_like(x, 1.0 - p)) if p > 0 else x


def noise_events(x, n):
    """Frames ``x`` [B, T, P, H, W] with ``n`` background events per sample on average, uniform
    over time steps, polarities and pixels."""
    return x + torch.poisson(torch.full_like(x, n / x[0].numel())) if n > 0 else x
