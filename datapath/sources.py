"""How a dataset of the plan is reached: the data-source module for its kind and the
resolved connection (a local path for files, the secret connection string otherwise)."""

from __future__ import annotations

from types import ModuleType

from datapath.secrets import resolve_secret
from plan.models import Plan
from providers.datasources import get_source


def source_for(plan: Plan, dataset: str) -> tuple[ModuleType, str, dict]:
    """(module, connection, options) for ``dataset``; raises SecretUnavailable."""
    ds = plan.dataset(dataset)
    module = get_source(ds.kind)
    if ds.kind == "files":
        if ds.source.host:
            raise NotImplementedError("remote file trees are backed up over SSH (see docs/); "
                                      "this dataset's host is not supported by this build")
        return module, ds.source.path, {}
    return module, resolve_secret(ds.connection, what=f"dataset {dataset} connection"), {}
