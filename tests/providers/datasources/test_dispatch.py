"""get_source: kinds by module name, helpers are not kinds, unknown kinds list the known."""

from __future__ import annotations

import inspect

import pytest

from fleet.errors import DrfleetError
from providers.datasources import get_source, known_kinds
from providers.datasources.errors import UnknownDataSourceKind

KINDS = ["files", "mongodb", "postgres", "redis"]


def test_known_kinds_are_exactly_the_kind_modules():
    assert known_kinds() == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_the_same_functions(kind):
    module = get_source(kind)
    assert module.KIND == kind
    assert list(inspect.signature(module.dump).parameters) == ["conn", "options"]
    assert list(inspect.signature(module.restore).parameters) == ["conn", "stream", "options"]
    assert list(inspect.signature(module.fingerprint).parameters) == ["conn", "options", "like"]
    versions = module.tool_versions()
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())


@pytest.mark.parametrize("name", ["mysql", "producer", "errors", "credentials", "redis_protocol",
                                  "files_extract", "../files", "Redis", ""])
def test_unknown_kinds_and_helper_modules_are_refused_with_the_known_list(name):
    with pytest.raises(UnknownDataSourceKind) as caught:
        get_source(name)
    assert isinstance(caught.value, DrfleetError)
    assert caught.value.known == KINDS
    assert "files, mongodb, postgres, redis" in str(caught.value)
