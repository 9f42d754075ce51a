"""Results as records: each number in README.md and docs/ comes from a file in results/ that one
command reproduces. A result is a preset plus overrides, run as a user runs it (a whole
``python train.py ...`` process, or a benchmark script), once per seed.

    python scripts/reproduce.py quick              # the headline results (<= 15 min, 2 cores)
    python scripts/reproduce.py full               # every result in README.md and docs/
    python scripts/reproduce.py semi               # MNIST with 100 labels, three subsets
    python scripts/reproduce.py loader             # image_folder's loading targets
    python scripts/reproduce.py text               # the IMDB transfer ladder (about 2 hours)
    python scripts/reproduce.py mnist_cnn          # named results or sets, in order
    python scripts/reproduce.py --check quick      # run again and compare with the records
    python scripts/reproduce.py --table            # the tables README.md and docs/ show
    python scripts/reproduce.py --write            # write them into README.md and docs/
    python scripts/reproduce.py --list             # results and sets
    python scripts/reproduce.py --isa avx2 quick   # as on a CPU without native bf16 (a laptop)

Each record (``results/<name>.json``, or ``results/<name>.<class>.json`` for a record on another
CPU class: times compare only within a class) holds the command, the git commit (and whether the tree
was dirty), the date, the machine (CPU, cores, threads, load average before and after, the cores
other processes kept busy during the runs), the versions, and per run: whole-process wall time,
training time, steps, epochs, the validation and test metrics and the training curves. A record
started while the load average exceeded the cores, or during which other processes used more
than a quarter of a core, is marked ``loaded`` and kept out of the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlexp import hardware

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
KEPT = REPO / "outputs" / "records"  # the folders of results that others start from (git-ignored)
TOLERANCE = 0.002  # test accuracy a re-run may differ by (thread scheduling changes float sums)


@dataclass(frozen=True)
class Result:
    """A result: ``python train.py OVERRIDES`` (once per seed), or several variants of it that
    share a preparation (a pretrained source, word vectors), or a benchmark script."""

    label: str                      # its row in a table (variants: the table's first column)
    overrides: tuple[str, ...]      # after `python train.py`; "{work}" is the result's folder
    seeds: tuple[int, ...] = ()     # one run per seed (labeled subsets, say); () = as configured
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (row label, extra overrides)
    prepare: tuple[str, ...] = ()   # a command run first (a script under REPO), "{work}" as above
    bench: tuple[str, ...] = ()     # scripts/benchmark.py arguments instead of a training run
    shell: tuple[tuple[str, str], ...] = ()  # (row label, shell command): timed commands
    script: tuple[str, ...] = ()    # a script under REPO (and its arguments, "{work}" as
                                    # above) that writes its metrics to the file named by its
                                    # --json option
    tolerance: float = TOLERANCE
    keep: bool = False              # its folder outlives the record (outputs/records/<name>):
                                    # another result starts from what it made
    needs: tuple[str, ...] = ()     # kept results it starts from ("{records}" in its overrides)


# all but the check that the tables equal the records: a new record is not written yet
FAST_TESTS = ('{python} -m pytest -q -p no:cacheprovider -m "not integration" --deselect '
              'tests/scripts/test_reproduce.py::test_every_table_in_the_docs_equals_its_records')
SUBSETS = (0, 1, 2)  # seeds: three labeled subsets of 100, fixed before any tuning
TRANSFER = ("experiment=mnist_transfer", "transfer.source={work}/source/checkpoints/last.ckpt")
LM_SOURCE = ("experiment=imdb_lstm_best",
             "transfer.source={records}/imdb_lm/run/checkpoints/last.ckpt")
RESULTS_DEFS: dict[str, Result] = {
    "mnist_cnn": Result("tuned CNN", ("experiment=mnist_cnn",)),
    "mnist_cnn_best": Result("best CNN", ("experiment=mnist_cnn_best",)),
    "mnist_mlp_course": Result("the course's MLP, as the course runs it",
                               ("experiment=mnist_mlp_course",)),
    "mnist_cnn_course": Result("the course's CNN, as the course runs it",
                               ("experiment=mnist_cnn_course",)),
    "imdb_lstm": Result("BiLSTM", ("experiment=imdb_lstm",), tolerance=0.004),
    "mnist_supervised_100": Result("supervised, 100 labels", ("experiment=mnist_supervised_100",),
                                   seeds=SUBSETS, tolerance=0.005),
    "mnist_pseudo_label": Result("pseudo-labels (the course's method), 100 labels",
                                 ("experiment=mnist_pseudo_label",), seeds=SUBSETS,
                                 tolerance=0.005),
    "mnist_pseudo_label_long": Result("pseudo-labels, 10 rounds, 100 labels",
                                      ("experiment=mnist_pseudo_label_long",), seeds=SUBSETS,
                                      tolerance=0.005),
    "mnist_fixmatch": Result("FixMatch, 100 labels", ("experiment=mnist_fixmatch",),
                             seeds=SUBSETS, tolerance=0.005),
    "mnist_fixmatch_best": Result("FixMatch + EMA teacher, wider CNN, 100 labels",
                                  ("experiment=mnist_fixmatch_best",), seeds=SUBSETS,
                                  tolerance=0.005),
    "mnist_transfer": Result(
        "digits 5-9 from 50 labels a class, source: a CNN on digits 0-4", TRANSFER,
        variants=(("scratch", ("transfer=none",)),
                  ("feature extractor", ("transfer=feature_extractor",)),
                  ("finetune", ("transfer=finetune",)), ("gradual", ("transfer=gradual",))),
        prepare=("train.py", "experiment=mnist_transfer_pretrain", "hydra.run.dir={work}/source")),
    "setup": Result("install and tests", (), shell=(
        ("install, in a fresh venv", 'python3.11 -m venv {work}/venv && {work}/venv/bin/pip '
                                     'install -q -e "{repo}[sweep,dev,export]"'),
        ("fast tests", FAST_TESTS))),
    # the tests run in the new venv; run this script with a Python 3.12 too, whose versions
    # the record keeps: <a 3.12 venv>/bin/python scripts/reproduce.py setup_py312
    "setup_py312": Result("install and tests on Python 3.12", (), shell=(
        ("install on Python 3.12, CI's versions", 'python3.12 -m venv {work}/venv && '
         '{work}/venv/bin/pip install -q -c {repo}/.ci/constraints.txt '
         '-e "{repo}[sweep,dev,export]"'),
        ("fast tests on Python 3.12", FAST_TESTS.replace("{python}", "{work}/venv/bin/python")))),
    "imdb_lm": Result("BiLSTM language model, 1 epoch of train + unlabeled reviews",
                      ("experiment=imdb_lm",), keep=True),
    "imdb_lstm_best": Result("BiLSTM fine-tuned from the language model with adversarial "
                             "training on the embeddings", LM_SOURCE, seeds=(0, 1, 2),
                             needs=("imdb_lm",), tolerance=0.004),
    # the ablation of imdb_lstm_best: each row adds one ingredient; the overrides spell out
    # each row whatever the preset becomes
    "imdb_word_vectors": Result(
        "BiLSTM + word vectors (PPMI-SVD, from the train + unlabeled reviews)",
        ("experiment=imdb_lstm", "model.vectors={work}/vectors.txt"),
        prepare=("scripts/word_vectors.py", "--with-train", "--out", "{work}/vectors.txt"),
        tolerance=0.004),
    "imdb_lm_ablation": Result(
        "imdb_lstm_best less its ingredients", LM_SOURCE,
        variants=(("256-wide BiLSTM from scratch (imdb_lstm_best's recipe, no language model, "
                   "no adversarial training)", ("transfer=none", "method=supervised")),
                  ("+ language model encoder", ("method=supervised",)),
                  ("+ ULMFiT's concat pooling and discriminative learning rates",
                   ("method=supervised", "model.pooling=concat", "transfer.lr_decay=2.6"))),
        needs=("imdb_lm",), tolerance=0.004),
    "imdb_vat": Result("+ language model encoder, virtual adversarial training instead",
                       (*LM_SOURCE, "method.task.kind=virtual"), needs=("imdb_lm",),
                       tolerance=0.004),
    "imdb_at_scratch": Result("256-wide BiLSTM from scratch with adversarial training (no "
                              "language model)", ("experiment=imdb_lstm_best", "transfer=none"),
                              tolerance=0.004),
    "imdb_nbsvm": Result("NB-weighted logistic regression, uni+bigrams (NBSVM-LR)", (),
                         script=("scripts/nbsvm.py",)),
    "bench_mnist": Result("framework vs plain PyTorch, MNIST", (),
                          bench=("--bench", "mnist", "--steps", "300", "--repeats", "3")),
    # image_folder's loading targets, on the MNIST PNG folders (exported into the record's folder)
    # and on 200k generated images; the records keep the script's whole report
    "loader_mnist_folder": Result("data=image_folder vs torchvision ImageFolder, MNIST PNGs", (),
                                  script=("scripts/loader_bench.py", "--mnist-folder",
                                          "{work}/mnist_png", "--workers", "2")),
    "loader_rgb_folder": Result("data=image_folder vs torchvision ImageFolder, mixed RGB", (),
                                prepare=("scripts/loader_bench.py", "--make", "{work}/rgb",
                                         "--source", "rgb", "--n", "5000"),
                                script=("scripts/loader_bench.py", "{work}/rgb", "--size", "128",
                                        "128", "--workers", "2")),
    "loader_train_throughput": Result("training through the MNIST PNG folder vs data=mnist", (),
                                      script=("scripts/loader_bench.py", "--train-throughput",
                                              "{work}/mnist_png", "--steps", "200",
                                              "--repeats", "3")),
    "loader_peak_memory_200k": Result("peak memory through 200k generated images", (),
                                      script=("scripts/loader_bench.py", "--peak-memory",
                                              "{work}/images_200k", "--images", "200000",
                                              "--workers", "2")),
}
SETS: dict[str, list[str]] = {
    "quick": ["mnist_cnn", "imdb_lstm"],
    "semi": ["mnist_supervised_100", "mnist_pseudo_label", "mnist_pseudo_label_long",
             "mnist_fixmatch", "mnist_fixmatch_best"],
    "text": ["imdb_lm", "imdb_lstm_best", "imdb_lm_ablation", "imdb_vat", "imdb_at_scratch",
             "imdb_word_vectors", "imdb_nbsvm"],
    "loader": ["loader_mnist_folder", "loader_rgb_folder", "loader_train_throughput",
               "loader_peak_memory_200k"],
    "full": list(RESULTS_DEFS),
}


@dataclass
class Table:
    doc: str                        # the file it appears in, relative to the repository
    rows: list[str]                 # result names (a result with variants gives several rows)
    columns: list[str] = field(default_factory=lambda: ["test/acc", "val/acc", "wall_s"])


TABLES: dict[str, Table] = {
    "setup": Table("docs/benchmarks.md", ["setup", "setup_py312"], ["wall_s"]),
    "headline": Table("README.md", ["mnist_cnn", "mnist_cnn_best", "imdb_lstm",
                                    "imdb_lstm_best", "mnist_fixmatch_best", "mnist_mlp_course",
                                    "mnist_cnn_course"]),
    "semi_supervised": Table("docs/semi_supervised_and_transfer.md",
                             ["mnist_supervised_100", "mnist_pseudo_label",
                              "mnist_pseudo_label_long", "mnist_fixmatch",
                              "mnist_fixmatch_best"]),
    "transfer": Table("docs/semi_supervised_and_transfer.md", ["mnist_transfer"]),
    "benchmarks": Table("docs/benchmarks.md", ["bench_mnist"], ["ratio"]),
    "text": Table("docs/text.md", ["imdb_lstm", "imdb_lstm_best", "imdb_nbsvm"]),
    "text_lm": Table("docs/text.md", ["imdb_lm"], ["val/ppl", "fit_s", "wall_s"]),
    "text_transfer": Table("docs/text.md", ["imdb_lstm", "imdb_word_vectors", "imdb_lm_ablation",
                                            "imdb_lstm_best", "imdb_vat", "imdb_at_scratch",
                                            "imdb_nbsvm"]),
    "loading": Table("docs/benchmarks.md", ["loader_mnist_folder", "loader_rgb_folder",
                                            "loader_train_throughput", "loader_peak_memory_200k"],
                     ["loading"]),
}
HEADERS = {"test/acc": "test acc", "val/acc": "val acc", "wall_s": "whole process",
           "fit_s": "training", "ratio": "framework / plain", "val/ppl": "val perplexity"}


# ----------------------------------------------------------------------------- machine
def machine(threads: int) -> dict[str, Any]:
    # the CPU class (AVX2, AVX512, AVX512_BF16, AMX) decides bf16's speed: times compare within one
    return {"cpu": hardware.cpu_name(), "cores": os.cpu_count(), "threads": threads,
            **hardware.describe()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


OTHERS_LIMIT = 0.25  # cores other processes may use during a record before it counts as loaded


def busy_cpu_s() -> float:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class OtherLoad:
    """The cores other processes kept busy while the record's own runs ran: the machine's CPU
    time less that of our finished child processes. The load average cannot tell the two
    apart: a two-thread run on two cores alone brings it to about 2."""

    def __enter__(self) -> OtherLoad:
        self.start = (time.monotonic(), busy_cpu_s(), children_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        now = (time.monotonic(), busy_cpu_s(), children_cpu_s())
        wall, busy, ours = (a - b for a, b in zip(now, self.start, strict=True))
        self.cores = round(max(0.0, busy - ours) / max(wall, 1e-9), 3)


def wait_for_quiet(cores: int, patience_s: float) -> list[float]:
    """The load average, once the 1-minute figure is at most the cores (or patience ran out)."""
    deadline = time.monotonic() + patience_s
    while load()[0] > cores and time.monotonic() < deadline:
        print(f"  load {load()[0]} > {cores} cores: waiting for a quiet machine ...",
              file=sys.stderr, flush=True)
        time.sleep(30)
    return load()


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines()
               if not line[3:].startswith("results/")]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed)}


def versions() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", "import sys, torch, lightning, dlexp; print("
                          "sys.version.split()[0], torch.__version__, lightning.__version__, "
                          "dlexp.__version__)"], capture_output=True, text=True)
    names = ("python", "torch", "lightning", "dlexp")
    return dict(zip(names, out.stdout.split(), strict=False))


# ----------------------------------------------------------------------------- runs
def train_run(result: Result, seed: int | None, threads: int, work: Path,
              variant: tuple[str, tuple[str, ...]] = ("", ())) -> dict[str, Any]:
    """One ``python train.py`` process; its metrics.json, curves and whole-process time."""
    label = re.sub(r"[^A-Za-z0-9]+", "_", variant[0]).strip("_")[:60]  # a folder name
    name = "-".join(x for x in (label, f"seed{seed}" if seed else "") if x)
    run_dir = work / (name or "run")
    overrides = [*_filled(result.overrides, work), *_filled(variant[1], work),
                 *([f"seed={seed}"] if seed is not None else []), f"threads={threads}"]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *overrides,
                           f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True)
    wall = round(time.perf_counter() - start, 2)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (
        run_dir / "metrics.json").is_file() else {}
    if done.returncode != 0 or metrics.get("status") != "ok":
        raise SystemExit(f"error: {' '.join(overrides)} failed: "
                         f"{metrics.get('error') or done.stderr.strip()[-300:]}")
    keep = ("test/acc", "test/loss", "test/f1", "val/acc", "val/loss", "epoch", "global_step",
            "fit_s", "train/samples_per_s", "precision")
    return {"variant": variant[0], "seed": seed, "wall_s": wall,
            **{k: metrics.get(k) for k in keep},
            "curves": _curves(run_dir / "figures" / "curves.csv")}


def _filled(args: tuple[str, ...], work: Path) -> list[str]:
    return [a.replace("{work}", str(work)).replace("{records}", str(KEPT)) for a in args]


def needed(result: Result) -> dict[str, Any]:
    """The kept results ``result`` starts from, each as its record names it (commit, date,
    summary); refuses in one line when one was not made here yet."""
    out = {}
    for name in result.needs:
        rec = RESULTS / f"{name}.json"
        if not (KEPT / name).is_dir() or not rec.is_file():
            raise SystemExit(f"error: {result.label!r} starts from {name}'s output, which is not "
                             f"in {KEPT / name}: run `python scripts/reproduce.py {name}` first")
        was = json.loads(rec.read_text())
        out[name] = {k: was.get(k) for k in ("git", "date", "summary")}
    return out


@contextlib.contextmanager
def folder(name: str, result: Result) -> Iterator[Path]:
    """The result's working folder: a temporary one, or outputs/records/<name> (emptied first)
    for a result that others start from."""
    if not result.keep:
        with tempfile.TemporaryDirectory(prefix=f"reproduce-{name}-") as tmp:
            yield Path(tmp)
        return
    shutil.rmtree(KEPT / name, ignore_errors=True)
    (KEPT / name).mkdir(parents=True)
    yield KEPT / name


def prepare(result: Result, work: Path) -> dict[str, Any]:
    """The preparation step's command and time (its output stays in ``work``)."""
    script, *args = _filled(result.prepare, work)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: preparing with {script} failed: {done.stderr.strip()[-300:]}")
    return {"command": "python " + " ".join(result.prepare),
            "wall_s": round(time.perf_counter() - start, 2)}


def _curves(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def shell_run(label: str, command: str, work: Path) -> dict[str, Any]:
    """A timed shell command, run from the repository (its tests see the real data)."""
    filled = command.format(work=work, repo=REPO, python=sys.executable)
    start = time.perf_counter()
    done = subprocess.run(["bash", "-c", filled], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {label} failed: {(done.stdout + done.stderr).strip()[-300:]}")
    return {"variant": label, "wall_s": round(time.perf_counter() - start, 2)}


def script_run(result: Result, work: Path) -> dict[str, Any]:
    """A script that trains and scores a model itself; its metrics and whole-process time."""
    out = work / "metrics.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / result.script[0]),
                           *_filled(result.script[1:], work), "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(result.script)} failed: {done.stderr.strip()[-300:]}")
    return {"variant": "", "seed": None, "wall_s": round(time.perf_counter() - start, 2),
            **json.loads(out.read_text())}


def bench_run(result: Result, threads: int, work: Path) -> dict[str, Any]:
    out = work / "bench.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"),
                           *result.bench, "--threads", str(threads), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: benchmark {' '.join(result.bench)} failed: "
                         f"{done.stderr.strip()[-300:]}")
    return {"wall_s": round(time.perf_counter() - start, 2),
            "bench": json.loads(out.read_text())}


def record(name: str, threads: int, patience_s: float) -> dict[str, Any]:
    """Run ``name`` and return its record (not yet written)."""
    result = RESULTS_DEFS[name]
    info = machine(threads)
    starts_from = needed(result)
    before = wait_for_quiet(info["cores"], patience_s)
    with OtherLoad() as others, folder(name, result) as work:
        prepared = prepare(result, work) if result.prepare else None
        if result.bench:
            runs = [bench_run(result, threads, work)]
        elif result.shell:
            runs = [shell_run(label, command, work) for label, command in result.shell]
        elif result.script:
            runs = [script_run(result, work)]
        else:
            runs = [train_run(result, seed, threads, work, variant)
                    for variant in (result.variants or (("", ()),))
                    for seed in (result.seeds or (None,))]
    after = load()
    loaded = before[0] > info["cores"] or others.cores > OTHERS_LIMIT
    command = ("python scripts/benchmark.py " + " ".join(result.bench) if result.bench else
               "" if result.shell else "python " + " ".join(result.script) if result.script
               else "python train.py " + " ".join(result.overrides))
    return {"name": name, "command": command, "overrides": list(result.overrides),
            "seeds": list(result.seeds), "prepare": prepared,
            **({"starts_from": starts_from} if starts_from else {}), "git": git_state(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {**info, **ran_in(runs), "load_before": before, "load_after": after,
                        "other_cores": others.cores, "loaded": loaded},
            "versions": versions(), "runs": runs, "summary": summarize(runs)}


def ran_in(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The precision the training runs resolved (``trainer.precision=auto`` picks it per CPU
    class), for the record's machine; {} for scripts and benchmarks."""
    used = sorted({r["precision"] for r in runs if "precision" in r})
    return {"precision": used[0] if len(used) == 1 else used} if used else {}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant ("" without variants): means over the seeds, and the standard deviation of
    test accuracy when there are several."""
    if "bench" in runs[0]:
        return {f"ratio/{r['case']}": r["ratio"]["median"] for r in runs[0]["bench"]["results"]}
    out: dict[str, Any] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        group = [r for r in runs if r["variant"] == variant]
        keys = ("test/acc", "val/acc", "val/loss", "wall_s", "fit_s", "global_step", "epoch")
        stats = {k: statistics.fmean(r[k] for r in group) for k in keys
                 if all(isinstance(r.get(k), int | float) for r in group)}
        if len(group) > 1:
            stats["test/acc_std"] = statistics.stdev(r["test/acc"] for r in group)
        out[variant] = stats
    return out


def cpu_class(rec: dict[str, Any]) -> str | None:
    return rec.get("machine", {}).get("cpu_class")


def record_path(name: str, cls: str | None) -> Path:
    """``<name>.json`` holds the record the tables lead with; a record taken on another CPU class
    sits beside it as ``<name>.<class>.json`` (``mnist_cnn.avx2.json``): times compare only
    within a class, so one does not replace the other."""
    primary = RESULTS / f"{name}.json"
    if not primary.is_file() or cls is None:
        return primary
    was = cpu_class(json.loads(primary.read_text()))
    return primary if was in (None, cls) else RESULTS / f"{name}.{cls.lower()}.json"


def write(rec: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = record_path(rec["name"], cpu_class(rec))
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return path


def records(name: str) -> list[dict[str, Any]]:
    """Every record of ``name``: the primary first, then one per other CPU class."""
    paths = [RESULTS / f"{name}.json", *sorted(RESULTS.glob(f"{name}.*.json"))]
    return [{**json.loads(p.read_text()), "_file": p.name} for p in paths if p.is_file()]


def read(name: str, cls: str | None = None) -> dict[str, Any]:
    """The record of ``name`` taken on CPU class ``cls`` if there is one, else the primary."""
    found = records(name)
    if not found:
        raise SystemExit(f"error: no record results/{name}.json: run "
                         f"`python scripts/reproduce.py {name}`")
    return next((r for r in found if cls and cpu_class(r) == cls), found[0])


# ----------------------------------------------------------------------------- check
def check(name: str, threads: int, patience_s: float) -> bool:
    """Run again, compare the test accuracy with the record; wall time only as a ratio."""
    new = record(name, threads, patience_s)
    old = read(name, cpu_class(new))
    if "bench" in old["runs"][0]:
        ratios = ", ".join(f"{k.split('/', 1)[1]} {v:.3f} (record {old['summary'].get(k, 0):.3f})"
                           for k, v in new["summary"].items())
        print(f"{name}: {ratios}; compared by eye, benchmarks vary with the machine")
        return True
    tolerance, same = RESULTS_DEFS[name].tolerance, True
    loaded = " (machine loaded)" if new["machine"]["loaded"] else ""
    was_class, now_class = cpu_class(old), cpu_class(new)
    if was_class != now_class:  # bf16 native or emulated: times of two classes do not compare
        loaded += (f" (the record was taken on a {was_class or 'CPU of unrecorded class'}, this "
                   f"is a {now_class}: no record of this class to compare the time with)")
    for variant, was in old["summary"].items():
        now = new["summary"][variant]
        if "test/acc" not in was:  # a timed command: nothing to agree on but its success
            print(f"{name}/{variant}: ran; wall {now['wall_s']:.1f} s = "
                  f"{now['wall_s'] / was['wall_s']:.2f}x the record{loaded}")
            continue
        agrees = abs(now["test/acc"] - was["test/acc"]) <= tolerance
        same &= agrees
        print(f"{name}{'/' + variant if variant else ''}: test/acc {now['test/acc']:.4f} vs record "
              f"{was['test/acc']:.4f} (tolerance {tolerance}): {'ok' if agrees else 'DIFFERS'}; "
              f"wall {now['wall_s']:.1f} s = {now['wall_s'] / was['wall_s']:.2f}x the "
              f"record{loaded}")
    return same


# ----------------------------------------------------------------------------- tables
def table(name: str) -> str:
    """The Markdown table ``name``, from the records; refuses a loaded record."""
    spec = TABLES[name]
    link = "results/" if "/" not in spec.doc else "../results/"
    if spec.columns == ["ratio"]:
        return _bench_table(spec, link)
    if spec.columns == ["loading"]:
        return _loading_table(spec, link)
    lines = ["| result | command | " + " | ".join(HEADERS[c] for c in spec.columns)
             + " | CPU | record |",
             "| --- | --- | " + " | ".join("---" for _ in spec.columns) + " | --- | --- |"]
    for row in spec.rows:
        result = RESULTS_DEFS[row]
        for rec in map(_quiet, records(row)):
            seeds = f" (seeds {', '.join(map(str, rec['seeds']))})" if rec["seeds"] else ""
            for variant, extra in result.variants or result.shell or (("", ()),):
                command = (extra.replace("{python}", ".venv/bin/python").replace(
                    "{repo}", ".") if isinstance(extra, str) else " ".join([rec["command"], *extra])
                          ).replace("{work}", "<work>").replace("{records}", "outputs/records")
                cells = [_cell(_with_val_loss(rec, variant), c) for c in spec.columns]
                lines.append(f"| {variant or result.label}{seeds} | `{command}` | "
                             + " | ".join(cells) + f" | {_cpu(rec)} | "
                             f"[{rec['_file']}]({link}{rec['_file']}) |")
    return "\n".join(lines)


def _with_val_loss(rec: dict[str, Any], variant: str) -> dict[str, Any]:
    """A variant's summary, with its runs' mean val/loss (a language model's perplexity) where
    the record's summary predates that key."""
    stats = rec["summary"][variant]
    losses = [r["val/loss"] for r in rec["runs"] if r.get("variant") == variant
              and isinstance(r.get("val/loss"), int | float)]
    return {"val/loss": statistics.fmean(losses), **stats} if losses else stats


def _cpu(rec: dict[str, Any]) -> str:
    """The class a record's times belong to, and how it was reached on a bigger CPU."""
    m = rec["machine"]
    if not m.get("cpu_class"):
        return "class not recorded"
    limits = m.get("isa_limits") or {}
    held = ", ".join(f"{k}={v}" for k, v in limits.items())
    return f"{m['cpu_class']} (held there: {held})" if held else m["cpu_class"]


def _quiet(rec: dict[str, Any]) -> dict[str, Any]:
    if rec["machine"]["loaded"]:
        raise SystemExit(f"error: results/{rec.get('_file', rec['name'] + '.json')} was taken "
                         "on a loaded machine "
                         f"(load {rec['machine']['load_before']}, other processes "
                         f"{rec['machine'].get('other_cores')} cores); take it again when idle")
    return rec


def _cell(s: dict[str, float], column: str) -> str:
    if column == "val/ppl" and "val/loss" in s:  # a language model's: e ** (nats per token)
        return f"{math.exp(s['val/loss']):.1f}"
    if column not in s:
        return "—"  # e.g. no val/acc: the course's runs train on all 60k, no validation split
    if column in ("test/acc", "val/acc"):
        value = f"{100 * s[column]:.2f}%"
        std = s.get(f"{column}_std")
        return f"{value} ± {100 * std:.2f}" if std is not None else value
    seconds = s[column]
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.1f} min"


def _bench_table(spec: Table, link: str) -> str:
    lines = ["| case | framework (samples/s) | plain PyTorch (samples/s) | framework / plain | "
             "CPU | record |", "| --- | --- | --- | --- | --- | --- |"]
    for row in spec.rows:
        for rec in map(_quiet, records(row)):
            for r in rec["runs"][0]["bench"]["results"]:
                lines.append(f"| {r['bench']}/{r['case']} | {r['median']['framework']:.0f} | "
                             f"{r['median']['plain']:.0f} | {r['ratio']['median']:.3f} | "
                             f"{_cpu(rec)} | [{rec['_file']}]({link}{rec['_file']}) |")
    return "\n".join(lines)


def _loading_rows(name: str, run: dict) -> list[tuple[str, str, str]]:
    """(measurement, value, target) rows of one loader_bench record."""
    if name in ("loader_mnist_folder", "loader_rgb_folder"):
        sec, ratio, k = run["seconds"], run["ratio"], f"{run['images'] // 1000}k"
        n = f"{k} MNIST PNGs" if name == "loader_mnist_folder" else \
            f"{k} RGB JPEGs and PNGs of mixed sizes, to {'x'.join(map(str, run['image_shape'][1:]))}"
        rows = [(f"first epoch (scan, decode, pass) on {n}, vs torchvision `ImageFolder` + "
                 "`DataLoader`", f"{ratio['first_epoch']:.2f}x", ">= 1.0x"),
                ("a cached epoch, vs the same", f"{ratio['cached_epoch']:.0f}x", ">= 5x")]
        if name == "loader_mnist_folder":
            rows.append((f"scan of the {n}: first / nothing changed",
                         f"{sec['scan_cold']:.2f} s / {sec['scan_warm']:.2f} s",
                         "<= 30 s / <= 1 s"))
        return rows
    if name == "loader_train_throughput":
        return [("training `experiment=mnist_cnn` through the cached PNG folder, vs `data=mnist`",
                 f"{run['ratio']['median']:.2f}x", f">= {run['ratio']['bar']}x")]
    rss = run["peak_rss_mb"]
    return [(f"peak memory through {run['images'] // 1000}k generated images (scan, decode, "
             "one epoch): resident / allocated", f"{rss['process']:.0f} MB / "
             f"{rss['anonymous']:.0f} MB ({rss['before']:.0f} / {rss['anonymous_before']:.0f} "
             "MB after the imports)", f"< {run['limit_mb']} MB")]


def _loading_table(spec: Table, link: str) -> str:
    lines = ["| measurement | measured | target | CPU | record |",
             "| --- | --- | --- | --- | --- |"]
    for row in spec.rows:
        for rec in map(_quiet, records(row)):
            for what, value, target in _loading_rows(row, rec["runs"][0]):
                lines.append(f"| {what} | {value} | {target} | {_cpu(rec)} | "
                             f"[{rec['_file']}]({link}{rec['_file']}) |")
    return "\n".join(lines)


def marked(name: str) -> re.Pattern[str]:
    """The block a document keeps a table in, between two HTML comments (empty at first)."""
    return re.compile(rf"(<!-- results:{name} -->\n)(.*?)\n?(<!-- /results:{name} -->)", re.S)


def write_tables() -> list[str]:
    """Every table into its document; returns the documents changed."""
    changed = []
    for name, spec in TABLES.items():
        doc = REPO / spec.doc
        text = doc.read_text()
        if not marked(name).search(text):
            raise SystemExit(f"error: {spec.doc} has no <!-- results:{name} --> block")
        m = marked(name).search(text)
        new = text[:m.end(1)] + table(name) + "\n" + text[m.start(3):]
        if new != text:
            doc.write_text(new)
            changed.append(spec.doc)
    return changed


# ----------------------------------------------------------------------------- CLI
def names(given: list[str]) -> list[str]:
    out: list[str] = []
    for name in given:
        if name in SETS:
            out += SETS[name]
        elif name in RESULTS_DEFS:
            out.append(name)
        else:
            raise SystemExit(f"error: {name!r} is neither a result nor a set; see --list")
    return list(dict.fromkeys(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="results or sets (quick, full)")
    p.add_argument("--check", action="store_true", help="run again and compare with the records")
    p.add_argument("--table", action="store_true", help="print the tables from the records")
    p.add_argument("--write", action="store_true", help="write the tables into their documents")
    p.add_argument("--list", action="store_true", help="list results and sets")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per run")
    p.add_argument("--patience", type=float, default=600,
                   help="seconds to wait for the load to drop before a run")
    p.add_argument("--isa", choices=["avx2"],
                   help="hold oneDNN and ATen to AVX2 (no native bf16: most laptops' class); "
                        "records go to results/<name>.avx2.json")
    args = p.parse_args(argv)
    if args.isa and any(os.environ.get(k) != v for k, v in hardware.AVX2_LIMITS.items()):
        # torch reads the limits when it loads: start again with them set
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, __file__, *argv],
                  {**os.environ, **hardware.AVX2_LIMITS})
    if args.list:
        for name, result in RESULTS_DEFS.items():
            print(f"{name:24s} {result.label}")
        for name, members in SETS.items():
            print(f"set {name}: {' '.join(members)}")
        return 0
    if args.table or args.write:
        if args.write:
            print("\n".join(write_tables()) or "tables already up to date")
        else:
            for name in TABLES:
                print(f"## {name} ({TABLES[name].doc})\n{table(name)}\n")
        return 0
    if not args.names:
        p.error("name results or sets (quick, full), or use --table / --list")
    ok = True
    for name in names(args.names):
        print(f"{name}: running ...", file=sys.stderr, flush=True)
        if args.check:
            ok &= check(name, args.threads, args.patience)
        else:
            rec = record(name, args.threads, args.patience)
            path = write(rec)
            mark = " (LOADED machine: kept out of the tables)" if rec["machine"]["loaded"] else ""
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            print(f"{name}: {json.dumps(rec['summary'])} -> {shown}{mark}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
