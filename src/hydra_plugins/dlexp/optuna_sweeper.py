"""dlexp's Optuna sweeper (``hydra/sweeper=optuna``), on Optuna's ask-and-tell interface.

Each batch asks the study for ``n_jobs`` trials, turns their parameters into job overrides,
runs them with the configured launcher and tells the study each job's outcome: its returned
value (a list of values for several ``directions``), FAIL for a job that raised or returned NaN,
PRUNED for one that a pruner stopped. The config groups ``hydra/sweeper: optuna``,
``hydra/sweeper/sampler: tpe|random|cmaes|gp|grid|nsgaii`` and ``hydra/sweeper/pruner:
median|successive_halving|hyperband|threshold`` are registered below; this module imports
Optuna only when a sweep starts (Hydra imports every plugin module at each start).

Budget: a command adds ``n_trials`` trials to its study. Several processes running the same
command on one storage share that budget: the first opens it (the study's user attribute
``dlexp:budget``, the trial numbers ``[start, end)``), the others join while it is open, and
each asks for a trial only while the study holds fewer than ``end``. On a journal file or an
SQLite file both steps hold a file lock beside it, so the total is exact; other databases,
which no file lock reaches, check the number after ``ask`` and mark a trial beyond ``end``
``dlexp:surplus`` (told FAIL, never launched).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)

# what a job needs to report to its trial (set per job through hydra.job.env_set)
TRIAL_ENV = "DLEXP_OPTUNA_TRIAL"
STUDY_ENV = "DLEXP_OPTUNA_STUDY"
BUDGET_ATTR = "dlexp:budget"
SURPLUS_ATTR = "dlexp:surplus"
JOB_DIR_ATTR = "dlexp:job_dir"
# in-memory studies of this process by name: jobs of the basic launcher report to them
IN_PROCESS: dict[str, Any] = {}

# ---------------------------------------------------------------- config groups

SWEEPER = {
    "defaults": ["_self_", {"sampler": "tpe"}, {"pruner": None}],
    "_target_": "hydra_plugins.dlexp.optuna_sweeper.OptunaSweeper",
    "direction": "minimize",    # or maximize; a list for several objectives
    "directions": None,         # [minimize, maximize]: several objectives (wins over direction)
    "study_name": None,
    "storage": None,            # null (in memory) | sqlite:///file.db | journal:///abs/study.log
    "n_trials": 20,             # trials this command adds to the study
    # workers with the same id share one budget even when they start after it was handed out
    # (they then run nothing); null: the Slurm array job's id, when in one
    "budget_id": None,
    "n_jobs": 1,                # trials per batch (per launcher call)
    "max_failure_rate": 1.0,    # stop when more than this fraction of the run's trials failed
    "pruner": None,
    "params": None,
    # metrics.json keys, one per direction, read from each job's directory instead of what the
    # job returns: [val/acc, train/samples_per_s] with directions [maximize, maximize]
    "objectives": None,
}
# each sampler's seed and start-up trials; any other argument of its class can be added, e.g.
# +hydra.sweeper.sampler.multivariate=true (the rest keep the installed Optuna's defaults)
SAMPLERS = {
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": None, "n_startup_trials": 10},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    "cmaes": {"_target_": "optuna.samplers.CmaEsSampler", "seed": None, "n_startup_trials": 1},
    "gp": {"_target_": "optuna.samplers.GPSampler", "seed": None, "n_startup_trials": 10},
    # the grid is hydra.sweeper.params (choice and range only), built when the sweep starts
    "grid": {"_target_": "optuna.samplers.GridSampler", "_partial_": True, "seed": None},
    "nsgaii": {"_target_": "optuna.samplers.NSGAIISampler", "seed": None,
               "population_size": 50},
}
PRUNERS = {
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5,
               "n_warmup_steps": 0, "interval_steps": 1},
    "successive_halving": {"_target_": "optuna.pruners.SuccessiveHalvingPruner"},
    "hyperband": {"_target_": "optuna.pruners.HyperbandPruner"},
    "threshold": {"_target_": "optuna.pruners.ThresholdPruner", "lower": None, "upper": None,
                  "n_warmup_steps": 0},
}

_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna", node=SWEEPER, provider="dlexp")
for _name, _node in SAMPLERS.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="dlexp")
for _name, _node in PRUNERS.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="dlexp")


# ---------------------------------------------------------------- search space


class SweepError(CompactHydraException):
    """A setting the sweeper cannot use: one line, no traceback."""


def search_space(params: dict[str, Any] | None, arguments: Sequence[str]
                 ) -> tuple[dict[str, Any], list[str]]:
    """``hydra.sweeper.params`` then the command line's overrides (a later one replaces an
    earlier one of the same key) -> (Optuna distribution per searched key, fixed overrides as
    written). ``choice`` is categorical; ``range`` an int (or float) distribution with its step;
    ``interval`` a float one, ``tag(log, ...)`` on a log scale, ``tag(int, ...)`` integer."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{k}={_value_text(v)}" for k, v in (params or {}).items()] + list(arguments)
    parsed = OverridesParser.create().parse_overrides(lines)
    by_key: dict[str, Any] = {}
    for override in parsed:
        by_key.pop(_bare(override.get_key_element()), None)  # keep the later one, in its place
        by_key[_bare(override.get_key_element())] = override
    space, fixed = {}, []
    for override in by_key.values():
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def _bare(key: str) -> str:
    return key.lstrip("+~")


def _value_text(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    if isinstance(value, str):
        return value
    from hydra.core.override_parser.types import Override

    return Override._get_value_element_as_str(value)


def distribution(override: Any) -> Any:
    """One sweep override (``choice``, ``range``, ``interval``) as an Optuna distribution."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key, value = override.get_key_element(), override.value()
    tags = set(getattr(value, "tags", None) or ())
    if override.is_choice_sweep():
        if "glob" in type(value).__name__.lower():
            raise SweepError(f"hydra.sweeper.params: {key}: glob() is not searchable by "
                             "Optuna; list the options with choice(...)")
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        if not values:
            raise SweepError(f"hydra.sweeper.params: {key}: the range is empty")
        if value.shuffle:
            return CategoricalDistribution(values)
        step = abs(value.step)
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(int(min(values)), int(max(values)), step=int(step))
        return FloatDistribution(float(min(values)), float(max(values)), step=float(step))
    if override.is_interval_sweep():
        low, high, log_scale = value.start, value.end, "log" in tags
        if low > high or (log_scale and low <= 0):
            raise SweepError(f"hydra.sweeper.params: {key}: interval({low}, {high}) is empty"
                             + (" or not positive, as tag(log, ...) needs" if log_scale else ""))
        if "int" in tags:
            return IntDistribution(int(low), int(high), log=log_scale)
        return FloatDistribution(float(low), float(high), log=log_scale)
    raise SweepError(f"hydra.sweeper.params: {key}: {override.input_line} is not searchable "
                     "by Optuna: use choice(...), range(...) or interval(...)")


def grid_of(space: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid sampler's search space: every value of each choice and range."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    grid = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            grid[name] = [dist.low + i * dist.step for i in range(n + 1)]
        else:
            raise SweepError(f"hydra/sweeper/sampler=grid: {name} is continuous; the grid "
                             "takes choice(...) and range(...) only")
    return grid


def job_override(name: str, value: Any) -> str:
    """``name=value`` for a job. A string is used as written: it is a choice's word, or the
    override text of a list or dict choice (Optuna's choices are plain values)."""
    from hydra.core.override_parser.types import Override

    text = value if isinstance(value, str) else Override._get_value_element_as_str(value)
    return f"{name}={text}"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


# ---------------------------------------------------------------- storage


def open_storage(spec: str | None) -> Any:
    """``null``: a new in-memory storage; ``journal://PATH`` (``journal:///abs/study.log``): an
    Optuna journal file, fit for several processes on one file system; anything else an RDB URL
    for Optuna (``sqlite:///relative.db``, ``sqlite:////abs.db``, ``postgresql://...``)."""
    import optuna

    if spec is None:
        return optuna.storages.InMemoryStorage()
    if spec.startswith("journal://"):
        path = Path(spec.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = optuna.storages.journal
        backend = getattr(journal, "JournalFileBackend", None) or journal.JournalFileStorage
        return optuna.storages.JournalStorage(backend(str(path)))
    sqlite = _sqlite_path(spec)
    if sqlite is not None:
        sqlite.parent.mkdir(parents=True, exist_ok=True)
    return spec


def _sqlite_path(spec: str) -> Path | None:
    if not spec.startswith("sqlite:///"):
        return None
    path = spec.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def lock_file(spec: str | None) -> Path | None:
    """Where processes sharing a journal or SQLite file take turns for the budget."""
    if spec is None:
        return None
    if spec.startswith("journal://"):
        return Path(spec.removeprefix("journal://") + ".budget.lock")
    sqlite = _sqlite_path(spec)
    return sqlite.with_name(sqlite.name + ".budget.lock") if sqlite else None


@contextlib.contextmanager
def locked(path: Path | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (released if the process dies); none without one."""
    if path is None:
        yield
        return
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- seeding


def reseed(sampler: Any, seed: int) -> None:
    """Seed every random state of a sampler (and of the samplers inside it) with ``seed``."""
    import numpy as np
    from optuna.samplers import BaseSampler

    for name, value in vars(sampler).items():
        if isinstance(value, np.random.RandomState):
            value.seed(seed)
        elif isinstance(getattr(type(value), "rng", None), property):  # optuna's LazyRandomState
            value.rng.seed(seed)
        elif isinstance(value, np.random.Generator):
            setattr(sampler, name, np.random.default_rng(seed))
        elif isinstance(value, BaseSampler):
            reseed(value, seed)


def seed_per_trial(sampler: Any, seed: int) -> None:
    """Draw trial N with the sampler seeded ``seed + N``: the same study from the same seed
    draws the same trials, a resumed study goes on with new draws instead of replaying its
    first ones, and processes sharing a study never draw the same start-up trials."""
    inner = sampler.before_trial

    def before_trial(study: Any, trial: Any) -> None:
        reseed(sampler, (seed + trial.number) % 2**32)
        inner(study, trial)

    sampler.before_trial = before_trial


# ---------------------------------------------------------------- the sweeper


class OptunaSweeper(Sweeper):
    """Hydra sweeper over an Optuna study (see the module's documentation)."""

    def __init__(self, sampler: Any, direction: Any = "minimize", directions: Any = None,
                 storage: str | None = None, study_name: str | None = None,
                 n_trials: int = 20, n_jobs: int = 1, max_failure_rate: float = 1.0,
                 pruner: Any = None, params: Any = None, objectives: Any = None,
                 budget_id: str | int | None = None, **unused: Any) -> None:
        self.sampler, self.pruner = sampler, pruner
        self.objectives = [str(k) for k in objectives] if objectives is not None else None
        chosen = directions if directions is not None else direction
        self.directions = ([str(d) for d in chosen] if isinstance(chosen, Sequence)
                           and not isinstance(chosen, str) else [str(chosen)])
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs = n_trials, n_jobs
        given = budget_id if budget_id is not None else os.environ.get("SLURM_ARRAY_JOB_ID")
        self.budget_id = str(given) if given is not None else None
        self.max_failure_rate = max_failure_rate
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else params
        if unused.get("search_space") or unused.get("custom_search_space"):
            raise SweepError("hydra.sweeper.search_space and custom_search_space are not "
                             "supported: give the search space in hydra.sweeper.params")
        self._check()
        self.job_idx = 0

    def _check(self) -> None:
        bad = [d for d in self.directions if d not in ("minimize", "maximize")]
        problems = [
            f"hydra.sweeper.direction: {bad[0]!r} is neither minimize nor maximize" if bad
            else None,
            "hydra.sweeper.n_trials must be a positive integer"
            if not isinstance(self.n_trials, int) or self.n_trials < 1 else None,
            "hydra.sweeper.n_jobs must be a positive integer"
            if not isinstance(self.n_jobs, int) or self.n_jobs < 1 else None,
            "hydra.sweeper.max_failure_rate must be between 0 and 1"
            if not 0.0 <= float(self.max_failure_rate) <= 1.0 else None,
            "hydra.sweeper.pruner works with one objective (Optuna prunes no multi-objective "
            "trial)" if self.pruner is not None and len(self.directions) > 1 else None,
            f"hydra.sweeper.objectives names {len(self.objectives)} metrics for "
            f"{len(self.directions)} directions" if self.objectives is not None
            and len(self.objectives) != len(self.directions) else None,
        ]
        problems = [p for p in problems if p]
        if problems:
            raise SweepError(problems[0])

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)
        sampler_cfg = config.hydra.sweeper.get("sampler") or {}
        self.seed = sampler_cfg.get("seed")
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        in_process = type(self.launcher).__name__ == "BasicLauncher"
        if self.pruner is not None and self.storage is None and not in_process:
            raise SweepError("hydra.sweeper.pruner with jobs in other processes needs a "
                             "storage they can reach: hydra.sweeper.storage=journal:///abs/"
                             "study.log (or sqlite:///study.db)")

    # ------------------------------------------------------------ the loop

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        space, fixed = search_space(self.params, arguments)
        sampler = self.sampler
        if isinstance(sampler, _partial_type()):  # the grid: its space is known only now
            grid = grid_of(space)
            sampler = sampler(grid)
            n_grid = math.prod(len(v) for v in grid.values())
            if self.n_trials > n_grid:
                log.info("GridSampler: %d points, so %d trials instead of %d", n_grid, n_grid,
                         self.n_trials)
                self.n_trials = n_grid
        if self.seed is not None:
            seed_per_trial(sampler, int(self.seed))
        storage = open_storage(self.storage)
        study = optuna.create_study(study_name=self.study_name, storage=storage,
                                    sampler=sampler, pruner=self.pruner,
                                    directions=self.directions, load_if_exists=True)
        stored = [d.name.lower() for d in study.directions]
        if stored != self.directions:
            raise SweepError(f"study {study.study_name} in {self.storage} optimises {stored}, "
                             f"not {self.directions}: change hydra.sweeper.direction or "
                             "hydra.sweeper.study_name")
        if self.storage is None:
            IN_PROCESS[study.study_name] = storage
        lock = lock_file(self.storage)
        start, end = self._budget(study, lock)
        log.info("Study %s (%s), sampler %s, directions %s: trials %d..%d", study.study_name,
                 self.storage or "in memory", type(sampler).__name__, self.directions, start,
                 end - 1)
        failures: list[str] = []
        run = 0
        while batch := self._ask(study, space, end, lock):
            run += len(batch)
            failures += self._run_batch(study, batch, fixed)
            if failures and len(failures) / run > self.max_failure_rate:
                raise SweepError(
                    f"Optuna study stopped: more trials failed than "
                    f"hydra.sweeper.max_failure_rate allows; the first failure: {failures[0]}. "
                    f"Each trial's error is in its metrics.json under {self.sweep_dir} "
                    f"(dlexp-report {self.sweep_dir} lists them)")
        self._write_results(study)

    def _budget(self, study: Any, lock: Path | None) -> tuple[int, int]:
        """Join the study's budget while it is open or when it carries this worker's
        ``budget_id``, else open one of ``n_trials`` more trials."""
        with locked(lock):
            held = len(study.get_trials(deepcopy=False))
            budget = study.user_attrs.get(BUDGET_ATTR)
            ours = budget and self.budget_id is not None and budget.get("id") == self.budget_id
            if budget and (held < budget["end"] or ours):
                log.info("Joining the %s budget of study %s: trials %d..%d",
                         "open" if held < budget["end"] else "spent", study.study_name,
                         budget["start"], budget["end"] - 1)
                return budget["start"], budget["end"]
            budget = {"start": held, "end": held + self.n_trials,
                      **({"id": self.budget_id} if self.budget_id is not None else {})}
            study.set_user_attr(BUDGET_ATTR, budget)
            return budget["start"], budget["end"]

    def _ask(self, study: Any, space: dict[str, Any], end: int, lock: Path | None) -> list:
        import optuna

        batch = []
        with locked(lock):
            for _ in range(self.n_jobs):
                if len(study.get_trials(deepcopy=False)) >= end:
                    break
                trial = study.ask(space)
                if trial.number >= end:  # another process took the last one (no lock here)
                    trial.set_user_attr(SURPLUS_ATTR, True)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    break
                batch.append(trial)
        return batch

    def _overrides(self, study: Any, trial: Any, fixed: list[str]) -> list[str]:
        overrides = [job_override(name, value) for name, value in trial.params.items()]
        overrides += fixed
        if self.pruner is not None:  # the job reports to its trial (hydra.job.env_set)
            overrides += [f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}",
                          f"++hydra.job.env_set.{STUDY_ENV}={_quoted(study.study_name)}"]
        return overrides

    def _run_batch(self, study: Any, batch: list, fixed: list[str]) -> list[str]:
        """Launch the batch, tell each trial its outcome; returns the failures' messages."""
        import optuna

        TrialState = optuna.trial.TrialState
        try:
            returns = self.launcher.launch([self._overrides(study, t, fixed) for t in batch],
                                           initial_job_idx=self.job_idx)
        except BaseException:  # the launcher itself failed, or Ctrl+C: no trial stays RUNNING
            for trial in batch:
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
            raise
        self.job_idx += len(returns)
        failures = []
        for trial, ret in zip(batch, returns, strict=True):
            state, values, message = outcome(ret, len(self.directions), self.objectives)
            job_dir = _job_dir(ret)
            if job_dir:
                trial.set_user_attr(JOB_DIR_ATTR, job_dir)
            if state == "fail":
                failures.append(message)
                log.warning("Trial %d failed: %s", trial.number, message)
            elif state == "pruned":
                log.info("Trial %d pruned: %s", trial.number, message)
            else:
                log.info("Trial %d: %s", trial.number, values[0] if len(values) == 1 else values)
            told = {"complete": TrialState.COMPLETE, "fail": TrialState.FAIL,
                    "pruned": TrialState.PRUNED}[state]
            try:
                study.tell(trial, values=values if state == "complete" else None, state=told)
            except RuntimeError as e:  # the grid sampler stops a study it has covered
                if "stop" not in str(e).lower():
                    raise
        return failures

    def _write_results(self, study: Any) -> None:
        import optuna

        trials = study.get_trials(deepcopy=False)
        states = [t.state for t in trials]
        done = states.count(optuna.trial.TrialState.COMPLETE)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        if not done:
            failed = states.count(optuna.trial.TrialState.FAIL)
            pruned = states.count(optuna.trial.TrialState.PRUNED)
            what = ("every trial failed" if failed == len(trials)
                    else f"{failed} failed, {pruned} pruned")
            raise SweepError(
                f"Optuna study ended with no successful trial: {what}. "
                f"Each trial's error is in its metrics.json under {self.sweep_dir} "
                f"(dlexp-report {self.sweep_dir} lists them)")
        results: dict[str, Any] = {
            "name": "optuna", "study_name": study.study_name, "directions": self.directions,
            "n_trials": len(trials),
            "states": {s.name.lower(): states.count(s)
                       for s in sorted(set(states), key=lambda s: s.name)}}
        if len(self.directions) == 1:
            best = study.best_trial
            results |= {"best_trial": best.number, "best_params": best.params,
                        "best_value": best.value}
            log.info("Best trial %d: value %s with %s", best.number, best.value, best.params)
        else:
            results["solutions"] = [{"number": t.number, "params": t.params,
                                     "values": list(t.values)} for t in study.best_trials]
            log.info("Pareto front: %d trials", len(results["solutions"]))
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")


def _partial_type() -> type:
    import functools

    return functools.partial


def _job_dir(ret: Any) -> str | None:
    with contextlib.suppress(Exception):
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    return None


def outcome(ret: Any, n_objectives: int, objectives: list[str] | None = None
            ) -> tuple[str, list[float] | None, str]:
    """A job's ``(state, values, message)``: ``complete`` with its values (what it returned,
    or its metrics.json's ``objectives``), ``fail`` for an exception or a NaN value, ``pruned``
    for ``optuna.TrialPruned``."""
    import optuna
    from hydra.core.utils import JobStatus

    if ret.status != JobStatus.COMPLETED:
        exc = ret._return_value  # the job's exception (return_value would re-raise it)
        if isinstance(exc, optuna.TrialPruned):
            return "pruned", None, str(exc) or "pruned"
        text = str(exc)
        is_ours = type(exc).__name__ == "TrialFailed"  # dlexp's train: its message is the error
        return "fail", None, text if is_ours and text else f"{type(exc).__name__}: {text}"
    value = ret.return_value
    if objectives is not None:
        value = _metrics_of(ret, objectives)
        if isinstance(value, str):
            return "fail", None, value
    many = isinstance(value, Sequence | ListConfig) and not isinstance(value, str)
    raw = list(value) if many else [value]
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        return "fail", None, f"the job returned {value!r}, not a number"
    if len(values) != n_objectives:
        return "fail", None, (f"the job returned {len(values)} values for "
                              f"{n_objectives} directions")
    if any(math.isnan(v) for v in values):
        return "fail", None, "the job returned NaN"
    return "complete", values, ""


def _metrics_of(ret: Any, keys: list[str]) -> list[Any] | str:
    """The ``keys`` of the job's metrics.json, or what is wrong with it."""
    import json

    path = Path(_job_dir(ret) or ".") / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"hydra.sweeper.objectives: cannot read {path}: {e}"
    missing = [k for k in keys if not isinstance(metrics.get(k), int | float)]
    if missing:
        return f"hydra.sweeper.objectives: {path} has no number for {', '.join(missing)}"
    return [metrics[k] for k in keys]


# ---------------------------------------------------------------- inside a job


def job_trial() -> tuple[str, int] | None:
    """(study name, trial number) when this job was launched for a trial with a pruner."""
    if TRIAL_ENV not in os.environ or STUDY_ENV not in os.environ:
        return None
    return os.environ[STUDY_ENV], int(os.environ[TRIAL_ENV])


def pruning_callback(sweeper_cfg: DictConfig, monitor: str) -> Any:
    """optuna-integration's Lightning pruning callback on this job's trial, which reports
    ``monitor`` after each validation and raises ``optuna.TrialPruned`` when the study's pruner
    (``hydra.sweeper.pruner``) says so."""
    import optuna
    from hydra.utils import instantiate

    try:
        from optuna_integration import PyTorchLightningPruningCallback
    except ImportError:
        raise SweepError('hydra.sweeper.pruner needs optuna-integration: '
                         'pip install "dlexp[sweep]"') from None
    study_name, number = job_trial()
    spec = sweeper_cfg.get("storage")
    storage = open_storage(spec) if spec is not None else IN_PROCESS.get(study_name)
    if storage is None:
        raise SweepError("hydra.sweeper.pruner: this job cannot reach its in-memory study; set "
                         "hydra.sweeper.storage=journal:///abs/study.log")
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=instantiate(sweeper_cfg.pruner))
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return PyTorchLightningPruningCallback(optuna.trial.Trial(study, trial_id), monitor=monitor)
