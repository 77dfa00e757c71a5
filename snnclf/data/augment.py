"""Light augmentation of training batches: random shifts (``--shift N``)."""
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
