"""open_source: the registry names every kind module, helpers are not kinds, unknown kinds
list the known."""

from __future__ import annotations

import inspect
import pkgutil

import pytest

import drfleet.providers.datasources as datasources
from drfleet.errors import DrfleetError
from drfleet.providers.datasources import known_kinds, open_source
from drfleet.providers.datasources.errors import UnknownDataSourceKind

KINDS = ["files", "mongodb", "postgres", "redis"]


def test_known_kinds_are_exactly_the_kind_modules():
    assert known_kinds() == KINDS
    modules = {m.name for m in pkgutil.iter_modules(datasources.__path__)
               if not m.ispkg and m.name not in ("errors",)}
    assert modules == set(KINDS), "a module in providers/datasources/ that is not a kind belongs in support/"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_the_same_functions(kind):
    module = open_source(kind)
    assert module.KIND == kind
    assert list(inspect.signature(module.dump).parameters) == ["conn", "options"]
    assert list(inspect.signature(module.restore).parameters) == ["conn", "stream", "options"]
    assert list(inspect.signature(module.fingerprint).parameters) == ["conn", "options", "like"]
    versions = module.tool_versions()
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())


@pytest.mark.parametrize("name", ["mysql", "producer", "errors", "credentials", "redis_protocol",
                                  "support", "../files", "Redis", "", None])
def test_unknown_kinds_and_helper_modules_are_refused_with_the_known_list(name):
    with pytest.raises(UnknownDataSourceKind) as caught:
        open_source(name)
    assert isinstance(caught.value, DrfleetError)
    assert caught.value.facts["known"] == "files, mongodb, postgres, redis"
    assert "files, mongodb, postgres, redis" in str(caught.value)
