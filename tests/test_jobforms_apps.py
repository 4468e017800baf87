"""The two shipped apps run for real, as a job would run them: the argv from the form, in a
work folder, results there. The machines that run jobs have python3 with numpy; here the
test's own interpreter stands in for ``python3``."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobforms.loader import load_apps
from panel_apps.loaders import preview, sniff_text

SHIPPED = Path(__file__).resolve().parent.parent / "jobforms" / "apps"
LIMITS = {"slurm": {"cores": 2, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1}}
COLUMNS = ["t", "V_mean", "fluxons", "E_kinetic", "E_gradient", "E_potential", "E_total", "P_dissipated",
           "P_bias", "phi_mean", "V_left", "V_right"]


@pytest.fixture(scope="module")
def apps():
    return load_apps(SHIPPED, LIMITS)[0]


def run_job(app, values: dict, workdir: Path, files=None) -> subprocess.CompletedProcess:
    argv = app.command(app.validate(values), workdir=workdir, files=files)
    assert argv[0] == "python3"
    return subprocess.run([sys.executable, *argv[1:]], cwd=workdir, capture_output=True, text=True, timeout=120)


def run_ljj(apps, tmp_path: Path, **values) -> tuple[np.ndarray, subprocess.CompletedProcess]:
    done = run_job(apps["ljj"], values, tmp_path)
    assert done.returncode == 0, done.stderr
    return np.loadtxt(tmp_path / "ljj.dat"), done


def test_hello_prints_its_parameters_and_writes_its_result_file(apps, tmp_path):
    (tmp_path / "notes.txt").write_text("first line\nsecond\n")
    done = run_job(apps["hello-test"], {"greeting": "Привет", "who": "Dubna; $(id)", "repeat": 2, "shout": True,
                                        "language": "fr", "extras": ["python"], "use_file": True,
                                        "input": "notes.txt"},
                   tmp_path, files={"input": str(tmp_path / "notes.txt")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["ПРИВЕТ, DUBNA; $(ID)!"] * 2
    assert "first line of" in done.stdout and done.stdout.rstrip().endswith("Au revoir !")
    assert (tmp_path / "hello.txt").read_text().startswith("ПРИВЕТ, DUBNA; $(ID)!\n")


def test_ljj_writes_twelve_named_columns_that_the_plotting_app_opens(apps, tmp_path):
    rows, done = run_ljj(apps, tmp_path, length=10, points=100, steps=2000, record_every=20, time_step=0.05)
    assert rows.shape == (101, 12)
    assert np.all(np.isfinite(rows))
    assert "step 2000/2000 (100%)" in done.stdout  # progress on stdout
    options = sniff_text(tmp_path / "ljj.dat")
    assert options.names == COLUMNS
    assert preview(tmp_path / "ljj.dat", options.to_dict()).numeric_columns == COLUMNS


def test_ljj_annular_fluxons_stay_trapped_and_damping_only_takes_energy(apps, tmp_path):
    rows, _ = run_ljj(apps, tmp_path, boundary="annular", fluxons=2, velocity=0.6, alpha=0.1, gamma=0.0,
                      length=12, points=120, steps=3000, record_every=30, time_step=0.05)
    col = {name: rows[:, i] for i, name in enumerate(COLUMNS)}
    assert np.allclose(col["fluxons"], 2.0, atol=1e-9)  # topological charge of the ring
    assert np.all((col["E_potential"] >= 0) & (col["E_potential"] <= 2 * 12 + 1e-9))
    assert np.all(np.diff(col["E_total"]) <= 1e-3)  # no bias: damping only removes energy
    assert col["E_total"][-1] < col["E_total"][0]
    assert np.allclose(col["E_total"], col["E_kinetic"] + col["E_gradient"] + col["E_potential"])


def test_ljj_a_biased_fluxon_reaches_the_velocity_where_bias_power_balances_damping(apps, tmp_path):
    alpha, gamma, length = 0.1, 0.2, 20.0
    rows, _ = run_ljj(apps, tmp_path, boundary="annular", fluxons=1, alpha=alpha, gamma=gamma, length=length,
                      points=400, steps=20000, record_every=100, time_step=0.02)
    col = {name: rows[:, i] for i, name in enumerate(COLUMNS)}
    # McLaughlin-Scott: u = 1 / sqrt(1 + (4 alpha / (pi gamma))^2); one fluxon around the ring gives
    # a mean voltage of 2 pi u / L
    u = 1 / math.sqrt(1 + (4 * alpha / (math.pi * gamma)) ** 2)
    assert col["V_mean"][-1] == pytest.approx(2 * math.pi * u / length, rel=0.02)
    assert col["P_dissipated"][-1] == pytest.approx(col["P_bias"][-1], rel=0.02)
    assert np.all(col["E_total"] < 2 * length + length * (gamma / alpha) ** 2)


@pytest.mark.parametrize("args, words", [
    (["--time-step=1"], "must be below the grid spacing"),
    (["--velocity=1.5"], "--velocity must be between -1 and 1"),
    (["--points=abc"], "invalid int value"),
    (["--boundary=annular", "--field=1"], "--field applies to the open boundary only"),
    (["--length=nan"], "--length must be a finite number"),
])
def test_ljj_refuses_bad_input_with_a_message_on_stderr(tmp_path, args, words):
    done = subprocess.run([sys.executable, str(SHIPPED / "ljj" / "ljj.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and words in done.stderr
    assert not (tmp_path / "ljj.dat").exists()


def test_ljj_default_run_takes_a_few_seconds(apps, tmp_path):
    import time
    start = time.monotonic()
    rows, _ = run_ljj(apps, tmp_path)
    assert time.monotonic() - start < 10
    assert rows.shape == (401, 12)
