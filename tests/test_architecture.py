"""The package's shape: registries whose entries declare what they need, every registered data set
loading from small files in its real format, one configuration behind the CLI, no side effects
at import time, and no command importing another."""
import argparse
import ast
import inspect
import json
import re
import subprocess
import sys
from dataclasses import fields

import pytest
import tonic
import torch

from snnclf import cli as cli_module
from snnclf.config import DEFAULTS, RunConfig
from snnclf.data import DATASETS, list_datasets, load_dataset
from snnclf.data.events import EventSet
from snnclf.errors import UsageError
from snnclf.flags import flag_of
from snnclf.models import MODELS, NEURON_OPTIONS, NEURONS, get_model, is_spiking, list_models, model_options
from snnclf.registry import Registry

import event_formats
from conftest import ROOT, make_mnist_like, make_nmnist_folder

# The module that does each command's work (the CLI only parses flags and dispatches to it); the
# commands themselves are read from the parser, so a new one fails below until it is named here.
COMMAND_MODULES = {"train": "snnclf.train", "eval": "snnclf.evaluate", "visualize-activations": "snnclf.viz.activations",
                   "visualize-data": "snnclf.viz.data", "compare": "snnclf.viz.compare", "sweep": "snnclf.sweep",
                   "predict": "snnclf.predict", "export": "snnclf.export", "tune": "snnclf.tune",
                   "simulate": "snnclf.simulate"}


def test_a_registry_refuses_an_entry_that_does_not_declare_what_it_needs():
    reg = Registry("loss", declares=("needs_spikes",))
    with pytest.raises(TypeError, match="missing: needs_spikes"):
        reg.register("x")
    with pytest.raises(TypeError, match="unknown: needs_spike"):
        reg.register("x", needs_spike=True)
    reg.register("x", needs_spikes=False)(lambda: None)
    assert reg.info("x") == {"needs_spikes": False}
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("x", needs_spikes=True)(lambda: None)


# What a data set declares it reads under --data_dir, and how a test writes small files of that format.
def _write(reads, root):
    if reads is None:
        return
    if isinstance(reads, EventSet):
        if issubclass(reads.reader, tonic.datasets.NMNIST):  # N-MNIST's format and layout
            make_nmnist_folder(root, reads.folder, per_class=(2, 1))
        else:
            event_formats.make_dataset(reads.name, root)  # an unknown one: add its writer to event_formats
        return
    kind, folder = reads
    assert kind == "idx", f"no test files for {reads}: teach _write this format"
    make_mnist_like(root, folder, n_train=60, n_test=20)


def _data_set(name):
    """A data set simulated from bundled data simulates all of it (seconds): slow."""
    info = DATASETS.info(name)
    return pytest.param(name, marks=pytest.mark.slow) if info["events"] and info["reads"] is None else name


@pytest.mark.parametrize("name", [_data_set(n) for n in list_datasets()])
def test_every_registered_data_set_loads_from_files_in_its_format(tmp_path, name):
    info = DATASETS.info(name)
    _write(info["reads"], tmp_path / "data")
    options = {"time_steps": 3, "cache_dir": str(tmp_path / "cache")} if info["events"] else {}
    data = load_dataset(name, str(tmp_path / "data"), **options)
    x, y = data.train[list(range(4))]
    expected = (4, 3, *data.in_shape) if info["events"] else (4, *data.in_shape)
    assert tuple(x.shape) == expected and data.events == (info["events"] is not None)
    assert len(data.class_names) >= 2 and 0 <= int(y.min()) and int(y.max()) < len(data.class_names)
    assert len(data.train) > 0 and len(data.test) > 0 and x.sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_every_model_is_what_it_declares(name):
    options = {"spec": "8C3-MP2-FC10"} if name == "arch" else {}
    model = get_model(name, (1, 8, 8), 10, **options)
    assert model.spiking == is_spiking(name)
    layers = {type(m.cell).__name__ for m in model.modules() if hasattr(m, "cell")}
    assert bool(layers) == is_spiking(name)
    accepted = set(model_options(name))
    for kind in MODELS.info(name)["neurons"]:
        assert set(NEURONS.info(kind)["options"]) <= accepted
    for option in set(NEURON_OPTIONS) - accepted:
        with pytest.raises(UsageError, match=f"--{option} does not apply to model {name}"):
            get_model(name, (1, 8, 8), 10, **options, **{option: 0.5})


def test_every_config_field_is_a_flag_with_its_default_in_the_help(cli):
    code, out, _ = cli("train", "--help")
    assert code == 0
    text = re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(out.split()))  # argparse wraps lines after hyphens
    for f in fields(RunConfig):
        spec = flag_of(f)
        assert spec is not None, f.name
        assert f"--{f.name}" in out, f.name
        default = spec.stated_default(DEFAULTS[f.name])
        assert f"(default: {default})" in text, f.name
    assert "learn the membrane decay (default: off)" in text and "in [0, 1] (default: 0.9)" in text
    assert "learning rate (default: adam, adamw 0.002; sgd 0.1)" in text  # read from the builders
    assert "(default: 0; cnn 0.2)" in text


def test_a_config_checks_values_set_in_code_as_the_flags_do():
    with pytest.raises(UsageError, match="--time_steps: must be at least 1, got 0"):
        RunConfig(time_steps=0)
    with pytest.raises(UsageError, match="--beta: must be at most 1, got 1.5"):
        RunConfig.from_flags({"beta": 1.5})
    with pytest.raises(UsageError, match="--amp: expected true or false, got 'no'"):
        RunConfig(amp="no")
    with pytest.raises(UsageError, match="--dataset: invalid choice: 'cifar'"):
        RunConfig(dataset="cifar")
    with pytest.raises(UsageError, match="--milestones: expected a list"):
        RunConfig(milestones=5)
    assert RunConfig(time_steps="8").time_steps == 8 and RunConfig(milestones=[3, "5"]).milestones == [3, 5]
    cfg = RunConfig.from_flags({"preset": "digits", "epochs": 2})
    assert cfg.epochs == 2 and cfg.batch_norm and cfg.run == "digits-csnn-T4-preset"
    assert RunConfig.from_dict({**cfg.to_dict(), "num_params": 5}) == cfg  # config.json's extra keys


IMPORTS_CHANGE_NOTHING = r"""
import importlib, json, logging, os, pkgutil, random, signal, sys
import matplotlib, numpy, torch
umasks = []
real_umask = os.umask
os.umask = lambda mask: umasks.append(mask) or real_umask(mask)
before = dict(backend=matplotlib.get_backend(), random=random.getstate()[1][:4], numpy=int(numpy.random.get_state()[1][0]),
              torch=torch.initial_seed(), threads=torch.get_num_threads(),
              handlers=len(logging.getLogger().handlers), sigint=str(signal.getsignal(signal.SIGINT)))
import snnclf
names = [m.name for m in pkgutil.walk_packages(snnclf.__path__, "snnclf.") if m.name != "snnclf.__main__"]
for name in names:
    importlib.import_module(name)
after = dict(backend=matplotlib.get_backend(), random=random.getstate()[1][:4], numpy=int(numpy.random.get_state()[1][0]),
             torch=torch.initial_seed(), threads=torch.get_num_threads(),
             handlers=len(logging.getLogger().handlers), sigint=str(signal.getsignal(signal.SIGINT)))
print(json.dumps({"modules": len(names), "umask_calls": len(umasks), "before": before, "after": after}))
"""


@pytest.mark.slow
def test_importing_snnclf_changes_no_process_wide_state():
    env = {"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", IMPORTS_CHANGE_NOTHING], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["modules"] > 20
    assert result["umask_calls"] == 0
    assert result["before"] == result["after"] and result["after"]["backend"] == "svg"


def _imports(path):
    """The snnclf modules a file imports, anywhere in it."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).replace(".__init__", "")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("snnclf"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("snnclf")}
    return module, found


def _handlers():
    """{command: the function the CLI runs for it} of every command of the snnclf parser."""
    sub = next(a for a in cli_module.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: parser.get_default("func") for name, parser in sub.choices.items()}


def test_no_module_but_the_cli_imports_a_command():
    handlers = _handlers()
    assert set(handlers) == set(COMMAND_MODULES), "a command was added or removed: name its module in COMMAND_MODULES"
    for name, handler in handlers.items():  # the handler calls into the module named for it
        used = {getattr(cli_module, n) for n in handler.__code__.co_names if hasattr(cli_module, n)}
        assert COMMAND_MODULES[name] in {u.__name__ if inspect.ismodule(u) else getattr(u, "__module__", None)
                                         for u in used}, name
    commands = set(COMMAND_MODULES.values())
    for path in sorted((ROOT / "snnclf").rglob("*.py")):
        module, found = _imports(path)
        if module in ("snnclf.cli", "snnclf.__main__"):
            continue
        others = {c for c in commands if not (module == c or module.startswith(c + "."))}  # not its own package
        hits = {f for f in found if any(f == c or f.startswith(c + ".") for c in others)}
        assert not hits, f"{module} imports {hits}"


def test_a_checkpoint_config_round_trips_through_the_run_config(workdir, cli):
    assert cli("train", "--subset", "100", "--epochs", "1", "--time_steps", "2", "--run", "r")[0] == 0
    saved = torch.load(workdir / "checkpoints/r/last.pt", weights_only=True)["config"]
    config = json.loads((workdir / "logs/r/config.json").read_text())
    assert RunConfig.from_dict(saved) == RunConfig.from_dict(config)
    assert set(saved) == {f.name for f in fields(RunConfig)}
