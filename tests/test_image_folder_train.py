"""data=image_folder end to end: train on a folder of PNGs and JPEGs, then evaluate the
checkpoint and predict a file from it alone, getting a class name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIG_DIR, FAST, REPO, compose_train
from PIL import Image

from dlexp.train import train

pytestmark = pytest.mark.integration


def photos(root: Path, per_class: int = 20, size: tuple[int, int] | None = None) -> Path:
    """Three classes told apart by colour, in two formats and two sizes (or ``size``)."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = size or ((12, 16) if i % 2 else (20, 20))
            pixels = rng.integers(0, 50, size=(*shape, 3), dtype=np.uint8)
            pixels[..., k] += 180
            Image.fromarray(pixels).save(root / name / f"{i}.{'jpg' if i % 3 else 'png'}")
    return root


def evaluate_checkpoint(ckpt: str, out: Path, *overrides: str) -> dict:
    """``eval.py CKPT [overrides]``, in this process."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from dlexp.eval import evaluate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={ckpt}", f"hydra.run.dir={out}",
                                         "trainer.accelerator=cpu",
                                         "+trainer.enable_progress_bar=false", *overrides],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return evaluate(cfg)


def test_train_evaluate_then_predict_a_file(tmp_path: Path) -> None:
    root = photos(tmp_path / "photos")
    cfg = compose_train([*FAST, "data=image_folder", f"data.root={root}", "model=cnn",
                         "trainer.max_epochs=1", "data.image_size=[16,16]", "data.workers=0",
                         f"data.cache_dir={tmp_path / 'cache'}", "logger=csv",
                         "model.blocks=[{filters:8}]", "model.dense=[16]"], tmp_path / "run")
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    assert (tmp_path / "run" / "split" / "train.txt").is_file()
    (tmp_path / "eval").mkdir()
    evaluated = evaluate_checkpoint(metrics["best_ckpt"], tmp_path / "eval")
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"])  # the same test split
    header = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()[0]
    assert header.endswith("p_blue,p_green,p_red")
    # a new folder of the same classes, larger images: all of it is tested, read as in training
    new = photos(tmp_path / "new", per_class=5, size=(40, 36))
    (tmp_path / "eval_new").mkdir()
    on_new = evaluate_checkpoint(metrics["best_ckpt"], tmp_path / "eval_new",
                                 f"+data.root={new}")  # eval.py takes data.root=
    rows = (tmp_path / "eval_new" / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 15 and on_new["test/acc"] >= 0.0
    assert not (tmp_path / "eval_new" / "split").exists()  # no split of the new folder
    probe = tmp_path / "probe.png"
    pixels = np.zeros((30, 30, 3), np.uint8)
    pixels[..., 2] = 220
    Image.fromarray(pixels).save(probe)
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # a checkout's code
    done = subprocess.run([sys.executable, "predict.py", metrics["best_ckpt"], str(probe),
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["file"] == str(probe) and row["class"] in ("red", "green", "blue")
