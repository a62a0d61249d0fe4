"""Fixtures shared by the whole suite. Each fixture module starts real servers on free
loopback ports and stops them afterwards; none depends on services already running."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DRFLEET_HOME", str(ROOT / ".drfleet" / "test-home"))

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.redis_server",
    "tests.fixtures.sentinel",
    "tests.fixtures.postgres_cluster",
    "tests.fixtures.fleet",
    "tests.fixtures.s3_server",
    "tests.fixtures.faulty_s3",
    "tests.fixtures.pitr_cluster",
    "tests.fixtures.alertmanager",
    "tests.fixtures.rclone",
    "tests.fixtures.azurite",
]
