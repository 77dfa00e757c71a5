"""How pictures become files: figures made without pyplot (so drawing never touches a user's
matplotlib backend or global figure list) and written atomically, like every run file."""
import io
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from ..runs import atomic_write


def subplots(nrows=1, ncols=1, figsize=None, **kwargs):
    """A new figure and its axes, as ``plt.subplots`` gives them, but not registered with pyplot:
    nothing is shown, nothing needs closing, and no backend is chosen for the process."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, path):
    """Write ``fig`` to ``path`` (atomically, like every run file); the format is the suffix's."""
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:], dpi=110, bbox_inches="tight"), "wb")
    return path


def gif_frame(fig):
    """A figure as one GIF frame (a palette image)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).convert("P", palette=Image.ADAPTIVE)


def save_gif(frames, path, duration_ms):
    """An animated GIF of ``frames`` written by Pillow (no ffmpeg needed), looping.

    matplotlib's ``PillowWriter`` grabs frames of one figure at its fixed size; these frames are
    drawn as separate figures cropped to their content (``bbox_inches="tight"``, which the writer
    does not apply), each quantised to its own palette, and the file goes through the atomic
    writer above, so Pillow is called directly."""
    path = Path(path)
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                duration=duration_ms, loop=0, disposal=2), "wb")
    return path
