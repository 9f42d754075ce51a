"""Multiruns through ``train.py -m``: grid, every experiment preset, Optuna with a resumed SQLite
study, joblib in parallel, and DDP jobs inside a sweep. Each runs the real CLI on tiny data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    CONFIG_DIR,
    FAST,
    REPO,
    TINY_DATA,
    compose_train,
    make_imdb_tree,
    make_mnist_tree,
)

from dlexp import hardware
from dlexp.report import find_jobs, report

MLP = ["model=mlp", "model.hidden=[32]", "model.dropout=0.0"]


def multirun(log_dir: Path, data: Path, *args: str, multi: bool = True,
             timeout: int = 300, ok: bool = True, env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``train.py [-m] args`` with outputs under ``log_dir``; returns the process and the
    sweep directory it wrote (the newest one). ``ok``: the process must succeed."""
    cmd = [sys.executable, str(REPO / "train.py"), *(["-m"] if multi else []),
           f"paths.log_dir={log_dir}", f"paths.data_dir={data}", *FAST, *TINY_DATA, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=log_dir,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    sweeps = sorted((log_dir / "multiruns").glob("*"))
    assert sweeps and (result.returncode == 0) == ok, result.stderr[-3000:]
    return result, sweeps[-1]


def job_metrics(sweep: Path) -> dict[str, dict]:
    """Job directory name -> its metrics.json."""
    return {job.name: job.metrics for job in find_jobs(sweep)}


def test_grid_sweep_gives_every_job_its_directory(tmp_path: Path, tiny_mnist: Path) -> None:
    _, sweep = multirun(tmp_path, tiny_mnist, "model=mlp,cnn", "optimizer=sgd,adam",
                        "debug=fdr")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", sweep.name)  # microseconds
    jobs = find_jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    combos = {(j.overrides["model"], j.overrides["optimizer"]) for j in jobs}
    assert combos == {(m, o) for m in ("mlp", "cnn") for o in ("sgd", "adam")}
    for job in jobs:
        assert job.status == "ok", job.metrics.get("error")
        assert job.metrics["run_dir"] == str(job.path)
        assert (job.path / ".hydra" / "config.yaml").is_file()
    assert (sweep / "multirun.yaml").is_file()
    assert not (tmp_path / "train" / "runs").exists()  # no job fell back to a single-run dir


# AVX2: oneDNN and ATen held below AVX-512, as on most laptops: no native bf16, no bf16 LSTM
AVX2 = hardware.AVX2_LIMITS


# presets that start from another's checkpoint (transfer.source): run as a pair, that one first
STARTS_FROM = {"imdb_lstm_best": "imdb_lm"}
PAIRED = [*STARTS_FROM, *STARTS_FROM.values()]


@pytest.mark.parametrize("isa", [{}, AVX2], ids=["native", "avx2"])
def test_every_experiment_preset_runs(tmp_path: Path, isa: dict[str, str]) -> None:
    presets = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml")
                     if p.stem not in PAIRED)
    # 2000 digits, 1200 reviews: presets that keep a few classes or labels still find enough
    data = make_imdb_tree(make_mnist_tree(tmp_path / "data", n_train=2000, n_test=200),
                          n_train=600)  # imdb presets with 1000 labels

    _, sweep = multirun(tmp_path, data, f"experiment=glob(*,exclude=[{','.join(PAIRED)}])",
                        "debug=fdr", env=isa)
    jobs = find_jobs(sweep)
    assert sorted(j.overrides["experiment"] for j in jobs) == presets
    if isa:  # precision: auto chose float32 there
        assert {j.metrics.get("precision") for j in jobs} == {"32-true"}
    failed = {j.overrides["experiment"]: j.metrics.get("error") for j in jobs if j.status != "ok"}
    assert not failed


@pytest.mark.parametrize("isa", [{}, AVX2], ids=["native", "avx2"])
@pytest.mark.parametrize(("preset", "source"), STARTS_FROM.items())
def test_a_preset_that_starts_from_another_runs_from_its_checkpoint(
        preset: str, source: str, isa: dict[str, str], tmp_path: Path) -> None:
    data = make_imdb_tree(tmp_path / "data", n_train=300)
    limits = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2",
              "+trainer.limit_val_batches=1", "method.task.cutoffs=[10]"]  # a tiny vocabulary
    first = _single_run(tmp_path / source, data, f"experiment={source}", *limits, env=isa)
    assert first["status"] == "ok", first.get("error")
    ckpt = tmp_path / source / "checkpoints" / "last.ckpt"
    then = _single_run(tmp_path / preset, data, f"experiment={preset}", "debug=fdr",
                       f"transfer.source={ckpt}", env=isa)
    assert then["status"] == "ok", then.get("error")
    if isa:  # precision: auto chose float32 there
        assert first["precision"] == then["precision"] == "32-true"
    # without the source it stops in one line before any data is read
    alone = _single_run(tmp_path / "alone", tmp_path / "no data", f"experiment={preset}", ok=False)
    assert alone["status"] == "failed" and "needs transfer.source=" in alone["error"]


def _single_run(run_dir: Path, data: Path, *args: str, ok: bool = True,
                env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={run_dir}",
           f"paths.data_dir={data}", *FAST, *TINY_DATA, "logger=none", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=run_dir.parent,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    assert (done.returncode == 0) == ok, done.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(("preset", "needs", "data"), [
    ("mnist_optuna", [], "MNISTDataModule"),
    ("imdb_optuna", ["data/imdb.yaml", "model/lstm.yaml"], "IMDBDataModule"),
])
def test_optuna_presets_compose(preset: str, needs: list[str], data: str, tmp_path: Path) -> None:
    """Every searched key exists in the composed config; the direction follows monitor.mode."""
    from omegaconf import OmegaConf

    missing = [n for n in needs if not Path(CONFIG_DIR, n).is_file()]
    if missing:
        pytest.skip(f"{preset} needs conf/{', conf/'.join(missing)} (not written yet)")
    cfg = compose_train([f"hparams_search={preset}", "monitor.mode=min"], tmp_path)
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweeper.direction == "minimize"
    assert cfg.data._target_.endswith(data)
    params = cfg.hydra.sweeper.params
    assert {"optimizer", "optimizer.lr", "optimizer.weight_decay", "model.dropout",
            "data.batch_size"} <= params.keys()
    for key in params:
        if key != "optimizer":
            assert OmegaConf.select(cfg, key) is not None, key
    for choice in re.findall(r"\w+", params["optimizer"].split("(", 1)[1]):
        assert Path(CONFIG_DIR, "optimizer", f"{choice}.yaml").is_file(), choice


def test_optuna_search_resumes_from_sqlite(tmp_path: Path, tiny_mnist: Path) -> None:
    """The second run continues the study with new parameters (the seeded sampler is reseeded),
    while a fresh study with the same seed draws the same first trial again."""
    import optuna

    db = tmp_path / "study.db"
    preset = ["hparams_search=mnist_optuna", *MLP[:2], "debug=fdr",
              # one value that cannot work: its trials fail, and the study goes on
              "model.dropout=choice(0.0,0.3,1.0)"]
    args = [*preset, "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage=sqlite:///{db}"]
    _, first = multirun(tmp_path, tiny_mnist, *args, multi=False)  # the preset is a multirun
    _, second = multirun(tmp_path, tiny_mnist, *args, multi=False)
    assert first != second
    swept = ("optimizer", "optimizer.lr", "optimizer.weight_decay", "model.dropout",
             "data.batch_size")

    def drawn(sweep: Path) -> list[tuple[str, ...]]:
        return [tuple(job.overrides[k] for k in swept) for job in find_jobs(sweep)]

    assert not set(drawn(first)) & set(drawn(second))  # resuming does not replay trials 0-2
    _, fresh = multirun(tmp_path, tiny_mnist, *preset, "hydra.sweeper.n_trials=1",
                        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'fresh.db'}", multi=False)
    assert drawn(fresh) == drawn(first)[:1]  # same seed, new study: the same first trial
    study = optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{db}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # monitor.mode: max
    assert [t.number for t in study.trials] == list(range(6))  # 3 more trials, same study
    states = {t.number: t.state for t in study.trials}
    for sweep, numbers in ((first, range(3)), (second, range(3, 6))):
        jobs = find_jobs(sweep)
        assert len(jobs) == 3 and (sweep / "optimization_results.yaml").is_file()
        for job, number in zip(jobs, numbers, strict=True):
            assert set(swept) <= job.overrides.keys()
            failed = job.overrides["model.dropout"] == "1.0"
            assert job.status == ("failed" if failed else "ok"), job.metrics.get("error")
            expected = optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE
            assert states[number] == expected
    assert optuna.trial.TrialState.COMPLETE in states.values()
    text = report(second, tmp_path / "report")["markdown"]
    assert "Optuna best value" in text and text.count("| ok |") + text.count("| failed |") == 3


@pytest.mark.parametrize(("extra", "says"), [
    ([], "Optuna study ended with no successful trial: every trial failed"),
    (["hydra.sweeper.max_failure_rate=0.0"],
     "more trials failed than hydra.sweeper.max_failure_rate allows; the first failure: "
     "dropout must be in [0, 1)"),
])
def test_a_study_of_failed_trials_ends_in_one_line(extra: list[str], says: str, tmp_path: Path,
                                                   tiny_mnist: Path) -> None:
    args = ["hparams_search=mnist_optuna", "hydra.sweeper.n_trials=2", *MLP[:2], "debug=fdr",
            "model.dropout=1.0", *extra]
    result, sweep = multirun(tmp_path, tiny_mnist, *args, multi=False, ok=False)
    assert result.returncode == 1
    assert says in result.stderr and f"metrics.json under {sweep}" in result.stderr
    assert "Traceback" not in result.stderr
    assert all(job.status == "failed" for job in find_jobs(sweep))


def test_joblib_runs_jobs_in_parallel(tmp_path: Path, tiny_mnist: Path) -> None:
    result, sweep = multirun(tmp_path, tiny_mnist, "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", *MLP, "optimizer=sgd,adam", "debug=fdr")
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    metrics = job_metrics(sweep)
    assert sorted(metrics) == ["0", "1"]
    assert all(m["status"] == "ok" for m in metrics.values()), metrics


def test_ddp_jobs_inside_a_multirun(tmp_path: Path, tiny_mnist: Path) -> None:
    result, sweep = multirun(tmp_path, tiny_mnist, "trainer=ddp_cpu", *MLP,
                             "optimizer=sgd,adam", "trainer.max_epochs=1", timeout=400)
    assert (result.stdout + result.stderr).count("Starting with 2 processes") == 2
    # the children joined their job: no sweep or run directory of their own
    assert [p.name for p in (tmp_path / "multiruns").iterdir()] == [sweep.name]
    assert not (tmp_path / "train" / "runs").exists()
    for job in find_jobs(sweep):
        assert job.status == "ok", job.metrics.get("error")
        assert job.metrics["global_step"] == 8  # 500 samples, batch 32, split over 2 ranks
        assert Path(job.metrics["best_ckpt"]).parent == job.path / "checkpoints"
        assert "test/acc" in job.metrics  # the best checkpoint tested after DDP
        assert (job.path / "train_ddp_process_1.log").is_file()  # rank 1 ran in this job
        assert not list(job.path.glob("*/.hydra"))


def test_ddp_refuses_joblib(tmp_path: Path, tiny_mnist: Path) -> None:
    """Joblib's workers are not train.py: DDP children could not rejoin, so the job says so."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from dlexp.train import train

    cfg = compose_train(["hydra/launcher=joblib", "trainer=ddp_cpu", *MLP, "debug=fdr"],
                        tmp_path, tiny_mnist)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig().set_config(cfg)
    metrics = train(cfg)
    assert metrics["status"] == "failed" and "hydra/launcher=joblib" in metrics["error"]
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"
