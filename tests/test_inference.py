"""``dlexp.load``: a checkpoint as a ready model with its input pipeline, giving the same
probabilities as dlexp-predict. Fast tests use untrained checkpoints; the round trips train."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, NEGATIVE, POSITIVE, TINY_DATA, compose_train, paper_digit
from PIL import Image

import dlexp
from dlexp import checkpoint
from dlexp.data.tokenizer import encode, from_json
from dlexp.errors import CheckpointError
from dlexp.inference import Predictor
from dlexp.predict import main as predict_main
from dlexp.train import train


def test_load_gives_a_ready_model(untrained_image_ckpt: str) -> None:
    model = dlexp.load(untrained_image_ckpt)
    assert isinstance(model, Predictor) and model.modality == "image"
    assert model.class_names == [str(d) for d in range(10)]
    assert not model.net.training and not model.task.training and model.task.net is model.net
    saved = checkpoint.load(untrained_image_ckpt)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in model.task.state_dict().items())


def test_images_as_paths_files_pil_and_arrays(untrained_image_ckpt: str, tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    Image.fromarray(paper_digit()).save(path)
    model = dlexp.load(untrained_image_ckpt)
    with Image.open(path) as im:
        probs = model.predict_images([str(path), path, io.BytesIO(path.read_bytes()), im,
                                      paper_digit()])
    assert probs.shape == (5, 10) and torch.allclose(probs.sum(1), torch.ones(5))
    assert torch.allclose(probs, probs[0].expand(5, 10), atol=1e-6)  # GEMM tails differ a ulp
    ranked = model.rank(probs[:1])[0]
    assert [p for _, p in ranked] == sorted(probs[0].tolist(), reverse=True)
    assert model.predict_images([]).shape == (0, 10)


def test_a_bad_input_is_named(untrained_image_ckpt: str, untrained_text_ckpt: str,
                              tmp_path: Path) -> None:
    images, texts = dlexp.load(untrained_image_ckpt), dlexp.load(untrained_text_ckpt)
    with pytest.raises(ValueError, match=f"^{tmp_path / 'none.png'}: no such file$"):
        images.predict_images([paper_digit(), tmp_path / "none.png"])
    with pytest.raises(ValueError, match="^image 1: no digit found: the image is blank$"):
        images.predict_images([paper_digit(), np.zeros((9, 9), np.uint8)])
    with pytest.raises(ValueError, match="^text 1: empty review: no words to classify$"):
        texts.predict_texts(["great", " "])


def test_predict_gives_class_names_for_files_folders_and_texts(
        untrained_image_ckpt: str, untrained_text_ckpt: str, tmp_path: Path) -> None:
    images = dlexp.load(untrained_image_ckpt)
    for i in range(3):
        (tmp_path / "digits" / str(i)).mkdir(parents=True)
        Image.fromarray(np.roll(paper_digit(), 4 * i, axis=0)).save(
            tmp_path / "digits" / str(i) / "x.png")
    (tmp_path / "digits" / "broken.png").write_bytes(b"\x89PNG")
    with pytest.warns(UserWarning, match="^1 of 4 files could not be read and were left out: "):
        found = images.predict(str(tmp_path / "digits"))
    files = [str(tmp_path / "digits" / str(i) / "x.png") for i in range(3)]
    assert list(found) == files and set(found.values()) <= set(images.class_names)
    assert images.predict(files[0]) == found[files[0]]
    assert images.predict([Path(f) for f in files]) == list(found.values())
    assert images.predict(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)  # probabilities
    texts = dlexp.load(untrained_text_ckpt)
    (tmp_path / "review.txt").write_text("a great film")
    names = texts.predict(["a great film", str(tmp_path / "review.txt")])
    assert names[0] == names[1] and names[0] in texts.class_names
    assert texts.predict("dull") in texts.class_names  # one review: one name
    with pytest.raises(ValueError, match="^input 1: empty review"):
        texts.predict(["good", " "])


def test_the_wrong_kind_of_input_is_refused(untrained_image_ckpt: str,
                                            untrained_text_ckpt: str) -> None:
    with pytest.raises(CheckpointError, match="classifies texts, not images: use predict_texts$"):
        dlexp.load(untrained_text_ckpt).predict_images([paper_digit()])
    with pytest.raises(CheckpointError, match="classifies images, not texts: use predict_images$"):
        dlexp.load(untrained_image_ckpt).predict_texts(["great"])
    with pytest.raises(TypeError, match="wrap a single one in"):
        dlexp.load(untrained_text_ckpt).predict_texts("a great film")


def test_long_reviews_reach_the_network_truncated_as_in_training(
        untrained_text_ckpt: str) -> None:
    model = dlexp.load(untrained_text_ckpt)  # max_len 12, head_tail: first 3, last 9 tokens
    review = "the plot was dull " * 100_000 + "but the music and cast were great"
    ids = model.prepare_text(review)
    tok = from_json(model.data["tokenizer"])
    assert ids == encode(tok, [review]).truncate(12, "head_tail").flat.tolist()
    assert len(ids) == 12 and ids[-7:] == tok.encode("but the music and cast were great").ids


def test_import_dlexp_stays_cheap() -> None:
    """``dlexp.load`` imports torch and Lightning on first use, not on ``import dlexp``."""
    code = "import sys, dlexp; print(callable(dlexp.load), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.split() == ["True", "False"]


# ------------------------------------------------------------------ trained round trips
def _predict_cli(ckpt: str, inputs: list[str], capsys: pytest.CaptureFixture) -> torch.Tensor:
    """dlexp-predict's probabilities, in class order, one row per input."""
    predict_main(["--json", "--top-k", "100", ckpt, "--", *inputs])
    rows = [json.loads(line)["top"] for line in capsys.readouterr().out.splitlines()]
    names = dlexp.load(ckpt).class_names
    return torch.tensor([[{t["class"]: t["probability"] for t in row}[c] for c in names]
                         for row in rows])


@pytest.mark.integration
def test_round_trip_of_a_trained_image_model(tmp_path: Path, tiny_mnist: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    from conftest import synthetic_digits

    metrics = train(compose_train([*FAST, *TINY_DATA, "model=mlp", "model.hidden=[32]",
                                   "trainer.max_epochs=3", "test=false", "logger=none"],
                                  tmp_path / "run", tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    model = dlexp.load(metrics["best_ckpt"])
    images, labels = synthetic_digits(30, seed=5)
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).resize((84, 84)).save(files[-1])
    # the synthetic classes are positions, which load_image's centring removes: the trained
    # weights are checked on the 28x28 digits as they are, the pipeline against predict
    raw = model.classify_images([torch.from_numpy(image)[None] for image in images])
    assert (raw.argmax(1).numpy() == labels).mean() >= 0.8
    probs = model.predict_images(files)
    assert torch.allclose(probs, _predict_cli(metrics["best_ckpt"], files, capsys), atol=1e-6)
    assert len(set(probs.argmax(1).tolist())) > 1  # not one class for everything


@pytest.mark.integration
def test_round_trip_of_a_trained_text_model(tmp_path: Path, tiny_imdb: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    metrics = train(compose_train([
        *FAST, "data=imdb", "model=lstm", "model.embedding_dim=16", "model.hidden_size=16",
        "model.dropout=0.0", "model.embedding_dropout=0.0", "optimizer.lr=0.01",
        "data.val_size=40", "data.batch_size=16", "data.tokenizer.vocab_size=200",
        "data.tokenizer.min_frequency=1", "trainer.max_epochs=6", "test=false", "logger=none"],
        tmp_path / "run", tiny_imdb))
    assert metrics["status"] == "ok", metrics.get("error")
    model = dlexp.load(metrics["best_ckpt"])
    texts = [f"The movie is {POSITIVE[0]} and {POSITIVE[1]}.",
             f"The movie is {NEGATIVE[0]}, {NEGATIVE[1]} and a {NEGATIVE[3]}!"]
    probs = model.predict_texts(texts)
    assert [model.class_names[i] for i in probs.argmax(1)] == ["positive", "negative"]
    assert torch.allclose(probs, _predict_cli(metrics["best_ckpt"], texts, capsys), atol=1e-6)
