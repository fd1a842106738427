"""The real and documented amoCRM responses in ``shared/amocrm-samples`` beside the clone.

``AMOCRM_SAMPLES_DIR`` points elsewhere; a missing folder is an error, never a skip, so a
run without the samples cannot pass as if it had checked them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SAMPLES = Path(
    os.environ.get("AMOCRM_SAMPLES_DIR") or Path(__file__).resolve().parents[2] / "shared" / "amocrm-samples"
)


def load_sample(name: str) -> dict:
    """One sample response, parsed."""
    path = SAMPLES / name
    if not path.is_file():
        raise FileNotFoundError(
            f"amoCRM sample {path} not found: clone beside shared/ or set AMOCRM_SAMPLES_DIR to the samples folder"
        )
    return json.loads(path.read_text(encoding="utf-8"))
