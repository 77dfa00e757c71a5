"""The environments of the NIR consumers whose pins clash with snnclf's own packages (Sinabs and
Rockpool pin ``nir<=1.0.4``): each a virtual environment of its own, built once from what the
consumer declares (``install``, ``deps``), whose own packages come first and this interpreter's
after them (torch and snnclf are not installed again). A consumer is run there by
:func:`run_in`, which calls :func:`snnclf.export.consumers.main` in that interpreter."""
import logging
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch

from ..errors import UsageError
from .consumers import CONSUMERS, Outputs, installed

log = logging.getLogger(__name__)

# Where the environments are built unless --envs or SNNCLF_ENVS says otherwise.
DEFAULT_ROOT = os.environ.get("SNNCLF_ENVS") or str(Path("~/.cache/snnclf/envs").expanduser())


def python_for(tool, root=DEFAULT_ROOT):
    """The interpreter that runs ``tool``: this one where it imports here, else that of its own
    environment under ``root``, built on first use. A build that fails is one line naming it."""
    if installed(tool):
        return sys.executable
    info = CONSUMERS.info(tool)
    env = Path(root).expanduser() / info["install"][0].split("==")[0]  # one per package: speck runs in sinabs's
    main_site = sysconfig.get_paths()["purelib"]  # torch, snnclf and the rest, after the env's own
    spec = " ".join(info["install"]) + (" (with deps)" if info["deps"] else "") + f" beside {main_site}"
    python, ready = env / "bin" / "python", env / ".snnclf-ready"
    if ready.is_file() and ready.read_text() == spec:
        return str(python)
    marker = env / ".snnclf-env"  # written first: a folder without it is not one snnclf made, and is left alone
    if env.exists() and not marker.is_file():
        raise UsageError(f"{env} exists and is not an environment snnclf built for {tool}: it is left as it is; "
                         "choose another folder with --envs")
    log.warning("building %s's environment in %s (once): pip install %s%s", tool, env,
                "" if info["deps"] else "--no-deps ", " ".join(info["install"]))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
        marker.write_text(f"an environment snnclf export builds for {tool}; rebuilt when its packages change\n")
    except (OSError, subprocess.CalledProcessError) as err:
        raise UsageError(f"cannot make {tool}'s environment in {env} ({err}): choose another folder with --envs") from None
    pip = [str(python), "-m", "pip", "install", "-q", *([] if info["deps"] else ["--no-deps"]), *info["install"]]
    done = subprocess.run(pip, capture_output=True, text=True)  # before the .pth: pip sees only the env
    if done.returncode:
        why = last_error(done.stderr) or f"pip exited {done.returncode}"
        raise UsageError(f"{tool}'s environment in {env} did not build ({why}): run {' '.join(pip[2:])} there "
                         "yourself, or check --envs")
    site = subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   text=True).strip()
    Path(site, "_snnclf_main.pth").write_text(f"import site; site.addsitedir({main_site!r})\n")
    ready.write_text(spec)
    return str(python)


def run_in(python, tool, path, inputs, dt):
    """Run consumer ``tool`` on the NIR file ``path`` in the interpreter ``python`` (its own
    environment): its :class:`~.consumers.Outputs`, or its error raised as a RuntimeError."""
    with tempfile.TemporaryDirectory() as tmp:
        given, out = Path(tmp, "inputs.pt"), Path(tmp, "outputs.pt")
        torch.save({"inputs": inputs.contiguous(), "dt": dt}, given)
        done = subprocess.run([python, "-c", "from snnclf.export.consumers import main; main()", tool, str(path),
                               str(given), str(out)], capture_output=True, text=True)
        if done.returncode or not out.is_file():
            raise RuntimeError(last_error(done.stderr) or f"{tool} exited {done.returncode}")
        got = torch.load(out, weights_only=True)
    if not got["ok"]:
        raise RuntimeError(got["error"])
    return Outputs(got["spikes"], got["membrane"], {**got["convention"], "version": got["version"]})


def last_error(text):
    """The last error line pip or a tool printed on ``text`` (its stderr), or ""."""
    lines = [line for line in text.splitlines() if line.startswith("ERROR") or "Error" in line]
    return lines[-1].strip() if lines else ""
