"""The ``longpos`` command line, generated from the config dataclasses by tyro.

Every option is a dataclass field with nested dotted names (``--model.n_layers 6``,
``--model.rope.scaling yarn``, ``--train.optim.lr 1e-3``); unknown options and invalid
values are rejected with a message. ``--preset NAME`` (or ``--init-from CHECKPOINT``, or
``--hf-model FOLDER``) makes that model config the defaults of the ``--model.*`` options, which
still override them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

import tyro


@dataclass
class VizPositionsArgs:
    """Write a self-contained HTML page of the positions a model assigns to each token."""

    model: str
    """A longpos checkpoint folder (or a Hugging Face model folder, with longpos[hf])."""
    out: str = "positions.html"
    """The HTML file to write."""
    text: str | None = None
    """Text to show (text models); exclusive with --task."""
    task: str | None = None
    """A task of the suite; a sample of it is generated (needle and query marked)."""
    length: int | None = None
    """Length in tokens of the task sample."""
    seed: int = 0
    """Seed of the task sample."""


def run_viz_positions(args: VizPositionsArgs) -> None:
    from longpos.viz.positions import viz_positions_command

    path = viz_positions_command(
        args.model, args.out, text=args.text, task=args.task, length=args.length, seed=args.seed
    )
    print(f"wrote {path}")


@dataclass
class ReportArgs:
    """Turn evaluation folders of several models into report.md with tables and plots."""

    runs: tyro.conf.Positional[tuple[str, ...]]
    """Evaluation output folders (each with results.json from longpos eval)."""
    out: str = "longpos-report"
    """Output folder."""
    title: str = "longpos evaluation report"
    train_length: int | None = None
    """Training length, marked on the plots."""


def run_report(args: ReportArgs) -> None:
    from longpos.viz.report import write_report

    path = write_report(list(args.runs), args.out, title=args.title, train_length=args.train_length)
    print(f"wrote {path}")


@dataclass
class InfoArgs:
    """Print versions, the compute device and thread counts."""

    json: bool = False
    """Print one JSON object instead of a table."""


def run_info(args: InfoArgs) -> dict[str, Any]:
    from importlib import metadata

    import torch  # the device and threads need it (the slowest import of this command)

    import longpos

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    data: dict[str, Any] = {
        "longpos": longpos.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "transformers": version("transformers"),  # not imported: its version is enough
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {value}")
    return data


COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "info": ("longpos.cli", "InfoArgs", "run_info",
             "Print versions, the compute device and thread counts."),
    "train": ("longpos.train.command", "TrainArgs", "run", "Train a longpos model."),
    "eval": ("longpos.eval.command", "EvalArgs", "run",
             "Evaluate a model on tasks of the suite at several lengths."),
    "demo": ("longpos.demo", "DemoArgs", "run_demo",
             "Train tiny RoPE / NoPE / R2N1 / RePo / DroPE models on noisy multi-key retrieval "
             "and compare them at 1x, 2x and 4x the training length."),
    "viz positions": ("longpos.cli", "VizPositionsArgs", "run_viz_positions",
                      "Write a self-contained HTML page of the positions a model assigns to "
                      "each token."),
    "report": ("longpos.cli", "ReportArgs", "run_report",
               "Turn evaluation folders of several models into report.md with tables and plots."),
    "export-lm-eval": ("longpos.eval.lm_eval_export", "ExportLMEvalArgs", "run",
                       "Export tasks of the suite as an lm-evaluation-harness task folder "
                       "(--include_path)."),
    "convert": ("longpos.hf.convert_command", "ConvertArgs", "run",
                "Write a released RePo / DroPE reference checkpoint once as a longpos Hugging Face "
                "folder."),
}  # fmt: skip
"""Subcommand -> (module, arguments dataclass, function, one-line description); modules are
imported only for the command that runs, so ``longpos --help`` starts without torch."""

HIDDEN_HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "train": ("model.repo", "model.temperature", "model.rope", "model.memory", "subcommands"),
    "eval": (),
}
"""Option groups ``--help`` leaves out (rare options); ``--help-all`` shows them."""


def command(name: str) -> tuple[type, Any]:
    """(arguments dataclass, function running it) of subcommand ``name``."""
    import importlib

    module, cls, func, _ = COMMANDS[name]
    mod = importlib.import_module(module)
    return getattr(mod, cls), getattr(mod, func)


def commands() -> dict[str, tuple[type, Any]]:
    """Subcommand -> (arguments dataclass, function running it) (imports every command)."""
    return {name: command(name) for name in COMMANDS}


def option_from_argv(argv: list[str], *names: str) -> str | None:
    """The value given to any of ``names`` (``--opt VALUE`` or ``--opt=VALUE``)."""
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def model_defaults(cls: type, argv: list[str]) -> Any:
    """Defaults of ``cls`` whose model config comes from ``--hf-model``, ``--init-from``,
    ``--preset`` or ``--recipe`` (None for commands without a ``model: ModelConfig`` field)."""
    from longpos.config import ModelConfig

    if not any(f.name == "model" and f.type in (ModelConfig, "ModelConfig")
               for f in dataclasses.fields(cls)):  # fmt: skip
        return None
    default = cls()
    init_from = option_from_argv(argv, "--init-from", "--init_from")
    preset_name = option_from_argv(argv, "--preset")
    recipe_name = option_from_argv(argv, "--recipe")
    hf_model = option_from_argv(argv, "--hf-model", "--hf_model")
    if recipe_name is not None and hasattr(default, "train"):
        from longpos.train.recipes import recipe

        model, train = recipe(recipe_name)
        default = dataclasses.replace(default, model=model, train=train, recipe=recipe_name)
    if hf_model is not None:  # a Hugging Face folder: its own options are the defaults
        from longpos.hf.loading import model_config_view

        return dataclasses.replace(default, model=model_config_view(hf_model))
    if init_from is not None:
        from longpos.checkpoint import read_config

        return dataclasses.replace(default, model=read_config(init_from)[0])
    if preset_name is not None:
        from longpos.config import preset

        return dataclasses.replace(default, model=preset(preset_name), preset=preset_name)
    return default


def one_line(text: str) -> str:
    """An error message (possibly several lines, or one of tyro's boxes) as one line."""
    title, parts = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("╭"):
            title = line.strip("╭╮─ ")
            continue
        if line.startswith("╰"):
            break
        inner = line.strip("│").strip()
        if inner and set(inner) <= {"─"}:
            break  # tyro's rule before the help hints: the message is above it
        if inner:
            parts.append(inner)
    message = " ".join(" ".join(parts).split()) or " ".join(text.split())
    if title and not message.startswith(title):
        message = f"{title}: {message}"
    return message


def fail(message: str, hint: str = "") -> None:
    """Print ``error: MESSAGE`` on one line and exit with status 2."""
    print(f"error: {one_line(message)}{hint}", file=sys.stderr)
    raise SystemExit(2)


def filtered_help(text: str, name: str) -> str:
    """tyro's help of ``name`` without the groups of :data:`HIDDEN_HELP_GROUPS`."""
    hidden = HIDDEN_HELP_GROUPS.get(name, ())
    out: list[str] = []
    dropped: list[str] = []
    keep = True
    for line in text.splitlines():
        if line.startswith("╭"):
            group = line.strip("╭╮─ ").removesuffix(" options")
            keep = not any(group == h or group.startswith(h + ".") for h in hidden)
            if not keep:
                dropped.append(group)
        if keep:
            out.append(line)
        if line.startswith("╰"):
            keep = True
    if dropped:
        out.append(f"Rare options are left out ({', '.join(dropped)}): "
                   f"longpos {name} --help-all lists every option.")  # fmt: skip
    return "\n".join(out) + "\n"


class Utf8Buffer(io.StringIO):
    """A text buffer that says it is UTF-8, so tyro draws its boxes as on a terminal."""

    encoding = "utf-8"  # type: ignore[assignment]


def parse(name: str, cls: type, rest: list[str]) -> Any:
    """tyro's parse of ``rest``: help is shortened (``--help-all``: whole), errors are one
    line with exit status 2."""
    import contextlib

    import tyro

    default = model_defaults(cls, rest)
    help_all = "--help-all" in rest
    wants_help = help_all or "--help" in rest or "-h" in rest
    if help_all:
        rest = ["--help" if a == "--help-all" else a for a in rest]
    err, out = Utf8Buffer(), Utf8Buffer()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90" if wants_help else "400"  # one column; long error lines
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = tyro.cli(cls, args=rest, default=default, prog=f"longpos {name}")
    except SystemExit as exc:
        if exc.code not in (0, None):
            fail(err.getvalue() or out.getvalue(), f" (longpos {name} --help lists the options)")
        text = out.getvalue()
        sys.stdout.write(text if help_all else filtered_help(text, name))
        sys.stderr.write(err.getvalue())
        raise
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    if hasattr(args, "vocab_size_given"):  # from scratch, the vocabulary follows the data
        args.vocab_size_given = any(
            a.split("=", 1)[0] in ("--model.vocab_size", "--model.vocab-size") for a in rest
        )
    return args


def top_level(argv: list[str]) -> None:
    """``longpos --help`` and unknown commands: tyro's listing, from light placeholder
    classes (the commands' modules are not imported)."""
    import contextlib

    import tyro

    table: dict[str, Any] = {
        name.replace(" ", "-"): dataclasses.make_dataclass(
            name.title().replace(" ", ""), [], namespace={"__doc__": desc}
        )
        for name, (_, _, _, desc) in COMMANDS.items()
    }
    err = Utf8Buffer()
    try:
        with contextlib.redirect_stderr(err):
            tyro.extras.subcommand_cli_from_dict(
                table, prog="longpos", args=argv,
                description="longpos: learned, dropped and fast-weight positions for long "
                "contexts. `longpos COMMAND --help` lists a command's options.",
            )  # fmt: skip
    except SystemExit as exc:
        if exc.code not in (0, None):
            fail(err.getvalue(), " (longpos --help lists the commands)")
        raise


def user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is caused by the user's input (bad value, missing or unreadable file,
    not enough memory), as opposed to a bug."""
    if isinstance(exc, ValueError | OSError | ImportError):
        return True
    return type(exc).__name__ == "OutOfMemoryError"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:  # two-word commands
        argv = [f"{argv[0]} {argv[1]}", *argv[2:]]
    elif argv and argv[0].replace("-", " ") in COMMANDS:  # "viz-positions" as in the listing
        argv = [argv[0].replace("-", " "), *argv[1:]]
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] == "viz":
            fail("'viz' needs a subcommand: longpos viz positions ...")
        top_level(argv)
        return
    name, rest = argv[0], argv[1:]
    try:
        cls, run = command(name)
        args = parse(name, cls, rest)
        run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        if not user_error(exc):
            raise  # a bug: keep the traceback
        message = str(exc) or type(exc).__name__
        if type(exc).__name__ == "OutOfMemoryError":
            message = f"out of memory ({message}): use shorter lengths or a smaller batch"
        fail(message)


if __name__ == "__main__":
    main()
