"""dlexp-demo in a real browser (headless Chromium from the distribution's packages, driven by
Playwright, the ``page`` fixture): a "1" drawn with the mouse, and a typed review, show the
class and probabilities dlexp-predict gives for the same canvas image and the same text."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from browser import screenshot
from conftest import FAST, POSITIVE, TINY_DATA, compose_train
from test_demo import running

from dlexp.predict import main as predict_main
from dlexp.train import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path) -> str:
    out = tmp_path_factory.mktemp("image_run")
    metrics = train(compose_train([*FAST, *TINY_DATA, "model=mlp", "model.hidden=[32]",
                                   "trainer.max_epochs=2", "test=false", "logger=none"],
                                  out, tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics["best_ckpt"]


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_imdb: Path) -> str:
    out = tmp_path_factory.mktemp("text_run")
    metrics = train(compose_train([
        *FAST, "data=imdb", "model=lstm", "model.embedding_dim=16", "model.hidden_size=16",
        "model.dropout=0.0", "model.embedding_dropout=0.0", "optimizer.lr=0.01",
        "data.val_size=40", "data.batch_size=16", "data.tokenizer.vocab_size=200",
        "data.tokenizer.min_frequency=1", "trainer.max_epochs=4", "test=false",
        "logger=none"], out, tiny_imdb))
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics["best_ckpt"]


def _shown(page: object) -> tuple[str, dict[str, float]]:
    """The big label, and each bar's class and probability."""
    bars = page.locator(".bar")
    probs = {bars.nth(i).get_attribute("data-class"): float(bars.nth(i).get_attribute("data-p"))
             for i in range(bars.count())}
    return page.inner_text("#label"), probs


def _predicted(args: list[str], capsys: pytest.CaptureFixture) -> tuple[str, dict[str, float]]:
    """dlexp-predict's class and every class probability for one input."""
    predict_main(["--json", "--top-k", "1000", *args])
    line = json.loads(capsys.readouterr().out)
    return line["class"], {t["class"]: t["probability"] for t in line["top"]}


def test_a_drawn_one_shows_what_predict_says_for_the_canvas(
        page: object, image_ckpt: str, tmp_path: Path, artifacts: Path,
        capsys: pytest.CaptureFixture) -> None:
    with running(image_ckpt) as server:
        page.goto(server.url)
        box = page.locator("#canvas").bounding_box()
        x, y = box["x"], box["y"]
        page.mouse.move(x + 110, y + 80)  # a "1": a short upstroke, then straight down
        page.mouse.down()
        page.mouse.move(x + 145, y + 45, steps=6)
        page.mouse.move(x + 145, y + 240, steps=20)
        page.mouse.up()
        page.wait_for_function("document.getElementById('label').dataset.input === 'canvas'")
        label, probs = _shown(page)
        screenshot(page, artifacts / "demo_drawn_digit.png")
        png = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
        page.click("#clear")
        page.wait_for_function("document.getElementById('label').dataset.input === ''")
        cleared = _shown(page)
    canvas = tmp_path / "canvas.png"
    canvas.write_bytes(base64.b64decode(png.split(",", 1)[1]))
    want_label, want = _predicted([image_ckpt, str(canvas)], capsys)
    assert list(probs) == [str(d) for d in range(10)]  # a bar for every class
    assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert label == want_label and probs == pytest.approx(want, abs=1e-6)
    assert cleared[0].strip() == "" and set(cleared[1].values()) == {0.0}


def test_a_typed_review_shows_what_predict_says(page: object, text_ckpt: str, artifacts: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    review = f"What a {POSITIVE[0]} movie, {POSITIVE[2]} every minute"
    with running(text_ckpt) as server:
        page.goto(server.url)
        page.locator("#review").press_sequentially(review, delay=15)
        page.wait_for_function("t => document.getElementById('label').dataset.input === t",
                               arg=review)
        label, probs = _shown(page)
        screenshot(page, artifacts / "demo_typed_review.png")
    want_label, want = _predicted([text_ckpt, "--", review], capsys)
    assert set(probs) == {"negative", "positive"}
    assert label == want_label == "positive" and probs == pytest.approx(want, abs=1e-6)


def test_an_uploaded_photo_shows_what_predict_says_with_the_folders_classes(
        page: object, tmp_path: Path, artifacts: Path, capsys: pytest.CaptureFixture) -> None:
    from test_image_folder_train import photos

    root = photos(tmp_path / "photos", per_class=8)
    metrics = train(compose_train([*FAST, "data=image_folder", f"data.root={root}", "model=cnn",
                                   "trainer.max_epochs=2", "data.image_size=[16,16]",
                                   "data.workers=0", f"data.cache_dir={tmp_path / 'cache'}",
                                   "model.blocks=[{filters:8}]", "model.dense=[16]",
                                   "test=false", "logger=none"], tmp_path / "run"))
    assert metrics["status"] == "ok", metrics.get("error")
    probe = next((root / "blue").glob("*.jpg"))
    with running(metrics["best_ckpt"]) as server:
        page.goto(server.url)
        page.set_input_files("#upload", str(probe))
        page.wait_for_function("n => document.getElementById('label').dataset.input === n",
                               arg=probe.name)
        label, probs = _shown(page)
        screenshot(page, artifacts / "demo_uploaded_photo.png")
    want_label, want = _predicted([metrics["best_ckpt"], str(probe)], capsys)
    assert list(probs) == ["blue", "green", "red"]
    assert label == want_label and probs == pytest.approx(want, abs=1e-6)
