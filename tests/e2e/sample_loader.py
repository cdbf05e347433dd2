"""Import a sample's modules by file path, under names no other test uses (every sample's
main module is ``app.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def load_sample(folder: str, module: str = "app") -> ModuleType:
    """``samples/<folder>/<module>.py`` as module ``sample_<folder>_<module>``, once."""
    name = f"sample_{folder}_{module}"
    if name in sys.modules:
        return sys.modules[name]
    path = SAMPLES / folder / f"{module}.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # for the sample's sibling modules
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # dataclasses look their module up there
    spec.loader.exec_module(loaded)
    return loaded
