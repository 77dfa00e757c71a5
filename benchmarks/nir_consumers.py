"""The NIR export run in every tool that reads NIR: the table of docs/nir.md.

Trains (or takes) an exportable digits run and an exportable MNIST run, exports each with every
``--target``, and runs each file in every consumer of :mod:`snnclf.export.consumers`, each tool
in an environment of its own where their ``nir`` pins clash (built here, once, under ``--envs``:
a virtual environment whose own packages come first, then this interpreter's, so torch and
snnclf are not installed again). Prints, per recipe, one row per tool: whether it loads the
file, the share of identical output spikes and of equal predictions against snnclf's own
network, and the target it needs or the error line that stops it; then every tool against every
target; then the machine and the versions.

    python benchmarks/nir_consumers.py                                   # trains both recipes, about 5 min on 2 cores
    python benchmarks/nir_consumers.py --digits_run digits-nir --mnist_run mnist-csnn-T4-nir --samples 1000
"""
import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import torch

from snnclf import __version__
from snnclf.builders import open_trained
from snnclf.data import DATASETS
from snnclf.export import AGREEMENT, check_nir, compare, reference
from snnclf.export import nir as nir_backend
from snnclf.export.consumers import CONSUMERS, Outputs, version
from snnclf.export.envs import last_error, python_for
from speed import cpu_model  # benchmarks/speed.py: the CPU's name, one way for every benchmark
from snnclf.errors import UsageError

# The targets of nir >= 1.0.6's schema, which every tool here is tried on; the chips' targets (nir
# 1.0.4's for integrate-and-fire networks, Xylo's specification) are measured by benchmarks/chips.py.
TARGETS = [t for t in nir_backend.TARGETS.names() if nir_backend.TARGETS[t].schema == "current"]
CHIP_MODELS = ("speck", "xylo")  # a chip's model of a chip's run: benchmarks/chips.py runs them
RECIPES = {  # name: the flags of snnclf train beyond --run (the exportable recipes: --pool avg --reset zero)
    "digits": ["--preset", "digits", "--pool", "avg", "--reset", "zero"],
    "mnist": ["--preset", "mnist", "--loss", "ce", "--pool", "avg", "--reset", "zero"],  # the loss docs/nir.md measured
}
# Tools that are no consumer: how the benchmark finds out what they do with a NIR file.
NOT_ON_INDEX = {"lava-dl": "Lava-DL"}  # pip index versions NAME fails here
NO_READER = {"nengo": ("nengo==4.1.0", "Nengo")}  # installs, but no module of it reads NIR


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="/tmp/snnclf-nir-envs", help="folder of the tools' environments (kept)")
    p.add_argument("--digits_run", help="an exportable digits run to use instead of training one")
    p.add_argument("--mnist_run", help="an exportable MNIST run to use instead of training one")
    p.add_argument("--epochs", type=int, default=20, help="digits epochs when training")
    p.add_argument("--mnist_epochs", type=int, default=2, help="MNIST epochs when training")
    p.add_argument("--mnist_subset", type=int, default=6000, help="MNIST training images when training")
    p.add_argument("--data_dir", default="../shared/data", help="folder holding MNIST/raw")
    p.add_argument("--save_dir", default="checkpoints")
    p.add_argument("--log_dir", default="logs")
    p.add_argument("--samples", type=int, default=360, help="test samples each tool runs")
    p.add_argument("--tools", nargs="+", default=[t for t in CONSUMERS.names() if t not in CHIP_MODELS],
                   help="consumers to run")
    p.add_argument("--json", help="also write every result to this JSON file")
    args = p.parse_args()

    envs = {tool: _environment(Path(args.envs), tool) for tool in args.tools}
    runs = {"digits": args.digits_run or _train("digits", ["--epochs", str(args.epochs)], args),
            "mnist": args.mnist_run or _train("mnist", ["--epochs", str(args.mnist_epochs), "--subset",
                                                        str(args.mnist_subset), "--data_dir", args.data_dir], args)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, run in runs.items():
            results[recipe] = _measure(recipe, run, args, envs, Path(tmp))
    others = _others(Path(args.envs))
    print(_report(results, runs, others, envs))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "results": results, "others": others}, indent=1))


def _train(recipe, more, args):
    run = f"nir-bench-{recipe}"
    subprocess.run([sys.executable, "-m", "snnclf", "train", *RECIPES[recipe], *more, "--run", run, "--overwrite",
                    "--save_dir", args.save_dir, "--log_dir", args.log_dir], check=True,
                   stdout=subprocess.DEVNULL)
    return run


def _environment(root, tool):
    """The interpreter that runs ``tool``: this one where it imports here, else its own
    environment under ``root`` (:func:`snnclf.export.envs.python_for`, built on first use); or the
    error line of that build."""
    try:
        python = python_for(tool, root)
    except UsageError as err:
        return {"error": str(err)}
    return {"python": python} if python == sys.executable else {"python": python, "env": str(Path(python).parents[1])}


def _measure(tag, run, args, envs, tmp):
    """Every tool on every target's file of ``run``: {target: {tool: row}}."""
    trained = open_trained(run, None, args.save_dir, args.log_dir)
    data_dir = args.data_dir if DATASETS.info(trained.cfg.dataset)["reads"] else None
    ref = reference(trained, args.samples, data_dir)
    inputs = tmp / f"{tag}.inputs.pt"
    torch.save({"inputs": ref.inputs.contiguous(), "dt": nir_backend.DT}, inputs)
    rows = {}
    for target in TARGETS:
        path = tmp / f"{tag}-{target}.nir"
        done = subprocess.run([sys.executable, "-m", "snnclf", "export", "--run", run, "--target", target,
                               "--check", "numpy", "--out", str(path), "--samples", str(args.samples),
                               "--save_dir", args.save_dir, "--log_dir", str(tmp / "logs"), "--json",
                               *(["--data_dir", data_dir] if data_dir else [])],
                              capture_output=True, text=True)
        if done.returncode:
            rows[target] = {"export_error": done.stderr.strip()}
            print(f"{tag} {target}: {done.stderr.strip()}", file=sys.stderr)
            continue
        rows[target] = {tool: _run_tool(tool, envs[tool], path, inputs, ref, tmp) for tool in envs}
        print(f"{tag} {target}: " + ", ".join(f"{tool} {_cell(row)}" for tool, row in rows[target].items()),
              file=sys.stderr)
        for tool, row in rows[target].items():  # nir 1.0.4 readers: what stops them past v_reset
            if "v_reset" in row.get("error", "") and target == nir_backend.DEFAULT_TARGET:
                row["beyond"] = _run_tool(tool, envs[tool], _without_v_reset(path), inputs, ref, tmp)
    return rows


def _run_tool(tool, env, path, inputs, ref, tmp):
    if "error" in env:
        return {"loads": False, "error": f"does not install: {env['error']}"}
    if env["python"] == sys.executable:  # in this process
        c = check_nir(tool, path, ref.inputs, ref.spikes, ref.membrane, ref.predicted, ref.labels)
        return _row(c)
    out = tmp / f"{tool}.out.pt"
    done = subprocess.run([env["python"], "-c", "from snnclf.export.consumers import main; main()", tool, str(path),
                           str(inputs), str(out)], capture_output=True, text=True)
    if done.returncode:
        return {"loads": False, "error": last_error(done.stderr) or f"exited {done.returncode}"}
    got = torch.load(out, weights_only=False)
    if not got["ok"]:
        return {"loads": False, "error": got["error"], "version": got["version"]}
    outputs = Outputs(got["spikes"], got["membrane"], got["convention"])
    c = compare(tool, outputs, ref.spikes, ref.membrane, ref.predicted, ref.labels)
    return {**_row(c), "version": got["version"]}


def _row(check):
    error = (check.convention or {}).get("error")
    if error:
        return {"loads": False, "error": error}
    return {"loads": True, "spikes": check.equal_outputs, "predictions": check.equal_predictions,
            "passed": check.passed, "convention": check.convention, "accuracy": check.accuracy_other}


def _without_v_reset(path):
    """A copy of ``path`` as nir 1.0.4 would need it, without the v_reset datasets: for nir 1.0.4
    that is another network (its LIF resets by subtraction), read only to find the next limit."""
    copy = path.with_name(path.stem + "-no-v_reset.nir")
    shutil.copy(path, copy)
    with h5py.File(copy, "a") as f:
        for node in f["node/nodes"].values():
            if "v_reset" in node:
                del node["v_reset"]
    return copy


def _others(root):
    """The tools that are no consumer here, each with the line that says why."""
    rows = {}
    for package, name in NOT_ON_INDEX.items():
        done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package],
                              capture_output=True, text=True)
        rows[name] = (f"pip index versions {package}: {last_error(done.stderr)}" if done.returncode
                      else f"on the index ({done.stdout.strip().splitlines()[0]}), not measured")
    for package, (spec, name) in NO_READER.items():
        env = root / package
        python = env / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", spec], check=True)
        site = subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       text=True).strip()
        readers = sorted(str(f.relative_to(site)) for f in Path(site, package).rglob("*.py")
                         if "import nir" in f.read_text() or "from nir" in f.read_text())
        rows[name] = (f"{spec} installs; none of its modules imports nir: it has no NIR reader" if not readers
                      else f"{spec}: NIR code in {', '.join(readers)}, not measured")
    return rows


def _needed(tool, by_target):
    """The first target (default first) whose file ``tool`` runs in agreement, or None."""
    order = [nir_backend.DEFAULT_TARGET] + [t for t in TARGETS if t != nir_backend.DEFAULT_TARGET]
    return next((t for t in order if by_target.get(t, {}).get(tool, {}).get("passed")), None)


def _cell(row):
    if "export_error" in row:
        return "not exported"
    if not row.get("loads"):
        return "error"
    return f"{100 * row['spikes']:.2f} / {100 * row['predictions']:.2f}"


def _report(results, runs, others, envs):
    lines = []
    targets = TARGETS
    for recipe, by_target in results.items():
        lines += ["", f"{recipe} (run {runs[recipe]}): output spikes identical / same predicted class, "
                  f"in % of the samples' (the least accepted: {100 * AGREEMENT:.1f}%)", "",
                  "| tool | loads | spikes | predictions | needs / stopped by |", "|---|---|---|---|---|"]
        for tool in envs:
            target = _needed(tool, by_target)
            row = by_target[target or nir_backend.DEFAULT_TARGET].get(tool, {})
            if target:
                note = "the default file" if target == nir_backend.DEFAULT_TARGET else f"`--target {target}`"
                conv = row.get("convention") or {}
                note += "; fed " + ("with a batch dimension" if conv.get("batch") else "one sample at a time")
                if conv.get("note"):
                    note += f"; {conv['note']}"
                lines.append(f"| {tool} | yes | {_pct(row['spikes'])} | {_pct(row['predictions'])} | {note} |")
            elif row.get("loads"):
                lines.append(f"| {tool} | yes | {_pct(row['spikes'])} | {_pct(row['predictions'])} | "
                             f"no target runs exactly: {CONSUMERS.info(tool)['limit']} |")
            else:
                error = row.get("error", "")
                beyond = row.get("beyond")
                if beyond:
                    error += ("; without v_reset (NIR 1.0.4's LIF, which resets by subtraction): "
                              + (beyond["error"] if not beyond.get("loads") else
                                 f"{100 * beyond['spikes']:.2f}% / {100 * beyond['predictions']:.2f}%"))
                lines.append(f"| {tool} | no | | | {error} |")
        for name, line in others.items():
            lines.append(f"| {name} | no | | | {line} |")
        lines += ["", "every target (spikes / predictions %):", "",
                  "| tool | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
        for tool in envs:
            cells = [_cell(by_target[t].get(tool, by_target[t])) for t in targets]  # export_error: a row of its own
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines += ["", f"machine: {cpu_model()}, {torch.get_num_threads()} threads; Python {platform.python_version()}, "
              f"torch {torch.__version__}, snnclf {__version__}; versions: "
              + ", ".join(f"{tool} {_version(tool, results)}" for tool in envs)]
    return "\n".join(lines)


def _pct(share):
    return f"{100 * share:.2f}%"


def _version(tool, results):
    for by_target in results.values():
        for rows in by_target.values():
            if rows.get(tool, {}).get("version"):
                return rows[tool]["version"]
    return version(tool) or "?"



if __name__ == "__main__":
    main()
