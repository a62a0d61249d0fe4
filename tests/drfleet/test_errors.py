"""Errors keep their type through Celery's result backend, which rebuilds an exception on
the client from its args alone (``cls(*args)``)."""

import importlib
import pkgutil

import pytest

from drfleet.errors import DrfleetError


def _all_error_classes() -> list[type]:
    for package in ("backup_format", "datapath", "pitr", "providers", "runbooks", "plan", "state", "fleet"):
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + "."):
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - optional modules (a missing tool) are not the point
                continue
    seen, todo = [], [DrfleetError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def test_there_are_many_error_types_to_check():
    assert len(_all_error_classes()) > 40


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_error_type_is_rebuilt_from_its_rendering_with_its_type_and_text(cls):
    rendered = "something failed\n  dataset: orders-db\n  what to do: look at it"
    rebuilt = cls(rendered)
    assert type(rebuilt) is cls
    assert str(rebuilt) == rendered or str(rebuilt).startswith(rendered)


def test_a_real_error_survives_the_round_trip_with_its_facts():
    from drfleet.providers.datasources.errors import SourceToolFailed
    original = SourceToolFailed("pg_dump", 1, ["pg_dump: error: connection lost"], database="orders")
    rebuilt = SourceToolFailed(*original.args)
    assert type(rebuilt) is SourceToolFailed and str(rebuilt) == str(original)
    assert "connection lost" in str(rebuilt) and "orders" in str(rebuilt)
