"""dlexp's Optuna sweeper (src/hydra_plugins/dlexp/optuna_sweeper.py): the search space from
Hydra's sweep grammar, seeded samplers, outcomes of jobs, and whole studies run by a tiny
Hydra app (tests/optuna_app.py, no torch) or by train.py: failures, resuming from SQLite and
journal files, two worker processes on one study, the grid, two objectives, pruning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import FAST, REPO, TINY_DATA
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dlexp.report import find_jobs, report
from hydra_plugins.dlexp import optuna_sweeper as sw

APP = Path(__file__).with_name("optuna_app.py")
integration = pytest.mark.integration


# ---------------------------------------------------------------- the search space


def test_every_form_of_the_sweep_grammar_becomes_a_distribution() -> None:
    params = {"optimizer": "choice(sgd, adam)", "data.batch_size": "choice(32, 64)",
              "model.dropout": "interval(0.0, 0.5)", "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
              "model.layers": "tag(int, interval(1, 8))", "model.width": "tag(int, log, interval(8, 512))",
              "trainer.max_epochs": "range(1, 10, 3)", "model.p": "range(0.25, 1.0, 0.25)",
              "model.hidden": "choice([32], [64, 64])", "seed": "shuffle(range(3))",
              "model.bias": [16, 8], "trainer.precision": "32-true", "optimizer.momentum": 0.9}
    space, fixed = sw.search_space(params, ["~callbacks.progress_bar", "model.dropout=0.1",
                                            "optimizer.lr=choice(0.01, 0.1)",
                                            "+trainer.enable_progress_bar=false"])
    assert space == {
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
        "data.batch_size": CategoricalDistribution([32, 64]),
        "model.layers": IntDistribution(1, 8),
        "model.width": IntDistribution(8, 512, log=True),
        "trainer.max_epochs": IntDistribution(1, 7, step=3),  # range() leaves its stop out
        "model.p": FloatDistribution(0.25, 0.75, step=0.25),
        "model.hidden": CategoricalDistribution(["[32]", "[64,64]"]),
        "seed": space["seed"],  # shuffled: a choice of 0, 1, 2 in some order
        "optimizer.lr": CategoricalDistribution([0.01, 0.1]),  # the command line wins
    }
    assert sorted(space["seed"].choices) == [0, 1, 2]
    assert fixed == ["model.bias=[16,8]", "trainer.precision=32-true", "optimizer.momentum=0.9",
                     "~callbacks.progress_bar", "model.dropout=0.1",
                     "+trainer.enable_progress_bar=false"]
    log_lr = sw.search_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-1))"}, [])[0]
    assert log_lr["optimizer.lr"] == FloatDistribution(1e-4, 0.1, log=True)


@pytest.mark.parametrize(("value", "says"), [
    ("glob(*)", "glob() is not searchable"),
    ("tag(log, interval(0, 1))", "not positive"),
    ("interval(2, 1)", "is empty"),
])
def test_a_search_space_optuna_cannot_take_is_named(value: str, says: str) -> None:
    with pytest.raises(sw.SweepError, match=r"hydra.sweeper.params: model.dropout: .*"
                       + re.escape(says)):
        sw.search_space({"model.dropout": value}, [])


def test_sampled_values_become_overrides_hydra_parses_back() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [sw.job_override("a", 0.0007523742884534858), sw.job_override("b", True),
             sw.job_override("c", "adam"), sw.job_override("d", "[64,64]"),
             sw.job_override("e", 3)]
    parsed = OverridesParser.create().parse_overrides(lines)
    assert [o.value() for o in parsed] == [0.0007523742884534858, True, "adam", [64, 64], 3]


# ---------------------------------------------------------------- samplers and seeds


SPACE = {"x": FloatDistribution(0.0, 1.0), "y": IntDistribution(0, 9),
         "opt": CategoricalDistribution(["a", "b"])}


def draws(name: str, seed: int, n: int = 4, study: optuna.Study | None = None) -> list[dict]:
    """Trials of a study whose sampler is ``hydra/sweeper/sampler=name`` seeded ``seed``."""
    node = {k: v for k, v in sw.SAMPLERS[name].items()}
    node["seed"] = seed
    if "n_startup_trials" in node:
        node["n_startup_trials"] = 2
    sampler = instantiate(node)
    space = SPACE
    if name == "grid":
        space = {"y": IntDistribution(0, 9), "opt": SPACE["opt"]}
        sampler = sampler(sw.grid_of(space))
    sw.seed_per_trial(sampler, seed)
    study = study or optuna.create_study(sampler=sampler)
    study.sampler = sampler
    out = []
    for _ in range(n):
        trial = study.ask(space)
        study.tell(trial, trial.params.get("x", 0.5) + trial.params["y"])
        out.append(trial.params)
    return out


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "grid"])
def test_a_seeded_sampler_draws_the_same_trials_and_new_ones_after_a_resume(name: str) -> None:
    first = draws(name, seed=7)
    assert draws(name, seed=7) == first  # same seed, same study
    assert len({tuple(sorted(p.items())) for p in first}) == len(first)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    draws(name, seed=7, n=2, study=study)
    resumed = optuna.load_study(study_name="s", storage=storage)
    later = draws(name, seed=7, n=2, study=resumed)  # trials 2 and 3, not a replay of 0 and 1
    assert later == first[2:] if name != "grid" else len(later) == 2
    assert later[0] != first[0]


# ---------------------------------------------------------------- what a job returns


def job(value: object = None, error: BaseException | None = None) -> JobReturn:
    ret = JobReturn()
    ret.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    ret.return_value = error if error else value
    return ret


def test_each_job_outcome_is_told_as_optuna_expects() -> None:
    from dlexp.cluster import TrialFailed

    assert sw.outcome(job(0.5), 1) == ("complete", [0.5], "")
    assert sw.outcome(job((0.5, 2)), 2) == ("complete", [0.5, 2.0], "")
    assert sw.outcome(job(float("nan")), 1) == ("fail", None, "the job returned NaN")
    assert sw.outcome(job(0.5), 2)[0] == "fail"
    assert sw.outcome(job("x"), 1)[0] == "fail"
    assert sw.outcome(job(error=TrialFailed("dropout must be in [0, 1)")), 1) == (
        "fail", None, "dropout must be in [0, 1)")
    assert sw.outcome(job(error=KeyError("k")), 1) == ("fail", None, "KeyError: 'k'")
    assert sw.outcome(job(error=optuna.TrialPruned("Trial was pruned at epoch 0.")), 1) == (
        "pruned", None, "Trial was pruned at epoch 0.")


@pytest.mark.parametrize(("spec", "kind"), [
    (None, "InMemoryStorage"), ("journal://{tmp}/j/study.log", "JournalStorage"),
    ("sqlite:///{tmp}/s/study.db", "str")])
def test_storages(spec: str | None, kind: str, tmp_path: Path) -> None:
    spec = spec and spec.format(tmp=tmp_path)
    storage = sw.open_storage(spec)
    assert type(storage).__name__ == kind
    study = optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
    study.tell(study.ask(), 1.0)
    if spec:  # a second process (here: a second storage object) sees the trial
        again = optuna.load_study(study_name="s", storage=sw.open_storage(spec))
        assert len(again.trials) == 1
        assert sw.lock_file(spec).parent.is_dir()
    else:
        assert sw.lock_file(spec) is None


# ---------------------------------------------------------------- whole studies (tiny app)


def app(tmp_path: Path, *args: str, ok: bool = True, name: str = "sweep",
        wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    """``optuna_app.py -m`` with dlexp's sweeper, its sweep folder ``tmp_path/name``."""
    cmd = [sys.executable, str(APP), "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random",
           "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={tmp_path / name}",
           "hydra.sweeper.study_name=s", "x=interval(0,1)", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if not wait:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode == 0) == ok, done.stderr[-3000:]
    return done


def params_of(study: optuna.Study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.trials]


@integration
def test_failed_and_nan_trials_are_marked_fail_and_the_search_goes_on(tmp_path: Path) -> None:
    spec = f"journal://{tmp_path}/study.log"
    app(tmp_path, "hydra.sweeper.n_trials=8", "hydra.sweeper.max_failure_rate=1.0",
        f"hydra.sweeper.storage={spec}", "fail_above=0.7", "nan_above=0.4")
    study = optuna.load_study(study_name="s", storage=sw.open_storage(spec))
    states = {t.number: t.state for t in study.trials}
    assert sorted(states) == list(range(8))
    for t in study.trials:
        expected = "COMPLETE" if t.params["x"] <= 0.4 else "FAIL"
        assert t.state.name == expected, t.params
    assert {"COMPLETE", "FAIL"} == {s.name for s in states.values()}
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value and results["n_trials"] == 8
    assert study.trials[0].user_attrs[sw.JOB_DIR_ATTR] == str(tmp_path / "sweep" / "0")


@integration
def test_more_failures_than_allowed_stop_the_study_in_one_line(tmp_path: Path) -> None:
    done = app(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.0",
               "fail_above=-1", ok=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert ("Optuna study stopped: more trials failed than hydra.sweeper.max_failure_rate "
            "allows; the first failure: ValueError: x=") in done.stderr
    assert len(list((tmp_path / "sweep").glob("*/.hydra"))) == 1  # it stopped after one


@integration
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_resumed_study_goes_on_numbering_without_replaying(kind: str, tmp_path: Path) -> None:
    spec = (f"sqlite:///{tmp_path}/study.db" if kind == "sqlite"
            else f"journal://{tmp_path}/study.log")
    args = ["hydra.sweeper.n_trials=3", "y=range(0,10)", "opt=choice(a,b)"]
    app(tmp_path, *args, f"hydra.sweeper.storage={spec}", name="first")
    first = params_of(optuna.load_study(study_name="s", storage=sw.open_storage(spec)))
    app(tmp_path, *args, f"hydra.sweeper.storage={spec}", name="second")
    study = optuna.load_study(study_name="s", storage=sw.open_storage(spec))
    assert [t.number for t in study.trials] == list(range(6))
    assert not set(params_of(study)[3:]) & set(first)
    assert study.user_attrs[sw.BUDGET_ATTR] == {"start": 3, "end": 6}
    fresh = f"journal://{tmp_path}/fresh.log"  # same seed, a new study: the same trials again
    app(tmp_path, *args, f"hydra.sweeper.storage={fresh}", name="fresh")
    assert params_of(optuna.load_study(study_name="s", storage=sw.open_storage(fresh))) == first


@integration
def test_two_workers_on_one_journal_share_the_budget_exactly(tmp_path: Path) -> None:
    spec = f"journal://{tmp_path}/study.log"
    args = ["hydra.sweeper.n_trials=6", f"hydra.sweeper.storage={spec}",
            f"barrier={tmp_path / 'came'}", "workers=2", "sleep=0.2"]
    workers = [app(tmp_path, *args, name=f"worker{i}", wait=False) for i in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="s", storage=sw.open_storage(spec))
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    runs = [len(list((tmp_path / f"worker{i}").glob("*/.hydra"))) for i in range(2)]
    assert sum(runs) == 6 and min(runs) >= 1, runs
    assert len(set(params_of(study))) == 6  # the workers drew different trials


@integration
def test_a_worker_of_the_same_budget_id_starting_late_runs_nothing(tmp_path: Path) -> None:
    """A Slurm array task the cluster starts after the others finished joins their spent
    budget (the array's job id) instead of opening n_trials more; another id opens one."""
    spec = f"journal://{tmp_path}/study.log"
    args = ["hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={spec}"]
    app(tmp_path, *args, "hydra.sweeper.budget_id=77", name="first")
    app(tmp_path, *args, "hydra.sweeper.budget_id=77", name="late")
    study = optuna.load_study(study_name="s", storage=sw.open_storage(spec))
    assert len(study.trials) == 2
    assert not list((tmp_path / "late").glob("*/.hydra"))
    app(tmp_path, *args, "hydra.sweeper.budget_id=78", name="next")
    assert len(optuna.load_study(study_name="s", storage=sw.open_storage(spec)).trials) == 4


@integration
def test_the_grid_sampler_runs_every_point_once(tmp_path: Path) -> None:
    app(tmp_path, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=20", "x=0.5",
        "y=range(0,3)", "opt=choice(a,b)")
    jobs = find_jobs(tmp_path / "sweep")
    assert len(jobs) == 6
    points = {(j.overrides["y"], j.overrides["opt"]) for j in jobs}
    assert points == {(str(y), o) for y in range(3) for o in "ab"}
    assert all(j.overrides["x"] == "0.5" for j in jobs)


@integration
def test_two_directions_give_a_pareto_front(tmp_path: Path) -> None:
    app(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.directions=[minimize,maximize]",
        "two=true")
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["directions"] == ["minimize", "maximize"]
    assert results["solutions"] and all(len(s["values"]) == 2 for s in results["solutions"])
    done = app(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.directions=[minimize,maximize]",
               ok=False, name="one")  # one value for two directions: every trial fails
    assert "the job returned 1 values for 2 directions" in done.stdout + done.stderr
    assert "every trial failed" in done.stderr


@integration
def test_objectives_are_read_from_each_jobs_metrics_json(tmp_path: Path) -> None:
    spec = f"journal://{tmp_path}/study.log"
    app(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.directions=[minimize,maximize]",
        "hydra.sweeper.objectives=[loss,x]", "metrics=true", f"hydra.sweeper.storage={spec}")
    study = optuna.load_study(study_name="s", storage=sw.open_storage(spec))
    for t in study.trials:
        assert t.values == [pytest.approx((t.params["x"] - 0.3) ** 2), t.params["x"]]
    done = app(tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.objectives=[accuracy]",
               "metrics=true", ok=False, name="missing")
    assert "has no number for accuracy" in done.stdout + done.stderr


# ---------------------------------------------------------------- train.py


def train_py(tmp_path: Path, data: Path, *args: str, ok: bool = True
             ) -> tuple[subprocess.CompletedProcess, Path]:
    cmd = [sys.executable, str(REPO / "train.py"), f"paths.log_dir={tmp_path}",
           f"paths.data_dir={data}", *FAST, *TINY_DATA, "hparams_search=mnist_optuna",
           "model=mlp", "model.hidden=[16]", "debug=fdr", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert (done.returncode == 0) == ok, done.stderr[-3000:]
    return done, next((tmp_path / "multiruns").iterdir())


@integration
def test_train_py_optimises_two_metrics_of_its_metrics_json(tmp_path: Path,
                                                           tiny_mnist: Path) -> None:
    _, sweep = train_py(tmp_path, tiny_mnist, "hydra.sweeper.n_trials=2",
                        "hydra.sweeper.directions=[maximize,minimize]",
                        "hydra.sweeper.objectives=[val/acc,wall_s]")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    jobs = {j.path: j.metrics for j in find_jobs(sweep)}
    assert all(m["status"] == "ok" for m in jobs.values())
    values = [[m["val/acc"], m["wall_s"]] for m in jobs.values()]
    assert results["solutions"] and all(s["values"] in values for s in results["solutions"])
    assert "Optuna Pareto front (maximize, minimize): trial " in report(
        sweep, tmp_path / "report")["markdown"]


@integration
@pytest.mark.parametrize("storage", ["memory", "journal"])
def test_a_pruned_trial_ends_its_run_and_the_report_shows_it(storage: str, tmp_path: Path,
                                                             tiny_mnist: Path) -> None:
    spec = "null" if storage == "memory" else f"journal://{tmp_path}/study.log"
    done, sweep = train_py(tmp_path, tiny_mnist, "hydra.sweeper.n_trials=1",
                           f"hydra.sweeper.storage={spec}", "hydra/sweeper/pruner=threshold",
                           # val/acc is never above 2: pruned at the first validation
                           "hydra.sweeper.pruner.lower=2.0", ok=False)  # none completed
    assert "no successful trial: 0 failed, 1 pruned" in done.stderr
    assert "Traceback" not in done.stderr
    jobs = find_jobs(sweep)
    assert [j.status for j in jobs] == ["pruned"]
    assert jobs[0].metrics["error"] == "Trial was pruned at epoch 0."
    assert not (jobs[0].path / "error.log").exists()
    if storage == "journal":
        study = optuna.load_study(study_name="mnist_optuna", storage=sw.open_storage(spec))
        assert [t.state.name for t in study.trials] == ["PRUNED"]
        assert list(study.trials[0].intermediate_values) == [0]  # reported at epoch 0
    text = report(sweep, tmp_path / "report")["markdown"]
    assert "1 jobs (1 pruned)" in text and text.count("| pruned |") == 1
