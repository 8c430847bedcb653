"""Every benchmark script imports: a renamed library name breaks a script that no other test
runs (``eval_throughput.py`` and ``fwpkm_quality.py`` once imported a removed constant)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[2] / "benchmarks").glob("*.py"))


def test_the_benchmarks_folder_has_scripts():
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_script_imports(script, monkeypatch):
    name = f"bench_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    monkeypatch.setattr(sys, "path", list(sys.path))  # scripts may add benchmarks/ to it
    spec.loader.exec_module(module)  # runs the imports, not main()
    assert module.__doc__, f"{script.name} has no docstring saying what it measures"
