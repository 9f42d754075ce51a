"""FixMatch (Sohn et al. 2020): supervised cross-entropy on labeled batches plus, on unlabeled
batches, cross-entropy of strong views against the weak view's confident predictions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlexp.data.augment import check_view_options, strong_view, weak_view
from dlexp.methods.ema import EMA
from dlexp.task import ClassificationTask, forward_net


class FixMatchTask(ClassificationTask):
    """Trains on ``{"labeled": (x, y), "unlabeled": (x, y_hidden)}`` batches.

    ``y_hidden`` (the pool's true labels) never enters the loss: it only measures the pseudo
    labels (``train/pseudo_acc``). ``augment`` holds the view options of
    :func:`dlexp.data.augment.strong_view` (images: shift, RandAugment, cutout; text: token
    dropout and swaps), chosen by the batch type, so the task works for any modality.
    """

    TEACHERS = ("student", "ema")
    THRESHOLD_MODES = ("fixed", "flexmatch")

    @classmethod
    def check_options(cls, *, threshold: float, teacher: str, threshold_mode: str,
                      da_momentum: float, flex_momentum: float, **options: Any) -> None:
        """Unknown choices and values out of range fail before training, named."""
        super().check_options(**options)
        if not 0 <= threshold <= 1:
            raise ValueError(f"method.task.threshold must be in [0, 1], got {threshold}")
        if teacher not in cls.TEACHERS:
            raise ValueError(f"method.task.teacher must be one of {cls.TEACHERS}, got "
                             f"{teacher!r}")
        if threshold_mode not in cls.THRESHOLD_MODES:
            raise ValueError(f"method.task.threshold_mode must be one of "
                             f"{cls.THRESHOLD_MODES}, got {threshold_mode!r}")
        for key, m in (("da_momentum", da_momentum), ("flex_momentum", flex_momentum)):
            if not 0 <= m < 1:
                raise ValueError(f"method.task.{key} must be in [0, 1), got {m}")

    def __init__(self, *args: Any, threshold: float = 0.95, unlabeled_weight: float = 1.0,
                 augment: dict | None = None, teacher: str = "student",
                 distribution_alignment: bool = False, da_momentum: float = 0.999,
                 threshold_mode: str = "fixed", flex_momentum: float = 0.99,
                 flex_warmup: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_options(threshold=threshold, teacher=teacher, threshold_mode=threshold_mode,
                           da_momentum=da_momentum, flex_momentum=flex_momentum)
        self.threshold, self.unlabeled_weight = threshold, unlabeled_weight
        self.augment = dict(augment or {})
        check_view_options(self.augment, "method.task.augment")
        self.teacher, self.threshold_mode = teacher, threshold_mode
        self.distribution_alignment, self.da_momentum = distribution_alignment, da_momentum
        self.flex_momentum, self.flex_warmup = flex_momentum, flex_warmup
        # Running statistics of the pseudo-labelling (plain tensors, not buffers, for the same
        # reason as pseudo_sums; checkpoints carry them for an exact resume): the model's and
        # the labeled set's class distributions (distribution alignment) and the classes'
        # learning effect (flexmatch); set on first use
        self.p_model: torch.Tensor | None = None
        self.p_target: torch.Tensor | None = None
        self.class_learned: torch.Tensor | None = None
        # [unlabeled seen, accepted, accepted with a known label, accepted and correct]: epoch
        # sums. Not a buffer, so weight averaging (EMA) and checkpoints leave it alone
        self.pseudo_sums = torch.zeros(4)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if not isinstance(batch, dict):
            raise TypeError("method=fixmatch needs labeled and unlabeled batches: set "
                            "data.unlabeled_ratio (the method config does)")
        (xl, yl), (xu, yu) = batch["labeled"], batch["unlabeled"]
        weak, strong = self._views(xu)
        with torch.no_grad():
            probs = self._teacher_probs(weak)
            if self.distribution_alignment:
                probs = self._align(probs, yl)
            confidence, pseudo = probs.max(-1)
            mask = (confidence >= self._thresholds(confidence, pseudo)).float()
        logits_l, logits_s = self._forward_pair(xl, strong)
        sup = self.criterion(logits_l, yl)
        unsup = (F.cross_entropy(logits_s.float(), pseudo, reduction="none") * mask).mean()
        loss = sup + self.unlabeled_weight * unsup
        penalty = None
        if self.penalty is not None:
            penalty = self.penalty(self.net)
            loss = loss + penalty
        self.train_stats.update(logits_l.detach(), yl, loss, penalty)
        known = (yu >= 0).float()  # -1: a pool sample whose true label nobody knows
        self.pseudo_sums = self.pseudo_sums.to(mask.device) + torch.stack(
            [mask.new_tensor(len(mask)), mask.sum(), (mask * known).sum(),
             (mask * (pseudo == yu).float()).sum()])
        self.log_step(loss, **{"train/unsup_loss_step": unsup, "train/mask_rate_step": mask.mean()})
        return loss

    # ------------------------------------------------------------------ pseudo-labels
    def _teacher_probs(self, weak: Any) -> torch.Tensor:
        """Class probabilities of the weak views. ``teacher=student``: the model being trained,
        in its training mode (FixMatch). ``teacher=ema``: the EMA of its weights kept by the
        ``ema`` callback, in eval mode (BatchNorm running statistics, no dropout) — a smoother
        labeller, as in Mean Teacher."""
        if self.teacher == "student":
            return self(weak).float().softmax(-1)
        net = self._ema_net()
        was_training = net.training
        net.eval()
        try:
            return forward_net(net, weak).float().softmax(-1)
        finally:
            net.train(was_training)

    def _ema_net(self) -> torch.nn.Module:
        """The network inside the EMA callback's averaged copy of this task."""
        for cb in getattr(self._trainer, "callbacks", None) or []:
            if isinstance(cb, EMA) and (average := cb.averaged()) is not None:
                return average.net
        raise RuntimeError("method.task.teacher=ema needs the EMA callback "
                           "(method.callbacks.ema, which method=fixmatch sets) during fit")

    def _align(self, probs: torch.Tensor, yl: torch.Tensor) -> torch.Tensor:
        """Distribution alignment (ReMixMatch): scale the probabilities by p_target / p_model
        and renormalise, where p_model is a running mean of the teacher's predictions on the
        unlabeled batches and p_target one of the labeled batches' class frequencies. A model
        that over-predicts a class sees that class's confidence cut, so its pseudo-labels
        cannot snowball into one class."""
        k = probs.shape[1]
        target = F.one_hot(yl, k).float().mean(0).to(probs.device)
        mean = probs.mean(0)
        if self.p_model is None:
            self.p_model, self.p_target = mean.clone(), torch.full_like(mean, 1 / k)
        m = self.da_momentum
        self.p_model = self.p_model.to(probs.device) * m + mean * (1 - m)
        self.p_target = self.p_target.to(probs.device) * m + target * (1 - m)
        aligned = probs * (self.p_target / self.p_model.clamp(min=1e-6))
        return aligned / aligned.sum(1, keepdim=True)

    def _thresholds(self, confidence: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        """Per-sample confidence thresholds. ``fixed``: ``threshold`` for all. ``flexmatch``
        (Zhang et al. 2021, curriculum pseudo-labelling): class c gets
        ``threshold * M(beta_c)``, M(x) = x / (2 - x), beta_c = sigma_c / max(max sigma,
        unused) where sigma_c is the share of unlabeled samples predicted c above
        ``threshold`` and ``unused`` the share predicted nothing above it (``flex_warmup``;
        without it beta_c = sigma_c / max sigma). FlexMatch counts each pool sample's latest
        prediction; here the shares are a running mean over batches (``flex_momentum``, ~one
        pass over the pool at 0.99-0.995), which needs no sample indices. Classes the model has
        learned little of get a lower threshold; the unused share starts at 1, so early on
        every threshold is low."""
        if self.threshold_mode == "fixed":
            return confidence.new_full(confidence.shape, self.threshold)
        k = self.num_classes
        over = confidence >= self.threshold
        counts = torch.bincount(pseudo[over], minlength=k).float()
        shares = torch.cat([counts, (~over).sum().float().view(1)]) / max(len(confidence), 1)
        if self.class_learned is None:  # nothing learned yet: every sample unused
            self.class_learned = torch.cat([torch.zeros(k), torch.ones(1)])
        m = self.flex_momentum
        learned = self.class_learned.to(shares.device) * m + shares * (1 - m)
        self.class_learned = learned
        sigma = learned[:k]
        norm = torch.maximum(sigma.max(), learned[k]) if self.flex_warmup else sigma.max()
        beta = sigma / norm.clamp(min=1e-12)
        return (self.threshold * beta / (2 - beta))[pseudo]

    RUNNING = ("p_model", "p_target", "class_learned")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["fixmatch"] = {k: getattr(self, k) for k in self.RUNNING
                                  if getattr(self, k) is not None}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        for key, value in checkpoint.get("fixmatch", {}).items():
            setattr(self, key, value)

    def _views(self, xu: Any) -> tuple[Any, Any]:
        """Augment in fp32 whatever the precision: grid sampling and intensity maths in bf16
        would quantise the images."""
        with torch.autocast(self.device.type, enabled=False):
            opts = {"max_shift": self.augment.get("max_shift", 0.125)}
            return weak_view(xu, None, **opts), strong_view(xu, None, **self.augment)

    def _forward_pair(self, xl: Any, xs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over labeled and strong images together (BatchNorm sees both); token
        batches are padded to different lengths, so they take two passes."""
        if isinstance(xl, torch.Tensor):
            logits = self(torch.cat([xl, xs]))
            return logits[: len(xl)], logits[len(xl):]
        return self(xl), self(xs)

    def on_train_epoch_end(self) -> None:
        seen, accepted, checkable, correct = self.pseudo_sums.tolist()
        self.log_dict({"train/mask_rate": accepted / max(seen, 1),
                       "train/pseudo_acc": correct / max(checkable, 1)}, sync_dist=True)
        self.pseudo_sums.zero_()
        super().on_train_epoch_end()

