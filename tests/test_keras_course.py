"""docs/keras_course.md cannot rot: every command in it runs here, on the tiny generated data.

What is read from the guide:

- in shell blocks (```bash), every command, ``\\`` continuations joined and ``#`` comments
  dropped: ``python train.py``, ``python eval.py``, ``python predict.py`` and ``dlexp-export``
  are run; ``dlexp-demo``, ``python demo.py`` and ``tensorboard`` start servers and are listed
  in ``NOT_RUN`` with the tests that cover them; any other command fails, so nothing in a shell
  block goes unchecked;
- in Python blocks, those that use dlexp (``import dlexp``) or a run (``<run>``): executed. The
  Keras blocks, which use neither, are the course's code and are not run;
- in the text, inline code that starts with one of the programs run below and arguments.

How they run:

- ``python train.py ...`` in-process, through ``compose_train`` and ``dlexp.train.train``, with
  ``++trainer.fast_dev_run=true`` (one batch of training, validation and test) on the tiny data
  (``paths.data_dir``, ``data.download=false``), one thread, on the CPU. The run must end with
  status ``ok``. ``-m`` sweeps run every job of the grid, with the checks a sweep job gets.
  ``--cfg``/``--help`` commands are composed and checked, not trained.
- Sizes that only the real data sets can satisfy (``data.val_size`` and ``data.num_labeled``
  counts) are lowered to what the tiny data holds, after composing: no option or setting of
  the guide's is changed otherwise. The figures of the test (``callbacks.evaluation_figures``,
  seconds per run; tested in tests/callbacks) and the progress bar are left out.
- ``<run>`` is the run folder of the nearest training command above it that does not itself
  use ``<run>``; that command then runs for real, briefly (one epoch of two batches), so that
  its checkpoints and figures exist. ``digit.png`` is a drawn digit in the working folder.
- ``eval.py`` through ``dlexp.eval.evaluate``, ``predict.py`` through ``dlexp.predict.main``,
  ``dlexp-export`` through ``dlexp.export.main``, all in-process.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, REPO, compose_train, paper_digit
from omegaconf import DictConfig, open_dict

pytestmark = pytest.mark.integration

GUIDE = REPO / "docs" / "keras_course.md"
RUN = "<run>"
SHELL = {"bash", "sh", "shell", "console"}

# the commands a shell block may hold, and the runner of each
PROGRAMS = {("python", "train.py"): "train", ("python", "eval.py"): "eval",
            ("python", "predict.py"): "predict", ("dlexp-export",): "export"}
DEMO = "serves a page until stopped; tests/test_demo.py and tests/test_demo_browser.py run it"
NOT_RUN = {("dlexp-demo",): DEMO, ("python", "demo.py"): DEMO,
           ("tensorboard",): "a server; tests/test_tensorboard_browser.py runs it",
           ("python", "-m", "pytest"): "this test"}

BEFORE = ["trainer.accelerator=cpu", "threads=1", "data.download=false"]  # the guide's follow
FAST_DEV_RUN = ["++trainer.fast_dev_run=true"]
SHORT_RUN = ["++trainer.max_epochs=1", "++trainer.limit_train_batches=2",  # writes checkpoints
             "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1"]
# counts the tiny data can hold (600/200 digits, 200/100 reviews): larger ones are lowered
TINY = {"mnist": {"val_size": 100, "num_labeled": 100},
        "imdb": {"val_size": 40, "num_labeled": 100}}
SLOW_CALLBACKS = ("progress_bar", "evaluation_figures")
HYDRA_FLAGS = {"--cfg", "-c", "--help", "-h"}  # composed and checked, nothing trained


# ---------------------------------------------------------------------------- reading
@dataclass
class Command:
    line: int  # in the guide
    text: str  # as written: continuations joined, comment dropped
    kind: str  # a PROGRAMS value, "python", "not_run" or "unknown"
    args: list[str] = field(default_factory=list)  # after the program's name
    code: str = ""  # a Python block
    source: Command | None = None  # the training command whose run <run> stands for

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.kind}"


def read_guide(markdown: str) -> list[Command]:
    """The commands of a guide, in the guide's order, with their ``<run>`` sources resolved."""
    commands: list[Command] = []
    prose = []  # the text outside code blocks, line numbers kept
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\w*)", lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith("```"):
            body.append(lines[i])
            i += 1
        prose += [""] * (len(body) + 2)
        i += 1
        if fence.group(1) in SHELL:
            commands += [shell_command(text, start + 1 + n) for n, text in logical_lines(body)]
        elif fence.group(1) == "python" and ("import dlexp" in "\n".join(body)
                                             or RUN in "\n".join(body)):
            commands.append(Command(start, f"python block at line {start}", "python",
                                    code="\n".join(body)))
    text = "\n".join(prose)
    for span in re.finditer(r"`([^`]+)`", text):
        words = " ".join(span.group(1).split())
        if any(words.startswith(" ".join(p) + " ") for p in PROGRAMS):  # not the name alone
            commands.append(shell_command(words, text.count("\n", 0, span.start()) + 1))
    commands = [c for c in sorted(commands, key=lambda c: c.line) if c.text]
    source = None
    for command in commands:
        if RUN in command.text or RUN in command.code:
            command.source = source
        elif command.kind == "train" and not set(command.args) & (HYDRA_FLAGS | {"-m"}):
            source = command
    return commands


def logical_lines(body: list[str]) -> list[tuple[int, str]]:
    """(offset of the first line, text) per command, ``\\`` continuations joined."""
    out, pending, first = [], "", 0
    for n, line in enumerate(body):
        if not pending:
            first = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def shell_command(text: str, line: int) -> Command:
    words = shlex.split(text, comments=True)
    shown = shlex.join(words)
    for table, known in ((PROGRAMS, True), (NOT_RUN, False)):
        for prefix, value in table.items():
            if tuple(words[: len(prefix)]) == prefix:
                kind = value if known else "not_run"
                return Command(line, shown, kind, words[len(prefix):])
    return Command(line, shown, "unknown", words)


COMMANDS = read_guide(GUIDE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- running
class Runner:
    """Runs guide commands in ``workdir`` on the tiny data; keeps the short runs that
    ``<run>`` stands for (by command, so a command written twice runs once)."""

    def __init__(self, commands: list[Command], data: Path, workdir: Path,
                 new_dir: Callable[[str], Path]) -> None:
        self.commands, self.data, self.workdir, self.new_dir = commands, data, workdir, new_dir
        self.short_runs: dict[tuple[str, ...], Path] = {}

    def run(self, command: Command) -> None:
        if command.kind == "not_run":
            pytest.skip(f"{command.text}: not run here: {self.reason(command)}")
        if command.kind == "unknown":
            pytest.fail(f"line {command.line}: {command.text!r} is no command this test knows: "
                        f"write one of {[' '.join(p) for p in (*PROGRAMS, *NOT_RUN)]}, or add a "
                        f"runner for it here")
        command = self.resolved(command)
        with contextlib.chdir(self.workdir):
            if command.kind == "train" and self.is_source(command):
                self.short_run(command)
            else:
                getattr(self, f"run_{command.kind}")(command)

    @staticmethod
    def reason(command: Command) -> str:
        return next(why for prefix, why in NOT_RUN.items()
                    if command.text.startswith(" ".join(prefix)))

    def is_source(self, command: Command) -> bool:
        return any(c.source is not None and c.source.args == command.args
                   for c in self.commands)

    def resolved(self, command: Command) -> Command:
        """``<run>`` replaced by the folder of a short run of its source command."""
        if RUN in command.text or RUN in command.code:
            assert command.source is not None, \
                f"line {command.line}: <run> with no training command above it"
            run = str(self.short_run(command.source))
            command = Command(command.line, command.text.replace(RUN, run), command.kind,
                              [a.replace(RUN, run) for a in command.args],
                              command.code.replace(RUN, run))
        left = re.findall(r"<[\w ]+>", command.text + command.code)
        assert not left, f"line {command.line}: placeholder {left[0]} has no value in this test"
        return command

    # -------------------------------------------------------------------- train.py
    def short_run(self, command: Command) -> Path:
        key = tuple(command.args)
        if key not in self.short_runs:
            (job,) = self.jobs(command)
            out = self.new_dir("short_run")
            self.train(job + SHORT_RUN, out)
            self.short_runs[key] = out
        return self.short_runs[key]

    def run_train(self, command: Command) -> None:
        sweep = bool({"-m", "--multirun"} & set(command.args))
        for job in self.jobs(command):
            if HYDRA_FLAGS & set(command.args):
                from dlexp import config
                config.check(self.compose(job, self.new_dir("composed")))
            else:
                self.train(job + FAST_DEV_RUN, self.new_dir("train"), sweep)

    def jobs(self, command: Command) -> list[list[str]]:
        """The overrides of each job: one, or every combination of a ``-m`` sweep."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        words, overrides, sweep = list(command.args), [], False
        while words:
            word = words.pop(0)
            if word in ("-m", "--multirun"):
                sweep = True
            elif word in ("--cfg", "-c"):
                words.pop(0)
            elif word.startswith("-") and word not in HYDRA_FLAGS:
                pytest.fail(f"line {command.line}: flag {word} is not run by this test")
            elif word not in HYDRA_FLAGS:
                overrides.append(word)
        if not sweep:
            return [overrides]
        parsed = OverridesParser.create().parse_overrides(overrides)
        values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
                  if o.is_sweep_override() else [o.input_line] for o in parsed]
        return [list(job) for job in itertools.product(*values)]

    def compose(self, overrides: list[str], out: Path) -> DictConfig:
        cfg = compose_train([*BEFORE, *overrides], out, self.data)
        data = "imdb" if "imdb" in cfg.data._target_ else "mnist"
        with open_dict(cfg):
            for key, most in TINY[data].items():
                value = cfg.data.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > most:
                    cfg.data[key] = most
            for name in SLOW_CALLBACKS:
                if cfg.get("callbacks"):
                    cfg.callbacks.pop(name, None)
            cfg.trainer.enable_progress_bar = False
        return cfg

    def train(self, overrides: list[str], out: Path, sweep: bool = False) -> None:
        from dlexp import config
        from dlexp.train import train

        cfg = self.compose(overrides, out)
        if sweep:  # what a multirun job is checked for, before it trains
            config.check(cfg, sweeping=True)
        metrics = train(cfg)
        assert metrics["status"] == "ok", f"{' '.join(overrides)}: {metrics.get('error')}"

    # -------------------------------------------------------------------- the others
    def run_eval(self, command: Command) -> None:
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        from dlexp.eval import evaluate, positional_ckpt

        out = self.new_dir("eval")
        overrides = [f"paths.log_dir={out}", f"hydra.run.dir={out}",
                     f"paths.data_dir={self.data}", "trainer.accelerator=cpu",
                     "+trainer.enable_progress_bar=false",
                     *positional_ckpt(["eval.py", *command.args])[1:]]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("eval", overrides=overrides, return_hydra_config=True)
        GlobalHydra.instance().clear()
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
        metrics = evaluate(cfg)
        assert metrics["status"] == "ok" and "test/acc" in metrics, metrics
        assert (out / "predictions.csv").is_file()

    def run_predict(self, command: Command) -> None:
        from dlexp.predict import main

        lines = self.main(main, command).splitlines()
        words, inputs = list(command.args[1:]), []
        while words:
            word = words.pop(0)
            if word in ("--top-k", "--file"):
                words.pop(0)
            elif not word.startswith("--"):
                inputs.append(word)
        assert len(lines) == len(inputs), lines  # one answer per image or review

    def run_export(self, command: Command) -> None:
        pytest.importorskip("onnx", reason="dlexp-export needs the export extra")
        from dlexp.export import main

        written = Path(self.main(main, command).strip())
        assert written.is_file() and Path(f"{written}.json").is_file()

    @staticmethod
    def main(main: Callable[[list[str]], None], command: Command) -> str:
        """A command-line entry point's standard output; its exit status must be 0."""
        import io
        import sys

        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main(command.args)
        except SystemExit as e:
            if e.code not in (0, None):
                pytest.fail(f"line {command.line}: {command.text} exited with {e.code}: "
                            f"{err.getvalue().strip()}")
        print(out.getvalue(), file=sys.stderr)  # shown when the test fails
        return out.getvalue()

    def run_python(self, command: Command) -> None:
        code = compile(command.code, f"{GUIDE.name}:{command.line}", "exec")
        exec(code, {"__name__": "__guide__"})


@pytest.fixture(scope="module")
def runner(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Runner:
    from PIL import Image

    workdir = tmp_path_factory.mktemp("guide")
    Image.fromarray(paper_digit()).save(workdir / "digit.png")
    return Runner(COMMANDS, tiny_data, workdir, tmp_path_factory.mktemp)


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_guide_command_runs(command: Command, runner: Runner) -> None:
    runner.run(command)


def test_the_guide_is_read() -> None:
    """A change in the guide's layout must not silently leave commands out."""
    kinds = [c.kind for c in COMMANDS]
    assert kinds.count("train") >= 40, kinds.count("train")
    assert {"eval", "predict", "export", "python", "not_run"} <= set(kinds)
    assert "unknown" not in kinds, [c.text for c in COMMANDS if c.kind == "unknown"]
    multiline = next(c for c in COMMANDS if "spatial_dropout: false}]" in c.text)
    assert "model.dropout=0.5" in multiline.text  # a `\` continuation, joined
    assert all("#" not in c.text for c in COMMANDS if c.kind == "train")  # comments dropped


@pytest.mark.parametrize(("guide", "error"), [
    ("python train.py model=mlp 'model.hiden=[800,800]'", "model.hiden"),  # a misspelt key
    ("python train.py optimizer=sgdd", "optimizer/sgdd"),                  # a misspelt option
    ("python train.py model=mlp model.activation=swish", "unknown activation 'swish'"),
    ("python train.py -m model=mlp data.val_size=0 callbacks=no_early_stopping "
     "loss=mse,cross_entropy", "a sweep optimises monitor.metric=val/acc"),
    ("python trian.py model=mlp", "is no command this test knows"),
    ("python predict.py <ckpt> digit.png", "placeholder <ckpt> has no value"),
])
def test_a_wrong_command_fails(guide: str, error: str, runner: Runner) -> None:
    """What the test catches: each of these, written in the guide, fails it."""
    (command,) = read_guide(f"```bash\n{guide}\n```\n")
    with pytest.raises(BaseException, match=re.escape(error)):
        runner.run(command)
