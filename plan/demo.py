"""The embedded demo plan: two regions, filesystem stores and keyrings under
DRFLEET_HOME/demo, and datasets that exist on any machine (a generated file tree, a
Redis server the demo starts: its ``cache`` dataset backs up the fleet's own embedded Redis,
whose URL ``drfleet up`` writes 0600 to DRFLEET_HOME/embedded-redis.url), and a recovery
section on the ``local`` cloud provider (servers are sshd processes on this machine), so the
catastrophic runbook and failover drills run here. ``drfleet up`` and ``make demo`` use it
when no plan is given, with the same home and state."""

from __future__ import annotations

import subprocess
from pathlib import Path

from drfleet.paths import drfleet_home

DEMO_PLAN = """\
# drfleet's embedded demo plan (generated; edit freely).
version: 1
name: demo
regions:
  - {{name: eu-central, primary: true}}
  - {{name: us-east}}
storage:
  eu-central-store: {{kind: filesystem, region: eu-central, path: {root}/stores/eu-central}}
  us-east-store: {{kind: filesystem, region: us-east, path: {root}/stores/us-east}}
  offsite: {{kind: filesystem, offsite: true, path: {root}/stores/offsite, key: offsite}}
keys:
  content: {{file: {root}/keys/content.keyring}}
  cache: {{file: {root}/keys/cache.keyring}}
  offsite: {{file: {root}/keys/offsite.keyring}}
objectives:
  rto: {{single-service: 5 minutes, database: 15 minutes, region: 1 hour}}
  rpo: {{content: 1 hour, cache: 24 hours}}
datasets:
  site-content:
    kind: files
    region: eu-central
    source: {{path: {root}/data/site-content}}
    key: content
    data_class: content
    policies:
      - {{name: every-minute, trigger: every 1 minutes, keep: 10 versions, copies: [all-regions, offsite]}}
      - {{name: daily, trigger: daily, keep: 7 days, copies: [all-regions]}}
  cache:
    kind: redis
    region: us-east
    connection: {{file: {home}/embedded-redis.url}}   # written by `drfleet up` / `drfleet demo`
    key: cache
    data_class: cache
    policies:
      - {{name: hourly, trigger: hourly, keep: 24 hours, copies: [home-region]}}
drills:
  - {{kind: restore, trigger: weekly, scope: "random dataset, random backup"}}
  - {{kind: failover, trigger: monthly, scope: catastrophic}}
# recovery on this machine: the `local` provider's servers are sshd processes on loopback
recovery:
  ssh: {{user: root, key_file: {root}/ssh/id_ed25519, known_hosts: {root}/ssh/known_hosts}}
  clouds:
    eu-central: {{provider: local, root: {root}/local-hosts}}
    us-east: {{provider: local, root: {root}/local-hosts}}
  fallback_region: us-east
  services:
    site:
      region: eu-central
      health: [test, -f, "{{root}}/srv/site/index.html"]
      restore: {{site-content: "host:{{root}}/srv/site"}}
      critical: true
"""


def demo_root() -> Path:
    return drfleet_home() / "demo"


def ensure_demo_plan() -> Path:
    """Write the demo plan (and its sample data) under DRFLEET_HOME/demo if missing."""
    root = demo_root()
    path = root / "plan.yaml"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        content = root / "data" / "site-content"
        (content / "images").mkdir(parents=True, exist_ok=True)
        (content / "index.html").write_text("<h1>drfleet demo</h1>\n")
        (content / "images" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
        ssh = root / "ssh"
        ssh.mkdir(exist_ok=True, mode=0o700)
        if not (ssh / "id_ed25519").exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "drfleet-demo",
                            "-f", str(ssh / "id_ed25519")], check=True, stdout=subprocess.DEVNULL)
        (ssh / "known_hosts").touch()
        path.write_text(DEMO_PLAN.format(root=root, home=drfleet_home()))
    return path
