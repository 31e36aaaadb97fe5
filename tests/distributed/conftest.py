"""Cross-process fixtures of the distributed mode; the embedded host's helpers come from tests/e2e."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
