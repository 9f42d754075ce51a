"""The recurrent text classifier: shapes, padding invariance (packed and unpacked), pooling."""

from __future__ import annotations

import pytest
import torch

from dlexp.models.rnn import RNNClassifier, padding_mask, reverse_within_length

VOCAB = 50


def _batch(lengths: list[int], extra_padding: int = 0, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids with ``extra_padding`` more pad columns than the longest row needs."""
    g = torch.Generator().manual_seed(seed)
    steps = max(lengths) + extra_padding
    ids = torch.zeros(len(lengths), steps, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(2, VOCAB, (n,), generator=g)
    return ids, torch.tensor(lengths)


def _net(**kwargs) -> RNNClassifier:
    torch.manual_seed(0)
    return RNNClassifier(VOCAB, embedding_dim=8, hidden_size=6, **kwargs).eval()


def test_reverse_within_length_keeps_padding_and_is_an_involution() -> None:
    x = torch.arange(12).view(2, 6)
    lengths = torch.tensor([4, 6])
    r = reverse_within_length(x, lengths)
    assert r.tolist() == [[3, 2, 1, 0, 4, 5], [11, 10, 9, 8, 7, 6]]
    assert torch.equal(reverse_within_length(r, lengths), x)
    x3 = torch.randn(2, 6, 3)
    assert torch.equal(reverse_within_length(reverse_within_length(x3, lengths), lengths), x3)


def test_padding_mask() -> None:
    assert padding_mask(torch.tensor([1, 3]), 4).tolist() == [
        [True, False, False, False], [True, True, True, False]]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean", "concat"])
@pytest.mark.parametrize("packed", [False, True])
def test_output_does_not_change_with_the_amount_of_padding(cell: str, pooling: str,
                                                           packed: bool) -> None:
    net = _net(cell=cell, pooling=pooling, packed=packed, num_layers=2, bidirectional=True)
    lengths = [5, 2, 7, 1]
    with torch.no_grad():
        tight = net(*_batch(lengths))
        padded = net(*_batch(lengths, extra_padding=9))
    assert tight.shape == (4, 2)
    torch.testing.assert_close(padded, tight, atol=1e-5, rtol=1e-5)


def test_concat_pooling_is_last_max_and_mean_side_by_side() -> None:
    net = _net(pooling="concat", bidirectional=True)
    ids, lengths = _batch([5, 2, 7], extra_padding=4)
    x = torch.randn(3, ids.shape[1], 12)
    pooled = net._pool(x, lengths)
    assert net.head.in_features == 36 and pooled.shape == (3, 36)
    for i, pooling in enumerate(("last", "max", "mean")):
        torch.testing.assert_close(pooled[:, 12 * i:12 * (i + 1)], net._pool_as(pooling, x, lengths))


def test_run_stream_carries_the_state_across_slices() -> None:
    net = _net(cell="lstm", bidirectional=False, num_layers=2)
    ids = torch.randint(2, VOCAB, (3, 10))
    with torch.no_grad():
        whole, _ = net.run_stream(ids)
        first, state = net.run_stream(ids[:, :4])
        second, _ = net.run_stream(ids[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    with pytest.raises(ValueError, match="bidirectional=false or num_layers=1"):
        _net(bidirectional=True, num_layers=2).run_stream(ids)
    with pytest.raises(ValueError, match="no direction 1"):
        net.run_stream(ids, direction=1)
    bi = _net(bidirectional=True)
    with torch.no_grad():
        backward, _ = bi.run_stream(ids, direction=1)
        cell = bi.layers[0][1](bi.embedding(ids))[0]
    torch.testing.assert_close(backward, cell)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_and_unpacked_agree_on_the_same_weights(bidirectional: bool) -> None:
    net = _net(cell="lstm", pooling="last", bidirectional=bidirectional, num_layers=2)
    ids, lengths = _batch([6, 3, 1, 4], extra_padding=3)
    with torch.no_grad():
        unpacked = net(ids, lengths)
        net.packed = True
        packed = net(ids, lengths)
    torch.testing.assert_close(packed, unpacked, atol=1e-5, rtol=1e-5)


def test_each_row_is_independent_of_its_batch_mates() -> None:
    net = _net(pooling="mean")
    ids, lengths = _batch([3, 8, 5])
    with torch.no_grad():
        together = net(ids, lengths)
        alone = net(ids[:1, :3], lengths[:1])
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def test_forward_backward_shapes_and_gradients() -> None:
    net = RNNClassifier(VOCAB, num_classes=3, embedding_dim=8, hidden_size=6, num_layers=2,
                        dense=[5], dropout=0.2, embedding_dropout=0.1).train()
    ids, lengths = _batch([4, 2, 6])
    out = net(ids, lengths)
    assert out.shape == (3, 3)
    out.sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert net.head.in_features == 5 and net.classifier[0].in_features == 12


def test_the_backward_direction_reads_the_real_tokens() -> None:
    """With ``last`` pooling the backward half must see the first token: changing it changes
    the output even for a one-layer net that only pools the final states."""
    net = _net(pooling="last", bidirectional=True)
    ids, lengths = _batch([5], extra_padding=4)
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % VOCAB or 2
    with torch.no_grad():
        assert not torch.allclose(net(ids, lengths), net(changed, lengths))


def test_padding_row_and_frozen_embedding() -> None:
    net = RNNClassifier(VOCAB, pad_idx=0, freeze_embedding=True)
    assert torch.count_nonzero(net.embedding.weight[0]) == 0
    assert not net.embedding.weight.requires_grad
    assert all(p.requires_grad for n, p in net.named_parameters() if not n.startswith("embed"))


def test_zero_lengths_are_treated_as_one_token() -> None:
    net = _net()
    ids, _ = _batch([3, 3])
    with torch.no_grad():
        out = net(ids, torch.tensor([0, 3]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cell": "transformer"}, "unknown cell 'transformer'; choose one of rnn, gru, lstm"),
    ({"pooling": "attention"}, "unknown pooling 'attention'"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"embedding_dropout": -0.1}, "embedding_dropout must be in [0, 1)"),
    ({"hidden_size": 0}, "hidden_size must be >= 1"),
    # refused before building: thousands of layers grew past the machine's memory (OOM kill)
    ({"num_layers": 3000}, "num_layers must be at most 32, got 3000"),
])
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        RNNClassifier(VOCAB, **kwargs)


def test_bf16_autocast_on_cpu_runs() -> None:
    from dlexp import hardware

    if not hardware.cpu_info().onednn_bf16:  # refused there: tests/test_hardware.py
        pytest.skip("oneDNN has no bf16 LSTM on this CPU; dlexp refuses bf16 for it")
    net = _net()
    ids, lengths = _batch([4, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(ids, lengths)
    assert out.shape == (2, 2) and torch.isfinite(out.float()).all()
