"""Where the framework's extra time per training step comes from (a diagnosis, not a benchmark).

    DLEXP_DATA_DIR=/path/to/data python scripts/overhead_probe.py [--steps 600] [--repeats 3]
        [--hidden 8] [--flush-mb 0 64] [--patched]

Trains the MNIST MLP (hidden sizes ``--hidden``, default a 784-8-10 network with next to no
compute) through the framework and through ``benchmark.py``'s plain loop, one after the other,
and prints the framework's extra milliseconds per step:

- ``--flush-mb N``: both sides write an N MB buffer after every step, as a large model's tensors
  would, so each step starts with cold caches.
- ``--patched``: an experiment, never used by dlexp itself: four of Lightning's per-step costs
  are monkeypatched away (the ``training_step`` signature check, the per-step metric
  collection, hooks no callback overrides, debug logging) to see how much of the overhead they
  are.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as B  # noqa: E402

from dlexp import wiring  # noqa: E402
from dlexp.overhead import NVML_CHECK  # noqa: E402


def patch_lightning() -> None:
    """Experiment only: take four per-step costs out of Lightning 2.6's loop."""
    import lightning.pytorch.loops.training_epoch_loop as epoch_loop
    import lightning.pytorch.trainer.call as call
    from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import (
        _LoggerConnector,
    )

    epoch_loop.is_param_in_hook_signature = functools.lru_cache(maxsize=64)(
        epoch_loop.is_param_in_hook_signature)
    _LoggerConnector.on_batch_end = lambda self: None
    original = call._call_callback_hooks

    def overridden_only(trainer: L.Trainer, hook: str, *args, monitoring_callbacks=None, **kw):
        if monitoring_callbacks is None and all(
                getattr(type(cb), hook) is getattr(L.Callback, hook) for cb in trainer.callbacks):
            return None
        return original(trainer, hook, *args, monitoring_callbacks=monitoring_callbacks, **kw)

    call._call_callback_hooks = overridden_only
    call.log.disabled = True


class Flush(L.Callback):
    def __init__(self, flush) -> None:
        self.flush = flush

    def on_train_batch_end(self, *args) -> None:
        self.flush()


def overhead(cfg, datamodule, warmup: int, steps: int, flush_mb: int) -> tuple[float, float]:
    """(framework - plain, plain) milliseconds per step."""
    buffer = torch.zeros(max(flush_mb * 2**18, 1))

    def flush() -> None:
        if flush_mb:
            buffer.add_(1.0)

    timer = B.StepTimer(warmup, steps)
    L.seed_everything(cfg.seed, verbose=False)
    net = wiring.build_net(cfg.model, datamodule.describe())
    task = wiring.build_task(cfg, net, datamodule)
    wiring.build_trainer(cfg.trainer, [Flush(flush), timer], logger=False).fit(
        task, datamodule=datamodule)
    step = B.plain_stepper(cfg, datamodule, torch.device("cpu"))

    def plain_step() -> int:
        n = step()
        flush()
        return n

    plain = B.time_steps(plain_step, warmup, steps, torch.device("cpu"))
    batch = cfg.data.batch_size
    return 1e3 * batch / timer.rates[0] - 1e3 * batch / plain, 1e3 * batch / plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=100, help="untimed steps first")
    p.add_argument("--hidden", type=int, nargs="+", default=[8])
    p.add_argument("--flush-mb", type=int, nargs="+", default=[0, 64])
    p.add_argument("--patched", action="store_true")
    p.add_argument("--overrides", nargs="*", default=[], help="more config overrides")
    p.add_argument("--data-dir", default=os.environ.get("DLEXP_DATA_DIR", "data"))
    args = p.parse_args()
    os.environ.pop(NVML_CHECK, None)  # as benchmark.py: the plain side runs as without Lightning
    B.quiet()
    if args.patched:
        patch_lightning()
    bench_args = argparse.Namespace(data_dir=args.data_dir, batch_size=128, accelerator="cpu",
                                    precision="32-true", overrides=[])
    hidden = "[" + ",".join(map(str, args.hidden)) + "]"
    overrides = B.mnist_overrides(bench_args, "mlp", args.warmup + args.steps) + [
        f"model.hidden={hidden}", *args.overrides]
    cfg = B.compose_train(overrides, Path(tempfile.mkdtemp(prefix="dlexp-probe-")))
    datamodule = wiring.build_datamodule(cfg)
    datamodule.setup("fit")
    print(f"MLP 784-{'-'.join(map(str, args.hidden))}-10, batch 128, {args.steps} steps x "
          f"{args.repeats}, {'patched' if args.patched else 'stock'} Lightning {L.__version__}")
    for mb in args.flush_mb:
        runs = [overhead(cfg, datamodule, args.warmup, args.steps, mb) for _ in range(args.repeats)]
        extra = [r[0] for r in runs]
        print(f"flush {mb:3d} MB: framework +{statistics.median(extra):.3f} ms/step "
              f"({min(extra):.3f}-{max(extra):.3f}) over plain "
              f"{statistics.median(r[1] for r in runs):.3f} ms/step")


if __name__ == "__main__":
    main()
