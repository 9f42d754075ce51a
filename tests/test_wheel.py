"""The wheel works anywhere: built from the checkout, installed with --no-deps into a fresh venv
that sees the project's dependencies but not the checkout, and run from an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's bin/ folder, dlexp installed there from a freshly built wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("dlexp-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # this environment's packages, as a plain path: its .pth files (the editable install of
    # the checkout among them) are not processed, so dlexp can only come from the wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    return venv / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLEXP_", "PYTHON"))}
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_the_configs_and_trains_outside_the_checkout(
        installed: Path, tmp_path: Path, tiny_mnist: Path) -> None:
    where = _run(installed, tmp_path, "python", "-c", "import dlexp.conf, dlexp; "
                 "print(dlexp.__file__, dlexp.conf.__path__)")
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout, where.stdout
    done = _run(installed, tmp_path, "dlexp-train", f"paths.data_dir={tiny_mnist}",
                "data.val_size=100", "++trainer.fast_dev_run=true")
    assert done.returncode == 0, done.stderr[-2000:]
    [metrics] = list((tmp_path / "outputs").rglob("metrics.json"))
    assert json.loads(metrics.read_text())["status"] == "ok"


def test_own_presets_from_a_config_dir(installed: Path, tmp_path: Path, tiny_mnist: Path) -> None:
    mine = tmp_path / "myconf" / "experiment" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("# @package _global_\ndefaults:\n  - override /model: mlp\n\n"
                    "task_name: mine\nmodel:\n  hidden: [32]\n")
    done = _run(installed, tmp_path, "dlexp-train", "--config-dir", "myconf", "experiment=mine",
                f"paths.data_dir={tiny_mnist}", "data.val_size=100",
                "++trainer.fast_dev_run=true")
    assert done.returncode == 0, done.stderr[-2000:]
    [metrics] = list((tmp_path / "outputs" / "mine").rglob("metrics.json"))
    assert json.loads(metrics.read_text())["status"] == "ok"
    config = next((tmp_path / "outputs" / "mine").rglob(".hydra/config.yaml")).read_text()
    assert "hidden:\n  - 32" in config and "dlexp.models.mlp.MLP" in config


def test_help_is_one_short_page(installed: Path, tmp_path: Path) -> None:
    done = _run(installed, tmp_path, "dlexp-train", "--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) <= 60, len(lines)
    for expected in ("model: ", "experiment: ", "python train.py experiment=mnist_cnn",
                     "docs/configuration.md", "--config-dir"):
        assert expected in done.stdout, expected
