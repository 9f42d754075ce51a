"""Lightning's ModelCheckpoint, for a run that resumes into a new run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class ResumableCheckpoint(ModelCheckpoint):
    """Keeps selecting against the best checkpoint so far after a resume into another directory.

    A resumed run writes to its own directory. Lightning then forgets the best score, so the
    first epoch after the resume would always become "best", and the resumed run would test
    another checkpoint than the uninterrupted one. Here the earlier run's best checkpoints stay
    candidates (when their files still exist). Lightning never deletes a file outside its own
    directory, so the earlier run's checkpoints stay intact.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        if state.get("dirpath") != self.dirpath:
            kept = {p: s for p, s in state.get("best_k_models", {}).items() if Path(p).is_file()}
            state.update(dirpath=self.dirpath, best_k_models=kept, last_model_path="")
        super().load_state_dict(state)
