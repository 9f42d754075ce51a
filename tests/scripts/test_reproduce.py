"""scripts/reproduce.py: records of whole runs, their check, and the tables in README.md and
docs/ that must equal the records."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_DATA, script_module

reproduce = script_module("reproduce")


def test_every_table_in_the_docs_equals_its_records() -> None:
    """The numbers in README.md and docs/ are the records' (`reproduce.py --write`)."""
    for name, table in reproduce.TABLES.items():
        text = (REPO / table.doc).read_text()
        block = reproduce.marked(name).search(text)
        assert block, f"{table.doc} has no <!-- results:{name} --> block"
        assert block.group(2) == reproduce.table(name), f"{table.doc}: run reproduce.py --write"


def test_every_result_is_in_a_set_and_every_table_row_is_a_result() -> None:
    assert set(reproduce.SETS["full"]) == set(reproduce.RESULTS_DEFS)
    for table in reproduce.TABLES.values():
        assert set(table.rows) <= set(reproduce.RESULTS_DEFS)


@pytest.fixture
def tiny_result(tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A two-seed result on the generated digits, its records in a folder of its own."""
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    overrides = ("model=mlp", "model.hidden=[16]", "trainer.max_epochs=2", "logger=csv",
                 f"paths.data_dir={tiny_mnist}", *TINY_DATA, "callbacks=no_early_stopping")
    monkeypatch.setitem(reproduce.RESULTS_DEFS, "tiny", reproduce.Result(
        "tiny MLP", overrides, seeds=(1, 2)))
    monkeypatch.setitem(reproduce.TABLES, "tiny", reproduce.Table("README.md", ["tiny"]))
    return "tiny"


@pytest.mark.integration
def test_a_record_holds_the_run_and_where_it_ran(tiny_result: str, capsys) -> None:
    assert reproduce.main([tiny_result, "--threads", "1", "--patience", "0"]) == 0
    rec = json.loads((reproduce.RESULTS / "tiny.json").read_text())
    assert rec["command"].startswith("python train.py model=mlp") and rec["seeds"] == [1, 2]
    assert len(rec["git"]["commit"]) == 40 and isinstance(rec["git"]["dirty"], bool)
    assert rec["machine"]["cores"] >= 1 and rec["machine"]["threads"] == 1
    assert len(rec["machine"]["load_before"]) == 3 and "loaded" in rec["machine"]
    assert rec["machine"]["other_cores"] >= 0
    # the precision the runs trained in (what precision=auto resolved to, or the one given)
    assert rec["machine"]["precision"] == rec["runs"][0]["precision"] == "32-true"
    assert set(rec["versions"]) == {"python", "torch", "lightning", "dlexp"}
    for run in rec["runs"]:
        assert run["wall_s"] > run["fit_s"] > 0 and run["epoch"] == 2
        assert run["test/acc"] > 0.5 and [c["epoch"] for c in run["curves"]] == [1.0, 2.0]
    accs = [r["test/acc"] for r in rec["runs"]]
    assert rec["summary"][""]["test/acc"] == pytest.approx(sum(accs) / 2)
    assert "test/acc_std" in rec["summary"][""]
    if not rec["machine"]["loaded"]:
        row = reproduce.table("tiny").splitlines()[2]
        assert row.startswith("| tiny MLP (seeds 1, 2) | `python train.py model=mlp")
        assert row.endswith(f"| {rec['machine']['cpu_class']} | [tiny.json](results/tiny.json) |")
    # the same seeds give the same accuracy: the check passes and says so
    assert reproduce.main(["--check", tiny_result, "--threads", "1", "--patience", "0"]) == 0
    assert "tiny: test/acc" in capsys.readouterr().out


def test_a_loaded_record_stays_out_of_the_tables(tiny_result: str) -> None:
    reproduce.RESULTS.mkdir(parents=True)
    rec = {"name": "tiny", "command": "python train.py", "seeds": [], "summary": {},
           "machine": {"loaded": True, "load_before": [5.0, 4.0, 3.0]}}
    (reproduce.RESULTS / "tiny.json").write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match="taken on a loaded machine"):
        reproduce.table("tiny")


def test_a_check_that_differs_fails(tiny_result: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = {"name": "tiny", "runs": [{}], "summary": {"": {"test/acc": 0.9, "wall_s": 10.0}}}
    new = {"summary": {"": {"test/acc": 0.8, "wall_s": 12.0}}, "machine": {"loaded": False}}
    monkeypatch.setattr(reproduce, "read", lambda name, cls=None: old)
    monkeypatch.setattr(reproduce, "record", lambda *a: new)
    assert reproduce.check("tiny", 1, 0) is False
    new["summary"][""]["test/acc"] = 0.9 + reproduce.TOLERANCE / 2
    assert reproduce.check("tiny", 1, 0) is True


def _classed(cls: str | None, acc: float, **machine: object) -> dict:
    return {"name": "tiny", "command": "python train.py", "seeds": [], "runs": [{}],
            "summary": {"": {"test/acc": acc, "wall_s": 10.0}},
            "machine": {"loaded": False, **({"cpu_class": cls} if cls else {}), **machine}}


def test_a_record_of_another_cpu_class_sits_beside_the_first(tiny_result: str) -> None:
    """Times compare only within a CPU class: an AVX2 record does not replace the native one,
    the table shows both and names each class, and a check reads the one of its own class."""
    assert reproduce.write(_classed(None, 0.5)).name == "tiny.json"  # class not recorded
    assert reproduce.write(_classed("AVX512_BF16", 0.9)).name == "tiny.json"  # replaces it
    limits = {"isa_limits": reproduce.hardware.AVX2_LIMITS}
    assert reproduce.write(_classed("AVX2", 0.8, **limits)).name == "tiny.avx2.json"
    assert reproduce.write(_classed("AVX512_BF16", 0.91)).name == "tiny.json"
    assert reproduce.read("tiny", "AVX2")["summary"][""]["test/acc"] == 0.8
    assert reproduce.read("tiny", "AMX")["summary"][""]["test/acc"] == 0.91  # none: the first
    rows = reproduce.table("tiny").splitlines()[2:]
    assert len(rows) == 2
    assert rows[0].endswith("| 91.00% | — | 10.0 s | AVX512_BF16 | [tiny.json](results/tiny.json) |")
    assert "| 80.00% |" in rows[1] and "AVX2 (held there: ONEDNN_MAX_CPU_ISA=AVX2" in rows[1]
    assert rows[1].endswith("[tiny.avx2.json](results/tiny.avx2.json) |")


def test_unknown_names_are_one_line() -> None:
    with pytest.raises(SystemExit, match="'nope' is neither a result nor a set"):
        reproduce.main(["nope"])


@pytest.mark.integration
def test_variants_share_their_preparation(tiny_mnist: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    base = ("model=mlp", "model.hidden=[16]", "trainer.max_epochs=1", "logger=none",
            f"paths.data_dir={tiny_mnist}", *TINY_DATA)
    monkeypatch.setitem(reproduce.RESULTS_DEFS, "tiny_transfer", reproduce.Result(
        "tiny transfer", (*base, "transfer.source={work}/source/checkpoints/last.ckpt"),
        variants=(("scratch", ("transfer=none",)), ("finetune", ("transfer=finetune",))),
        prepare=("train.py", *base, "hydra.run.dir={work}/source")))
    assert reproduce.main(["tiny_transfer", "--threads", "1", "--patience", "0"]) == 0
    rec = json.loads((reproduce.RESULTS / "tiny_transfer.json").read_text())
    assert rec["prepare"]["command"].startswith("python train.py model=mlp")
    assert [r["variant"] for r in rec["runs"]] == ["scratch", "finetune"]
    assert set(rec["summary"]) == {"scratch", "finetune"}


def test_a_result_that_starts_from_another_refuses_before_that_one_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(reproduce, "KEPT", tmp_path / "kept")
    with pytest.raises(SystemExit, match=r"run `python scripts/reproduce.py imdb_lm` first"):
        reproduce.record("imdb_lstm_best", 1, 0)
    assert not (tmp_path / "kept").exists()  # nothing ran


@pytest.mark.integration
def test_a_kept_result_is_the_source_of_the_next(tiny_mnist: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A pretraining kept in outputs/records/<name> is what its fine-tune starts from, and the
    fine-tune's record names the pretraining record it used."""
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(reproduce, "KEPT", tmp_path / "kept")
    base = ("model=mlp", "model.hidden=[16]", "trainer.max_epochs=1", "logger=none",
            f"paths.data_dir={tiny_mnist}", *TINY_DATA)
    monkeypatch.setitem(reproduce.RESULTS_DEFS, "tiny_source", reproduce.Result(
        "tiny source", base, keep=True))
    monkeypatch.setitem(reproduce.RESULTS_DEFS, "tiny_tuned", reproduce.Result(
        "tiny tuned", (*base, "transfer=finetune",
                       "transfer.source={records}/tiny_source/run/checkpoints/last.ckpt"),
        needs=("tiny_source",)))
    (tmp_path / "kept" / "tiny_source").mkdir(parents=True)
    (tmp_path / "kept" / "tiny_source" / "stale").write_text("from an older record")
    assert reproduce.main(["tiny_source", "tiny_tuned", "--threads", "1", "--patience", "0"]) == 0
    kept = tmp_path / "kept" / "tiny_source"
    assert (kept / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (kept / "stale").exists()  # a kept folder starts empty
    source = json.loads((reproduce.RESULTS / "tiny_source.json").read_text())
    tuned = json.loads((reproduce.RESULTS / "tiny_tuned.json").read_text())
    assert tuned["starts_from"]["tiny_source"]["git"] == source["git"]
    assert tuned["starts_from"]["tiny_source"]["date"] == source["date"]
    assert tuned["runs"][0]["test/acc"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist_cnn", "imdb_lstm"])
def test_a_headline_record_reproduces_within_its_tolerance(
        name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's headline claims, re-run on the real data (``--check``)."""
    data = request.getfixturevalue("real_imdb_dir" if "imdb" in name else "real_data_dir")
    if not (reproduce.RESULTS / f"{name}.json").is_file():
        pytest.skip(f"no record results/{name}.json: run scripts/reproduce.py {name}")
    monkeypatch.setenv("DLEXP_DATA_DIR", str(data))
    threads = reproduce.read(name)["machine"]["threads"]
    assert reproduce.check(name, threads, patience_s=0)


def test_other_processes_cpu_time_is_measured_apart_from_our_own() -> None:
    """A busy child of ours is not another job; a busy thread of this process (not a child) is
    counted as other load, as another job's would be."""
    with reproduce.OtherLoad() as baseline:  # what the rest of the machine does meanwhile
        time.sleep(1)
    if baseline.cores > 0.2:
        pytest.skip(f"other processes use {baseline.cores:.2f} cores now: the quiet case "
                    "cannot be told apart from them")
    with reproduce.OtherLoad() as quiet:
        subprocess.run([sys.executable, "-c", "import time\nt = time.time()\n"
                        "while time.time() - t < 1: pass"], check=True)
    assert quiet.cores < 0.5
    with reproduce.OtherLoad() as busy:
        end = time.monotonic() + 1
        while time.monotonic() < end:
            pass
    assert busy.cores > 0.5


@pytest.mark.integration
def test_a_script_result_records_the_metrics_it_writes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import make_imdb_tree

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("DLEXP_DATA_DIR", str(make_imdb_tree(tmp_path, 40, 20, 0)))
    monkeypatch.setitem(reproduce.RESULTS_DEFS, "tiny_nbsvm", reproduce.Result(
        "tiny baseline", (), script=("scripts/nbsvm.py", "--val-size", "10")))
    assert reproduce.main(["tiny_nbsvm", "--threads", "1", "--patience", "0"]) == 0
    rec = json.loads((reproduce.RESULTS / "tiny_nbsvm.json").read_text())
    assert rec["command"] == "python scripts/nbsvm.py --val-size 10"
    run = rec["runs"][0]
    assert run["wall_s"] > run["fit_s"] > 0 and 0.5 < run["test/acc"] <= 1.0
    assert rec["summary"][""]["test/acc"] == run["test/acc"]


@pytest.mark.integration
def test_a_script_result_runs_in_the_records_own_folder(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    monkeypatch.setitem(reproduce.RESULTS_DEFS, "tiny_memory", reproduce.Result(
        "tiny peak memory", (), script=("scripts/loader_bench.py", "--peak-memory",
                                        "{work}/images", "--images", "20", "--workers", "0")))
    assert reproduce.main(["tiny_memory", "--threads", "1", "--patience", "0"]) == 0
    rec = json.loads((reproduce.RESULTS / "tiny_memory.json").read_text())
    assert rec["command"].endswith("--peak-memory {work}/images --images 20 --workers 0")
    run = rec["runs"][0]
    assert run["images"] == 20 and run["peak_rss_mb"]["process"] > 0 and run["wall_s"] > 0
