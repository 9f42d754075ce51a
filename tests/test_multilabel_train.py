"""Multi-label end to end on generated tables: an image table whose label cells list colours
(``data.label_sep``), a text table with one 0/1 column per topic (a list of
``data.label_column``) and one with label sets; one epoch each, then eval, predict (with a
threshold) and export from the checkpoint alone."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, TOPICS, compose_train, topic_text
from PIL import Image
from test_image_folder_train import evaluate_checkpoint

import dlexp
from dlexp import checkpoint, config
from dlexp.demo import predict_payload
from dlexp.errors import ConfigError, DataError
from dlexp.export import export
from dlexp.predict import main as predict_main
from dlexp.train import train

pytestmark = pytest.mark.integration
COLOURS = ("red", "green", "blue")
SMALL_CNN = ["model=cnn", "model.blocks=[{filters:8}]", "model.dense=[16]",
             "data.image_size=[12,12]", "data.workers=0", "optimizer.lr=0.01"]
SMALL_LSTM = ["model=lstm", "model.embedding_dim=16", "model.hidden_size=16",
              "data.tokenizer.vocab_size=200", "data.tokenizer.min_frequency=1",
              "data.batch_size=16", "optimizer.lr=0.01"]


def colour_table(root: Path, n: int = 60) -> Path:
    """Images whose colour channels are lit for their labels (none lit: no label)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        on = [k for k in range(3) if rng.random() < 0.5]
        pixels = rng.integers(0, 40, size=(12, 12, 3), dtype=np.uint8)
        pixels[..., on] += 200
        Image.fromarray(pixels).save(root / f"{i}.png")
        rows.append([f"{i}.png", ",".join(COLOURS[k] for k in on)])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "tags"], *rows])
    return root / "labels.csv"


def topic_table(path: Path, n: int = 90, columns: bool = True) -> Path:
    """Texts on one or two topics: 0/1 columns per topic, or a ``;``-separated label cell."""
    rng = np.random.default_rng(1)
    topics = list(TOPICS)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", *topics] if columns else ["text", "label"])
        for i in range(n):
            chosen = sorted({topics[i % 3], *([topics[(i + 1) % 3]] if i % 2 else [])})
            text = " ".join(topic_text(rng, t) for t in chosen)
            writer.writerow([text, *(int(t in chosen) for t in topics)] if columns
                            else [text, ";".join(chosen)])
    return path


def run(tmp_path: Path, name: str, *overrides: str) -> dict:
    cfg = compose_train([*FAST, "trainer.max_epochs=1", "logger=csv",
                         f"data.cache_dir={tmp_path / 'cache'}", *overrides], tmp_path / name)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics


def test_image_table_with_label_sets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = colour_table(tmp_path / "photos")
    metrics = run(tmp_path, "run", "data=image_folder", f"data.table={table}",
                  "data.label_column=tags", 'data.label_sep=","', "data.threshold=0.4",
                  "loss=bce", *SMALL_CNN)
    for key in ("val/acc", "val/f1", "val/map", "test/acc", "test/f1", "test/map"):
        assert 0 <= metrics[key] <= 1, key
    ckpt = checkpoint.load(metrics["best_ckpt"])["dlexp"]["data"]
    assert ckpt["multilabel"] and ckpt["threshold"] == 0.4
    assert ckpt["class_names"] == ["blue", "green", "red"]
    model = dlexp.load(metrics["best_ckpt"])
    names = model.predict([str(tmp_path / "photos" / "0.png"), str(tmp_path / "photos" / "1.png")])
    assert all(isinstance(n, list) and set(n) <= set(COLOURS) for n in names)
    probs = model.predict_images([str(tmp_path / "photos" / "0.png")])
    assert probs.shape == (1, 3) and not torch.allclose(probs.sum(-1), torch.ones(1))
    model.threshold = 0.0  # every label is over 0
    assert sorted(model.predict(str(tmp_path / "photos" / "0.png"))) == sorted(COLOURS)
    image = {"image": base64.b64encode((tmp_path / "photos" / "0.png").read_bytes()).decode()}
    shown = predict_payload(model, image)  # the demo's answer: the labels over the threshold
    assert sorted(shown["labels"]) == sorted(COLOURS) and shown["threshold"] == 0.0
    model.threshold = 0.999999
    shown = predict_payload(model, image)
    assert shown["labels"] == [] and shown["class"] == "no label over 0.999999"
    assert [e["class"] for e in shown["probabilities"]] == ["blue", "green", "red"]
    capsys.readouterr()  # training's output
    predict_main([metrics["best_ckpt"], str(tmp_path / "photos" / "0.png"), "--json",
                  "--threshold", "0.001"])
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["threshold"] == 0.001 and {x["label"] for x in row["labels"]} == set(COLOURS)
    predict_main([metrics["best_ckpt"], str(tmp_path / "photos" / "0.png"),
                  "--threshold", "0.999999"])
    assert "(no label over 0.999999)" in capsys.readouterr().out
    (tmp_path / "eval").mkdir()
    evaluated = evaluate_checkpoint(metrics["best_ckpt"], tmp_path / "eval")
    assert evaluated["test/map"] == pytest.approx(metrics["test/map"])
    header = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()[0]
    assert header == "index,labels,predicted,exact,p_blue,p_green,p_red"
    assert (tmp_path / "eval" / "figures" / "confusion_matrix.png").is_file()
    split = (tmp_path / "run" / "split")
    assert sum(len((split / f"{p}.txt").read_text().split()) for p in ("train", "val", "test")) == 60
    # a new table lacking a label is tested on the checkpoint's labels
    new = tmp_path / "photos" / "new.csv"
    new.write_text("path,tags\n0.png,red\n1.png,green\n2.png,\n")
    (tmp_path / "eval_new").mkdir()
    on_new = evaluate_checkpoint(metrics["best_ckpt"], tmp_path / "eval_new",
                                 f"+data.table={new}")
    assert 0 <= on_new["test/map"] <= 1
    rows = (tmp_path / "eval_new" / "predictions.csv").read_text().splitlines()
    assert rows[0].endswith("p_blue,p_green,p_red") and rows[1].startswith("0,red,")
    assert len(rows) == 4
    onnx = export(metrics["best_ckpt"], "onnx", tmp_path / "model.onnx")  # checks its logits
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert onnx.is_file() and sidecar["multilabel"] and sidecar["threshold"] == 0.4


def test_text_table_with_label_columns_learns(tmp_path: Path) -> None:
    table = topic_table(tmp_path / "topics.csv", n=240)
    metrics = run(tmp_path, "run", "data=text_table", f"data.path={table}",
                  "data.label_column=[weather,music,sport]", "loss=bce",
                  "loss.pos_weight=balanced", "data.val_size=30", "data.test_size=30",
                  *SMALL_LSTM, "optimizer.lr=0.03", "trainer.max_epochs=6")
    # chance: mAP about the label frequency (1/2), exact match 1/6
    assert metrics["val/map"] > 0.9 and metrics["test/f1"] > 0.8, metrics
    model = dlexp.load(metrics["best_ckpt"])
    assert model.class_names == ["weather", "music", "sport"]  # the columns, as listed
    words = {t: " ".join(TOPICS[t]) for t in TOPICS}
    got = model.predict([words["music"], f"{words['sport']} {words['weather']}"])
    assert [sorted(g) for g in got] == [["music"], ["sport", "weather"]]


def test_text_table_with_label_sets_and_folds(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    table = topic_table(tmp_path / "topics.csv", columns=False)
    metrics = run(tmp_path, "run", "data=text_table", f"data.path={table}", 'data.label_sep=";"',
                  "loss=bce", "data.folds=3", "data.fold=1", *SMALL_LSTM)
    assert {"val/f1", "val/map", "test/map"} <= set(metrics)
    assert checkpoint.load(metrics["best_ckpt"])["dlexp"]["data"]["class_names"] == \
        sorted(TOPICS)
    new = tmp_path / "new.csv"  # a new table of some of the labels: all of it is tested
    new.write_text("text,label\nrain storm wind,weather\nguitar song and goal,music;sport\n")
    (tmp_path / "eval").mkdir()
    evaluated = evaluate_checkpoint(metrics["best_ckpt"], tmp_path / "eval",
                                    f"+data.path={new}")
    rows = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("1,music;sport,") and "test/f1" in evaluated
    new.write_text("text,label\nrain storm wind,weather;snow\n")
    with pytest.raises(DataError, match="'snow' are not the checkpoint's"):
        evaluate_checkpoint(metrics["best_ckpt"], tmp_path / "eval", f"+data.path={new}")
    out = tmp_path / "pred.csv"
    predict_main([metrics["best_ckpt"], "--text", "rain and storm", "--csv", str(out)])
    header, row = out.read_text().splitlines()
    assert header == "input,labels,p_music,p_sport,p_weather,error"
    assert row.startswith("rain and storm,")
    capsys.readouterr()


@pytest.mark.parametrize(("overrides", "message"), [
    (["loss=cross_entropy"], "use loss=bce"),
    (["loss=bce", "method=fixmatch", "data.num_labeled=20"], "single-label"),
    (["loss=bce", "method=pseudo_label"], "method=pseudo_label is single-label"),
    (["loss=bce", "data.sampler=balanced"], "this data is multi-label"),
])
def test_multilabel_refusals(tmp_path: Path, overrides: list[str], message: str) -> None:
    table = topic_table(tmp_path / "topics.csv", columns=False)
    cfg = compose_train([*FAST, "trainer.max_epochs=1", "data=text_table",
                         f"data.path={table}", 'data.label_sep=";"',
                         f"data.cache_dir={tmp_path / 'cache'}", *SMALL_LSTM, *overrides],
                        tmp_path / "run")
    metrics = train(cfg)
    assert metrics["status"] == "failed" and message in metrics["error"], metrics


def test_bce_on_single_label_data_is_refused(tmp_path: Path) -> None:
    table = topic_table(tmp_path / "topics.csv", columns=False)
    rows = list(csv.reader(table.read_text().splitlines()))
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *([t, lab.split(";")[0]] for t, lab in rows[1:])])
    cfg = compose_train([*FAST, "trainer.max_epochs=1", "data=text_table", f"data.path={table}",
                         f"data.cache_dir={tmp_path / 'cache'}", *SMALL_LSTM, "loss=bce"],
                        tmp_path / "run")
    metrics = train(cfg)
    assert metrics["status"] == "failed" and "loss=cross_entropy" in metrics["error"]


@pytest.mark.parametrize(("overrides", "message"), [
    (['data.label_sep=";"'], "use loss=bce"),
    (["data.label_column=[a,b]", "loss=bce", "method=pseudo_label"], "is single-label"),
    (["loss=bce"], "loss=bce is for multi-label data"),
])
def test_the_kind_of_labels_is_checked_before_any_data_is_read(
        tmp_path: Path, overrides: list[str], message: str) -> None:
    cfg = compose_train([*FAST, "data=text_table", f"data.path={tmp_path / 'absent.csv'}",
                         *SMALL_LSTM, *overrides], tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        config.check(cfg)
