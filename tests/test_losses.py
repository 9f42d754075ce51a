"""Cross-entropy (label smoothing, class weights) and the course's softmax MSE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlexp.losses import CrossEntropy, SoftmaxMSE, class_weights


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 5, generator=g) * 3, torch.randint(0, 5, (16,), generator=g)


def test_cross_entropy_matches_torch(batch) -> None:
    logits, y = batch
    torch.testing.assert_close(CrossEntropy()(logits, y), F.cross_entropy(logits, y))


def test_cross_entropy_by_hand() -> None:
    logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    expected = -torch.log(torch.exp(torch.tensor(2.0)) / torch.exp(logits).sum())
    torch.testing.assert_close(CrossEntropy()(logits, y), expected)


def test_label_smoothing(batch) -> None:
    logits, y = batch
    eps = 0.1
    got = CrossEntropy(label_smoothing=eps)(logits, y)
    torch.testing.assert_close(got, F.cross_entropy(logits, y, label_smoothing=eps))
    target = F.one_hot(y, 5).float() * (1 - eps) + eps / 5
    by_hand = -(target * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(got, by_hand)
    assert not torch.allclose(got, CrossEntropy()(logits, y))


def test_class_weights_in_cross_entropy(batch) -> None:
    logits, y = batch
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])
    got = CrossEntropy(weight=w)(logits, y)
    torch.testing.assert_close(got, F.cross_entropy(logits, y, weight=w))
    per = F.cross_entropy(logits, y, reduction="none")
    torch.testing.assert_close(got, (per * w[y]).sum() / w[y].sum())


@pytest.mark.parametrize("cls", [CrossEntropy, SoftmaxMSE])
def test_keras_class_weight_divides_by_the_batch_size(batch, cls: type) -> None:
    logits, y = batch
    w = torch.tensor([1.0, 99.0, 1.0, 1.0, 1.0])  # the course's 99:1 example
    per = cls(weight=torch.ones(5), weight_mean="samples")(logits, y)  # unit weights: the mean
    torch.testing.assert_close(per, cls()(logits, y))
    keras = cls(weight=w, weight_mean="samples")(logits, y)
    torch_mean = cls(weight=w)(logits, y)
    torch.testing.assert_close(keras, torch_mean * w[y].sum() / len(y))
    with pytest.raises(ValueError, match="loss.weight_mean must be one of weights, samples"):
        cls(weight_mean="batch")


def test_half_precision_logits_are_upcast(batch) -> None:
    logits, y = batch
    out = CrossEntropy()(logits.bfloat16(), y)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("cls", [CrossEntropy, SoftmaxMSE])
@pytest.mark.parametrize("eps", [1.0, 1.5, -0.1])
def test_invalid_label_smoothing(cls: type, eps: float) -> None:
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        cls(label_smoothing=eps)


def test_balanced_weights() -> None:
    counts = torch.tensor([100, 50, 25, 25])
    w = class_weights("balanced", counts)
    n, c = 200, 4
    torch.testing.assert_close(w, torch.tensor([n / (c * 100), n / (c * 50), n / (c * 25),
                                                n / (c * 25)]))
    torch.testing.assert_close((w * counts).sum(), torch.tensor(float(n)))  # sklearn's property


def test_balanced_weights_of_balanced_data_are_one() -> None:
    torch.testing.assert_close(class_weights("balanced", torch.full((10,), 60)),
                               torch.ones(10))


def test_balanced_weights_with_an_empty_class_stay_finite() -> None:
    w = class_weights("balanced", torch.tensor([10, 0]))
    assert torch.isfinite(w).all()


def test_weights_list_and_none() -> None:
    assert class_weights(None, torch.tensor([1, 2])) is None
    w = class_weights([1, 2.5], None)
    assert w.dtype == torch.float32 and w.tolist() == [1.0, 2.5]


def test_weights_errors() -> None:
    with pytest.raises(ValueError, match="needs the class counts"):
        class_weights("balanced", None)
    with pytest.raises(ValueError, match="'balanced', a list or null, got 'inverse'"):
        class_weights("inverse", torch.tensor([1, 2]))


def test_softmax_mse_by_hand(batch) -> None:
    logits, y = batch
    expected = ((logits.softmax(-1) - F.one_hot(y, 5).float()) ** 2).mean()
    torch.testing.assert_close(SoftmaxMSE()(logits, y), expected)


def test_softmax_mse_perfect_and_worst() -> None:
    y = torch.tensor([0, 1])
    assert SoftmaxMSE()(torch.tensor([[50.0, -50], [-50, 50]]), y).item() == pytest.approx(0)
    # all mass on the wrong class: (1^2 + 1^2) / 2 classes = 1 per sample
    assert SoftmaxMSE()(torch.tensor([[-50.0, 50], [50, -50]]), y).item() == pytest.approx(1)


def test_softmax_mse_smoothing_and_weights(batch) -> None:
    logits, y = batch
    eps, w = 0.2, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    target = F.one_hot(y, 5).float() * (1 - eps) + eps / 5
    per = ((logits.softmax(-1) - target) ** 2).mean(-1)
    got = SoftmaxMSE(label_smoothing=eps, weight=w)(logits, y)
    torch.testing.assert_close(got, (per * w[y]).sum() / w[y].sum())


def test_softmax_mse_has_gradients(batch) -> None:
    logits, y = batch
    logits = logits.clone().requires_grad_()
    SoftmaxMSE()(logits, y).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_weights_are_a_buffer_outside_the_state_dict() -> None:
    loss = CrossEntropy(weight=torch.tensor([1.0, 2.0]))
    assert "weight" in dict(loss.named_buffers())
    assert "weight" not in loss.state_dict()  # checkpoints stay loadable without weights
    loss.set_class_weights(torch.tensor([3.0, 4.0]))
    assert loss.weight.tolist() == [3.0, 4.0]
    loss.set_class_weights(None)
    assert loss.weight is None
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(loss(logits, y), F.cross_entropy(logits, y))
