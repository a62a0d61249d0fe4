"""Load a plan file, validate it, and report every problem at once with its place.

``load_plan(path)`` returns a ``Plan`` or raises ``PlanInvalid`` whose ``issues`` each
carry the dotted path in the document, the line (where the YAML loader knows it) and the
message. Messages never echo the offending value when it could be a secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.plan.rules import check_references


@dataclass(frozen=True)
class PlanIssue:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class PlanInvalid(DrfleetError):
    """A plan file that cannot be used; ``issues`` lists every problem found."""

    hint = "fix each listed field and run `drfleet plan check PLAN` again"

    def __init__(self, source: str, issues: list[PlanIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(f"plan {source} has {len(issues)} problem(s)", problems=[str(i) for i in issues])


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every path in the YAML document to the 1-based line where its node starts."""
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[path + (k,)] = key.start_mark.line + 1
            _line_index(value, path + (k,), out)
            out[path + (k,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), out)
    return out


def _line_for(lines: dict[tuple, int], path: tuple) -> int | None:
    path = tuple(path)
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_SECRET_WORDS = ("password", "passwd", "secret", "token", "material", "private_key")


def _message(error: dict) -> str:
    loc = [str(p) for p in error["loc"]]
    if error["type"] == "extra_forbidden" and loc and any(w in loc[-1].lower() for w in _SECRET_WORDS):
        return (f"inline secret field {loc[-1]!r} is not allowed: reference it with "
                "{env: VARIABLE_NAME} or {file: /run/secrets/NAME} instead")
    if error["type"] == "extra_forbidden":
        return f"unknown field {loc[-1]!r} (check its spelling against `drfleet plan schema`)"
    msg = error["msg"]
    return msg.removeprefix("Value error, ")


def _clean_loc(loc: tuple) -> tuple:
    # pydantic inserts validator names ("function-before[...]") into locations; drop them
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p and "]" in p and "(" in p or p.startswith("function-"))))


def validate_document(doc: Any, *, source: str = "<plan>", lines: dict[tuple, int] | None = None) -> Plan:
    """Validate a mapping as a plan; raises PlanInvalid listing every problem."""
    lines = lines or {}
    issues: list[PlanIssue] = []
    if not isinstance(doc, dict):
        raise PlanInvalid(source, [PlanIssue("", 1, "a plan is a YAML mapping with regions, storage, keys and datasets")])
    plan = None
    try:
        plan = Plan.model_validate(doc)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            issues.append(PlanIssue(_dotted(loc), _line_for(lines, loc), _message(error)))
    for path, message in check_references(doc):
        issues.append(PlanIssue(_dotted(path), _line_for(lines, path), message))
    if issues:
        issues.sort(key=lambda i: (i.line or 0, i.path))
        raise PlanInvalid(source, issues)
    assert plan is not None
    return plan


def load_plan(path: str | os.PathLike) -> Plan:
    """Read and validate a plan file. Raises PlanInvalid (with every problem, located) or
    DrfleetError when the file cannot be read or is not YAML."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DrfleetError(f"cannot read plan file: {exc.strerror}", path=str(path),
                           hint="pass an existing plan, e.g. examples/microservices.yaml") from None
    return load_plan_text(text, source=str(path))


def load_plan_text(text: str, *, source: str = "<plan>") -> Plan:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise PlanInvalid(source, [PlanIssue("", line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    lines = _line_index(node) if node is not None else {}
    return validate_document(doc, source=source, lines=lines)


def plan_json_schema() -> dict:
    """The JSON Schema of a plan document."""
    return Plan.model_json_schema(mode="validation")
