"""benchmarks/presets.py: a preset's recipe is chosen on validation, and only the choice is tested."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_study_chooses_on_validation_and_tests_only_the_choice(tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, str(ROOT / "benchmarks" / "presets.py"), "--preset", "digits", "--seeds", "0", "1",
               "--out", str(out), "--candidate", "short", "--epochs 1 --subset 300",
               "--candidate", "longer", "--epochs 6 --subset 300"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "chosen on validation: longer" in done.stdout  # six epochs beat one on validation
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| short", "| longer"))]
    assert len(rows) == 2
    # the test split was read for the chosen candidate's runs only, once each
    assert sorted(p.parent.name for p in out.glob("logs/*/eval.json")) == ["longer-s0", "longer-s1"]
    tested = next(line for line in done.stdout.splitlines() if line.startswith("its test accuracy"))
    accuracy = float(tested.split("mean ")[1].split()[0])
    assert accuracy > 25  # above chance (10%) after six epochs on 300 images
    assert "energy per test sample" in done.stdout

    # run again with one candidate more: the finished runs are read, not trained again
    before = {p: p.stat().st_mtime_ns for p in out.glob("logs/*/metrics.csv")}
    again = subprocess.run([*command, "--candidate", "two", "--epochs 2 --subset 300", "--no_test"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert (out / "logs/two-s1/metrics.csv").exists() and "chosen on validation: longer" in again.stdout
    assert [line.split("|")[3] for line in again.stdout.splitlines() if line.startswith(("| short", "| longer"))] \
        == [row.split("|")[3] for row in rows]  # the same validation scores, read back
