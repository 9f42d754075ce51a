"""A sweeper or launcher from the optional [sweep] extra, or the package of an optional logger
([mlflow], [wandb]), that is not installed is named, with its install command, before Hydra or
the run fails on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_train

from dlexp import config, plugins
from dlexp.errors import ConfigError


def test_missing_plugins_are_found_by_the_argument_that_needs_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_installed", lambda module: "joblib" in module)
    found = plugins.missing(["model=cnn", "hparams_search=mnist_optuna", "hydra/launcher=slurm",
                             "hydra/launcher=joblib", "+hydra/sweeper=optuna"])
    assert found == [("hparams_search=mnist_optuna", "optuna"),
                     ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher"),
                     ("+hydra/sweeper=optuna", "optuna")]
    with pytest.raises(SystemExit, match=r'error: hparams_search=mnist_optuna needs optuna, '
                                         r'which is not installed: '
                                         r'pip install "dlexp\[sweep\]"'):
        plugins.check_installed(["hparams_search=mnist_optuna"])
    with pytest.raises(SystemExit, match=r'error: hydra/launcher=slurm needs the Hydra plugin '
                                         r'hydra_submitit_launcher, which is not installed'):
        plugins.check_installed(["hydra/launcher=slurm"])


def test_installed_plugins_pass() -> None:
    assert plugins.missing(["hparams_search=mnist_optuna", "hydra/launcher=joblib"]) == []
    plugins.check_installed(["hydra/launcher=slurm"])


def train_without(package: str, arg: str, cwd: Path) -> subprocess.CompletedProcess:
    """``train.py ARG`` in a Python whose import system hides ``package``, as without its
    extra."""
    code = ("import sys, importlib.util as u; real = u.find_spec; "
            f"u.find_spec = lambda n, *a: None if n.split('.')[0] == {package!r} "
            "else real(n, *a); "
            f"sys.argv = ['train.py', {arg!r}]; from dlexp.train import main; main()")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_train_py_stops_in_one_line_without_the_plugin(tmp_path) -> None:
    done = train_without("optuna", "hparams_search=mnist_optuna", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'error: hparams_search=mnist_optuna needs optuna, which is not installed: '
        'pip install "dlexp[sweep]"'], done.stderr


@pytest.mark.parametrize(("arg", "package"), [
    ("logger=mlflow", "mlflow"), ("logger=many", "mlflow"), ("logger=[csv,mlflow]", "mlflow"),
    ("logger=csv,mlflow", "mlflow"), ("logger=wandb", "wandb"), ("logger=tensorboard", None)])
def test_a_logger_names_the_extra_it_needs(arg: str, package: str | None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_installed", lambda module: False)
    assert plugins.missing([arg]) == ([(arg, package)] if package else [])
    if package:
        with pytest.raises(SystemExit, match=rf'^error: {re.escape(arg)} needs {package}, which '
                                             rf'is not installed: pip install "dlexp\[{package}\]"$'):
            plugins.check_installed([arg])


def test_a_composed_logger_without_its_package_fails_the_config_check(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also a logger set by a preset or through dlexp.train(...), which no argument names."""
    cfg = compose_train(["logger=many"], tmp_path)
    config.check_loggers(cfg)  # installed here
    monkeypatch.setattr(plugins, "_installed", lambda module: module != "mlflow")
    with pytest.raises(ConfigError, match=r'^logger.mlflow needs mlflow, which is not '
                                          r'installed: pip install "dlexp\[mlflow\]"$'):
        config.check_loggers(cfg)


def test_train_py_stops_in_one_line_without_mlflow(tmp_path) -> None:
    done = train_without("mlflow", "logger=mlflow", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'error: logger=mlflow needs mlflow, which is not installed: pip install "dlexp[mlflow]"'
    ], done.stderr
    assert not (tmp_path / "outputs").exists()  # before any work
