"""`python -m migrator` and `python -m migrator.cli` are the same command as `migrator`."""

import subprocess
import sys

import migrator


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "migrator", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert migrator.__version__ in done.stdout


def test_python_dash_m_reports_bad_input_with_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-m", "migrator", "run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "missing.yaml" in done.stderr
    assert not (tmp_path / "out").exists()


def test_python_dash_m_migrator_cli_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "migrator.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert migrator.__version__ in done.stdout
