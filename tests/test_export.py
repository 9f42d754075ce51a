"""dlexp-export: ONNX and TorchScript files that give the checkpoint's logits on 100 test
inputs, at other batch sizes and lengths than exported with; a sidecar that is enough to
prepare inputs without dlexp; one error line for bad input."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train
from tokenizers import Tokenizer

from dlexp import checkpoint
from dlexp.data.imdb import assemble, read_archive, read_folder
from dlexp.data.mnist import MNISTDataModule
from dlexp.data.tokenizer import encode_texts
from dlexp.errors import ExportError
from dlexp.export import export, main
from dlexp.train import train

N_INPUTS = 100
MODELS = {
    "mlp": ["model=mlp", "model.hidden=[32,16]"],
    "cnn": ["model=cnn", "model.blocks=[{filters:8,batchnorm:true},{filters:16}]",
            "model.dense=[32]"],
    "lstm": ["data=imdb", "model=lstm", "model.embedding_dim=16", "model.hidden_size=16"],
}
SOURCES = {  # per data source: its training overrides
    "synthetic": {"image": TINY_DATA, "text": ["data.val_size=40",
                                               "data.tokenizer.vocab_size=100"]},
    # a few steps on the real data, so the 100 real inputs get varied predictions; the
    # default tokenizer, so the IMDB token cache of other runs applies
    "real": {"image": ["+trainer.limit_train_batches=30", "+trainer.limit_val_batches=2"],
             "text": ["+trainer.limit_train_batches=30", "+trainer.limit_val_batches=2",
                      "data.truncate=head_tail"]},
}


def modality(model: str) -> str:
    return "text" if model.startswith("lstm") else "image"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str, Path], str]:
    """``trained(model, source, data_root)``: a checkpoint, trained once per module."""
    done: dict[tuple[str, str], str] = {}

    def get(model: str, source: str, root: Path) -> str:
        if (model, source) not in done:
            out = tmp_path_factory.mktemp(f"{model}_{source}")
            cfg = compose_train([*FAST, *MODELS[model], *SOURCES[source][modality(model)],
                                 "trainer.max_epochs=1", "test=false", "logger=none",
                                 "threads=1"], out, root)
            metrics = train(cfg)
            assert metrics["status"] == "ok", metrics.get("error")
            done[model, source] = metrics["best_ckpt"]
        return done[model, source]

    return get


def data_root(request: pytest.FixtureRequest, model: str, source: str) -> Path:
    """The synthetic fixture's root, or the real data's (skips with the fixture's reason)."""
    text = modality(model) == "text"
    if source == "real":
        return request.getfixturevalue("real_imdb_dir" if text else "real_data_dir")
    return request.getfixturevalue("tiny_imdb" if text else "tiny_mnist")


def packed_copy(ckpt_path: str, tmp_path: Path) -> str:
    """The same weights with ``model.packed=true``: the two paths share their weights."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ckpt["dlexp"]["config"]["model"]["packed"] = True
    path = tmp_path / "packed.ckpt"
    torch.save(ckpt, path)
    return str(path)


def image_batches(root: Path, info: dict) -> list[tuple[torch.Tensor]]:
    """100 test digits spread over the test set, as the data pipeline normalises them (the
    sidecar's formula must agree), then the first 7 and the first one alone."""
    dm = MNISTDataModule(root=str(root), download=False, val_size=100)
    dm.setup("test")
    x, y = dm.test_set
    idx = torch.linspace(0, len(y) - 1, N_INPUTS).long()
    images = dm.on_after_batch_transfer((x[idx], y[idx]), 0)[0]
    by_sidecar = (x[idx].float() / 255 - info["mean"]) / info["std"]
    torch.testing.assert_close(by_sidecar, images, atol=1e-5, rtol=0)
    return [(images,), (images[:7],), (images[:1],)]


@functools.cache
def review_texts(root: Path) -> list[str]:
    """100 test reviews spread over negatives and positives, as files or in the tarball (read
    once: streaming the real tarball takes seconds)."""
    archive = root / "aclImdb_v1.tar.gz"
    reviews = read_archive(archive) if archive.is_file() else read_folder(root / "aclImdb")
    texts = assemble(reviews, root)["test"][0]
    return [texts[i] for i in np.linspace(0, len(texts) - 1, N_INPUTS).astype(int)]


def text_batches(root: Path, info: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """100 reviews encoded as predict does, then the 7 shortest and the median one: each
    batch padded to its own longest review, so every batch has its own length."""
    texts = review_texts(root)
    batches = [encode_texts(info, texts)]
    order = batches[0][1].argsort().tolist()
    for chosen in (order[:7], order[N_INPUTS // 2:N_INPUTS // 2 + 1]):
        batches.append(encode_texts(info, [texts[i] for i in chosen]))
    steps = [ids.shape[1] for ids, _ in batches]
    assert len(set(steps)) == 3 and 6 not in steps, steps  # 6: the length traced at export
    return batches


def run_onnx(path: Path, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), batch, strict=True)}
    return torch.from_numpy(session.run(["logits"], feed)[0])


def run_torchscript(path: Path, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return torch.jit.load(str(path))(*batch)


@pytest.mark.parametrize("source", ["synthetic", "real"])
@pytest.mark.parametrize("model", ["mlp", "cnn", "lstm", "lstm_packed"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_the_checkpoint(fmt: str, model: str, source: str, tmp_path: Path,
                                       trained: Callable, request: pytest.FixtureRequest
                                       ) -> None:
    root = data_root(request, model, source)
    ckpt_path = trained(model.removesuffix("_packed"), source, root)
    if model == "lstm_packed":
        ckpt_path = packed_copy(ckpt_path, tmp_path)
    out = export(ckpt_path, fmt, tmp_path / f"model.{fmt}")
    ckpt = checkpoint.load(ckpt_path)
    task = checkpoint.rebuild_task(ckpt, ckpt_path)
    info = ckpt["dlexp"]["data"]
    if info["modality"] == "text":  # the reference runs packed; the export, unpacked
        assert task.net.packed is (model == "lstm_packed")
        note = json.loads(Path(f"{out}.json").read_text()).get("note", "")
        assert ("exported on the unpacked path" in note) is task.net.packed
    batches = (text_batches if info["modality"] == "text" else image_batches)(root, info)
    run = run_onnx if fmt == "onnx" else run_torchscript
    predicted = []
    for batch in batches:
        with torch.no_grad():
            want = task(batch if len(batch) > 1 else batch[0])
        got = run(out, batch)
        assert got.shape == want.shape == (len(batch[0]), info["num_classes"])
        assert (got - want).abs().max() <= 1e-4
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        predicted += got.argmax(-1).tolist()
    if source == "real":  # trained a little on the real data: not one class for everything
        assert len(set(predicted)) > 1


def test_cli_writes_beside_the_checkpoint_with_its_description(
        trained: Callable, tiny_mnist: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = Path(trained("cnn", "synthetic", tiny_mnist))
    main([str(ckpt)])
    out = ckpt.with_suffix(".onnx")
    assert capsys.readouterr().out == f"{out}\n"
    sidecar = json.loads(Path(f"{out}.json").read_text())
    info = checkpoint.load(ckpt)["dlexp"]["data"]
    assert sidecar["model"] == "CNN" and sidecar["format"] == "onnx"
    assert sidecar["normalize"] == {"mean": info["mean"], "std": info["std"]}
    assert sidecar["inputs"] == {"image": {"dtype": "float32", "shape": ["batch", 1, 28, 28]}}
    assert sidecar["class_names"] == [str(d) for d in range(10)]
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["dlexp"])["normalize"] == sidecar["normalize"]
    main([str(ckpt), "--format", "torchscript"])
    pt = ckpt.with_suffix(".pt")
    assert capsys.readouterr().out == f"{pt}\n"
    extra = {"dlexp.json": ""}
    torch.jit.load(str(pt), _extra_files=extra)
    assert json.loads(extra["dlexp.json"])["normalize"] == sidecar["normalize"]


def test_text_export_runs_from_its_sidecar_without_dlexp(trained: Callable, tiny_imdb: Path,
                                                         tmp_path: Path) -> None:
    """Encode reviews with ``tokenizers`` alone, as the sidecar says, and run onnxruntime."""
    ckpt = trained("lstm", "synthetic", tiny_imdb)
    out = export(ckpt, "onnx", tmp_path / "sentiment.onnx")
    meta = json.loads((tmp_path / "sentiment.onnx.json").read_text())
    tok = Tokenizer.from_file(str(tmp_path / meta["tokenizer"]))
    tok.encode_special_tokens = True
    max_len = 12  # shorter than most reviews, so truncation runs too
    info = {**checkpoint.load(ckpt)["dlexp"]["data"], "max_len": max_len, "truncate": "head_tail"}
    texts = [*review_texts(tiny_imdb)[:20], "", "A [PAD] movie!"]
    rows = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids or [meta["unk_id"]]
        if len(ids) > max_len:
            ids = ids[: max_len // 4] + ids[len(ids) - (max_len - max_len // 4):]
        rows.append(ids)
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), meta["pad_id"])
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    want_ids, want_lengths = encode_texts(info, texts)
    assert torch.equal(ids, want_ids) and torch.equal(lengths, want_lengths)
    task = checkpoint.rebuild_task(checkpoint.load(ckpt), ckpt)
    with torch.no_grad():
        want = task((ids, lengths))
    assert (run_onnx(out, (ids, lengths)) - want).abs().max() <= 1e-4
    assert meta["class_names"] == ["negative", "positive"]


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    return {"missing": tmp_path / "nope.ckpt", "text": text, "foreign": foreign}


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "error: checkpoint not found: "),
    ("text", "error: cannot read checkpoint "),
    ("foreign", "is not a dlexp checkpoint (no 'dlexp' section)"),
    ("format", "error: unknown format 'tflite': choose onnx or torchscript"),
    ("out", "error: --out "),
    ("self", "is the checkpoint itself: choose another file"),
])
def test_bad_input_is_one_error_line(case: str, message: str, bad_inputs: dict,
                                     trained: Callable, tiny_mnist: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    if case in ("format", "out", "self"):
        ckpt = trained("mlp", "synthetic", tiny_mnist)
        args = {"format": [ckpt, "--format", "tflite"],
                "out": [ckpt, "--out", str(tmp_path / "no" / "such" / "m.onnx")],
                "self": [ckpt, "--out", ckpt]}[case]
    else:
        args = [str(bad_inputs[case])]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and message in captured.err
    assert not list(tmp_path.glob("*.onnx"))


def test_an_export_that_disagrees_with_the_checkpoint_is_not_kept(
        trained: Callable, tiny_mnist: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dlexp import export as module

    real = module.run_exported
    monkeypatch.setattr(module, "run_exported", lambda *a: real(*a) + 1e-3)
    out = tmp_path / "m.pt"
    with pytest.raises(ExportError, match=r"the torchscript export of MLP disagrees with the "
                                          r"checkpoint \(largest logit difference 0.001\)"):
        export(trained("mlp", "synthetic", tiny_mnist), "torchscript", out)
    assert list(tmp_path.iterdir()) == []


def test_console_script_error_has_no_traceback(bad_inputs: dict) -> None:
    result = subprocess.run([sys.executable, "-m", "dlexp.export", str(bad_inputs["foreign"]),
                             "--format", "torchscript"], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {bad_inputs['foreign']} is not a dlexp checkpoint (no 'dlexp' section); "
        "use a .ckpt written by `python train.py`"]
