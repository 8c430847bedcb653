"""The ``longpos`` command line, generated from the config dataclasses by tyro.

Every option is a dataclass field with nested dotted names (``--model.n_layers 6``,
``--model.rope.scaling yarn``); unknown options and invalid values are rejected with
a message. Each subcommand lives in its own function below.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

import tyro


def info(json_output: bool = False) -> None:
    """Print versions, the compute device and thread counts.

    Args:
        json_output: Print one JSON object instead of a table.
    """
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
    if json_output:
        print(json.dumps(data, indent=2))
        return
    width = max(map(len, data))
    for key, value in data.items():
        print(f"{key:<{width}}  {value}")


def commands() -> dict[str, Any]:
    """Subcommand name -> function; each function's signature defines its options."""
    return {"info": info}


def main(argv: list[str] | None = None) -> None:
    tyro.extras.subcommand_cli_from_dict(
        commands(),
        prog="longpos",
        description="longpos: learned, dropped and fast-weight positions for long contexts.",
        args=sys.argv[1:] if argv is None else argv,
    )


if __name__ == "__main__":
    main()
