"""Property-based bad-input tests (hypothesis): random and mutated inputs to the plan
loader, the manifest reader, the envelope reader and the tar restorer give a clear error
(a DrfleetError subclass), never a crash, a hang, or a write outside the target.

Each reader starts from the seeds in ``corpus/<reader>/`` and mutates them. ``make test``
runs a short budget (FUZZ_EXAMPLES, default 60 per property); ``make fuzz`` runs a long
one (DRFLEET_FUZZ_EXAMPLES=3000). A failing input hypothesis finds is printed; add it to
the corpus once the bug it found is fixed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

CORPUS = Path(__file__).parent / "corpus"
FUZZ_EXAMPLES = int(os.environ.get("DRFLEET_FUZZ_EXAMPLES", "60"))

settings.register_profile(
    "fuzz", max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=FUZZ_EXAMPLES <= 60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large])
FUZZ = settings.get_profile("fuzz")


def corpus(reader: str) -> list[bytes]:
    """The seed inputs of ``reader``, sorted by file name."""
    return [p.read_bytes() for p in sorted((CORPUS / reader).iterdir()) if p.is_file()]
