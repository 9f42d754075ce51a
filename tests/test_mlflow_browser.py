"""MLflow as a user sees it: a real ``mlflow server`` on SQLite, a run trained into it with
``logger.mlflow.tracking_uri=http://...``, read back through the server, and its page opened in
headless Chromium, showing its params and ``val/acc``. The screenshot goes to the artifacts
folder (see conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import screenshot
from conftest import FAST, TINY_DATA, compose_train
from mlflow_server import mlflow_server

from dlexp.train import train

pytestmark = pytest.mark.integration

TIMEOUT_S = 120  # the UI's first load, on 2 busy cores
OVERRIDES = ["model=mlp", "model.hidden=[24]", "trainer.max_epochs=2", "threads=1",
             "logger=mlflow"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path
           ) -> Iterator[tuple[str, object, dict]]:
    """The server's URL, the MLflow run one dlexp run logged into it, and its metrics."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow_server")
    with mlflow_server(root / "server") as url:
        cfg = compose_train([*FAST, *TINY_DATA, *OVERRIDES, f"logger.mlflow.tracking_uri={url}"],
                            root / "train" / "runs" / "2026-12-04_02-22-56_123456", tiny_mnist)
        metrics = train(cfg)
        assert metrics["status"] == "ok", metrics.get("error")
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("train")
        (run,) = client.search_runs([experiment.experiment_id])
        yield url, run, metrics


def test_server_holds_the_runs_params_metrics_and_figures(served) -> None:
    from mlflow.tracking import MlflowClient

    url, run, metrics = served
    assert run.info.status == "FINISHED" and run.data.params["model/hidden"] == "[24]"
    assert run.data.metrics["hp/val_acc"] == pytest.approx(metrics["val/acc"])
    client = MlflowClient(url)
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
    figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"confusion_matrix.png", "curves.png"} <= figures  # uploaded through the server


def test_ui_shows_the_run_with_its_params_and_val_acc(page, served, artifacts: Path) -> None:
    url, run, _ = served
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.set_viewport_size({"width": 1280, "height": 2400})  # the params and metrics in view
    page.goto(f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    page.get_by_text(run.info.run_name).first.wait_for(state="visible")
    for text in ("val/acc", "choice/model", "model/hidden", "[24]"):
        page.get_by_text(text, exact=True).first.wait_for(state="visible")
    page.get_by_text("val/acc", exact=True).first.scroll_into_view_if_needed()
    screenshot(page, artifacts / "mlflow_run.png")
