"""data=arrays end to end: train, then predict, evaluate and export from the checkpoint alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, REPO, compose_train, make_arrays_npz, synthetic_digits

import dlexp
from dlexp.train import train

pytestmark = pytest.mark.integration
SHORT = ["model=mlp", "model.hidden=[32]", "trainer.max_epochs=3", "data.batch_size=32",
         "logger=csv"]


@pytest.fixture(scope="module")
def arrays_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("arrays_run")
    data = make_arrays_npz(out / "digits.npz", n_train=400, n_test=100)
    cfg = compose_train([*FAST, *SHORT, "data=arrays", f"data.path={data}"], out / "run")
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    return out, metrics


def test_arrays_train_and_load_give_class_names(arrays_run: tuple[Path, dict]) -> None:
    out, metrics = arrays_run
    assert metrics["test/acc"] > 0.5  # ten classes: chance is 0.1
    model = dlexp.load(metrics["best_ckpt"])
    assert model.modality == "image" and "seven" in model.class_names
    x, y = synthetic_digits(50, 3)
    predicted = [model.class_names[i] for i in model.predict(x).argmax(-1)]
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    assert np.mean(np.array(predicted) == names[y]) > 0.5


def test_predict_eval_export_from_the_checkpoint(arrays_run: tuple[Path, dict]) -> None:
    out, metrics = arrays_run
    ckpt = metrics["best_ckpt"]
    x, y = synthetic_digits(2, 4)
    np.save(out / "one.npy", x[0])
    from PIL import Image
    Image.fromarray(x[1]).save(out / "one.png")
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(out)}
    done = subprocess.run([sys.executable, "predict.py", ckpt, str(out / "one.npy"),
                           str(out / "one.png"), "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(out / "one.npy"), str(out / "one.png")]
    assert all(r["class"] in dlexp.load(ckpt).class_names for r in rows)
    done = subprocess.run([sys.executable, "eval.py", ckpt, f"paths.log_dir={out / 'eval'}",
                           "trainer.accelerator=cpu", "+trainer.enable_progress_bar=false"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (written,) = (out / "eval").rglob("metrics.json")
    assert json.loads(written.read_text())["test/acc"] == pytest.approx(metrics["test/acc"])
    (predictions,) = (out / "eval").rglob("predictions.csv")
    assert "p_seven" in predictions.read_text().splitlines()[0]
    pytest.importorskip("onnx", reason="dlexp-export needs the export extra")
    from dlexp.export import main
    main([ckpt, "--out", str(out / "model.onnx")])
    sidecar = json.loads((out / "model.onnx.json").read_text())
    assert sidecar["class_names"] == dlexp.load(ckpt).class_names


@pytest.mark.parametrize("case", ["short labels", "features to the cnn"])
def test_bad_arrays_end_in_one_error_line(tmp_path: Path, case: str) -> None:
    x, y = synthetic_digits(20, 0)
    if case == "short labels":
        arrays, model = {"x_train": x, "y_train": y[:-1]}, "mlp"
        want = f"data: {tmp_path / 'bad.npz'}: x_train has 20 samples but y_train has 19 labels"
    else:
        arrays, model = {"x_train": x.reshape(20, -1), "y_train": y}, "cnn"
        want = ("model=cnn takes images (channels, height, width), got inputs of shape (784,): "
                "feature vectors go to model=mlp")
    np.savez(tmp_path / "bad.npz", **arrays)
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "train.py", "data=arrays", f"model={model}",
                           f"data.path={tmp_path / 'bad.npz'}", f"paths.log_dir={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {want}"], done.stderr
    assert "Traceback" not in done.stderr
