"""``dlexp-export CKPT --format onnx|torchscript [--out PATH]``: the trained network as a file
that runs without dlexp (onnxruntime, or ``torch.jit.load``), with a dynamic batch size (and
sequence length for text). The graph outputs logits. Beside it, ``<file>.json`` says how to
prepare the input (normalisation, or the tokenizer, written as ``<file>.tokenizer.json``).

Both formats trace the network (TorchScript tracing; for ONNX the TorchScript-based exporter,
``dynamo=False``): ``torch.export`` fixes an ``nn.LSTM``'s time axis to the example's length
(pytorch/pytorch#115092), tracing keeps it dynamic. RNNs are exported on their unpacked path
(``model.packed=true`` ones too: same weights, same outputs). Every export is run once on
another batch size and length than it was traced with and must give the checkpoint's logits."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from dlexp import checkpoint
from dlexp.console import print_error
from dlexp.data.tokenizer import PAD_ID, UNK_ID
from dlexp.errors import ConfigError, ExportError, user_message

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17  # onnxruntime >= 1.14 runs it
TOLERANCE = 1e-4  # largest |logit difference| accepted between the export and the checkpoint


def export(ckpt_path: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> Path:
    """Write the checkpoint's network in ``fmt`` to ``out`` (default: beside the checkpoint),
    check it against the checkpoint on other shapes than the traced ones, and write the input
    description beside it. Returns the model file's path."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose {' or '.join(FORMATS)}")
    ckpt = checkpoint.load(ckpt_path)
    net = checkpoint.rebuild_task(ckpt, ckpt_path).net
    info = ckpt["dlexp"]["data"]
    out = Path(out).expanduser() if out else default_out(Path(ckpt_path), fmt)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    if out.resolve() == Path(ckpt_path).resolve():
        raise ConfigError(f"--out {out} is the checkpoint itself: choose another file")
    name, packed = type(net).__name__, bool(getattr(net, "packed", False))
    try:
        diff = write_and_check(net, info, fmt, out)
    except ImportError as e:
        raise ExportError(f"{fmt} export needs {e.name or 'onnx'}: pip install "
                          "'dlexp[export]'") from None
    except Exception as e:
        out.unlink(missing_ok=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"cannot export {name} to {fmt}: {first}") from e
    if diff > TOLERANCE:
        out.unlink(missing_ok=True)
        raise ExportError(f"the {fmt} export of {name} disagrees with the checkpoint "
                          f"(largest logit difference {diff:.2g}); nothing written")
    write_sidecar(ckpt, name, fmt, out, packed)
    return out


def write_and_check(net: nn.Module, info: dict, fmt: str, out: Path) -> float:
    """Trace ``net`` into ``out``, run the file on another batch size and length than traced,
    and return the largest logit difference from ``net``."""
    check = inputs(info, shapes="check")
    with torch.no_grad(), quiet_tracing():
        want = net(*check)  # the checkpoint's network as trained, packed or not
        if getattr(net, "packed", False):  # same weights and outputs (checked here), ~11x
            net.packed = False  # faster on CPU, no exporter warnings on packed shapes
        write = write_onnx if fmt == "onnx" else write_torchscript
        write(net, inputs(info, shapes="export"), info, out)
        return float((run_exported(out, fmt, check) - want).abs().max())


def default_out(ckpt_path: Path, fmt: str) -> Path:
    """``run/best.ckpt`` -> ``run/best.onnx`` (``.pt`` for TorchScript)."""
    suffix = FORMATS[fmt]
    if ckpt_path.suffix == ".ckpt":
        return ckpt_path.with_suffix(suffix)
    return ckpt_path.with_name(ckpt_path.name + suffix)


def input_names(info: dict) -> list[str]:
    return ["ids", "lengths"] if info["modality"] == "text" else ["image"]


def inputs(info: dict, shapes: str) -> tuple[torch.Tensor, ...]:
    """Example inputs: ``export`` ones to trace with, ``check`` ones of another batch size and
    length, on which the export must give the network's logits. Ragged lengths, so the
    padding paths are exercised."""
    batch, steps = (2, 6) if shapes == "export" else (3, 11)
    if info["modality"] == "text":
        lengths = torch.tensor([steps, steps // 2, 1][:batch])
        ids = torch.randint(UNK_ID + 1, info["net_kwargs"]["vocab_size"], (batch, steps),
                            generator=torch.Generator().manual_seed(batch))
        return ids.masked_fill(torch.arange(steps) >= lengths.unsqueeze(1), PAD_ID), lengths
    shape = info["net_kwargs"]["in_shape"]
    return (torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch)),)


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Tracing warns about what the checks after export verify (constants in the trace,
    batch sizes of RNN states) and about its own deprecation: none of it helps the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_onnx(net: nn.Module, example: tuple, info: dict, out: Path) -> None:
    import onnx  # the export extra: imported here, so dlexp runs without it

    names = input_names(info)
    dynamic = {"logits": {0: "batch"}, names[0]: {0: "batch"}}
    if info["modality"] == "text":
        dynamic |= {"ids": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}}
    torch.onnx.export(net, example, str(out), dynamo=False, opset_version=OPSET,
                      input_names=names, output_names=["logits"], dynamic_axes=dynamic)
    model = onnx.load(str(out))
    onnx.helper.set_model_props(model, {"dlexp": json.dumps(description(info, "onnx", out))})
    onnx.save(model, str(out))


def write_torchscript(net: nn.Module, example: tuple, info: dict, out: Path) -> None:
    traced = torch.jit.trace(net, example, check_trace=False)
    torch.jit.save(traced, str(out),
                   _extra_files={"dlexp.json": json.dumps(description(info, "torchscript", out))})


def run_exported(path: Path, fmt: str, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Logits of the written file on ``batch``, run as a user would run it."""
    if fmt == "torchscript":
        return torch.jit.load(str(path))(*batch)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), batch, strict=True)}
    return torch.from_numpy(session.run(["logits"], feed)[0])


def description(info: dict, fmt: str, out: Path) -> dict:
    """What a user needs to feed the exported graph without dlexp."""
    desc = {"format": fmt, "outputs": {"logits": ["batch", info["num_classes"]]},
            "class_names": info["class_names"]}
    if info.get("multilabel"):  # the same network; only the reading of its outputs differs
        desc |= {"multilabel": True, "threshold": info.get("threshold", 0.5),
                 "postprocess": "probabilities = sigmoid(logits) per label; the labels are "
                                "the class_names whose probability is over threshold"}
    if info.get("name") == "arrays" or info["modality"] == "image":
        shape = info["net_kwargs"]["in_shape"]
        return desc | {
            "inputs": {"image": {"dtype": "float32", "shape": ["batch", *shape]}},
            "normalize": {"mean": info["mean"], "std": info["std"]},
            "preprocess": _image_preprocess(info, shape)}
    return desc | {
        "inputs": {"ids": {"dtype": "int64", "shape": ["batch", "steps"]},
                   "lengths": {"dtype": "int64", "shape": ["batch"]}},
        "tokenizer": tokenizer_path(out).name, "max_len": info["max_len"],
        "truncate": info["truncate"], "pad_id": PAD_ID, "unk_id": UNK_ID,
        "preprocess": "tok = tokenizers.Tokenizer.from_file(tokenizer); "
                      "tok.encode_special_tokens = True; ids = tok.encode(text, "
                      "add_special_tokens=False).ids or [unk_id]; over max_len tokens keep the "
                      "first max_len (truncate=head), or the first max_len // 4 and the last "
                      "max_len - max_len // 4 (head_tail); lengths = len(ids); pad ids with "
                      "pad_id to the batch's longest"}


def _image_preprocess(info: dict, shape: list[int]) -> str:
    """How the data group turned its inputs into the network's: arrays as given, your own
    images from files, MNIST's digits from 0-255 pixels."""
    if info.get("name") == "arrays":  # data=arrays and dlexp.fit: images or features
        return (f"image = (x - mean) / std per channel (features: per feature), x of shape "
                f"{shape} on the scale of the training arrays ({info['dtype']}); images "
                "channels first")
    if info.get("name") == "image_folder":  # your own images: per-channel statistics
        return (f"image = (pixels - mean) / std per channel, pixels 0-255 of shape {shape} "
                f"(channels first), the file resized to {info['image_size']} by "
                f"{info['resize']} (dlexp.inputs.load_picture does this)")
    return (f"image = (pixels / 255 - mean) / std, pixels uint8 of shape {shape} as MNIST's: "
            "light digit on a dark background, centred in 28x28 (dlexp-predict's load_image "
            "does this for any photo)")


def tokenizer_path(out: Path) -> Path:
    return out.with_name(out.name + ".tokenizer.json")


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def write_sidecar(ckpt: dict, model: str, fmt: str, out: Path, packed: bool) -> None:
    info = ckpt["dlexp"]["data"]
    desc = {"model": model, **description(info, fmt, out)}
    if packed:
        desc["note"] = ("trained with model.packed=true, exported on the unpacked path "
                        "(reversal within length): same weights, same outputs")
    sidecar_path(out).write_text(json.dumps(desc, indent=2) + "\n")
    if info["modality"] == "text":
        tokenizer_path(out).write_text(info["tokenizer"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlexp-export", description=__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by train.py")
    parser.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    parser.add_argument("--out", help="file to write (default: the checkpoint's path with "
                                      ".onnx or .pt)")
    args = parser.parse_args(argv)
    try:
        path = export(args.checkpoint, args.format, args.out)
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        print_error(message)
        sys.exit(1)
    print(path)


if __name__ == "__main__":
    main()
