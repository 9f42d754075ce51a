"""``dlexp-report SWEEP_DIR``: every job of a ``-m`` sweep (grid or Optuna) in one table sorted
by the monitored metric, failed jobs with their error, and PNG plots: the metric against each
swept parameter and the validation curves of the best runs. A cross-validation
(``-m data.fold=0,1,2,3,4``) gets one more table: per setting (every override but
``data.fold`` and ``seed``), the mean ± standard deviation of each metric over its folds.

Writes ``report.md``, ``report.csv`` (``folds.csv``) and ``*.png`` into ``SWEEP_DIR/report``
(``--out``)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SHOWN_METRICS = ("val/acc", "val/loss", "test/acc", "test/loss", "epoch", "wall_s")
FOLD_KEY = "data.fold"
NOT_A_SETTING = (FOLD_KEY, "seed")  # what differs between the runs of one setting's folds


class ReportError(ValueError):
    """A sweep directory the report cannot read."""


@dataclass
class Job:
    name: str                 # the job's directory relative to the sweep, e.g. "3"
    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]
    monitor: str
    mode: str                 # max | min

    @property
    def status(self) -> str:
        return str(self.metrics.get("status", "no metrics.json"))

    def value(self, key: str | None = None) -> float:
        v = self.metrics.get(key or self.monitor)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


# ---------------------------------------------------------------- reading a sweep


def find_jobs(sweep: Path) -> list[Job]:
    """Jobs are the folders holding ``.hydra/overrides.yaml`` (Hydra writes one per job)."""
    if not sweep.is_dir():
        raise ReportError(f"{sweep} is not a directory")
    found = [p.parent.parent for p in sweep.rglob("overrides.yaml")
             if p.parent.name == ".hydra" and ".submitit" not in p.parts]
    jobs = [_read_job(sweep, d) for d in sorted(found, key=lambda d: _natural(d, sweep))]
    if not jobs:
        raise ReportError(f"no jobs in {sweep}: expected <job>/.hydra/overrides.yaml under it "
                          "(point it at the directory of a `-m` sweep)")
    return jobs


def _natural(job_dir: Path, sweep: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t
            for t in re.split(r"(\d+)", str(job_dir.relative_to(sweep)))]


def _read_job(sweep: Path, job_dir: Path) -> Job:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    metrics_file = job_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    config_file = job_dir / ".hydra" / "config.yaml"
    config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    monitor = config.get("monitor") or {}
    return Job(name=str(job_dir.relative_to(sweep)), path=job_dir,
               overrides=dict(_split_override(o) for o in overrides),
               metrics=metrics, monitor=metrics.get("monitor") or monitor.get("metric", "val/acc"),
               mode=str(monitor.get("mode", "max")))


def _split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value if _ else "(deleted)"


def swept_keys(jobs: list[Job]) -> list[str]:
    """Overrides that differ between jobs (with one job: all of them)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    if len(jobs) == 1:
        return keys
    return [k for k in keys if len({job.overrides.get(k, "") for job in jobs}) > 1]


def ranked(jobs: list[Job]) -> list[Job]:
    """Finished jobs best first by their monitored metric; failed and unfinished ones last."""
    sign = -1.0 if jobs[0].mode == "max" else 1.0
    scored = [j for j in jobs if not math.isnan(j.value())]
    rest = [j for j in jobs if math.isnan(j.value())]
    return sorted(scored, key=lambda j: sign * j.value()) + rest


# ---------------------------------------------------------------- tables


def table(jobs: list[Job], params: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    monitor = jobs[0].monitor
    shown = [k for k in SHOWN_METRICS if k != monitor and any(k in j.metrics for j in jobs)]
    header = ["rank", "job", "status", monitor, *params, *shown, "error"]
    rows = []
    for i, job in enumerate(ranked(jobs), 1):
        row = {"rank": i if not math.isnan(job.value()) else "", "job": job.name,
               "status": job.status, monitor: _fmt(job.metrics.get(monitor)),
               **{p: job.overrides.get(p, "") for p in params},
               **{k: _fmt(job.metrics.get(k)) for k in shown},
               "error": str(job.metrics.get("error", ""))}
        rows.append(row)
    return header, rows


def _fmt(value: Any) -> str:
    """4 significant digits for numbers, swept values included (they arrive as override text,
    such as an Optuna learning rate 0.0007523742884534858)."""
    if isinstance(value, str) and "." in value:
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def fold_groups(jobs: list[Job]) -> list[tuple[dict[str, str], list[Job]]]:
    """The jobs of a cross-validation grouped by setting: every override but ``data.fold``
    and ``seed``. Empty when no job set ``data.fold``."""
    if not any(FOLD_KEY in j.overrides for j in jobs):
        return []
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        key = tuple((k, v) for k, v in job.overrides.items() if k not in NOT_A_SETTING)
        groups.setdefault(tuple(sorted(key)), []).append(job)
    return [(dict(key), group) for key, group in groups.items()]


def fold_table(jobs: list[Job], params: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Per setting, the folds that finished and each metric's mean ± std over them (the
    sample standard deviation, n - 1), best setting first by the monitored metric."""
    monitor, mode = jobs[0].monitor, jobs[0].mode
    metrics = [monitor, *(k for k in SHOWN_METRICS
                          if k != monitor and any(k in j.metrics for j in jobs))]
    shown = [p for p in params if p not in NOT_A_SETTING]
    header = [*shown, "folds", *metrics]
    scored = []
    for setting, group in fold_groups(jobs):
        done = [j for j in group if not math.isnan(j.value())]
        row = {**{p: setting.get(p, "") for p in shown},
               "folds": f"{len(done)}/{len(group)}" if len(done) < len(group) else len(group),
               **{k: mean_std([j.value(k) for j in done]) for k in metrics}}
        values = [j.value() for j in done]
        scored.append((statistics.fmean(values) if values else math.nan, row))
    sign = -1.0 if mode == "max" else 1.0
    scored.sort(key=lambda t: (math.isnan(t[0]), sign * t[0] if not math.isnan(t[0]) else 0))
    return header, [row for _, row in scored]


def mean_std(values: list[float]) -> str:
    """``0.9123 ± 0.0040`` over the finite ``values``; one value alone has no spread."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def write_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def markdown(sweep: Path, jobs: list[Job], header: list[str], rows: list[dict[str, Any]],
             folds: tuple[list[str], list[dict[str, Any]]] | None = None) -> str:
    counts = Counter(job.status for job in jobs)
    summary = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    lines = [f"# Sweep report: `{sweep}`", "",
             f"{len(jobs)} jobs ({summary}); sorted by `{jobs[0].monitor}` ({jobs[0].mode}).", ""]
    lines += _optuna_lines(sweep)
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [_cell(row[h] if h in ("job", "error") else _fmt(row[h]),
                       160 if h == "error" else 60) for h in header]
        lines.append("| " + " | ".join(cells) + " |")
    if folds and folds[1]:
        lines += ["", "## Cross-validation: mean ± std over the folds of each setting", "",
                  "| " + " | ".join(folds[0]) + " |", "|" + " --- |" * len(folds[0])]
        lines += ["| " + " | ".join(_cell(_fmt(row[h]), 60) for h in folds[0]) + " |"
                  for row in folds[1]]
    return "\n".join(lines) + "\n"


def _cell(value: Any, width: int) -> str:
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 3] + "..."


def _optuna_lines(sweep: Path) -> list[str]:
    """The study's best trial (or its Pareto front) and how its trials ended."""
    results = sweep / "optimization_results.yaml"
    if not results.is_file():
        return []
    best = yaml.safe_load(results.read_text()) or {}
    states = best.get("states") or {}
    ended = (" The study holds " + ", ".join(f"{n} {s}" for s, n in states.items()) + " trials."
             if states else "")
    if "best_value" in best:
        params = ", ".join(f"`{k}={v}`" for k, v in (best.get("best_params") or {}).items())
        return [f"Optuna best value {best['best_value']:.4g} with {params}.{ended}", ""]
    if best.get("solutions"):
        front = "; ".join(f"trial {s.get('number')}: " + ", ".join(f"{v:.4g}" for v in s["values"])
                          for s in best["solutions"])
        return [f"Optuna Pareto front ({', '.join(best.get('directions') or [])}): "
                f"{front}.{ended}", ""]
    return []


# ---------------------------------------------------------------- plots


def plot_params(jobs: list[Job], params: list[str], out: Path) -> list[Path]:
    """One PNG per swept parameter: numeric values as a scatter (log x for learning rates and
    wide ranges), categories as a strip plot with the mean of each category."""
    plt = _pyplot()
    done = [j for j in jobs if not math.isnan(j.value())]
    written = []
    for param in params:
        values = [j.overrides.get(param, "") for j in done]
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
        numbers = _as_numbers(values)
        if numbers is not None:
            ax.scatter(numbers, [j.value() for j in done], alpha=0.8)
            if _log_axis(param, numbers):
                ax.set_xscale("log")
        else:
            _strip(ax, values, [j.value() for j in done])
        failed = len(jobs) - len(done)
        ax.set(xlabel=param, ylabel=jobs[0].monitor,
               title=f"{jobs[0].monitor} vs {param}" + (f" ({failed} failed)" if failed else ""))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{jobs[0].monitor.replace('/', '_')}_vs_{_safe(param)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    return numbers if len(set(numbers)) > 1 or len(values) == 1 else None


def _log_axis(param: str, numbers: list[float]) -> bool:
    if min(numbers) <= 0:
        return False
    return param.rsplit(".", 1)[-1] in ("lr", "learning_rate") or max(numbers) / min(numbers) >= 100


def _strip(ax: Any, labels: list[str], ys: list[float]) -> None:
    import numpy as np

    cats = sorted(set(labels), key=lambda c: (_as_numbers([c]) is None, _sort_key(c)))
    rng = np.random.default_rng(0)
    for i, cat in enumerate(cats):
        y = [v for label, v in zip(labels, ys, strict=True) if label == cat]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(y)), y, alpha=0.8)
        ax.hlines(float(np.mean(y)), i - 0.3, i + 0.3, colors="black", linewidth=2)
    ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 4 else 0)


def _sort_key(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "param"


def plot_curves(jobs: list[Job], out: Path, top: int) -> Path | None:
    """Validation curves of the best ``top`` finished jobs, from TensorBoard event files or
    the CSV logger's metrics.csv. None when no job logged any (logger=none, fast_dev_run)."""
    best = [j for j in ranked(jobs) if not math.isnan(j.value())][:top]
    keys = list(dict.fromkeys([jobs[0].monitor, "val/loss"]))
    curves = {j.name: {k: read_curve(j.path, k) for k in keys} for j in best}
    keys = [k for k in keys if any(c[k] for c in curves.values())]
    if not keys:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), dpi=100,
                             squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for job in best:
            points = curves[job.name][key]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3,
                        label=f"{job.name}: {_short(job)}")
        ax.set(xlabel="step", ylabel=key, title=key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"validation curves of the top {len(best)} runs", fontsize=10)
    fig.tight_layout()
    path = out / "val_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _short(job: Job) -> str:
    return f"{job.monitor}={job.value():.4g}"


def read_curve(job_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one logged scalar during fit: TensorBoard first, then the CSV
    logger. Points after the last training step (train.py re-validating the best checkpoint)
    are left out: they are not part of the curve."""
    for scalars in (_tensorboard_scalars(job_dir / "tensorboard"), _csv_scalars(job_dir)):
        if scalars.get(key):
            train_steps = [step for tag, points in scalars.items() if tag.startswith("train/")
                           for step, _ in points]
            last = max(train_steps, default=None)
            return [(step, v) for step, v in scalars[key] if last is None or step <= last]
    return []


def _tensorboard_scalars(tb: Path) -> dict[str, list[tuple[int, float]]]:
    if not tb.is_dir() or not any(tb.rglob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags().get("scalars", [])}


def _csv_scalars(job_dir: Path) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(job_dir.glob("csv/**/metrics.csv")):
        with open(path) as f:
            for i, row in enumerate(csv.DictReader(f)):
                step = int(row.get("step") or i)
                for tag, value in row.items():
                    if value and tag not in ("step", "epoch"):
                        scalars.setdefault(tag, []).append((step, float(value)))
    return scalars


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and clusters
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- entry point


def report(sweep: Path, out: Path, top: int = 5) -> dict[str, Any]:
    """Write the report; returns what was written and the Markdown text."""
    jobs = find_jobs(sweep)
    if len({j.monitor for j in jobs}) > 1:  # mixed monitors: rank by the most common one
        common = Counter(j.monitor for j in jobs).most_common(1)[0][0]
        for job in jobs:
            job.monitor = common
    params = swept_keys(jobs)
    header, rows = table(jobs, params)
    folds = fold_table(jobs, params) if fold_groups(jobs) else None
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "report.csv", header, rows)
    if folds:
        write_csv(out / "folds.csv", *folds)
    text = markdown(sweep, jobs, header, rows, folds)
    (out / "report.md").write_text(text)
    plots = plot_params(jobs, params, out) if len(jobs) > 1 else []  # one point: no plot
    curves = plot_curves(jobs, out, top)
    return {"markdown": text, "plots": plots + ([curves] if curves else []), "jobs": jobs,
            "curves": curves, "folds": folds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlexp-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="the directory of a -m sweep "
                        "(outputs/multiruns/<time>)")
    parser.add_argument("--out", type=Path, help="where to write (default: SWEEP_DIR/report)")
    parser.add_argument("--top", type=int, default=5, help="validation curves of the N best runs")
    args = parser.parse_args(argv)
    out = args.out or args.sweep_dir / "report"
    try:
        result = report(args.sweep_dir, out, max(1, args.top))
    except (ReportError, OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result["markdown"])
    if result["curves"] is None:
        print("no validation curves: no job logged any (logger=none or fast_dev_run)")
    print(f"wrote {out / 'report.md'}, {out / 'report.csv'} and {len(result['plots'])} PNG files "
          f"in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
