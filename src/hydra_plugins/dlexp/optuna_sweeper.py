"""Hydra's Optuna sweeper, ending a study whose trials failed with one line instead of the
plugin's traceback. Used by the ``hparams_search`` presets (``hydra.sweeper._target_``)."""

from __future__ import annotations

import logging

from hydra.errors import CompactHydraException

try:
    from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper as base
except ImportError:  # the `sweep` extra is not installed: nothing to wrap
    base = None

log = logging.getLogger(__name__)


def _all_failed(exc: BaseException) -> bool:
    # optuna's words when asked for the best of a study without one completed trial
    return isinstance(exc, ValueError) and "No trials are completed" in str(exc)


if base is not None:

    class OptunaSweeper(base.OptunaSweeper):
        """``hydra_optuna_sweeper``'s sweeper; a resumed study reseeds its sampler, and a failed
        study ends in one line."""

        def sweep(self, arguments: list[str]) -> None:
            from dlexp.cluster import TrialFailed

            self._reseed_resumed_study()
            try:
                return super().sweep(arguments)
            except TrialFailed as e:  # more failures than hydra.sweeper.max_failure_rate
                raise CompactHydraException(
                    f"Optuna study stopped: more trials failed than "
                    f"hydra.sweeper.max_failure_rate allows; the first failure: {e}. "
                    f"Each trial's error is in its metrics.json under {self._sweep_dir()} "
                    f"(dlexp-report {self._sweep_dir()} lists them)") from None
            except ValueError as e:
                if not _all_failed(e):
                    raise
                raise CompactHydraException(
                    f"Optuna study ended with no successful trial: every trial failed. "
                    f"Each trial's error is in its metrics.json under {self._sweep_dir()} "
                    f"(dlexp-report {self._sweep_dir()} lists them)") from None

        def _reseed_resumed_study(self) -> None:
            """A seeded sampler replays the same draws in every process, so a study resumed from
            its storage would repeat its first trials. Continuing a study that holds N trials
            uses seed + N instead: still deterministic, and a fresh study still reproduces."""
            impl = self.sweeper
            cfg = getattr(impl, "config", None)
            if impl.storage is None or impl.study_name is None or cfg is None:
                return
            sampler_cfg = cfg.hydra.sweeper.get("sampler")
            seed = None if sampler_cfg is None else sampler_cfg.get("seed")
            if seed is None:
                return
            import optuna
            from hydra.utils import instantiate

            try:
                study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
            except KeyError:  # no such study there yet: a fresh start keeps the seed
                return
            n = len(study.get_trials(deepcopy=False))
            if n == 0:
                return
            new_seed = (seed + n) % 2**32
            impl.sampler = instantiate(sampler_cfg, seed=new_seed)
            log.info(f"Resuming study {impl.study_name} after {n} trials: sampler seed "
                     f"{seed} + {n} = {new_seed}")

        def _sweep_dir(self) -> str:
            return str(getattr(self.sweeper, "sweep_dir", "the sweep directory"))
