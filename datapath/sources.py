"""How a dataset of the plan is reached: the data-source module for its kind and the
resolved connection (a local directory for files, the secret connection string otherwise)."""

from __future__ import annotations

from types import ModuleType

from drfleet.plan.models import Plan
from drfleet.providers.datasources import open_source
from drfleet.secrets import resolve_secret


def source_for(plan: Plan, dataset: str) -> tuple[ModuleType, str, dict]:
    """(module, connection, options) for ``dataset``; raises SecretUnavailable.

    For a files dataset on a plan host the connection is the worker's staging mirror of
    the remote tree as the last backup left it, with the options that leave rsync's
    resume area out; a backup refreshes the mirror first (``remote_trees.staged_tree``).
    """
    ds = plan.dataset(dataset)
    module = open_source(ds.kind)
    if ds.kind == "files":
        from drfleet.datapath.remote_trees import tree_location

        tree = tree_location(plan, dataset)
        return module, tree.path, ({"exclude": list(tree.exclude)} if tree.exclude else {})
    return module, resolve_secret(ds.connection, what=f"dataset {dataset} connection"), {}
