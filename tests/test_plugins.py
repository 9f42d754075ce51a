"""A sweeper or launcher from the optional [sweep] extra that is not installed is named, with
its install command, before Hydra fails on it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dlexp import plugins


def test_missing_plugins_are_found_by_the_argument_that_needs_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_installed", lambda module: "joblib" in module)
    found = plugins.missing(["model=cnn", "hparams_search=mnist_optuna", "hydra/launcher=slurm",
                             "hydra/launcher=joblib", "+hydra/sweeper=optuna"])
    assert found == [("hparams_search=mnist_optuna", "optuna"),
                     ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher"),
                     ("+hydra/sweeper=optuna", "optuna")]
    with pytest.raises(SystemExit, match=r'error: hparams_search=mnist_optuna needs the package '
                                         r'optuna, which is not installed: '
                                         r'pip install "dlexp\[sweep\]"'):
        plugins.check_installed(["hparams_search=mnist_optuna"])
    with pytest.raises(SystemExit, match=r'error: hydra/launcher=slurm needs the Hydra plugin '
                                         r'hydra_submitit_launcher, which is not installed'):
        plugins.check_installed(["hydra/launcher=slurm"])


def test_installed_plugins_pass() -> None:
    assert plugins.missing(["hparams_search=mnist_optuna", "hydra/launcher=joblib"]) == []
    plugins.check_installed(["hydra/launcher=slurm"])


def test_train_py_stops_in_one_line_without_the_plugin(tmp_path) -> None:
    # a Python whose import system hides Optuna, as without the [sweep] extra
    code = ("import sys, importlib.util as u; real = u.find_spec; "
            "u.find_spec = lambda n, *a: None if 'optuna' in n else real(n, *a); "
            "sys.argv = ['train.py', 'hparams_search=mnist_optuna']; "
            "from dlexp.train import main; main()")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'error: hparams_search=mnist_optuna needs the package optuna, which '
        'is not installed: pip install "dlexp[sweep]"'], done.stderr
