"""What some configs need from dlexp's optional extras: the Hydra plugins of ``[sweep]``, and
Optuna for dlexp's own sweeper (``[sweep]``), and the packages behind ``logger=mlflow``
(``[mlflow]``) and ``logger=wandb`` (``[wandb]``). A
missing one is named, with its install command, before Hydra or the run fails on it."""

from __future__ import annotations

import importlib.util
import re

INSTALL = 'pip install "dlexp[sweep]"'
# a command-line choice -> the module of the plugin or package it needs
NEEDS = {
    r"hparams_search=\S+": "optuna",  # dlexp's Optuna sweeper needs Optuna
    r"hydra/sweeper=optuna": "optuna",
    r"hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",
    r"hydra/launcher=submitit\w*": "hydra_plugins.hydra_submitit_launcher",
    r"hydra/launcher=joblib": "hydra_plugins.hydra_joblib_launcher",
    # logger=mlflow, logger=many, logger=[csv,mlflow], a sweep over logger=csv,mlflow
    r"logger=\[?([\w,]*,)?(mlflow|many)(,[\w,]*)?\]?": "mlflow",
    r"logger=\[?([\w,]*,)?wandb(,[\w,]*)?\]?": "wandb",
}
# a package -> the extra that installs it
EXTRAS = {"optuna": "sweep", "mlflow": "mlflow", "wandb": "wandb"}


def missing(argv: list[str]) -> list[tuple[str, str]]:
    """(argument, plugin module) for each argument whose plugin is not installed."""
    return [(arg, module) for arg in argv for pattern, module in NEEDS.items()
            if re.fullmatch(pattern, arg.lstrip("+~")) and not _installed(module)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def installed(package: str) -> bool:
    """Whether an optional package (a key of :data:`EXTRAS`) can be imported."""
    return _installed(package)


def needs(what: str, module: str) -> str:
    """The line that says ``what`` needs ``module``, and how to install it."""
    if module in EXTRAS:
        return (f"{what} needs {module}, which is not installed: "
                f'pip install "dlexp[{EXTRAS[module]}]"')
    return (f"{what} needs the Hydra plugin {module.rsplit('.', 1)[-1]}, which is not "
            f"installed: {INSTALL}")


def check_installed(argv: list[str]) -> None:
    """Exit with one line when a chosen sweeper, launcher or logger is not installed."""
    found = missing(argv)
    if found:
        arg, module = found[0]
        raise SystemExit(f"error: {needs(arg, module)}")
