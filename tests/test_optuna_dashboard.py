"""optuna-dashboard as a user runs it on a finished search: ``train.py hparams_search=mnist_optuna``
with tiny settings writes its study into a journal file, ``optuna-dashboard <file>`` serves it
on loopback, and headless Chromium finds the trials and the parameter importances on its pages.
The screenshots go to the artifacts folder (see conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from browser import screenshot
from conftest import FAST, REPO, TINY_DATA
from mlflow_server import free_port, stop

pytestmark = pytest.mark.integration

N_TRIALS = 4
START_S = 60  # the dashboard's first start imports Optuna and reads the journal
TIMEOUT_S = 60  # the pages' first load (its JavaScript bundle), on 2 busy cores
PRESET = yaml.safe_load((REPO / "conf" / "hparams_search" / "mnist_optuna.yaml").read_text())
# the preset's search space, less what TINY_DATA fixes (data.batch_size)
PARAMS = [k for k in PRESET["hydra"]["sweeper"]["params"]
          if not any(o.startswith(f"{k}=") for o in TINY_DATA)]


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path) -> Path:
    """The journal file of a finished 4-trial ``mnist_optuna`` study (one epoch a trial)."""
    root = tmp_path_factory.mktemp("optuna_dashboard")
    journal = root / "optuna.log"
    cmd = [sys.executable, str(REPO / "train.py"), f"paths.log_dir={root}",
           f"paths.data_dir={tiny_mnist}", *FAST, *TINY_DATA, "hparams_search=mnist_optuna",
           "model=mlp", "model.hidden=[16]", "trainer.max_epochs=1", "threads=1",
           f"hydra.sweeper.n_trials={N_TRIALS}", f"hydra.sweeper.storage=journal://{journal}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    return journal


def dashboard_command() -> str:
    """The ``optuna-dashboard`` script of this interpreter's environment (else on PATH)."""
    beside = Path(sys.executable).with_name("optuna-dashboard")
    found = str(beside) if beside.is_file() else shutil.which("optuna-dashboard")
    if found is None:
        pytest.fail("optuna-dashboard is not installed: pip install -e '.[sweep]'")
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/meta", timeout=5) as response:
            return response.status == 200
    except OSError:  # not listening yet
        return False


@contextmanager
def optuna_dashboard(storage: str, folder: Path) -> Iterator[str]:
    """``optuna-dashboard STORAGE --host 127.0.0.1 --port <free>``; its URL once it answers."""
    port = free_port()
    log = folder / f"optuna-dashboard-{port}.log"
    cmd = [dashboard_command(), storage, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"optuna-dashboard at {url} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def served(study_file: Path) -> Iterator[tuple[str, int]]:
    """The dashboard's URL and the study's id in it."""
    with optuna_dashboard(str(study_file), study_file.parent) as url:
        (study,) = get(url, "/api/studies")["study_summaries"]
        assert study["study_name"] == "mnist_optuna"
        yield url, study["study_id"]


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=60) as response:
        return json.loads(response.read())


def test_the_dashboard_reads_every_trial_and_ranks_every_parameter(served) -> None:
    url, study_id = served
    trials = get(url, f"/api/studies/{study_id}")["trials"]
    assert [(t["number"], t["state"]) for t in trials] == [(n, "Complete") for n in
                                                          range(N_TRIALS)]
    (importances,) = get(url, f"/api/studies/{study_id}/param_importances")["param_importances"]
    assert {i["name"] for i in importances} == set(PARAMS)
    assert sum(i["importance"] for i in importances) == pytest.approx(1.0)


def test_the_pages_show_the_trials_and_the_parameter_importances(page, served,
                                                                 artifacts: Path) -> None:
    url, study_id = served
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.set_viewport_size({"width": 1280, "height": 1600})  # the importance chart in view
    page.goto(f"{url}/dashboard/studies/{study_id}")
    chart = page.locator(".MuiCard-root").filter(
        has=page.get_by_role("heading", name="Hyperparameter Importance"))
    for name in PARAMS:  # the bars' labels (Plotly's SVG text)
        label = re.compile(f"^{re.escape(name)}$")
        chart.locator("svg text", has_text=label).first.wait_for(state="visible")
    screenshot(page, artifacts / "optuna_dashboard_study.png")

    page.goto(f"{url}/dashboard/studies/{study_id}/trials")
    page.get_by_text(f"{N_TRIALS} Trials", exact=True).wait_for(state="visible")
    for number in range(N_TRIALS):
        page.get_by_text(f"Trial {number}", exact=True).first.wait_for(state="visible")
    assert page.get_by_text("Complete", exact=True).count() >= N_TRIALS
    screenshot(page, artifacts / "optuna_dashboard_trials.png")
