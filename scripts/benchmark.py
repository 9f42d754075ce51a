"""Training throughput of dlexp against a hand-written PyTorch loop, measured in the same run.

    DLEXP_DATA_DIR=/path/to/data python scripts/benchmark.py [--bench mnist imdb_lstm ...]
        [--models cnn mlp] [--steps 300] [--repeats 3] [--precision auto|32-true|bf16-mixed]
        [--json out.json] [--plot out.png]

The framework side composes the real ``conf/train.yaml`` and trains through dlexp's own
datamodule, builders and Lightning ``Trainer``, in one or both ``--setups``:

- ``defaults``: what ``python train.py`` runs: the default callbacks (checkpoints, early
  stopping, LR monitor, progress bar, summary, throughput, curves), the TensorBoard logger and
  the validation loop, at their default settings;
- ``stripped``: training only (no validation, logger, checkpoints or progress bar).

The plain side is a minimal loop over the same network class and config, the same uint8
tensors, batch size, optimizer, loss, ``normalize`` and precision (``auto``, the default, is
what ``trainer.precision=auto`` resolves to on this machine); it never validates. Only
training steps after a warm-up are timed, over ``--repeats`` runs (median); a validation that
falls inside the timed steps (at an epoch's end) counts against the framework.

Schedules: on CPU (``auto``) each framework step is followed by one plain step in the same run,
each on its own clock, so both see the same machine load step by step (on a small shared machine
whole runs differ several-fold); ``alternate`` (the GPU default) times whole runs, reversing the
order every other repeat.

Each benchmark is one function in ``BENCHMARKS``:

- ``mnist``: CNN and MLP, framework (each setup) vs plain, samples/s.
- ``imdb_lstm``: the ``imdb_lstm`` preset's BiLSTM, framework vs plain over the same bucketed
  batches, tokens/s (real tokens).
- ``imdb_batching``: plain-loop reviews/s, length-bucketed vs unbucketed batches, and the
  unpacked LSTM vs ``pack_padded_sequence``; it also prints the padding share of each.
- ``imdb_tokenize``: reviews/s of the trained HF tokenizer vs plain-Python regex tokenizing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from dlexp import config, hardware
from dlexp.builders import build_callbacks, build_loss, build_net, build_task, instantiate_all
from dlexp.checkpoint import extras
from dlexp.data.mnist import normalize
from dlexp.errors import user_message
from dlexp.task import forward_net
from dlexp.trainer import build_trainer

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "conf"
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
STATS = ("median", "best")
SETUPS = ("defaults", "stripped")


class BenchError(ValueError):
    """A bad option: reported as one line, no traceback."""


# ----------------------------------------------------------------------------- results
@dataclass
class Comparison:
    """Rates of two variants of one case, one per repeat, summarised by their median or, with
    ``stat="best"``, their maximum. The ratio is first over second; for ``paired`` runs (measured
    side by side) it is the median of the per-repeat ratios."""

    bench: str
    case: str
    unit: str
    runs: dict[str, list[float]] = field(default_factory=dict)
    stat: str = "median"
    paired: bool = False

    def value(self, variant: str, stat: str | None = None) -> float:
        rates = self.runs[variant]
        return max(rates) if (stat or self.stat) == "best" else statistics.median(rates)

    def ratio(self, stat: str | None = None) -> float:
        a, b = list(self.runs)[:2]
        if self.paired:
            return statistics.median(x / y for x, y in zip(self.runs[a], self.runs[b],
                                                             strict=True))
        return self.value(a, stat) / self.value(b, stat)

    def to_dict(self) -> dict[str, Any]:
        summary = {stat: {v: round(self.value(v, stat), 1) for v in self.runs}
                   for stat in STATS}
        return {"bench": self.bench, "case": self.case, "unit": self.unit,
                "paired": self.paired, **summary,
                "ratio": {stat: round(self.ratio(stat), 4) for stat in STATS},
                "runs": self.runs}


def measure(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, reversing the order every other repeat, so a drift
    in machine load (shared CPUs) does not always hit the same variant."""
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            runs[name].append(variants[name]())
    return runs


# ----------------------------------------------------------------------------- config
def compose_train(overrides: list[str], out_dir: Path) -> DictConfig:
    """Compose ``conf/train.yaml`` as ``python train.py`` would, outputs under ``out_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    extra = [f"paths.log_dir={out_dir}", f"hydra.run.dir={out_dir}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=extra + overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    GlobalHydra.instance().clear()
    return cfg


STRIPPED = ["logger=none", "callbacks=none", "+trainer.limit_val_batches=0",
            "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
            "+trainer.enable_checkpointing=false"]


def train_overrides(args: argparse.Namespace, first: list[str], max_steps: int,
                    setup: str = "stripped") -> list[str]:
    """The run as ``setup`` says (see the module docstring), without a test or a schedule."""
    return [
        *first, f"paths.data_dir={args.data_dir}", "data.download=false", "test=false",
        "scheduler=none", f"trainer.accelerator={args.accelerator}",
        f"trainer.precision={args.precision}", "trainer.max_epochs=-1",
        f"+trainer.max_steps={max_steps}", *(STRIPPED if setup == "stripped" else []),
        *args.overrides,
    ]


def mnist_overrides(args: argparse.Namespace, model: str, max_steps: int, setup: str
                    ) -> list[str]:
    return train_overrides(args, [f"model={model}", f"data.batch_size={args.batch_size}"],
                           max_steps, setup)


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Times the framework's training steps after ``warmup``: from the end of step ``warmup`` to
    the end of step ``warmup + steps``, so every per-step cost of the loop falls inside.

    With ``between`` (the interleaved schedule) it runs that other step after each framework
    step, on its own clock, so both variants see the same machine load, step by step.
    """

    def __init__(self, warmup: int, steps: int, between: Callable[[], int] | None = None,
                 count: Callable[[Any], int] | None = None) -> None:
        self.warmup, self.steps, self.between = warmup, steps, between
        self.count = count or count_samples
        self.done = self.samples = self.between_samples = 0
        self.seconds = self.between_seconds = self._mark = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.done += 1
        timed = self.done > self.warmup
        self.samples += self.count(batch) if timed else 0
        if self.between is None:  # one window, no per-step sync
            if self.done in (self.warmup, self.warmup + self.steps):
                sync(pl_module.device)
                now = time.perf_counter()
                self.seconds, self._mark = (now - self._mark) if timed else 0.0, now
            return
        sync(pl_module.device)
        now = time.perf_counter()
        self.seconds += (now - self._mark) if timed else 0.0
        samples = self.between()
        sync(pl_module.device)
        self._mark = time.perf_counter()
        if timed:
            self.between_samples += samples
            self.between_seconds += self._mark - now

    @property
    def rates(self) -> tuple[float, float]:
        """Samples (or what ``count`` counts) per second of the framework, and of ``between``
        (0 without it)."""
        if self.done < self.warmup + self.steps:
            raise RuntimeError(f"the trainer stopped after {self.done} of "
                               f"{self.warmup + self.steps} steps")
        other = self.between_samples / self.between_seconds if self.between_seconds else 0.0
        return self.samples / self.seconds, other


# ----------------------------------------------------------------------------- MNIST
def fit_framework(cfg: DictConfig, datamodule: Any, timer: StepTimer) -> None:
    """``trainer.fit`` built as ``dlexp.train`` builds it, plus the timer."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    info = datamodule.describe()
    net = build_net(cfg.model, info)
    task = build_task(cfg, net, datamodule, extras(cfg, info))
    validate = config.has_validation(cfg)
    loggers = instantiate_all(cfg.logger, "logger")
    callbacks = build_callbacks(cfg, has_logger=bool(loggers), validate=validate)
    trainer = build_trainer(cfg.trainer, [*callbacks, timer], loggers, validate=validate)
    trainer.fit(task, datamodule=datamodule)


def shuffled_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int
                     ) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless epochs of shuffled slices of in-memory tensors."""
    gen = torch.Generator().manual_seed(seed)
    n = len(tensors[0])
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            sel = perm[i : i + batch_size]
            yield tuple(t.index_select(0, sel) for t in tensors)  # as TensorBatchLoader does


def count_samples(batch: Any) -> int:
    return len(batch[-1])


def count_tokens(batch: Any) -> int:
    """Real (unpadded) tokens of a text batch ``((ids, lengths), labels)``."""
    return int(batch[0][1].sum())


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, tuple | list):
        return tuple(to_device(t, device) for t in x)
    return x.to(device, non_blocking=True)


def plain_stepper(cfg: DictConfig, datamodule: Any, device: torch.device,
                  batches: Iterator | None = None, count: Callable[[Any], int] = count_samples,
                  net: torch.nn.Module | None = None) -> Callable[[], int]:
    """One step of a hand-written loop with the framework's network, data, optimizer, loss,
    penalty and precision; returns what ``count`` counts in the batch (its size).
    MNIST batches are normalised as the datamodule does; text batches go in as they are."""
    L.seed_everything(cfg.seed, verbose=False)
    net = (net or build_net(cfg.model, datamodule.describe())).to(device).train()
    criterion = build_loss(cfg.loss, datamodule).to(device)
    penalty = instantiate(cfg.regularization)
    optimizer = instantiate(cfg.optimizer)([p for p in net.parameters() if p.requires_grad])
    dtype = AUTOCAST.get(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)  # as Lightning's
    image = datamodule.modality == "image"
    batches = batches or shuffled_batches(datamodule.train_set, cfg.data.batch_size, cfg.seed)
    clip = cfg.trainer.get("gradient_clip_val")

    def step() -> int:
        batch = next(batches)
        x, y = to_device(batch[0], device), batch[-1].to(device, non_blocking=True)
        with torch.enable_grad(), torch.autocast(device.type, dtype or torch.bfloat16,
                                                 enabled=dtype is not None):
            x = normalize(x, datamodule.mean, datamodule.std) if image else x
            loss = criterion(forward_net(net, x), y)
            if penalty.active:
                loss = loss + penalty(net)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        return count(batch)

    return step


def time_framework(cfg: DictConfig, datamodule: Any, warmup: int, steps: int,
                   count: Callable[[Any], int] = count_samples) -> float:
    timer = StepTimer(warmup, steps, count=count)
    fit_framework(cfg, datamodule, timer)
    return timer.rates[0]


def time_steps(step: Callable[[], int], warmup: int, steps: int, device: torch.device) -> float:
    """What ``step`` counts per second, over ``steps`` steps after ``warmup``."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    done = sum(step() for _ in range(steps))
    sync(device)
    return done / (time.perf_counter() - start)


def framework_vs_plain(cfg: DictConfig, datamodule: Any, args: argparse.Namespace,
                       device: torch.device, make_plain: Callable[[], Callable[[], int]],
                       count: Callable[[Any], int] = count_samples
                       ) -> tuple[dict[str, list[float]], bool]:
    """Runs per variant, and whether they were measured side by side (interleaved)."""
    if args.schedule == "interleave":
        pairs = []
        for _ in range(args.repeats):
            timer = StepTimer(args.warmup, args.steps, between=make_plain(), count=count)
            fit_framework(cfg, datamodule, timer)
            pairs.append(timer.rates)
        return {"framework": [p[0] for p in pairs], "plain": [p[1] for p in pairs]}, True
    return measure({
        "framework": partial(time_framework, cfg, datamodule, args.warmup, args.steps, count),
        "plain": lambda: time_steps(make_plain(), args.warmup, args.steps, device),
    }, args.repeats), False


def check_config(cfg: DictConfig) -> None:
    """The plain loop mirrors what the framework does per step; refuse what it cannot."""
    if cfg.scheduler.get("builder"):
        raise BenchError("the plain loop has no lr scheduler: add scheduler=none to --overrides")
    if cfg.data.get("augment"):
        raise BenchError("the plain loop does not augment: add data.augment=false to --overrides")


def device_of(args: argparse.Namespace) -> torch.device:
    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def bench_mnist(args: argparse.Namespace, out_dir: Path) -> list[Comparison]:
    """CNN and MLP on MNIST, framework (each setup) vs plain, samples/s of training steps."""
    device = device_of(args)
    max_steps = args.warmup + args.steps
    cfgs = {(m, setup): compose_train(mnist_overrides(args, m, max_steps, setup), out_dir)
            for m in args.models for setup in args.setups}
    for cfg in cfgs.values():
        check_config(cfg)
    datamodule = instantiate(next(iter(cfgs.values())).data)
    datamodule.setup("fit")  # read the files once, before any clock starts
    results = []
    for (model, setup), cfg in cfgs.items():
        log(f"mnist/{model} ({setup}): {args.repeats} x {args.steps} steps per variant ...")
        runs, paired = framework_vs_plain(cfg, datamodule, args, device,
                                          partial(plain_stepper, cfg, datamodule, device))
        results.append(Comparison("mnist", f"{model} ({setup})", "samples/s", runs, args.stat,
                                  paired))
    return results


# ----------------------------------------------------------------------------- IMDB
def imdb_setup(args: argparse.Namespace, out_dir: Path, *extra: str) -> tuple[DictConfig, Any]:
    """The imdb_lstm preset (schedule off), its datamodule set up (tokens cached) off the clock."""
    cfg = compose_train(train_overrides(args, ["experiment=imdb_lstm",
                                               f"data.batch_size={args.text_batch_size}", *extra],
                                        args.warmup + args.steps), out_dir)
    check_config(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return cfg, datamodule


def endless(loader: Any) -> Iterator[Any]:
    """Epoch after epoch of a dlexp loader, reshuffled through ``set_epoch`` as Lightning does."""
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench_imdb_lstm(args: argparse.Namespace, out_dir: Path) -> list[Comparison]:
    """The LSTM through the framework vs a plain loop over the same bucketed batches, in
    tokens/s (real tokens, padding not counted)."""
    device = device_of(args)
    cfg, datamodule = imdb_setup(args, out_dir)
    log(f"imdb/lstm: {args.repeats} x {args.steps} steps per variant ...")

    def make_plain() -> Callable[[], int]:
        batches = endless(datamodule.train_dataloader())
        return plain_stepper(cfg, datamodule, device, batches, count_tokens)

    runs, paired = framework_vs_plain(cfg, datamodule, args, device, make_plain, count_tokens)
    return [Comparison("imdb", "lstm", "tokens/s", runs, args.stat, paired)]


def bench_imdb_batching(args: argparse.Namespace, out_dir: Path) -> list[Comparison]:
    """Plain-loop reviews/s: length-bucketed vs unbucketed batches, and the unpacked
    (padding-invariant by reversal) LSTM vs ``pack_padded_sequence``."""
    device = device_of(args)
    cfg, datamodule = imdb_setup(args, out_dir)

    def rate(bucket: bool, packed: bool) -> float:
        datamodule.bucket = bucket
        net = build_net(cfg.model, datamodule.describe())
        net.packed = packed
        step = plain_stepper(cfg, datamodule, device, endless(datamodule.train_dataloader()),
                             net=net)
        return time_steps(step, args.warmup, args.steps, device)

    results = []
    for case, a, b in (("bucketing", (True, False), (False, False)),
                       ("packing", (True, False), (True, True))):
        names = ("bucketed", "unbucketed") if case == "bucketing" else ("unpacked", "packed")
        log(f"imdb/{case}: {args.repeats} x {args.steps} steps per variant ...")
        runs = measure({names[0]: partial(rate, *a), names[1]: partial(rate, *b)}, args.repeats)
        results.append(Comparison("imdb", case, "reviews/s", runs, args.stat))
    datamodule.bucket = True
    pad = {bucket: _padding(datamodule, bucket) for bucket in (True, False)}
    log(f"imdb: padding share of batch cells, bucketed {pad[True]:.1%}, unbucketed "
        f"{pad[False]:.1%}")
    return results


def _padding(datamodule: Any, bucket: bool) -> float:
    datamodule.bucket = bucket
    share = datamodule.train_dataloader().padding_fraction()
    datamodule.bucket = True
    return share


def bench_imdb_tokenize(args: argparse.Namespace, out_dir: Path) -> list[Comparison]:
    """Reviews/s of the trained HF tokenizer (Rust, all cores) against a plain-Python
    tokenizer doing the same normalisation and split (regex + dict lookup)."""
    import re

    from dlexp.data.imdb import assemble, read_archive, read_folder
    from dlexp.data.tokenizer import UNK_ID, encode, from_json

    cfg, datamodule = imdb_setup(args, out_dir)
    source = datamodule._source()
    reviews = read_archive(source) if source.is_file() else read_folder(source)
    texts = assemble(reviews, source)["test"][0]
    tok = from_json(datamodule.describe()["tokenizer"])
    vocab = tok.get_vocab()
    splitter = re.compile(r"\w+|[^\w\s]")
    br = re.compile(r"<br\s*/?>")

    def hf() -> float:
        start = time.perf_counter()
        encode(tok, texts)
        return len(texts) / (time.perf_counter() - start)

    def python() -> float:
        start = time.perf_counter()
        for text in texts:
            [vocab.get(w, UNK_ID) for w in splitter.findall(br.sub(" ", text.lower()))]
        return len(texts) / (time.perf_counter() - start)

    log(f"imdb/tokenize: {len(texts)} reviews x {args.repeats} ...")
    runs = measure({"tokenizers": hf, "python": python}, args.repeats)
    return [Comparison("imdb", "tokenize", "reviews/s", runs, args.stat)]


BENCHMARKS: dict[str, Callable[[argparse.Namespace, Path], list[Comparison]]] = {
    "mnist": bench_mnist,
    "imdb_lstm": bench_imdb_lstm,
    "imdb_batching": bench_imdb_batching,
    "imdb_tokenize": bench_imdb_tokenize,
}


# ----------------------------------------------------------------------------- output
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(results: list[Comparison]) -> str:
    """One row per comparison: the first variant (the framework, or the faster option) against
    the second, and their ratio."""
    rows = [("bench", "case", "unit", "first", "second", "ratio")]
    for c in results:
        a, b = list(c.runs)[:2]
        rows.append((c.bench, c.case, c.unit, f"{a} {c.value(a):.1f}", f"{b} {c.value(b):.1f}",
                     f"{c.ratio():.3f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) if i < 3 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in rows)


def meta(args: argparse.Namespace) -> dict[str, Any]:
    return {"precision": args.precision, "precision_reason": args.precision_reason,
            "cpu": hardware.describe(), "batch_size": args.batch_size, "steps": args.steps,
            "setups": args.setups,
            "warmup": args.warmup, "repeats": args.repeats, "schedule": args.schedule,
            "stat": args.stat, "accelerator": args.accelerator,
            "threads": torch.get_num_threads(), "overrides": args.overrides,
            "torch": torch.__version__, "lightning": L.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def plot(results: list[Comparison], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 + 1.6 * len(results)), 3.8), dpi=120)
    variants = list(results[0].runs)[:2]
    width = 0.38
    for k, variant in enumerate(variants):
        xs = [i + (k - 0.5) * width for i in range(len(results))]
        ax.bar(xs, [c.value(variant) for c in results], width, label=variant)
    for i, c in enumerate(results):
        top = max(c.value(v) for v in variants)
        ax.text(i, top * 1.02, f"{c.ratio():.2f}x", ha="center", fontsize=9)
    ax.set_xticks(range(len(results)), [f"{c.bench}/{c.case}" for c in results])
    ax.set_ylabel(results[0].unit)
    ax.set_title(textwrap.fill(title, 64), fontsize=9)
    ax.margins(y=0.12)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", nargs="+", default=["mnist"], choices=sorted(BENCHMARKS))
    p.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=SETUPS,
                   help="MNIST framework side: defaults (as train.py runs) and/or stripped")
    p.add_argument("--steps", type=int, default=300, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the clock (>= 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant")
    p.add_argument("--schedule", default="auto", choices=["auto", "alternate", "interleave"],
                   help="alternate: whole runs, order reversed each repeat; interleave: one "
                        "plain step after each framework step, in the same run, so both see "
                        "the same load; auto: interleave on CPU, alternate on GPU (where a "
                        "sync per step would hide the framework's asynchrony)")
    p.add_argument("--stat", default="median", choices=STATS,
                   help="summary over repeats: median, or best (least disturbed) run")
    p.add_argument("--batch-size", type=int, default=128, help="MNIST batch size")
    p.add_argument("--text-batch-size", type=int, default=64, help="IMDB batch size")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: what trainer.precision=auto picks on this machine (default)")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--data-dir", default=os.environ.get("DLEXP_DATA_DIR", "data"),
                   help="folder holding MNIST/raw/ (default: $DLEXP_DATA_DIR or ./data)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--overrides", nargs="*", default=[],
                   help="extra Hydra overrides for both variants, e.g. optimizer=sgd")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG bar chart here")
    p.add_argument("--verbose", action="store_true", help="keep Lightning's logs and warnings")
    args = p.parse_args(argv)
    if args.schedule == "auto":
        args.schedule = "alternate" if args.accelerator == "gpu" else "interleave"
    args.precision_reason = "given"
    if args.precision == hardware.AUTO:
        args.precision, args.precision_reason = hardware.resolve_precision(args.accelerator)
    for name in ("steps", "warmup", "repeats", "batch_size", "text_batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:  # the clock starts at the end of a warm-up step
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def check_data(data_dir: str) -> None:
    raw = Path(data_dir).expanduser() / "MNIST" / "raw"
    if not raw.is_dir():
        raise BenchError(f"MNIST not found: {raw.resolve()} does not exist; pass --data-dir or "
                         "set $DLEXP_DATA_DIR to a folder holding MNIST/raw/*-ubyte[.gz]")


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(args: argparse.Namespace) -> list[Comparison]:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        raise BenchError("--accelerator gpu but no CUDA device is available")
    if "mnist" in args.bench:
        check_data(args.data_dir)
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="dlexp-bench-") as tmp:
        for name in args.bench:
            results += BENCHMARKS[name](args, Path(tmp))
    return results


def report(args: argparse.Namespace, results: list[Comparison]) -> None:
    info = meta(args)
    title = (f"{info['precision']}, batch {args.batch_size}, {args.steps} steps x "
             f"{args.repeats} ({args.stat}, {args.schedule}), {info['threads']} threads, "
             f"{args.accelerator}, CPU {info['cpu']['cpu_class']}")
    print(f"framework vs plain PyTorch: {title}")
    print(f"precision {info['precision']}: {info['precision_reason']}")
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": info, "results": [c.to_dict() for c in results]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {args.json}")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(results, args.plot, f"framework vs plain PyTorch\n{title}")
        log(f"wrote {args.plot}")


def error_message(exc: Exception) -> str | None:
    """The message of an error the user can fix (data, option, config), else None."""
    from hydra.errors import HydraException

    if isinstance(exc, BenchError):
        return str(exc)
    message = user_message(exc)
    if message is None and isinstance(exc, HydraException):  # e.g. a bad override
        message = str(exc)
    return message


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        quiet()
    try:
        results = run(args)
    except Exception as exc:
        message = error_message(exc)
        if message is None:  # a bug, not bad input: keep the traceback
            raise
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
