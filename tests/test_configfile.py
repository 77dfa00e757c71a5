"""snnclf train --config FILE and --print_config."""
import json

import pytest
import yaml

from snnclf.config import RunConfig
from snnclf.runs import RECORDED
from snnclf.runs import read_metrics

TINY = ["--model", "snn-mlp", "--subset", "240", "--time_steps", "3", "--epochs", "2", "--batch_size", "40",
        "--encoding", "rate", "--dropout", "0.2"]
TIMES = ("seconds", "data_seconds")


def test_print_config_reads_back_and_flags_win(workdir, cli):
    code, printed, err = cli("train", "--preset", "digits", "--epochs", "3", "--print_config")
    assert code == 0, err
    values = yaml.safe_load(printed)
    assert values["preset"] == "digits" and values["epochs"] == 3
    assert values["optimizer"] == "adamw" and values["batch_norm"] is True  # the preset's, resolved
    # derived values are null (derived again from an edited file), with the value in a comment
    assert values["run"] is None and "run: null  # digits-csnn-T4-preset, derived" in printed
    assert values["encoding"] is None and "encoding: null  # direct, derived" in printed
    assert list(values) == [f.name for f in RunConfig.ordered_fields()]
    (workdir / "study.yaml").write_text(printed)
    assert cli("train", "--config", "study.yaml", "--print_config")[1] == printed
    again = yaml.safe_load(cli("train", "--config", "study.yaml", "--lr", "0.01", "--print_config")[1])
    assert again == {**values, "lr": 0.01}
    assert not (workdir / "logs").exists() and not (workdir / "checkpoints").exists()


def test_json_and_kebab_keys_and_run_name(workdir, cli):
    (workdir / "c.json").write_text(json.dumps({"time-steps": 5, "run_name": "mine", "model": "snn-mlp",
                                                "milestones": None}))
    values = yaml.safe_load(cli("train", "--config", "c.json", "--print_config")[1])
    assert (values["time_steps"], values["run"], values["model"]) == (5, "mine", "snn-mlp")


BAD_FILES = [
    ("time_steps: 0\n", "--config bad.yaml: --time_steps: must be at least 1, got 0"),
    ("time_stpes: 3\n", "unknown option 'time_stpes' (did you mean time_steps?)"),
    ("model: csnnx\n", "--model: invalid choice: 'csnnx'"),
    ("batch_norm: maybe\n", "--batch_norm: expected true or false"),
    ("lr: [1, 2]\n", "--lr: expected a number"),
    ("resume: true\n", "unknown option 'resume'"),
    ("epochs: [1\n", "not valid YAML or JSON at line 2"),
    ("- 1\n- 2\n", "expected a mapping of option names to values"),
]


@pytest.mark.parametrize("text, fragment", BAD_FILES, ids=[t.split(":")[0].strip() for t, _ in BAD_FILES])
def test_a_bad_file_is_one_line_exit_2(workdir, cli, text, fragment):
    (workdir / "bad.yaml").write_text(text)
    code, out, err = cli("train", "--config", "bad.yaml")
    assert code == 2 and fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "checkpoints").exists() and not (workdir / "logs").exists()


def test_a_printed_config_edited_to_an_event_data_set_derives_its_encoding(workdir, cli):
    printed = cli("train", "--print_config")[1]
    (workdir / "c.yaml").write_text(printed.replace("dataset: digits", "dataset: digits-events"))
    values = yaml.safe_load(cli("train", "--config", "c.yaml", "--print_config")[1])
    assert values == {**yaml.safe_load(printed), "dataset": "digits-events"}


def test_missing_file_and_resume_with_a_file_are_refused(workdir, cli):
    code, _, err = cli("train", "--config", "nowhere.yaml")
    assert code == 2 and "--config nowhere.yaml: cannot read it" in err
    (workdir / "c.yaml").write_text("epochs: 2\n")
    code, _, err = cli("train", "--config", "c.yaml", "--resume")
    assert code == 2 and "leave --config out" in err
    code, _, err = cli("train", "--print_config", "--resume")
    assert code == 2 and "config.json" in err
    (workdir / "binary.pt").write_bytes(bytes(range(256)))
    code, _, err = cli("train", "--config", "binary.pt")
    assert code == 2 and "not a text file" in err and "Traceback" not in err


def test_replaying_a_runs_config_gives_the_same_metrics(workdir, cli):
    """A finished run's config.json replays it under a new name; with the same seed the metrics are
    the same (rate spikes and dropout draw random numbers, so this needs the seed to be replayed)."""
    code, _, err = cli("train", *TINY, "--seed", "3", "--run", "first")
    assert code == 0, err
    recorded = json.loads((workdir / "logs/first/config.json").read_text())
    assert set(recorded) - {f.name for f in RunConfig.ordered_fields()} == set(RECORDED)
    code, _, err = cli("train", "--config", "logs/first/config.json")
    assert code == 0, err
    code, _, err = cli("train", "--config", "logs/first/config.json", "--epochs", "1")
    assert code == 0, err
    replay = json.loads((workdir / "logs/first-replay/config.json").read_text())
    assert {**replay, "run": "first"} == recorded
    assert json.loads((workdir / "logs/first-replay-2/config.json").read_text())["epochs"] == 1
    first, again = (read_metrics(workdir / f"logs/{name}/metrics.csv") for name in ("first", "first-replay"))
    assert len(first) == len(again) == 2
    for a, b in zip(first, again):
        assert {k: v for k, v in a.items() if k not in TIMES} == {k: v for k, v in b.items() if k not in TIMES}
    # another seed is another run: the file is not replayed by accident
    code, _, err = cli("train", "--config", "logs/first/config.json", "--seed", "4", "--run", "other")
    assert code == 0, err
    other = read_metrics(workdir / "logs/other/metrics.csv")
    assert [r["train_loss"] for r in other] != [r["train_loss"] for r in first]
