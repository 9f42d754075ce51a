"""eval.py and predict.py work from a checkpoint alone, and refuse bad input in one line."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, REPO, TINY_DATA, compose_train, synthetic_digits
from PIL import Image

from dlexp.data.mnist import MNISTDataModule
from dlexp.eval import positional_ckpt
from dlexp.predict import load_image, main, predict_images
from dlexp.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path) -> dict:
    out = tmp_path_factory.mktemp("run")
    metrics = train(compose_train([*FAST, *TINY_DATA, "model=mlp", "model.hidden=[32]",
                                   "trainer.max_epochs=3"], out, tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_imdb: Path) -> str:
    """A one-epoch sentiment LSTM: only its being a text checkpoint matters here."""
    out = tmp_path_factory.mktemp("imdb_run")
    metrics = train(compose_train([*FAST, "data=imdb", "model=lstm", "model.embedding_dim=8",
                                   "model.hidden_size=8", "data.val_size=40",
                                   "data.tokenizer.vocab_size=100", "trainer.max_epochs=1",
                                   "test=false", "logger=none"], out, tiny_imdb))
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics["best_ckpt"]


@pytest.mark.parametrize("form", ["override", "positional"])
def test_eval_reproduces_the_training_test_accuracy(trained: dict, tiny_mnist: Path,
                                                    tmp_path: Path, form: str) -> None:
    ckpt = trained["best_ckpt"] if form == "positional" else f"ckpt_path={trained['best_ckpt']}"
    run_dir = _eval(ckpt, tiny_mnist, tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert (run_dir / "figures" / "confusion_matrix.png").is_file()
    rows = _predictions(run_dir)
    assert [int(r["index"]) for r in rows] == list(range(200))  # every test digit, in order
    test_labels = MNISTDataModule(root=str(tiny_mnist), download=False, val_size=100)
    test_labels.setup("test")
    assert [int(r["label"]) for r in rows] == test_labels.test_set[1].tolist()
    assert sum(int(r["correct"]) for r in rows) / 200 == pytest.approx(metrics["test/acc"])
    first = [float(rows[0][f"p_{d}"]) for d in range(10)]  # class probabilities, then argmax
    assert sum(first) == pytest.approx(1, abs=1e-3)
    assert rows[0]["predicted"] == str(max(range(10), key=first.__getitem__))


def _eval(ckpt: str, data: Path, log_dir: Path, *overrides: str) -> Path:
    """Run eval.py on ``ckpt`` (a path or a ``ckpt_path=`` override); the run directory."""
    result = _eval_process(ckpt, data, log_dir, *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (log_dir / "eval" / "runs").iterdir()
    return run_dir


def _eval_process(ckpt: str, data: Path, log_dir: Path, *overrides: str
                  ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "eval.py"), ckpt, f"data_dir={data}",
                           f"paths.log_dir={log_dir}", "trainer.accelerator=cpu", *overrides],
                          capture_output=True, text=True, timeout=300)


def test_eval_takes_overrides_of_the_training_data_config(trained: dict, tiny_mnist: Path,
                                                          tmp_path: Path) -> None:
    """``data.<key>=...`` changes the checkpoint's data config (Hydra used to answer "Key
    'data' is not in struct")."""
    run_dir = _eval(trained["best_ckpt"], tiny_mnist, tmp_path, "data.download=false",
                    "data.eval_batch_size=50")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_eval_on_another_npz_of_the_same_classes(tmp_path: Path) -> None:
    from conftest import DIGIT_NAMES, make_arrays_npz, untrained_checkpoint

    make_arrays_npz(tmp_path / "data" / "a.npz")
    ckpt = untrained_checkpoint(tmp_path / "a.ckpt", tmp_path / "data", [
        "data=arrays", "data.path=a.npz", "model=mlp", "model.hidden=[8]"])
    x, y = synthetic_digits(80, seed=4)
    np.savez(tmp_path / "data" / "b.npz", x_test=x, y_test=DIGIT_NAMES[y], x_train=x[:40],
             y_train=DIGIT_NAMES[y[:40]])
    run_dir = _eval(ckpt, tmp_path / "data", tmp_path / "logs", "data=arrays",
                    "data.path=b.npz")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "ok"
    rows = _predictions(run_dir)
    assert [r["label"] for r in rows] == DIGIT_NAMES[y].tolist()  # b's x_test, by name
    np.savez(tmp_path / "data" / "c.npz", x_train=x, y_train=y)  # numbers, not names
    refused = _eval_process(ckpt, tmp_path / "data", tmp_path / "logs", "data.path=c.npz")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: ArraysDataModule (c.npz) does not hold the "
                                     "checkpoint's classes: missing 'eight', 'five'")


def _predictions(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_eval_writes_text_predictions_in_dataset_order(text_ckpt: str, tiny_imdb: Path,
                                                       tmp_path: Path) -> None:
    run_dir = _eval(text_ckpt, tiny_imdb, tmp_path)
    rows = _predictions(run_dir)
    # the test loader sorts reviews by length; predictions follow the data's own order
    assert [r["label"] for r in rows] == ["negative"] * 50 + ["positive"] * 50
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sum(int(r["correct"]) for r in rows) / 100 == pytest.approx(metrics["test/acc"])


def test_eval_refuses_a_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "x.ckpt"
    bogus.write_text("not a checkpoint")
    result = subprocess.run([sys.executable, str(REPO / "eval.py"), f"ckpt_path={bogus}",
                             f"paths.log_dir={tmp_path}"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "error: cannot read checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_without_a_checkpoint_says_how_to_give_one(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "eval.py"), f"paths.log_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: ckpt_path is required; usage: python eval.py "
                                          "ckpt_path=<run>/checkpoints/<file>.ckpt"]
    (run_dir,) = (tmp_path / "eval" / "runs").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"


def test_eval_takes_a_lone_checkpoint_path_as_ckpt_path(tmp_path: Path) -> None:
    odd = tmp_path / "it's best=1.pt"  # an existing file needs no .ckpt; quotes survive
    odd.write_text("")
    assert positional_ckpt(["eval.py", "run/best.ckpt", "trainer.accelerator=cpu"]) == [
        "eval.py", "ckpt_path='run/best.ckpt'", "trainer.accelerator=cpu"]
    assert positional_ckpt(["eval.py", str(odd)]) == ["eval.py", f'ckpt_path="{odd}"']
    for argv in (["eval.py", "ckpt_path=run/best.ckpt", "data_dir=d"],  # already an override
                 ["eval.py", "a.ckpt", "b.ckpt"],  # two: ambiguous, Hydra reports it
                 ["eval.py", "--cfg", "job", "-cn", "eval"], ["eval.py"]):
        assert positional_ckpt(argv) == argv


def _digit_files(tmp_path: Path) -> list[tuple[Path, int]]:
    images, labels = synthetic_digits(12, seed=7)
    files = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        if i % 2:  # dark ink on light paper, bigger, RGB JPEG: must be inverted back
            path = tmp_path / f"{i}.jpg"
            Image.fromarray(255 - image).resize((100, 80)).convert("RGB").save(path)
        else:
            path = tmp_path / f"{i}.png"
            Image.fromarray(image).resize((56, 56)).save(path)
        files.append((path, int(label)))
    return files


def test_load_image_gives_mnist_shaped_light_on_dark(tmp_path: Path) -> None:
    path = tmp_path / "paper.png"
    paper = np.full((90, 60), 240, np.uint8)
    paper[30:60, 25:35] = 10  # a dark stroke on white paper
    Image.fromarray(paper).save(path)
    x = load_image(path)
    assert x.shape == (1, 28, 28) and x.dtype.is_floating_point is False
    assert x[0, 0, 0] < 50 and x.max() > 200  # inverted: dark border, light ink


@pytest.mark.parametrize("kind", ["RGBA", "LA", "P", "white_ink"])
def test_load_image_flattens_transparency(tmp_path: Path, kind: str) -> None:
    """Drawing apps export ink on a transparent background (hidden colour black): read as the
    same ink on white paper, not as an all-black image."""
    ink = np.zeros((60, 50), np.uint8)
    ink[10:50, 20:28] = 255
    Image.fromarray(255 - ink).save(tmp_path / "paper.png")
    path = tmp_path / f"{kind}.png"
    if kind == "P":  # palette image whose transparent entry is black
        Image.fromarray(np.where(ink > 0, 1, 0).astype(np.uint8), "P").save(path, transparency=0)
    else:
        colour = 255 if kind == "white_ink" else 0  # light ink must show too: onto black
        rgba = np.dstack([np.full_like(ink, colour)] * 3 + [ink])
        Image.fromarray(rgba, "RGBA").convert(kind if kind == "LA" else "RGBA").save(path)
    assert np.array_equal(load_image(path), load_image(tmp_path / "paper.png"))


def test_predict_transparent_png_as_on_white(trained: dict, tmp_path: Path) -> None:
    images, _ = synthetic_digits(10, seed=3)
    white, clear = [], []
    for i, image in enumerate(images):
        rgba = np.zeros((*image.shape, 4), np.uint8)
        rgba[..., 3] = image  # black ink, as opaque as the digit is bright
        white.append(tmp_path / f"{i}_white.png")
        clear.append(tmp_path / f"{i}_clear.png")
        Image.fromarray(255 - image).resize((84, 84)).save(white[-1])
        Image.fromarray(rgba, "RGBA").resize((84, 84)).save(clear[-1])
    on_white = [top[0][0] for top in predict_images(trained["best_ckpt"], list(map(str, white)))]
    on_clear = [top[0][0] for top in predict_images(trained["best_ckpt"], list(map(str, clear)))]
    assert on_clear == on_white and len(set(on_clear)) > 1  # not one class for all


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_predict_blank_image_names_the_file(trained: dict, tmp_path: Path, mode: str,
                                            capsys: pytest.CaptureFixture) -> None:
    (digit, _), *_ = _digit_files(tmp_path)
    blank = tmp_path / "blank.png"
    Image.new(mode, (40, 40), 255 if mode == "L" else (0, 0, 0, 0)).save(blank)  # paper; nothing
    with pytest.raises(SystemExit) as exit_info:
        main([trained["best_ckpt"], str(digit), str(blank)])
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert err == f"error: {blank}: no digit found: the image is blank\n"
    assert out.startswith(f"{digit}: ")  # the good image still gets its answer


@pytest.mark.parametrize("name", ["d1.png", "D2.JPG"])
def test_predict_refuses_an_image_for_a_text_checkpoint(text_ckpt: str, tmp_path: Path,
                                                        name: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / name
    Image.new("L", (28, 28)).save(image, format="PNG")
    with pytest.raises(SystemExit) as exit_info:
        main([text_ckpt, "a great film", str(image)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {image} is an image, but ") and err.count("\n") == 1
    assert "classifies text: pass review texts, or --file" in err


def test_predict_from_a_moved_checkpoint(trained: dict, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "model.ckpt"
    moved.parent.mkdir()
    shutil.copy(trained["best_ckpt"], moved)
    Path(trained["best_ckpt"]).rename(tmp_path / "gone.ckpt")  # the run dir copy is gone
    try:
        files = [str(p) for p, _ in _digit_files(tmp_path)]
        ranked = predict_images(str(moved), files)
        again = predict_images(str(tmp_path / "gone.ckpt"), files)
    finally:
        (tmp_path / "gone.ckpt").rename(trained["best_ckpt"])
    assert ranked == again and len(ranked) == len(files)
    assert all(abs(sum(p for _, p in top) - 1) < 1e-4 for top in ranked)


def test_predict_real_digit_photos(tmp_path: Path, real_data_dir: Path) -> None:
    """Real test digits saved as large PNGs and as inverted (dark-on-light) JPEGs."""
    from dlexp.data.idx import read_idx

    metrics = train(compose_train([*FAST, "model=mlp", "model.hidden=[256]",
                                   "data.num_labeled=10000", "data.val_size=1000",
                                   "trainer.max_epochs=2", "test=false", "logger=none"],
                                  tmp_path / "run", real_data_dir))
    raw = real_data_dir / "MNIST" / "raw"
    images = read_idx(raw / "t10k-images-idx3-ubyte.gz", 2051)[:40].numpy()
    labels = read_idx(raw / "t10k-labels-idx1-ubyte.gz", 2049)[:40].tolist()
    files = []
    for i, image in enumerate(images):
        if i % 2:
            files.append(tmp_path / f"{i}.jpg")
            Image.fromarray(255 - image).resize((200, 200)).convert("RGB").save(files[-1])
        else:
            files.append(tmp_path / f"{i}.png")
            Image.fromarray(image).resize((140, 140)).save(files[-1])
    ranked = predict_images(metrics["best_ckpt"], [str(f) for f in files])
    hits = sum(top[0][0] == str(y) for top, y in zip(ranked, labels, strict=True))
    assert hits >= 0.85 * len(files), hits


def test_predict_cli_prints_class_and_probability(trained: dict, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    (path, _), *_ = _digit_files(tmp_path)
    main([trained["best_ckpt"], str(path), "--json"])
    line = json.loads(capsys.readouterr().out.strip())
    assert line["file"] == str(path) and 0 <= line["probability"] <= 1
    assert line["class"] in [str(i) for i in range(10)]


@pytest.mark.parametrize("case", ["missing_image", "missing_ckpt", "not_an_image"])
def test_predict_bad_input_is_one_line(trained: dict, tmp_path: Path, case: str,
                                       capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "note.png"
    text.write_text("hello")
    args = {"missing_image": [trained["best_ckpt"], str(tmp_path / "none.png")],
            "missing_ckpt": [str(tmp_path / "none.ckpt"), str(text)],
            "not_an_image": [trained["best_ckpt"], str(text)]}[case]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
