"""IMDBDataModule on a generated aclImdb tree (folder and tarball) and, when present, the real one."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TEST_ONLY, compose_train, make_imdb_tree, tar_imdb
from hydra.utils import instantiate as build_node

from dlexp.data import imdb, tokenized
from dlexp.data.download import file_digest
from dlexp.data.imdb import IMDBDataModule
from dlexp.data.tokenizer import UNK_ID, encode_texts, from_json, to_json, train_tokenizer
from dlexp.data.tokenizer import encode as imdb_encode
from dlexp.errors import DataError

N_TRAIN, N_TEST, N_UNSUP = 200, 100, 150  # tiny_imdb: per split, both classes together


def _dm(root: Path, **kwargs) -> IMDBDataModule:
    kwargs = {"download": False, "val_size": 40, "batch_size": 16, "eval_batch_size": 50,
              **kwargs}
    dm = IMDBDataModule(root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def _ids(part: tuple) -> list[list[int]]:
    store = part[0]
    return [store.flat[store.offsets[i]:store.offsets[i + 1]].tolist() for i in range(len(store))]


def _texts(root: Path, part: str) -> tuple[list[str], torch.Tensor]:
    source = root / "aclImdb"
    return imdb.assemble(imdb.read_folder(source), source)[part]


def _count_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def counting(texts: list[str], *args: object) -> object:
        calls.append(len(texts))
        return train_tokenizer(texts, *args)

    monkeypatch.setattr(tokenized, "train_tokenizer", counting)
    return calls


def _trust(monkeypatch: pytest.MonkeyPatch, archive: Path) -> Path:
    """Accept a generated tarball as if its digest were a published one."""
    monkeypatch.setattr(imdb, "SHA256", {**imdb.SHA256, file_digest(archive, "sha256"): "test"})
    return archive


# ---------------------------------------------------------------- sets and splits
def test_sizes_labels_and_describe(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb)
    sizes = [len(s[1]) for s in (dm.train_set, dm.val_set, dm.test_set, dm.unlabeled_set)]
    assert sizes == [160, 40, N_TEST, N_UNSUP]
    assert set(dm.train_set[1].tolist()) == {0, 1} and dm.test_set[1].bincount().tolist() == [50, 50]
    assert (dm.unlabeled_set[1] == -1).all()
    info = dm.describe()
    assert set(info) == {"name", "modality", "class_names", "num_classes", "net_kwargs",
                         "tokenizer", "max_len", "truncate", "multilabel", "threshold"}
    assert info["name"] == "imdb" and info["modality"] == "text" == dm.modality
    assert info["class_names"] == ["negative", "positive"] and info["num_classes"] == 2
    assert info["net_kwargs"] == dm.net_kwargs() == {
        "vocab_size": from_json(info["tokenizer"]).get_vocab_size(), "num_classes": 2,
        "pad_idx": 0}
    assert info["max_len"] == 400 and info["truncate"] == "head"


def test_describe_is_plain_data_for_safe_checkpoints(tiny_imdb: Path, tmp_path: Path) -> None:
    info = IMDBDataModule(root=str(tiny_imdb), download=False, val_size=40).describe()
    torch.save({"dlexp": {"data": info}}, tmp_path / "x.ckpt")  # describe() sets up by itself
    assert torch.load(tmp_path / "x.ckpt", weights_only=True)["dlexp"]["data"] == info


def test_vocabulary_sees_no_test_or_val_text(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb)
    tok = from_json(dm.describe()["tokenizer"])
    assert TEST_ONLY not in tok.get_vocab()
    ids, _ = encode_texts(dm.describe(), [TEST_ONLY])
    assert ids.tolist() == [[UNK_ID]]
    # exactly the tokenizer fitted on the training split's text, in order
    texts, _ = _texts(tiny_imdb, "train")
    corpus = [texts[i] for i in dm.split_indices["train"].tolist()]
    assert dm.describe()["tokenizer"] == to_json(train_tokenizer(corpus, "word", 20_000, 2))


def test_tokenizer_may_also_learn_from_unsup(tiny_imdb: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_imdb, cache_dir=str(tmp_path), tokenizer={"use_unsup": True})
    texts, _ = _texts(tiny_imdb, "train")
    corpus = [texts[i] for i in dm.split_indices["train"].tolist()] + _texts(tiny_imdb, "unsup")[0]
    assert dm.describe()["tokenizer"] == to_json(train_tokenizer(corpus, "word", 20_000, 2))


def test_splits_are_seeded_and_disjoint(tiny_imdb: Path) -> None:
    a, b, c = _dm(tiny_imdb, seed=0), _dm(tiny_imdb, seed=0), _dm(tiny_imdb, seed=1)
    train, val = (set(a.split_indices[k].tolist()) for k in ("train", "val"))
    assert train.isdisjoint(val) and train | val == set(range(N_TRAIN))
    assert torch.equal(a.split_indices["val"], b.split_indices["val"])
    assert _ids(a.val_set) == _ids(b.val_set)
    assert not torch.equal(a.split_indices["val"], c.split_indices["val"])
    assert _dm(tiny_imdb, val_size=0.25).split_indices["val"].numel() == 50


def test_num_labeled_is_stratified_and_the_rest_joins_the_pool(tiny_imdb: Path) -> None:
    full = _dm(tiny_imdb)
    dm = _dm(tiny_imdb, num_labeled=20)
    assert dm.class_counts().tolist() == [10, 10]
    lab, rest = dm.split_indices["train"], dm.split_indices["unlabeled"]
    assert sorted(lab.tolist() + rest.tolist()) == full.split_indices["train"].tolist()
    _, y = _texts(tiny_imdb, "train")
    pool = dm.unlabeled_set[1]
    assert len(pool) == 140 + N_UNSUP
    assert torch.equal(pool[:140], y[rest]) and (pool[140:] == -1).all()  # true labels, then -1
    assert torch.equal(torch.cat([b[1] for b in dm.unlabeled_dataloader()]), pool)  # its order
    no_unsup = _dm(tiny_imdb, num_labeled=20, include_unsup=False)
    assert torch.equal(no_unsup.unlabeled_set[1], y[rest])
    assert len(_dm(tiny_imdb, include_unsup=False).unlabeled_dataloader()) == 0


@pytest.mark.parametrize("n", [0, 1, 161])
def test_num_labeled_out_of_range(tiny_imdb: Path, n: int) -> None:
    with pytest.raises(DataError, match=r"data.num_labeled must be in \[2, 160\] \(at least one label per class\)"):
        _dm(tiny_imdb, num_labeled=n)


def test_val_size_too_large(tiny_imdb: Path) -> None:
    with pytest.raises(DataError, match="data.val_size"):
        _dm(tiny_imdb, val_size=2500)  # the default is for the real 25k


def test_setup_is_idempotent(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb)
    first = dm.train_set
    dm.setup("test")
    dm.describe()
    assert dm.train_set is first


@pytest.mark.parametrize("bad", [{"tokenizer": {"vocab": 5}}, {"tokenizer": {"model": "char"}},
                                 {"truncate": "tail"}, {"max_len": 0}])
def test_bad_settings(bad: dict) -> None:
    with pytest.raises(ValueError, match="data."):
        IMDBDataModule(root="unused", **bad)


# ---------------------------------------------------------------- loaders
def test_batches_follow_the_contract(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb, max_len=30)
    train = dm.train_dataloader()
    assert len(train) == 10 and len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == 2
    labels = []
    for (ids, lengths), y in train:
        assert ids.dtype == lengths.dtype == y.dtype == torch.int64
        assert ids.shape == (len(y), int(lengths.max())) and 1 <= lengths.min() <= 30
        assert (ids[torch.arange(ids.shape[1]) >= lengths.unsqueeze(1)] == 0).all()
        assert (ids[torch.arange(ids.shape[1]) < lengths.unsqueeze(1)] != 0).all()
        labels += y.tolist()
    assert sorted(labels) == sorted(dm.train_set[1].tolist())
    train.sampler.set_epoch(1)  # Lightning's per-epoch hook is there


def test_bucketing_reduces_padding(tiny_imdb: Path) -> None:
    bucketed = _dm(tiny_imdb).train_dataloader().padding_fraction()
    plain = _dm(tiny_imdb, bucket=False).train_dataloader().padding_fraction()
    assert plain > 0.3 and bucketed < plain / 3


def test_truncation_and_predict_encoding_match_training(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb, max_len=20, truncate="head_tail")
    assert int(dm.test_set[0].lengths.max()) == 20
    texts, _ = _texts(tiny_imdb, "test")
    ids, lengths = encode_texts(dm.describe(), texts)
    assert torch.equal(lengths, dm.test_set[0].lengths)
    assert [row[:n].tolist() for row, n in zip(ids, lengths, strict=True)] == _ids(dm.test_set)
    longer = _dm(tiny_imdb, max_len=None)  # truncation comes after the cache: no retraining
    assert int(longer.test_set[0].lengths.max()) > 20


def test_loaders_shard_by_trainer_rank(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb)
    parts = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        parts.append([len(y) for _, y in dm.train_dataloader()])
    assert sum(parts[0]) == sum(parts[1]) == 80


def test_pseudo_labels_join_the_next_train_loader(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb, num_labeled=20)
    dm.set_pseudo_labels(torch.tensor([0, 200, 5]), torch.tensor([1, 0, 1]))
    dm.set_pseudo_labels(torch.tensor([3, 250]), torch.tensor([0, 1]))  # replaces the first
    batches = list(dm.train_dataloader())
    served = sorted(sum((_rows(b) for b in batches), []))
    pool = _ids(dm.unlabeled_set)
    want = [(r, int(y)) for r, y in zip(_ids(dm.train_set), dm.train_set[1], strict=True)]
    want += [(pool[3], 0), (pool[250], 1)]
    assert served == sorted(want)
    assert dm.class_counts().tolist() == [10, 10]  # the labeled split itself is unchanged
    dm.set_pseudo_labels(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert sum(len(y) for _, y in dm.train_dataloader()) == 20
    with pytest.raises(ValueError, match="indices must be in"):
        dm.set_pseudo_labels(torch.tensor([290]), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels must be in"):
        dm.set_pseudo_labels(torch.tensor([0]), torch.tensor([-1]))


def test_unlabeled_ratio_serves_both_streams(tiny_imdb: Path) -> None:
    dm = _dm(tiny_imdb, num_labeled=20, unlabeled_ratio=2)
    loader = iter(dm.train_dataloader())
    batches = [item[0] for item in loader]  # CombinedLoader yields (batch, idx, loader idx)
    assert all(set(b) == {"labeled", "unlabeled"} for b in batches)
    assert max(len(b["unlabeled"][1]) for b in batches) == 32  # 2 x the batch size
    assert max(len(b["labeled"][1]) for b in batches) == 16
    served = sorted(sum((_rows(b["unlabeled"]) for b in batches), []))
    assert served == sorted(zip(_ids(dm.unlabeled_set), dm.unlabeled_set[1].tolist(),
                                strict=True))  # the pool, once per epoch
    with pytest.raises(ValueError, match="unlabeled_ratio must be > 0"):
        IMDBDataModule(root=str(tiny_imdb), unlabeled_ratio=0)


def _rows(batch: tuple) -> list[tuple[list[int], int]]:
    (ids, lengths), y = batch
    return [(r[:n].tolist(), int(c)) for r, n, c in zip(ids, lengths, y, strict=True)]


# ---------------------------------------------------------------- cache
def test_second_setup_reads_the_cache(tiny_imdb: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_training(monkeypatch)
    first = _dm(tiny_imdb, cache_dir=str(tmp_path))
    assert calls == [160] and len(list((tmp_path / "imdb").glob("tokens-*.pt"))) == 1
    second = _dm(tiny_imdb, cache_dir=str(tmp_path), max_len=50, num_labeled=10)
    assert calls == [160]  # no retraining, no re-encoding for split or length changes
    assert second.describe()["tokenizer"] == first.describe()["tokenizer"]
    _dm(tiny_imdb, cache_dir=str(tmp_path), tokenizer={"vocab_size": 30})
    _dm(tiny_imdb, cache_dir=str(tmp_path), seed=5)  # another split: another training corpus
    assert len(calls) == 3 and len(list((tmp_path / "imdb").glob("tokens-*.pt"))) == 3


def test_a_given_tokenizer_keys_the_cache(tiny_imdb: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """use_pipeline (transfer.source, dlexp-eval): the checkpoint's tokenizer encodes, none is
    fitted; the cache entry of the settings serves when they fit that same tokenizer."""
    source = _dm(tiny_imdb, cache_dir=str(tmp_path), tokenizer={"vocab_size": 30}).describe()
    calls = _count_training(monkeypatch)

    def entries() -> set[Path]:
        return set((tmp_path / "imdb").glob("tokens-*.pt"))

    before = entries()

    def given(**kwargs: object) -> IMDBDataModule:
        dm = IMDBDataModule(root=str(tiny_imdb), download=False, val_size=40,
                            cache_dir=str(tmp_path), **kwargs)
        dm.use_pipeline(source, truncation=False)
        dm.setup()
        return dm

    same = given(tokenizer={"vocab_size": 30})  # dlexp-eval: the settings that fitted it
    assert calls == [] and entries() == before
    other = given(max_len=7)  # a fine-tune with other settings: the source's, its own entry
    assert calls == [] and len(entries() - before) == 1
    for dm in (same, other):
        assert dm.describe()["tokenizer"] == source["tokenizer"] and dm.vocab_size == 30
    assert other.max_len == 7 and int(other.train_set[0].lengths.max()) <= 7
    assert torch.equal(other.test_set[0].truncate(7, "head").flat,
                       same.test_set[0].truncate(7, "head").flat)


@pytest.mark.parametrize("foreign", [{"tokenizer_json": "{}"}, {"version": 2, "tokenizer": "{}",
                                      "train": {"flat": 1}, "test": {}}, ["not", "a", "dict"]])
def test_a_cache_with_foreign_content_is_rebuilt(foreign: object, tiny_imdb: Path,
                                                 tmp_path: Path, caplog) -> None:
    first = _dm(tiny_imdb, cache_dir=str(tmp_path))
    [path] = (tmp_path / "imdb").glob("tokens-*.pt")
    torch.save(foreign, path)  # loads fine, holds something else
    with caplog.at_level("WARNING"):
        again = _dm(tiny_imdb, cache_dir=str(tmp_path))
    assert "ignoring stale cache" in caplog.text and "rebuilding it" in caplog.text
    assert again.describe()["tokenizer"] == first.describe()["tokenizer"]
    assert set(torch.load(path, weights_only=True)) == {"version", "tokenizer", "train", "test"}


def test_unsup_reviews_are_encoded_only_when_the_pool_is_used(
        tiny_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []

    def counting(tok: object, texts: list[str], what: str = "") -> object:
        encoded.append(what)
        return imdb_encode(tok, texts, what)

    monkeypatch.setattr(imdb, "encode", counting)
    dm = _dm(tiny_imdb, cache_dir=str(tmp_path), max_len=None)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        next(iter(loader))
    assert encoded == ["IMDB train reviews", "IMDB test reviews"]  # a supervised run
    pool = dm.unlabeled_set
    assert encoded[-1] == "IMDB unsup reviews" and len(pool[1]) == N_UNSUP
    texts = _texts(tiny_imdb, "unsup")[0]
    tok = from_json(dm.describe()["tokenizer"])
    assert _ids(pool) == [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    again = _dm(tiny_imdb, cache_dir=str(tmp_path), max_len=None)
    assert _ids(again.unlabeled_set) == _ids(pool) and len(encoded) == 3  # from the cache
    assert len(list((tmp_path / "imdb").glob("unsup-*.pt"))) == 1


def test_unwritable_cache_still_works(tiny_imdb: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, payload: dict) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(imdb, "save_cache", refuse)
    assert len(_dm(tiny_imdb, cache_dir=str(tmp_path)).train_set[1]) == 160


# ---------------------------------------------------------------- sources
@pytest.fixture
def tiny_archive(tiny_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root holding only aclImdb_v1.tar.gz, packed from tiny_imdb and trusted."""
    return _trust(monkeypatch, tar_imdb(tiny_imdb, tmp_path / "tar" / imdb.ARCHIVE)).parent


def test_tarball_streams_the_same_data_as_the_folder(tiny_imdb: Path, tiny_archive: Path) -> None:
    from_tar, from_dir = _dm(tiny_archive), _dm(tiny_imdb)
    assert not (tiny_archive / "aclImdb").exists()  # read in place, nothing extracted
    assert from_tar.describe()["tokenizer"] == from_dir.describe()["tokenizer"]
    for part in ("train_set", "val_set", "test_set", "unlabeled_set"):
        assert _ids(getattr(from_tar, part)) == _ids(getattr(from_dir, part))
        assert torch.equal(getattr(from_tar, part)[1], getattr(from_dir, part)[1])


def test_extract_unpacks_into_the_cache_dir(tiny_archive: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dm = _dm(tiny_archive, extract=True, cache_dir=str(cache))
    assert sorted(p.name for p in cache.iterdir()) == ["aclImdb", "imdb"]  # no leftovers
    assert len(list((cache / "aclImdb" / "train" / "unsup").iterdir())) == N_UNSUP
    assert len(dm.test_set[1]) == N_TEST


def test_unknown_tarball_is_refused(tiny_imdb: Path, tmp_path: Path) -> None:
    tar_imdb(tiny_imdb, tmp_path / imdb.ARCHIVE)
    with pytest.raises(DataError, match="sha256 .* is not aclImdb_v1.tar.gz's"):
        _dm(tmp_path)


def _evil_archive(tiny_imdb: Path, path: Path, name: str) -> Path:
    tar_imdb(tiny_imdb, path)
    with tarfile.open(path, "r:gz") as src:  # gzip cannot append: repack with one extra member
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src]
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo(name)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"pwned"))
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "aclImdb/../../escape.txt"])
def test_path_traversal_is_refused(tiny_imdb: Path, tmp_path: Path, name: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _trust(monkeypatch, _evil_archive(tiny_imdb, root / imdb.ARCHIVE, name))
    with pytest.raises(DataError, match="refusing unsafe archive"):
        _dm(root, extract=True, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "escape.txt").exists() and not (root / "escape.txt").exists()
    assert not (tmp_path / "cache" / "aclImdb").exists()
    streamed = _dm(root, cache_dir=str(tmp_path / "cache2"))  # streaming writes nothing
    assert len(streamed.test_set[1]) == N_TEST and not (tmp_path / "escape.txt").exists()


def test_read_only_root(tiny_archive: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ro"
    shutil.copytree(tiny_archive, root)
    monkeypatch.delenv("DLEXP_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root.chmod(0o555)
    try:
        dm = _dm(root)
        assert dm.cache_dir == tmp_path / "home" / ".cache" / "dlexp"
        assert [p.name for p in root.iterdir()] == [imdb.ARCHIVE]  # nothing written there
        assert len(list((dm.cache_dir / "imdb").glob("tokens-*.pt"))) == 1
        assert len(dm.test_set[1]) == N_TEST
    finally:
        root.chmod(0o755)


def test_cache_dir_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLEXP_CACHE_DIR", raising=False)
    assert imdb.default_cache_dir(tmp_path / "new" / "data") == tmp_path / "new" / "data"
    monkeypatch.setenv("DLEXP_CACHE_DIR", str(tmp_path / "c"))
    assert IMDBDataModule(root=str(tmp_path)).cache_dir == tmp_path / "c"
    assert IMDBDataModule(root=str(tmp_path), cache_dir="/x").cache_dir == Path("/x")


def test_offline_with_nothing_local(offline: list[str], tmp_path: Path) -> None:
    tried = offline
    root, cache = tmp_path / "data", tmp_path / "cache"
    dm = IMDBDataModule(root=str(root), cache_dir=str(cache), download=True)
    with pytest.raises(DataError) as err:
        dm.setup()
    msg = str(err.value)
    assert tried == [imdb.URL] and "Network is unreachable" in msg
    assert str(root.resolve()) in msg and str(cache.resolve()) in msg and imdb.ARCHIVE in msg
    assert "DLEXP_DATA_DIR" in msg and len(msg.splitlines()) <= 4
    assert not cache.exists() or list(cache.iterdir()) == []  # no .part left
    quiet = IMDBDataModule(root=str(root), cache_dir=str(cache), download=False)
    with pytest.raises(DataError, match="data.download=false"):
        quiet.prepare_data()


def test_download_checks_the_sha256(tiny_imdb: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tar_imdb(tiny_imdb, tmp_path / "mirror" / imdb.ARCHIVE)
    monkeypatch.setattr(imdb, "URL", mirror.as_uri())
    dm = IMDBDataModule(root=str(tmp_path / "data"), download=True, val_size=40)
    with pytest.raises(DataError, match="sha256 mismatch"):
        dm.prepare_data()  # the generated tarball is not the official one
    monkeypatch.setattr(imdb, "OFFICIAL_SHA256", file_digest(mirror, "sha256"))
    _trust(monkeypatch, mirror)
    dm.prepare_data()
    assert (tmp_path / "data" / imdb.ARCHIVE).is_file()
    dm.setup()
    assert len(dm.test_set[1]) == N_TEST


def test_a_tree_without_test_reviews(tmp_path: Path) -> None:
    make_imdb_tree(tmp_path, n_train=5, n_test=2, n_unsup=0)
    shutil.rmtree(tmp_path / "aclImdb" / "test" / "pos")
    with pytest.raises(DataError, match="no reviews in .*test/pos"):
        _dm(tmp_path, val_size=2)


def test_include_unsup_needs_unsup_reviews(tmp_path: Path) -> None:
    make_imdb_tree(tmp_path, n_train=5, n_test=2, n_unsup=0)
    dm = _dm(tmp_path, val_size=2)  # supervised use never looks at train/unsup
    with pytest.raises(DataError, match="data.include_unsup=true"):
        _ = dm.unlabeled_set
    assert len(_dm(tmp_path, val_size=2, include_unsup=False).train_set[1]) == 8


# ---------------------------------------------------------------- config
def test_config_node_builds_the_datamodule(tiny_imdb: Path, tmp_path: Path) -> None:
    cfg = compose_train(["data=imdb"], tmp_path, data_root=tiny_imdb)
    dm = build_node(cfg.data)
    assert isinstance(dm, IMDBDataModule) and dm.root == tiny_imdb
    assert (dm.batch_size, dm.eval_batch_size, dm.val_size, dm.seed) == (64, 256, 2500, cfg.seed)
    assert dm.tokenizer == imdb.TOKENIZER and dm.max_len == 400 and dm.bucket
    assert dm.cache_dir == Path(os.environ.get("DLEXP_CACHE_DIR") or tiny_imdb)
    small = build_node(compose_train(["data=imdb", "data.val_size=40", "data.tokenizer.model=bpe",
                                      "data.tokenizer.vocab_size=100"], tmp_path,
                                     data_root=tiny_imdb).data)
    small.cache_dir = tmp_path
    assert small.net_kwargs()["vocab_size"] == 100


# ---------------------------------------------------------------- real data
@pytest.mark.slow  # ~25 s on 2 cores the first time (tokenizing 100k reviews), ~1 s cached
def test_real_imdb(real_imdb_dir: Path) -> None:
    dm = IMDBDataModule(root=str(real_imdb_dir), download=False)
    dm.setup()
    assert len(dm.train_set[1]) == 22_500 and len(dm.val_set[1]) == 2_500
    train_val = torch.cat([dm.train_set[1], dm.val_set[1]])
    assert train_val.bincount().tolist() == [12_500, 12_500]
    assert dm.test_set[1].bincount().tolist() == [12_500, 12_500]
    assert len(dm.unlabeled_set[1]) == 50_000 and (dm.unlabeled_set[1] == -1).all()
    assert dm.net_kwargs()["vocab_size"] == 20_000
    assert 0.4 < dm.train_set[1].float().mean() < 0.6
    assert dm.train_dataloader().padding_fraction() < 0.05
