"""Sweeps through ``hydra/launcher=slurm`` on a real single-node Slurm cluster
(``scripts/slurm_local.sh``), and a job that SLURM requeues resuming from its checkpoint."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, REPO, TINY_DATA
from test_sweeps import MLP, multirun

from dlexp.report import find_jobs

pytestmark = pytest.mark.slurm
SCRIPT = REPO / "scripts" / "slurm_local.sh"
# small jobs: the local cluster has 2 CPUs and the machine's memory
SMALL = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def slurm() -> None:
    """Start the local cluster when needed (the script is idempotent); skip when it can't."""
    if not (shutil.which("sbatch") and shutil.which("slurmctld")):
        pytest.skip("Slurm is not installed: run `scripts/slurm_local.sh install` (root, apt)")
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        reason = (started.stderr or started.stdout).strip().splitlines()[-1:]
        pytest.skip(f"Slurm could not start: {' '.join(reason) or started.returncode}")


def test_ddp_sweep_through_slurm(slurm: None, tmp_path: Path, tiny_mnist: Path) -> None:
    """2 jobs, each DDP over 2 SLURM tasks (tasks_per_node = trainer.devices)."""
    _, sweep = multirun(tmp_path, tiny_mnist, *SMALL, "trainer=ddp_cpu", *MLP,
                        "optimizer=sgd,adam", "debug=fdr", timeout=300)
    jobs = find_jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        assert job.status == "ok", job.metrics.get("error")
    # one array task per job, each run by 2 SLURM tasks that formed one process group
    tasks = sorted(d for d in (sweep / ".submitit").glob("*_*") if d.is_dir())
    assert [d.name.split("_")[1] for d in tasks] == ["0", "1"]
    for task in tasks:
        assert len(list(task.glob("*_log.out"))) == 2
        assert "Starting with 2 processes" in "".join(p.read_text() for p in task.glob("*_0_log.*"))


def test_requeued_job_resumes_from_its_checkpoint(slurm: None, tmp_path: Path,
                                                  tiny_mnist: Path) -> None:
    """USR1 (what SLURM sends before the time limit) -> Lightning saves hpc_ckpt_1.ckpt and
    requeues -> the same job reruns in the same directory and resumes, not restarts."""
    epochs = 20
    cmd = [sys.executable, str(REPO / "train.py"), "-m", f"paths.log_dir={tmp_path}",
           f"paths.data_dir={tiny_mnist}", *FAST, *TINY_DATA, *SMALL, *MLP,
           f"trainer.max_epochs={epochs}", "callbacks=no_early_stopping", "logger=csv"]
    with open(tmp_path / "launcher.log", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})
        try:
            job_dir, slurm_id = _wait_for_first_epoch(tmp_path)
            subprocess.run(["scancel", "--signal=USR1", slurm_id], check=True, timeout=30)
            assert proc.wait(timeout=300) == 0, (tmp_path / "launcher.log").read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                subprocess.run(["scancel", slurm_id.split("_")[0]], timeout=30)
    (job,) = find_jobs(job_dir.parent)
    assert job.status == "ok", job.metrics.get("error")
    assert (job_dir / "hpc_ckpt_1.ckpt").is_file()
    handled = "".join(p.read_text() for p in job_dir.parent.glob(".submitit/*/*_log.err"))
    assert "Handling requeue signal SIGUSR1" in handled and "Requeued SLURM job" in handled
    # the newest of the two: last.ckpt when the epoch ended before SLURM's SIGTERM stopped it
    log = (job_dir / "train.log").read_text()
    resumed = re.escape(str(job_dir)) + r"/(hpc_ckpt_1|checkpoints/last)\.ckpt"
    assert re.search(f"resuming from {resumed}", log), log
    # exact continuation: 500 samples / batch 32 = 16 steps per epoch, none repeated
    assert job.metrics["epoch"] == epochs and job.metrics["global_step"] == 16 * epochs


def _wait_for_first_epoch(log_dir: Path, timeout: float = 180) -> tuple[Path, str]:
    """The job's directory and its SLURM id (submitit's folder: ``<id>`` for a single job,
    ``<array id>_<task>`` for several) once it has saved last.ckpt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ckpts = list(log_dir.glob("multiruns/*/0/checkpoints/last.ckpt"))
        ids = [d.name for d in log_dir.glob("multiruns/*/.submitit/*")
               if d.is_dir() and d.name.replace("_", "").isdigit()]
        if ckpts and ids:
            return ckpts[0].parents[1], ids[0]
        time.sleep(0.2)
    raise AssertionError(f"the job wrote no checkpoint within {timeout}s")


def test_a_request_the_cluster_can_never_satisfy_ends_in_one_line(slurm: None, tmp_path: Path,
                                                                  tiny_mnist: Path) -> None:
    """The preset's defaults (4 CPUs, 16 GB) on the 2-CPU local node: the array would pend
    forever with reason PartitionConfig; the sweep ends instead, naming what to lower."""
    start = time.monotonic()
    result, sweep = multirun(tmp_path, tiny_mnist, "hydra/launcher=slurm", *MLP, "debug=fdr",
                             "optimizer=sgd,adam", ok=False, timeout=180)
    assert time.monotonic() - start < 120
    assert "Slurm can never start these jobs (PartitionConfig" in result.stderr
    assert "lower hydra.launcher.cpus_per_task and hydra.launcher.mem_gb" in result.stderr
    assert "Traceback" not in result.stderr
    ids = [d.name.split("_")[0] for d in (sweep / ".submitit").iterdir() if d.is_dir()]
    queued = subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True,
                            text=True, timeout=30)
    assert queued.stdout.strip() == ""  # cancelled, not left pending


def test_two_slurm_workers_share_one_optuna_study(slurm: None, tmp_path: Path,
                                                  tiny_mnist: Path) -> None:
    """docs/clusters.md's recipe: an array of 2 Slurm tasks, each running the same
    ``train.py hparams_search=...`` on one journal file, shares its budget of n_trials."""
    import optuna

    from hydra_plugins.dlexp.optuna_sweeper import JOB_DIR_ATTR, open_storage

    n_trials, journal, came = 4, tmp_path / "study" / "optuna.log", tmp_path / "came"
    came.mkdir()
    train = [sys.executable, str(REPO / "train.py"), "hparams_search=mnist_optuna",
             f"hydra.sweeper.storage=journal://{journal}", f"hydra.sweeper.n_trials={n_trials}",
             f"paths.log_dir={tmp_path}", f"paths.data_dir={tiny_mnist}", *FAST, *TINY_DATA,
             "model=mlp", "model.hidden=[16]", "trainer.max_epochs=1", "threads=1"]
    # each task waits for the other before it starts, so both join the budget while it is open
    script = (f"touch {came}/$SLURM_ARRAY_TASK_ID; "
              f"while [ $(ls {came} | wc -l) -lt 2 ]; do sleep 0.1; done; "
              f"exec {' '.join(map(shlex.quote, train))} "
              f"hydra.sweep.dir={tmp_path}/worker_$SLURM_ARRAY_TASK_ID")
    done = subprocess.run(
        ["sbatch", "--wait", "--array=0-1", "--cpus-per-task=1", "--mem=1G", "--time=10",
         f"--output={tmp_path}/worker_%a.out", "--wrap", script],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    logs = "".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("worker_*.out")))
    assert done.returncode == 0, done.stderr + logs
    storage = open_storage(f"journal://{journal}")
    study = optuna.load_study(study_name="mnist_optuna", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(n_trials)), logs
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    workers = {Path(t.user_attrs[JOB_DIR_ATTR]).parent.name for t in study.trials}
    assert workers == {"worker_0", "worker_1"}  # both ran trials of the one study
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == n_trials
