"""dlexp.train, dlexp.sweep and dlexp.fit: the CLI's run from Python, its results, its errors,
and no state carried from one call to the next."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, synthetic_digits
from omegaconf import OmegaConf

import dlexp
from dlexp.api import RunError

pytestmark = pytest.mark.integration
MLP = ["model=mlp", "model.hidden=[16]", "data.batch_size=32", "data.val_size=100"]


def common(tmp_path: Path, data: Path) -> list[str]:
    return [*FAST, f"paths.data_dir={data}", f"paths.log_dir={tmp_path}", *MLP]


def test_train_returns_the_run_the_cli_writes(tmp_path: Path, tiny_mnist: Path) -> None:
    run = dlexp.train(*common(tmp_path, tiny_mnist), trainer__max_epochs=2)
    assert run.metrics == json.loads((run.run_dir / "metrics.json").read_text())
    assert run.metrics["status"] == "ok" and run.run_dir.parent == tmp_path / "train" / "runs"
    assert (run.run_dir / ".hydra" / "config.yaml").is_file()
    history = run.history
    assert history["epoch"] == [1, 2] and len(history["val_accuracy"]) == 2
    assert history["loss"][1] < history["loss"][0]
    assert history["val_accuracy"][-1] == pytest.approx(run.metrics["val/acc"])
    assert run.run_dir / "figures" / "curves.png" in run.figures
    model = run.load()
    assert Path(model.path) == Path(run.best_ckpt)
    x, y = synthetic_digits(40, 7)
    accuracy = (model.predict(x).argmax(-1).numpy() == y).mean()
    assert accuracy > 0.3  # ten classes: chance is 0.1


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer=sgdd", "Could not find 'optimizer/sgdd'"),
    ("optimizer.lr=-1", "optimizer/scheduler: Invalid learning rate: -1"),
    ("monitor.metric=val/acc2", "monitor.metric=val/acc2 is not a metric dlexp logs"),
])
def test_a_bad_setting_raises_the_cli_error_line(override: str, message: str, tmp_path: Path,
                                                 tiny_mnist: Path) -> None:
    with pytest.raises(RunError, match=message) as info:
        dlexp.train(*common(tmp_path, tiny_mnist), override)
    assert "\n" not in str(info.value)
    assert info.value.__context__ is None or info.value.__suppress_context__  # no wall


def test_cli_prints_the_same_error_line(tmp_path: Path, tiny_mnist: Path) -> None:
    with pytest.raises(RunError) as info:
        dlexp.train(*common(tmp_path, tiny_mnist), "optimizer.lr=-1")
    done = subprocess.run([sys.executable, "train.py", *common(tmp_path, tiny_mnist),
                           "optimizer.lr=-1"], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=300)
    assert f"error: {info.value}" in done.stderr.splitlines()


def test_a_second_run_inherits_no_state(tmp_path: Path, tiny_mnist: Path) -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    args = [*common(tmp_path, tiny_mnist), "trainer.max_epochs=1"]
    first = dlexp.train(*args, "threads=1", "matmul_precision=medium")
    assert torch.get_num_threads() == threads
    assert torch.get_float32_matmul_precision() == precision
    assert not GlobalHydra.instance().is_initialized() and not HydraConfig.initialized()
    torch.manual_seed(123)  # whatever the notebook did in between
    again = dlexp.train(*args, "threads=1", "matmul_precision=medium")
    assert again.metrics["val/loss"] == first.metrics["val/loss"]  # the run seeds itself
    assert again.run_dir != first.run_dir


def test_a_cell_run_twice_prints_its_lines_once_each_time(tmp_path: Path,
                                                         tiny_mnist: Path) -> None:
    args = [*common(tmp_path, tiny_mnist), "++trainer.fast_dev_run=true"]
    cell = f"import dlexp\nfor _ in range(2):\n    print('cell'); dlexp.train(*{args!r})\n"
    done = subprocess.run([sys.executable, "-u", "-c", cell], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out
    runs = out.split("cell\n")[1:]
    assert len(runs) == 2, out
    # no handler stacked up by the first run: each line once in each run
    assert [(r.count("GPU available"), r.count("test/acc")) for r in runs] == [(1, 1)] * 2


def test_config_dir_adds_the_users_groups_as_the_cli_flag_does(tmp_path: Path,
                                                               tiny_mnist: Path) -> None:
    conf = tmp_path / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "tiny_mlp.yaml").write_text("defaults:\n  - mlp\n  - _self_\nhidden: [12]\n")
    args = [*common(tmp_path, tiny_mnist)[:-len(MLP)], "model=tiny_mlp", *MLP[2:],
            "trainer.max_epochs=1"]
    run = dlexp.train(*args, config_dir=conf)
    saved = OmegaConf.load(run.run_dir / ".hydra" / "config.yaml")
    assert list(saved.model.hidden) == [12]
    first = next(m for m in run.load().net.modules() if isinstance(m, torch.nn.Linear))
    assert first.out_features == 12
    done = subprocess.run([sys.executable, "train.py", "--config-dir", str(conf), *args],
                          cwd=Path(__file__).parents[1], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    with pytest.raises(RunError, match="config_dir=nowhere is not a folder"):
        dlexp.train(*args, config_dir="nowhere")
    with pytest.raises(RunError, match="Could not find 'model/tiny_mlp'"):
        dlexp.train(*args)


def test_sweep_runs_the_grid_and_goes_on_past_a_failed_job(tmp_path: Path,
                                                           tiny_mnist: Path) -> None:
    runs = dlexp.sweep(*common(tmp_path, tiny_mnist), "++trainer.fast_dev_run=true",
                       "model.hidden=[8],[16]", "optimizer.lr=0.001,-1")
    assert [r.metrics["status"] for r in runs] == ["ok", "failed", "ok", "failed"]
    assert "Invalid learning rate" in runs[1].metrics["error"]
    assert [r.run_dir.name for r in runs] == ["0", "1", "2", "3"]
    assert len({r.run_dir.parent for r in runs}) == 1
    assert runs[2].overrides[-2:] == ["model.hidden=[16]", "optimizer.lr=0.001"]
    assert dlexp.train(*common(tmp_path, tiny_mnist), "++trainer.fast_dev_run=true",
                       "model.hidden=[8]", multirun=True)[0].metrics["status"] == "ok"
    pd = pytest.importorskip("pandas")
    frame = runs.to_frame()
    assert isinstance(frame, pd.DataFrame) and list(frame["status"]) == ["ok", "failed"] * 2
    assert list(frame["optimizer.lr"]) == ["0.001", "-1"] * 2


def test_fit_on_arrays_with_string_labels(tmp_path: Path) -> None:
    x, y = synthetic_digits(300, 0)
    names = np.array(list("abcdefghij"))
    xv, yv = synthetic_digits(60, 1)
    run = dlexp.fit(torch.from_numpy(x), names[y], *FAST, f"paths.log_dir={tmp_path}",
                    model="mlp", validation_data=(xv, names[yv]), epochs=3, batch_size=32,
                    model__hidden=[32])
    assert run.metrics["status"] == "ok"
    assert len(run.history["loss"]) == 3
    model = dlexp.load(run.best_ckpt)
    assert model.class_names == list("abcdefghij")
    xt, yt = synthetic_digits(50, 2)
    predicted = np.array(model.class_names)[model.predict(xt).argmax(-1).numpy()]
    assert (predicted == names[yt]).mean() > 0.5
    saved = np.load(run.run_dir / "arrays.npz", allow_pickle=False)
    assert np.array_equal(saved["x_val"], xv)  # validation_data is used, not a split


def test_fit_features_and_its_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    x = rng.normal(size=(200, 5)) + y[:, None] * 2.0
    with pytest.raises(RunError, match="model=cnn takes images"):
        dlexp.fit(x, y, f"paths.log_dir={tmp_path}")
    with pytest.raises(RunError, match="holds NaN"):
        dlexp.fit(np.full((10, 3), np.nan), y[:10], *FAST, f"paths.log_dir={tmp_path}",
                  model="mlp")
    run = dlexp.fit(x, y, *FAST, f"paths.log_dir={tmp_path}", model="mlp", epochs=2)
    assert run.load().modality == "features" and run.metrics["test/acc"] > 0.7



def test_dlexp_train_stays_callable_once_its_module_is_imported(tmp_path: Path) -> None:
    import importlib

    module = importlib.import_module("dlexp.train")  # binds dlexp.train to the module
    assert callable(module.train) and callable(dlexp.train)
    with pytest.raises(RunError, match="Could not find 'optimizer/sgdd'"):
        dlexp.train("optimizer=sgdd", f"paths.log_dir={tmp_path}")
