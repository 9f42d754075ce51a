"""The GPU paths, on a GPU: precision (16-mixed with its gradient scaler, bf16-mixed, TF32),
data kept in GPU memory, compile, a one-device DDP launch, and resume. Skipped without CUDA;
`scripts/gpu_check.sh` runs them on a lent GPU machine."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train

from dlexp.train import train

# the module (``from dlexp import train`` is the function dlexp.train())
train_module = importlib.import_module("dlexp.train")

pytestmark = [pytest.mark.gpu, pytest.mark.integration,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]
ON_GPU = [o for o in FAST if o != "trainer.accelerator=cpu"]
CNN = ["model=cnn", "model.blocks=[{filters: 8, batchnorm: true}]", "model.dense=[32]",
       "trainer.max_epochs=2", "logger=none"]


class Seen(L.Callback):
    """Records where batches are before Lightning moves them, and the precision plugin."""

    def __init__(self) -> None:
        self.devices: set[str] = set()
        self.scaler = None

    def on_train_batch_start(self, trainer: L.Trainer, module, batch, batch_idx: int) -> None:
        self.devices.add(batch[0].device.type)
        self.scaler = getattr(trainer.precision_plugin, "scaler", None)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """A Seen callback added to every run's callbacks."""
    callback, build = Seen(), train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda *a, **k: [*build(*a, **k), callback])
    return callback


def _run(tmp_path: Path, data: Path, *overrides: str, trainer: str = "gpu") -> dict:
    metrics = train(compose_train([*ON_GPU, f"trainer={trainer}", *TINY_DATA, *CNN, *overrides],
                                  tmp_path, data))
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32-true"])
def test_precisions_train_on_the_gpu(precision: str, tmp_path: Path, tiny_mnist: Path,
                                     seen: Seen) -> None:
    metrics = _run(tmp_path, tiny_mnist, f"trainer.precision={precision}",
                   "matmul_precision=high")
    assert metrics["test/acc"] > 0.5
    assert (seen.scaler is not None) == (precision == "16-mixed")  # fp16 needs loss scaling
    assert seen.devices == {"cuda"}  # data.on_device=auto: the dataset lives on the GPU


def test_host_data_when_asked(tmp_path: Path, tiny_mnist: Path, seen: Seen) -> None:
    _run(tmp_path, tiny_mnist, "data.on_device=false")
    assert seen.devices == {"cpu"}  # copied to the GPU batch by batch


def test_compile_on_the_gpu(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = _run(tmp_path, tiny_mnist, "compile=true")
    assert metrics["test/acc"] > 0.5


def test_one_device_ddp_launch(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = _run(tmp_path, tiny_mnist, "trainer.devices=1", trainer="ddp")
    assert metrics["epoch"] == 2


def test_resume_on_the_gpu(tmp_path: Path, tiny_mnist: Path) -> None:
    _run(tmp_path / "a", tiny_mnist, "trainer.max_epochs=1")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = _run(tmp_path / "b", tiny_mnist, f"ckpt_path={last}")
    assert resumed["epoch"] == 2 and resumed["global_step"] == 2 * -(-500 // 32)


def test_lstm_packed_and_unpacked_agree_on_the_gpu(tiny_imdb: Path) -> None:
    from dlexp.models.rnn import RNNClassifier

    torch.manual_seed(0)
    net = RNNClassifier(vocab_size=50, num_classes=2, pad_idx=0, embedding_dim=8,
                        hidden_size=8).cuda().eval()
    ids = torch.randint(1, 50, (4, 12), device="cuda")
    lengths = torch.tensor([12, 7, 3, 1], device="cuda")
    ids[1, 7:] = ids[2, 3:] = ids[3, 1:] = 0
    with torch.no_grad():
        unpacked = net(ids, lengths)
        net.packed = True
        packed = net(ids, lengths)  # cuDNN's packed path
    torch.testing.assert_close(packed, unpacked, rtol=1e-4, atol=1e-5)
