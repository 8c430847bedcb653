"""Make the helper modules at the top of ``tests/`` (``model_builders``) importable from every
test folder, as ``from model_builders import ...``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
