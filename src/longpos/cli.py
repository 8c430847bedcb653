"""The ``longpos`` command line, generated from the config dataclasses by tyro.

Every option is a dataclass field with nested dotted names (``--model.n_layers 6``,
``--model.rope.scaling yarn``, ``--train.optim.lr 1e-3``); unknown options and invalid
values are rejected with a message. ``--preset NAME`` (or ``--init-from CHECKPOINT``, or
``--hf-model FOLDER``) makes that model config the defaults of the ``--model.*`` options, which
still override them.
"""

from __future__ import annotations

import dataclasses
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
    import torch

    import longpos

    data: dict[str, Any] = {
        "longpos": longpos.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import transformers

        data["transformers"] = transformers.__version__
    except ImportError:
        data["transformers"] = None
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {value}")
    return data


def commands() -> dict[str, tuple[type, Any]]:
    """Subcommand -> (arguments dataclass, function running it)."""
    from longpos.demo import DemoArgs, run_demo
    from longpos.eval.command import EvalArgs
    from longpos.eval.command import run as run_eval_command
    from longpos.train.command import TrainArgs
    from longpos.train.command import run as run_train

    return {
        "info": (InfoArgs, run_info),
        "train": (TrainArgs, run_train),
        "eval": (EvalArgs, run_eval_command),
        "demo": (DemoArgs, run_demo),
        "viz positions": (VizPositionsArgs, run_viz_positions),
        "report": (ReportArgs, run_report),
    }


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
    """Defaults of ``cls`` whose model config comes from ``--init-from`` or ``--preset``
    (None for commands without a ``model: ModelConfig`` field)."""
    from longpos.config import ModelConfig

    if not any(f.name == "model" and f.type in (ModelConfig, "ModelConfig")
               for f in dataclasses.fields(cls)):  # fmt: skip
        return None
    default = cls()
    init_from = option_from_argv(argv, "--init-from", "--init_from")
    preset_name = option_from_argv(argv, "--preset")
    hf_model = option_from_argv(argv, "--hf-model", "--hf_model")
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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in table:  # two-word commands
        argv = [f"{argv[0]} {argv[1]}", *argv[2:]]
    elif argv and argv[0].replace("-", " ") in table:  # "viz-positions" as in the listing
        argv = [argv[0].replace("-", " "), *argv[1:]]
    if not argv or argv[0] not in table:
        # Top-level help, or an unknown command: let tyro print the listing / the error.
        tyro.extras.subcommand_cli_from_dict(
            {name.replace(" ", "-"): cls for name, (cls, _) in table.items()},
            prog="longpos",
            description="longpos: learned, dropped and fast-weight positions for long contexts.",
            args=argv,
        )
        return
    name, rest = argv[0], argv[1:]
    cls, run = table[name]
    try:
        default = model_defaults(cls, rest)
        args = tyro.cli(cls, args=rest, default=default, prog=f"longpos {name}")
        run(args)
    except ValueError as exc:  # a user-caused error: say what to change, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
