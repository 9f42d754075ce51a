"""Hydra's Optuna sweeper, ending a study whose trials failed with one line instead of the
plugin's traceback. Used by the ``hparams_search`` presets (``hydra.sweeper._target_``)."""

from __future__ import annotations

from hydra.errors import CompactHydraException

try:
    from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper as base
except ImportError:  # the `sweep` extra is not installed: nothing to wrap
    base = None


def _all_failed(exc: BaseException) -> bool:
    # optuna's words when asked for the best of a study without one completed trial
    return isinstance(exc, ValueError) and "No trials are completed" in str(exc)


if base is not None:

    class OptunaSweeper(base.OptunaSweeper):
        """``hydra_optuna_sweeper``'s sweeper; only the ending of a failed study differs."""

        def sweep(self, arguments: list[str]) -> None:
            from dlexp.cluster import TrialFailed

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

        def _sweep_dir(self) -> str:
            return str(getattr(self.sweeper, "sweep_dir", "the sweep directory"))
