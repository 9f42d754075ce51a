"""Hydra plugins (and the packages of dlexp's own Optuna sweeper) that some configs need and
that come with the optional ``[sweep]`` extra: a missing one is named, with its install command,
before Hydra fails on it."""

from __future__ import annotations

import importlib.util
import re

INSTALL = 'pip install "dlexp[sweep]"'
# a command-line choice -> the module it needs (dlexp's Optuna sweeper needs Optuna)
NEEDS = {
    r"hparams_search=\S+": "optuna",
    r"hydra/sweeper=optuna": "optuna",
    r"hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",
    r"hydra/launcher=submitit\w*": "hydra_plugins.hydra_submitit_launcher",
    r"hydra/launcher=joblib": "hydra_plugins.hydra_joblib_launcher",
}


def missing(argv: list[str]) -> list[tuple[str, str]]:
    """(argument, plugin module) for each argument whose plugin is not installed."""
    return [(arg, module) for arg in argv for pattern, module in NEEDS.items()
            if re.fullmatch(pattern, arg.lstrip("+~")) and not _installed(module)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def check_installed(argv: list[str]) -> None:
    """Exit with one line when a chosen sweeper or launcher is not installed."""
    found = missing(argv)
    if found:
        arg, module = found[0]
        what = (f"the Hydra plugin {module.rsplit('.', 1)[-1]}" if module.startswith("hydra_plugins.")
                else f"the package {module}")
        raise SystemExit(f"error: {arg} needs {what}, which is not installed: {INSTALL}")
