"""``longpos convert``: write a released reference checkpoint once in longpos form.

Sakana's RePo-OLMo2 checkpoint (arXiv 2512.14391) and the DroPE checkpoints (arXiv
2512.12167) load through :func:`longpos.hf.reference.load_reference_model`; this command saves
the result with ``save_pretrained`` (a registered ``<family>_longpos`` folder that stock
transformers 5.x plus ``import longpos.hf`` reopens exactly, without remote code) and copies the
source's tokenizer files, then prints what it mapped.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longpos.hf.reference import detect_reference_layout, load_reference_model, mapping_report
from longpos.train.model_io import TOKENIZER_FILES


@dataclass
class ConvertArgs:
    """Write a released RePo / DroPE reference checkpoint as a longpos Hugging Face folder."""

    model: str
    """The reference checkpoint folder (Sakana's RePo-OLMo2, or a DroPE ``<base>_drope`` model)."""
    out: str
    """Output folder (must not exist or be empty)."""
    dtype: str | None = None
    """float32 | bfloat16 | float16; default the checkpoint's own."""


def run(args: ConvertArgs) -> dict[str, Any]:
    """Convert, save, copy the tokenizer files, print the mapping; returns a summary."""
    source, out = Path(args.model), Path(args.out)
    layout = detect_reference_layout(source)
    if layout is None:
        raise ValueError(
            f"{source} is not a reference checkpoint (no pe_config, no <base>_drope model_type): "
            "longpos opens it as it is (longpos.hf.load_hf_model); nothing to convert"
        )
    if out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the source folder: choose another output folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not empty: choose another output folder")
    mapping = mapping_report(source)
    model: Any = load_reference_model(source, dtype=args.dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    copied = []
    for name in TOKENIZER_FILES:  # generation_config.json: save_pretrained wrote the loaded one
        if (source / name).is_file() and not (out / name).exists():
            shutil.copy2(source / name, out / name)
            copied.append(name)
    for line in mapping.lines():
        print(line)
    print(f"copied {', '.join(copied) if copied else 'no tokenizer files'}")
    print(f"wrote {out} (model_type {model.config.model_type}); open it with "
          f"longpos.hf.load_hf_model({str(out)!r})")  # fmt: skip
    return {
        "layout": layout,
        "out": str(out),
        "model_type": model.config.model_type,
        "tensors": len(mapping.tensors),
        "renamed": len(mapping.renamed),
        "dropped": sorted(mapping.dropped),
        "copied": copied,
    }


__all__ = ["ConvertArgs", "run"]
