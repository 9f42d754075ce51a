"""TensorBoard as a user sees it: two runs trained by dlexp, served by ``tensorboard`` and
opened in headless Chromium. Scalars lists both runs with their training and validation
curves, HParams shows their settings beside ``hp/test_acc``, Images the confusion matrix.
Screenshots of the three tabs go to the artifacts folder (see conftest.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import screenshot
from conftest import FAST, TINY_DATA, compose_train, real_mnist_root

from dlexp.train import train

pytestmark = pytest.mark.integration

CURVES = ("train/loss_epoch", "train/acc", "val/loss", "val/acc")
CONFUSION = "test/confusion_matrix"
TIMEOUT_S = 120  # TensorBoard's start and first load, on 2 busy cores
RUNS = {  # run folder -> overrides; the run's name in TensorBoard is "<folder>/tensorboard"
    "synthetic": {"mlp": ["model=mlp", "model.hidden=[32]", "trainer.max_epochs=3", *TINY_DATA],
                  "cnn": ["model=cnn", "model.blocks=[{filters:8},{filters:16}]",
                          "model.dense=[32]", "trainer.max_epochs=2", *TINY_DATA]},
    # docs/figures/tensorboard_scalars.png: two quick runs on real MNIST, validated 4x an
    # epoch so that the validation curves have a shape
    "real": {"cnn": ["experiment=mnist_cnn", "trainer.max_epochs=2",
                     "+trainer.val_check_interval=0.25"],
             "mlp": ["model=mlp", "trainer.max_epochs=3", "+trainer.val_check_interval=0.25"]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S,
               alive: Callable[[], str | None] = lambda: None) -> None:
    """Poll ``ready`` until true; fail naming ``what`` (and why, when ``alive`` says the
    process it waits on has died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (died := alive()) is not None:
            pytest.fail(f"{what}: {died}")
        try:
            if ready():
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout_s} s")


def has_data(url: str, runs: list[str]) -> bool:
    """TensorBoard loads the logdir in the background: ready once every run has its curves
    and confusion matrix."""
    scalars = fetch_json(f"{url}/data/plugin/scalars/tags")
    images = fetch_json(f"{url}/data/plugin/images/tags")
    return all(set(CURVES) <= set(scalars.get(run, {})) and CONFUSION in images.get(run, {})
               for run in runs)


@contextmanager
def tensorboard(logdir: Path, runs: list[str]) -> Iterator[str]:
    """``tensorboard --logdir`` on a free local port, once it serves ``runs``; its URL.
    Always terminated."""
    port = free_port()
    log = logdir.parent / f"tensorboard-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
             "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def alive() -> str | None:
        if process.poll() is None:
            return None
        return f"tensorboard exited ({process.returncode}): {log.read_text()[-1500:]}"

    try:
        wait_until(lambda: has_data(url, runs), f"tensorboard at {url} serving {runs}",
                   alive=alive)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module", params=["synthetic", pytest.param("real", marks=pytest.mark.slow)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, dict[str, dict], str]]:
    """Two runs trained into one logdir and TensorBoard serving it: (URL, run name -> the
    run's model option and metrics, screenshot name prefix)."""
    source = request.param
    root = real_mnist_root() if source == "real" else request.getfixturevalue("tiny_mnist")
    logdir = tmp_path_factory.mktemp(f"logs_{source}") / "outputs"
    runs = {}
    for folder, overrides in RUNS[source].items():
        cfg = compose_train([*FAST, *overrides, "logger=tensorboard", "threads=1"],
                            logdir / folder, root)
        metrics = train(cfg)
        assert metrics["status"] == "ok", metrics.get("error")
        runs[f"{folder}/tensorboard"] = {"model": cfg.model._target_.split(".")[-2], **metrics}
    with tensorboard(logdir, list(runs)) as url:
        yield url, runs, "" if source == "synthetic" else "real_mnist_"


def line_colours(card) -> list[str]:
    """Distinct colours of the drawn lines in a scalar card: one per run with data."""
    return card.locator("path.line").evaluate_all(
        "ps => [...new Set(ps.filter(p => (p.getAttribute('d') || '').length > 1)"
        ".map(p => getComputedStyle(p).stroke))]")


def test_scalars_tab_shows_both_runs_with_train_and_val_curves(page, served, artifacts: Path
                                                               ) -> None:
    url, runs, prefix = served
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(f"{url}/#scalars")
    selector = page.locator("tf-runs-selector")
    for run in runs:
        selector.get_by_text(run, exact=True).wait_for(state="visible")
    page.locator("tf-tag-filterer input").fill("^(" + "|".join(CURVES) + ")$")
    for tag in CURVES:
        card = page.locator("tf-scalar-card").filter(has_text=f"tag: {tag}").first
        card.wait_for(state="visible")
        wait_until(lambda card=card: len(line_colours(card)) == len(runs),
                   f"a {tag} curve for each of {list(runs)}")
    screenshot(page, artifacts / f"{prefix}tensorboard_scalars.png")


def grid_rows(page) -> list[list[str]]:
    """The HParams table as text: header row first, one row per run."""
    rows = page.locator("tf-hparams-table-view vaadin-grid").evaluate(
        """grid => Array.from(grid.shadowRoot.querySelectorAll('tr')).map(row =>
             Array.from(row.querySelectorAll('[part~=cell] slot')).map(slot => {
               const node = slot.assignedNodes()[0];
               return node ? node.textContent.trim() : ''; }))""")
    return [r for r in rows if any(r)]


def test_hparams_tab_shows_settings_beside_test_accuracy(page, served, artifacts: Path) -> None:
    url, runs, prefix = served
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(f"{url}/#hparams")
    wait_until(lambda: len(grid_rows(page)) == 1 + len(runs), "a table row for each run")
    header, *body = grid_rows(page)
    # shown without ticking anything: the setting that differs between the runs and the score
    assert {"choice/model", "hp/test_acc"} <= set(header), header
    table = {row[0]: dict(zip(header, row, strict=False)) for row in body}
    assert set(table) == set(runs)
    for run, info in runs.items():
        assert table[run]["choice/model"] == info["model"]
        assert table[run]["hp/test_acc"] == f"{info['test/acc']:#.5g}"  # JS toPrecision(5)
    page.set_viewport_size({"width": 2200, "height": 600})  # every shown column in the picture
    screenshot(page, artifacts / f"{prefix}tensorboard_hparams.png")


def test_images_tab_shows_each_runs_confusion_matrix(page, served, artifacts: Path) -> None:
    url, runs, prefix = served
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(f"{url}/#images")
    page.locator("tf-tag-filterer input").fill(f"^{CONFUSION}$")
    for run in runs:
        card = page.locator("tf-image-loader").filter(has_text=CONFUSION).filter(has_text=run)
        image = card.locator("img").first
        image.wait_for(state="visible")
        wait_until(lambda image=image: image.evaluate("i => i.complete && i.naturalWidth") > 0,
                   f"{run}'s confusion matrix image loaded")
        width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert width > 200 and height > 200  # the rendered matplotlib figure, not an icon
    screenshot(page, artifacts / f"{prefix}tensorboard_images.png")
