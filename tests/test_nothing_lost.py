"""Nothing the user had is lost, whatever the input, the disk or a second process: each test
below is one way snnclf used to overwrite a file, crash with a traceback or go on silently wrong.
Open-ended classes of input (config values, image files, checkpoint bytes) are property-based."""
import io
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from snnclf import runs
from snnclf.runs import load_checkpoint

from conftest import make_nmnist_folder

TINY = ["--model", "snn-mlp", "--subset", "100", "--epochs", "1", "--time_steps", "2", "--batch_size", "50"]
D = ["--save_dir", "ck", "--log_dir", "lg"]
ROOT_USER = os.geteuid() == 0  # root writes into read-only folders: those cases are simulated otherwise


def _one_line(err, command):
    """The error is one line naming the command, with no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith(f"snnclf {command}: error:"), err
    return lines[-1]


@pytest.fixture
def trained(workdir, cli):
    """A tiny trained run ``r`` in ck/ and lg/."""
    code, _, err = cli("train", *TINY, "--run", "r", *D)
    assert code == 0, err
    return workdir


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder unwritable: mode 0o555, and for root (whom modes do not stop) every write
    into it refused by the operating system's answer, EACCES."""
    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        if ROOT_USER:
            real_open, real_mkdir = os.open, os.mkdir
            inside = str(folder.resolve())

            def refuse(path):
                if os.path.abspath(os.fspath(path)).startswith(inside):
                    raise PermissionError(13, "Permission denied", os.fspath(path))

            def open_(path, flags, *a, **k):
                if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                    refuse(path)
                return real_open(path, flags, *a, **k)

            def mkdir_(path, *a, **k):
                refuse(path)
                return real_mkdir(path, *a, **k)
            monkeypatch.setattr(os, "open", open_)
            monkeypatch.setattr(os, "mkdir", mkdir_)
        return folder
    yield make


# --- 1. outputs never written over a file the user has ------------------------------------

@pytest.mark.parametrize("target", ["drawn.png", "ck/r/best.pt"])
def test_predict_csv_never_overwrites_an_existing_file(trained, cli, target):
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(trained / "drawn.png")
    before = (trained / target).read_bytes()
    code, _, err = cli("predict", "--run", "r", "--save_dir", "ck", "--csv", target, "drawn.png")
    assert code == 2 and "exists" in _one_line(err, "predict")
    assert (trained / target).read_bytes() == before


def test_predict_csv_onto_a_folder_says_so(trained, cli):
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(trained / "drawn.png")
    (trained / "out").mkdir()
    code, _, err = cli("predict", "--run", "r", "--save_dir", "ck", "--csv", "out", "drawn.png")
    line = _one_line(err, "predict")
    assert code == 2 and "is a folder" in line and "--resume" not in line


# --- 2. one process per run folder ---------------------------------------------------------

def test_a_run_in_use_by_another_process_is_refused(trained, cli):
    run = runs.open_run("r", "ck", "lg")
    before = (trained / "ck/r/last.pt").read_bytes()
    with runs.RunLock(run, wait=False):  # as a second process holding the run would
        code, _, err = cli("train", "--run", "r", *D, "--resume", "--epochs", "2")
        assert code == 2 and "in use by another snnclf process" in _one_line(err, "train")
        code, _, err = cli("train", *TINY, "--run", "r", *D, "--overwrite")
        assert code == 2 and "in use" in _one_line(err, "train")
        code, _, err = cli("eval", "--run", "r", *D)
        assert code == 2 and "in use" in _one_line(err, "eval")
    assert (trained / "ck/r/last.pt").read_bytes() == before
    assert cli("eval", "--run", "r", *D, "--test_only")[0] == 0  # released: usable again


@pytest.mark.slow
def test_two_trainings_of_one_run_at_once_keep_one_whole_run(tmp_path):
    """Two processes started together on the same run: one trains it, the other is refused in
    one line, and the run's files are all the winner's."""
    exe = [sys.executable, "-m", "snnclf", "train", *TINY, "--epochs", "3", "--run", "same", *D]
    procs = [subprocess.Popen(exe + ["--lr", lr], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for lr in ("0.001", "0.003")]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "in use by another snnclf process" in loser or "exists" in loser
    winner_lr = ("0.001", "0.003")[[p.returncode for p in procs].index(0)]
    config = runs.read_json(tmp_path / "lg/same/config.json")
    assert config["lr"] == float(winner_lr)
    assert load_checkpoint(tmp_path / "ck/same/last.pt")["config"]["lr"] == float(winner_lr)


@pytest.mark.slow
def test_a_sweep_leaves_a_point_another_process_holds_and_trains_the_rest(workdir, cli):
    held = runs.open_run("s-time_steps=2", "checkpoints", "logs")
    with runs.RunLock(held, wait=False, create=True):  # as another process training it
        code, out, err = cli("sweep", "--name", "s", *TINY, "--time_steps", "1", "2")
    assert code == 0, err
    assert "in use by another process" in err
    assert "1 of 2 points done" in out
    assert not held.exists()  # never touched


# --- 3. --overwrite deletes nothing until the new run can be written ----------------------------

def test_overwrite_into_an_unwritable_log_folder_keeps_the_old_run(trained, cli, read_only):
    before = {p: (trained / p).read_bytes() for p in ("ck/r/best.pt", "ck/r/last.pt")}
    read_only(trained / "lg" / "r")
    code, _, err = cli("train", *TINY, "--run", "r", *D, "--overwrite")
    assert code == 2 and "cannot write" in _one_line(err, "train")
    assert {p: (trained / p).read_bytes() for p in before} == before


def test_overwrite_that_fails_before_its_first_checkpoint_restores_the_old_run(trained, cli, monkeypatch):
    before = (trained / "ck/r/best.pt").read_bytes()
    from snnclf import engine

    def broken(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(engine, "train_one_epoch", broken)
    import snnclf.train as train_module
    monkeypatch.setattr(train_module, "train_one_epoch", broken)
    code, _, err = cli("train", *TINY, "--run", "r", *D, "--overwrite")
    assert code == 2 and "memory" in _one_line(err, "train")
    assert (trained / "ck/r/best.pt").read_bytes() == before
    assert (trained / "lg/r/config.json").is_file() and not list((trained / "ck").glob(".r.replaced-*"))


# --- 4, 10. files that are not what they claim ----------------------------------------------

@pytest.mark.parametrize("content", [b"hello", b"epoch,train_loss\n1,0.5\n", b"\x80\x02}q\x00.", b"PK\x03\x04junk"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(trained, cli, content):
    (trained / "bad.pt").write_bytes(content)
    for command in (["eval", "--checkpoint", "bad.pt"], ["predict", "--checkpoint", "bad.pt", "x.png"],
                    ["export", "--checkpoint", "bad.pt"], ["visualize-activations", "--checkpoint", "bad.pt"]):
        code, _, err = cli(*command, *D[:2])
        assert code == 2 and "bad.pt" in _one_line(err, command[0]), command


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_as_a_checkpoint_are_refused_in_one_line(tmp_path, data):
    path = tmp_path / "any.pt"
    path.write_bytes(data)
    with pytest.raises(runs.UsageError) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0), flip=st.integers(0, 2 ** 20))
def test_a_damaged_checkpoint_is_refused_or_loads(trained, cut, flip):
    data = bytearray((trained / "ck/r/best.pt").read_bytes())
    data = data[: int(len(data) * cut)] if cut < 1 else data
    if data:
        data[flip % len(data)] ^= 0xFF
    path = trained / "damaged.pt"
    path.write_bytes(bytes(data))
    try:
        load_checkpoint(path)
    except runs.UsageError as err:
        assert "\n" not in str(err)


def test_a_checkpoint_with_the_marker_but_nothing_else_is_refused(trained, cli):
    torch.save({"format": runs.FORMAT}, trained / "hollow.pt")
    code, _, err = cli("eval", "--checkpoint", "hollow.pt", *D)
    assert code == 2 and "hollow.pt" in _one_line(err, "eval")
    torch.save({"format": runs.FORMAT, "epoch": 0}, trained / "ck/r/last.pt")
    code, _, err = cli("train", "--run", "r", *D, "--resume", "--epochs", "3")
    assert code == 2 and "last.pt" in _one_line(err, "train")


@pytest.mark.parametrize("metrics", ["epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,data_seconds,spikes_per_sample\n",
                                     "garbage\x00,,\nnot,a,number\n", ""])
def test_compare_and_resume_on_a_damaged_metrics_file(trained, cli, metrics):
    (trained / "lg/r/metrics.csv").write_text(metrics)
    code, _, err = cli("compare", "r", "--log_dir", "lg")
    assert code == 2 and "metrics.csv" in _one_line(err, "compare")
    code, _, err = cli("train", "--run", "r", *D, "--resume", "--epochs", "2")
    assert code == 2 and "metrics.csv" in _one_line(err, "train")


def test_compare_on_a_broken_config(trained, cli):
    (trained / "lg/r/config.json").write_text("{ not json")
    code, _, err = cli("compare", "r", "--log_dir", "lg")
    assert code == 2 and "config.json" in _one_line(err, "compare")


# --- 5. folders that cannot be written ---------------------------------------------------------

def test_eval_into_an_unwritable_log_folder(trained, cli, read_only):
    read_only(trained / "lg" / "r")
    code, _, err = cli("eval", "--run", "r", *D, "--test_only")
    assert code == 2 and "cannot write" in _one_line(err, "eval")


def test_predict_csv_into_an_unwritable_place(trained, cli, read_only):
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(trained / "drawn.png")
    (trained / "a_file").write_text("x")
    code, _, err = cli("predict", "--run", "r", "--save_dir", "ck", "--csv", "a_file/out.csv", "drawn.png")
    assert code == 2 and "cannot write" in _one_line(err, "predict")
    read_only(trained / "ro")
    code, _, err = cli("predict", "--run", "r", "--save_dir", "ck", "--csv", "ro/out.csv", "drawn.png")
    assert code == 2 and "cannot write" in _one_line(err, "predict")
    assert (trained / "a_file").read_text() == "x"


def test_compare_out_onto_a_file_or_unwritable_folder(trained, cli, read_only):
    (trained / "a_file").write_text("x")
    code, _, err = cli("compare", "r", "--log_dir", "lg", "--out", "a_file")
    assert code == 2 and "a_file" in _one_line(err, "compare")
    assert (trained / "a_file").read_text() == "x"
    read_only(trained / "ro")
    code, _, err = cli("compare", "r", "--log_dir", "lg", "--out", "ro")
    assert code == 2 and "cannot write" in _one_line(err, "compare")


def test_visualize_activations_into_an_unwritable_folder(trained, cli, read_only):
    read_only(trained / "ro")
    code, _, err = cli("visualize-activations", "--run", "r", *D, "--out", "ro/pics")
    assert code == 2 and "cannot write" in _one_line(err, "visualize-activations")


def test_export_with_an_unwritable_log_folder_writes_nothing(workdir, cli, read_only):
    code, _, err = cli("train", *TINY, "--reset", "zero", "--run", "x", *D)
    assert code == 0, err
    read_only(workdir / "lg" / "x")
    code, _, err = cli("export", "--run", "x", *D, "--samples", "20")
    assert code == 2 and "cannot write" in _one_line(err, "export")
    assert not list((workdir / "ck" / "x").glob("*.nir*"))


def test_an_unwritable_cache_folder_for_simulated_events(workdir, cli, read_only):
    read_only(workdir / "ro")
    code, _, err = cli("train", "--dataset", "digits-events", "--cache_dir", "ro/cache", *TINY[2:])
    assert code == 2 and "cannot write" in _one_line(err, "train")


# --- 6. a full disk ----------------------------------------------------------------------------

FULL_DISK = """
import resource, signal, sys
from snnclf.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_full_disk_in_the_first_epoch_says_how_to_start_again(tmp_path):
    """A file-size limit makes every checkpoint write fail (torch reports it as a RuntimeError of
    its own): the first epoch leaves no checkpoint, so the way on is to start again, not --resume;
    the half-made run is gone, and the same command works once there is space."""
    out = subprocess.run([sys.executable, "-c", FULL_DISK, "20000", "train", *TINY, "--run", "r", *D],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    line = _one_line(out.stderr, "train")
    assert "File too large" in line and "start the run again" in line and "--resume" not in line
    assert not (tmp_path / "ck/r").exists() and not (tmp_path / "lg/r").exists()
    again = subprocess.run([sys.executable, "-m", "snnclf", "train", *TINY, "--run", "r", *D],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


# --- 7. what cannot fit in memory ----------------------------------------------------------------

@pytest.mark.parametrize("command", [["train", *TINY[:-4]], ["eval", "--run", "r", *D]])
def test_a_time_step_count_that_cannot_fit_is_refused_before_anything_is_written(trained, cli, command):
    code, _, err = cli(*command, "--time_steps", "100000000")
    line = _one_line(err, command[0])
    assert code == 2 and "memory" in line and "--time_steps" in line
    assert not (trained / "checkpoints").exists() and not (trained / "logs").exists()


def test_a_run_folder_without_a_checkpoint_says_how_to_start_again(workdir, cli):
    (workdir / "lg" / "half").mkdir(parents=True)
    (workdir / "lg" / "half" / "config.json").write_text("{}")
    code, _, err = cli("train", *TINY, "--run", "half", *D)
    assert code == 2 and "--overwrite" in _one_line(err, "train")
    code, _, err = cli("train", "--run", "half", *D, "--resume")
    line = _one_line(err, "train")
    assert code == 2 and "--overwrite" in line and "no checkpoint" in line


# --- 8, 9. names and config values -------------------------------------------------------------

@pytest.mark.parametrize("name", ["a\x00b", "x" * 300, "..", "a/b"])
def test_unusable_run_names(workdir, cli, name):
    (workdir / "c.yaml").write_text(yaml.safe_dump({"run": name}))
    code, _, err = cli("train", "--config", "c.yaml", *TINY[:-2])
    assert code == 2 and "run name" in _one_line(err, "train")
    assert not (workdir / "checkpoints").exists()


def test_a_yaml_alias_bomb_is_refused_quickly_and_briefly(workdir, cli):
    """Ten levels of anchors, each nine copies of the last: 9**10 values if expanded."""
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    for key in ("time_steps", "milestones"):
        (workdir / "bomb.yaml").write_text(f"{key}: [{', '.join(levels)}]\n")
        for command in ("train", "sweep"):
            code, _, err = cli(command, "--config", "bomb.yaml")
            line = _one_line(err, command)
            assert code == 2 and len(line) < 400 and key in line, line


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True),
                    st.text(max_size=30))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
OPTIONS = st.sampled_from(["lr", "beta", "time_steps", "dataset", "model", "milestones", "epochs", "run",
                           "shift", "dropout", "scheduler", "batch_norm", "seed", "val_fraction", "noise_events"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(OPTIONS, VALUES, min_size=1, max_size=3))
def test_any_config_file_is_taken_or_refused_in_one_line(workdir, cli, values):
    (workdir / "c.yaml").write_text(yaml.safe_dump(values))
    code, out, err = cli("train", "--config", "c.yaml", "--print_config")
    assert code in (0, 2), err
    if code == 2:
        assert len(_one_line(err, "train")) < 400
    else:
        assert "time_steps:" in out
    assert not (workdir / "checkpoints").exists()


# --- 11. numbers that are not finite, weights that stop being finite ----------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "1e999"])
def test_non_finite_numbers_are_refused(workdir, cli, value):
    code, _, err = cli("train", f"--lr={value}")
    assert code == 2 and "finite" in err
    (workdir / "c.yaml").write_text("lr: .inf\n")
    code, _, err = cli("train", "--config", "c.yaml")
    assert code == 2 and "finite" in _one_line(err, "train")


def test_weights_that_become_non_finite_stop_the_run(workdir, cli, monkeypatch):
    """The loss can stay finite while weights blow up (nothing spikes): the weights are checked."""
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        out = real_step(self, *a, **k)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    code, _, err = cli("train", *TINY, "--run", "w", *D)
    assert code == 2 and "non-finite" in _one_line(err, "train")
    assert not (workdir / "ck/w/best.pt").exists()


# --- 12, 15, 16. sweeps --------------------------------------------------------------------------

@pytest.mark.slow
def test_a_stop_during_the_last_validation_stops_the_sweep(workdir, cli, monkeypatch):
    from snnclf import train as train_module

    monkeypatch.setattr(train_module.StopOnSignal, "stop_at", ("s-time_steps=1", 1, None))
    code, _, err = cli("sweep", "--name", "s", *TINY, "--time_steps", "1", "2")
    assert code == 130, err
    assert not (workdir / "logs" / "s-time_steps=2").exists()
    monkeypatch.setattr(train_module.StopOnSignal, "stop_at", None)
    code, out, err = cli("sweep", "--name", "s", *TINY, "--time_steps", "1", "2")
    assert code == 0 and "2 of 2 points done" in out, err


@pytest.mark.parametrize("args", [["--log_dir", "A", "B"], ["--save_dir", "A", "B"],
                                  ["--dataset", "digits", "fashion-mnist", "--data_dir", "nowhere"]])
def test_a_sweep_that_would_fail_later_is_refused_before_training(workdir, cli, args):
    code, _, err = cli("sweep", "--name", "s", *TINY, *args)
    assert code == 2, err
    _one_line(err, "sweep")
    assert not (workdir / "checkpoints").exists() and not (workdir / "A").exists()


@pytest.mark.parametrize("name", ["..", "a/b", ""])
def test_a_sweep_name_is_a_usable_name(workdir, cli, name):
    code, _, err = cli("sweep", "--name", name, *TINY, "--time_steps", "1", "2")
    assert code == 2 and "--name" in _one_line(err, "sweep")
    assert not (workdir / "compare.md").exists() and not (workdir / "checkpoints").exists()


# --- 13. a checkpoint of another run -------------------------------------------------------------

def test_resume_with_another_runs_last_pt_is_refused(workdir, cli):
    assert cli("train", *TINY, "--run", "a", *D)[0] == 0
    assert cli("train", *TINY[2:], "--model", "csnn", "--run", "b", *D)[0] == 0
    (workdir / "ck/a/last.pt").write_bytes((workdir / "ck/b/last.pt").read_bytes())
    code, _, err = cli("train", "--run", "a", *D, "--resume", "--epochs", "2")
    line = _one_line(err, "train")
    assert code == 2 and "run b" in line


# --- 14, 17. what predict reads, and what the messages say ----------------------------------------

def test_predict_refuses_what_it_cannot_read_faithfully(workdir, cli):
    assert cli("train", *TINY, "--run", "r", *D)[0] == 0
    np.save(workdir / "complex.npy", np.ones((8, 8), dtype=np.complex64))
    Image.fromarray(np.full((8, 8), np.nan, np.float32), "F").save(workdir / "nan.tiff")
    (workdir / "folder").mkdir()
    code, _, err = cli("predict", "--run", "r", "--save_dir", "ck", "complex.npy", "nan.tiff", "folder")
    assert code == 2 and "Traceback" not in err
    assert "complex" in err and "NaN" in err and "is a folder" in err


def test_predict_refuses_an_empty_event_file(workdir, cli):
    make_nmnist_folder(workdir / "data", per_class=(2, 1))
    assert cli("train", "--dataset", "nmnist", *TINY[2:], "--model", "snn-mlp", "--run", "e", *D)[0] == 0
    (workdir / "empty.bin").write_bytes(b"")
    code, _, err = cli("predict", "--run", "e", "--save_dir", "ck", "empty.bin")
    assert code == 2 and "no events" in err


def test_a_tampered_checkpoint_names_what_it_would_call(workdir):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo hacked",))
    buf = io.BytesIO()
    torch.save({"format": runs.FORMAT, "x": Evil()}, buf)
    (workdir / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(runs.UsageError, match="posix.system|os.system") as caught:
        load_checkpoint(workdir / "evil.pt")
    assert "do not load it" in str(caught.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pixels=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=64, max_size=64),
       suffix=st.sampled_from([".tiff", ".npy"]), junk=st.binary(max_size=64))
def test_any_image_or_array_file_is_classified_or_refused_in_one_line(trained, pixels, suffix, junk):
    from snnclf.predict import run_predict

    path = trained / f"in{suffix}"
    array = np.array(pixels, np.float32).reshape(8, 8)
    if suffix == ".npy":
        np.save(path, array)
    else:
        Image.fromarray(array, "F").save(path)
    (trained / "junk.png").write_bytes(junk)
    found, _ = run_predict([path, trained / "junk.png"], run="r", save_dir="ck")
    assert found[1].error
    for p in found:
        assert (p.error is None) != (p.label is None)
        if p.error is None:
            assert 0.0 <= p.confidence <= 1.0 and np.isfinite(array).all()
        else:
            assert "\n" not in p.error


# --- round two: every command, and the newer ones (tune, simulate) --------------------------------

def _commands():
    """The command registry: every subcommand of the parser."""
    from snnclf.cli import build_parser

    parser = build_parser()
    return sorted(parser._subparsers._group_actions[0].choices)


# Each command with an output placed under a file ("f" is a file): a new command fails the test
# below until it has a line here.
UNDER_A_FILE = {
    "train": [*TINY, "--save_dir", "f/ck"],
    "eval": ["--run", "r", "--save_dir", "ck", "--log_dir", "f/lg", "--test_only"],
    "visualize-data": ["--out", "f/pics"],
    "visualize-activations": ["--run", "r", *D, "--out", "f/pics"],
    "compare": ["r", "--log_dir", "lg", "--out", "f"],
    "sweep": ["--name", "s", *TINY, "--time_steps", "1", "2", "--log_dir", "f/lg"],
    "tune": ["--name", "t", *TINY, "--lr", "1e-3", "2e-3", "--storage", "f/study.journal"],
    "predict": ["--run", "r", "--save_dir", "ck", "--csv", "f/out.csv", "f"],
    "export": ["--run", "r", *D, "--out", "f/r.nir", "--samples", "5"],
    "simulate": ["--dataset", "digits", "--subset", "10", "--out", "f/events"],
}


def test_every_command_names_a_file_where_a_folder_must_be(trained, cli):
    """``--csv img.png/out.csv`` used to say "(File exists): free space, fix the folder's
    permissions"; every command says which file stands in the way, and changes nothing."""
    assert sorted(UNDER_A_FILE) == _commands()
    (trained / "f").write_bytes(b"the user's file")
    for command, args in UNDER_A_FILE.items():
        code, _, err = cli(command, *args)
        line = _one_line(err, command)
        assert code == 2 and "f is a file, not a folder" in line and "free space" not in line, (command, line)
        assert (trained / "f").read_bytes() == b"the user's file"


@pytest.mark.parametrize("command", [["simulate", "--dataset", "digits", "--subset", "20", "--out", "ev"],
                                     ["train", "--dataset", "digits-events", "--cache_dir", "ev", *TINY[2:]]])
def test_a_full_disk_while_recordings_are_simulated(tmp_path, command):
    """A file-size limit makes the first recording's write fail: one line, exit 2, no partial
    folder (the recordings of simulate, and of digits-events' first use)."""
    out = subprocess.run([sys.executable, "-c", FULL_DISK, "2000", *command], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    line = _one_line(out.stderr, command[0])
    assert out.returncode == 2 and "File too large" in line and "cannot write" in line, out.stderr
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").rglob("*.bin"))
    assert not list(tmp_path.rglob(".ev.*")) and not list(tmp_path.rglob(".DigitsEvents.*"))


def test_scratch_folders_of_killed_processes_are_removed_and_held_ones_kept(tmp_path):
    """A folder that a process killed by SIGKILL was writing is removed by the next one made with
    its prefix; one that a living process holds, or a user's folder of another name, is kept."""
    from snnclf.data.datasets import release_scratch, scratch_folder

    killed = subprocess.run([sys.executable, "-c", "import os, sys\nfrom snnclf.data.datasets import scratch_folder\n"
                             "f = scratch_folder(sys.argv[1], '.out.')\n(f / 'half.bin').write_bytes(b'x')\n"
                             "print(f, flush=True)\nos.kill(os.getpid(), 9)", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    left = tmp_path / killed.stdout.strip().rsplit("/", 1)[-1]
    assert killed.returncode == -9 and (left / "half.bin").is_file()
    (tmp_path / ".out.mine").mkdir()
    held = scratch_folder(tmp_path, ".out.")
    assert not left.exists() and (tmp_path / ".out.mine").is_dir()
    again = scratch_folder(tmp_path, ".out.")
    assert held.is_dir() and again.is_dir() and held != again
    for folder in (held, again):
        release_scratch(folder)


@pytest.mark.slow
def test_a_simulation_killed_midway_is_cleaned_by_the_next(tmp_path):
    """SIGKILL while simulate writes: the next run with the same --out removes the hidden folder."""
    proc = subprocess.Popen([sys.executable, "-m", "snnclf", "simulate", "--dataset", "digits", "--out", "ev"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if any(tmp_path.glob(".ev.*/Train/*/*.bin")):
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert list(tmp_path.glob(".ev.*")), "the simulation was not caught midway"
    out = subprocess.run([sys.executable, "-m", "snnclf", "simulate", "--dataset", "digits", "--subset", "10",
                          "--out", "ev"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not list(tmp_path.glob(".ev.*")) and (tmp_path / "ev/simulation.json").is_file()


INTERRUPT_AT_IMPORT = """
import importlib.abc, importlib.metadata, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started with SIGINT ignored
class Interrupt(importlib.abc.MetaPathFinder):  # Ctrl-C while torch is being imported
    def find_spec(self, name, path, target=None):
        if name == "torch":
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, Interrupt())
sys.argv = ["snnclf", *sys.argv[1:]]
(entry,) = importlib.metadata.entry_points(group="console_scripts", name="snnclf")  # the installed command
main = entry.load()
sys.exit(main())
"""


def test_ctrl_c_while_any_command_is_importing_is_one_line_and_130(tmp_path):
    """The first seconds of every command import torch: Ctrl-C there printed a KeyboardInterrupt
    traceback (at times a RecursionError, exit 1). The installed command's entry point handles
    Ctrl-C before its first heavy import."""
    for command in _commands():
        out = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT, command, "--help"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 130 and out.stderr == f"snnclf {command}: interrupted\n", (command, out.stderr)
        assert out.stdout == ""


@pytest.mark.parametrize("args, blamed", [(["--shift", "100000"], "--shift 100000 would move samples off"),
                                          (["--dataset", "nmnist", "--saccade_shift", "100000"],
                                           "--saccade_shift 100000 would move samples off"),
                                          (["--rate_reg", "1e300"], "the rate penalty became inf")])
def test_an_option_that_breaks_training_is_the_one_blamed(workdir, cli, args, blamed):
    """These said "out of memory: lower --time_steps or --batch_size" (neither the cause), or
    "lower --lr, then resume" with nothing to resume."""
    make_nmnist_folder(workdir / "data", per_class=(2, 1))
    code, _, err = cli("train", *TINY, "--run", "x", *D, *args)
    line = _one_line(err, "train")
    assert code == 2 and blamed in line and "memory" not in line and "--resume" not in line, line
    assert not (workdir / "ck/x").exists() and not (workdir / "lg/x").exists()
