"""Load a plan file, validate it, and report every problem at once with its place.

``load_plan(path)`` returns a ``Plan`` or raises ``PlanInvalid`` whose ``issues`` each
carry the dotted path in the document, the line (where the YAML loader knows it) and the
message. Messages never echo the offending value when it could be a secret.

Hostile files are refused before they cost anything (``drfleet.safe_load``): more than
MAX_PLAN_BYTES, not UTF-8 text (a binary file), nested more than MAX_PLAN_DEPTH levels,
more than MAX_PLAN_ALIASES aliases, or aliases that expand to more than MAX_PLAN_NODES
nodes (a "billion laughs") each give one located PlanInvalid issue. Every string in the
plan is checked for an inline secret (``drfleet.inline_secrets``: a URL with
``user:password@``, a ``password=`` parameter), wherever it is -- a storage location's
``endpoint_url``, a restore target, a DNS base URL -- and refused without echoing it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from drfleet import inline_secrets
from drfleet.errors import DrfleetError
from drfleet.names import CATEGORY_RULE, NAME_RULE
from drfleet.plan.models import Plan
from drfleet.plan.rules import check_references
from drfleet.safe_load import YamlRefused, compose_yaml, construct_yaml

MAX_PLAN_BYTES = 4 << 20
MAX_PLAN_DEPTH = 32
MAX_PLAN_ALIASES = 1000
MAX_PLAN_NODES = 200_000


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


def _line_index(root: yaml.Node) -> dict[tuple, int]:
    """Map every path in the YAML document to the 1-based line where its node starts (the
    key's line for a mapping entry). Keys are the scalars' text, as the loader sees them."""
    out: dict[tuple, int] = {}
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                k = key.value if isinstance(key, yaml.ScalarNode) else repr(key.value)
                out[path + (k,)] = key.start_mark.line + 1
                stack.append((value, path + (k,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, path + (i,)))
    return out


def _line_for(lines: dict[tuple, int], path: tuple) -> int | None:
    path = tuple(p if isinstance(p, int) else str(p) for p in path)
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_SECRET_WORDS = ("password", "passwd", "secret", "token", "material", "private_key")


_NAMED_SECTIONS = {"storage": ("storage location", NAME_RULE), "datasets": ("dataset", NAME_RULE),
                   "hosts": ("host", NAME_RULE), "keys": ("key category", CATEGORY_RULE)}


def _message(error: dict) -> str:
    loc = [str(p) for p in error["loc"]]
    if loc and loc[-1] == "[key]" and len(loc) == 3 and loc[0] in _NAMED_SECTIONS:
        what, rule = _NAMED_SECTIONS[loc[0]]
        return (f"invalid {what} name {loc[1]!r}: names become parts of store keys and file names, "
                f"so they must be {rule} (at most {128 if rule == NAME_RULE else 64} characters)")
    if error["type"] == "extra_forbidden" and loc and any(w in loc[-1].lower() for w in _SECRET_WORDS):
        return (f"inline secret field {loc[-1]!r} is not allowed: reference it with "
                "{env: VARIABLE_NAME} or {file: /run/secrets/NAME} instead")
    if error["type"] == "extra_forbidden":
        return f"unknown field {loc[-1]!r} (check its spelling against `drfleet plan schema`)"
    msg = error["msg"]
    return msg.removeprefix("Value error, ")


def _clean_loc(loc: tuple) -> tuple:
    # pydantic inserts validator names ("function-before[...]") into locations, and "[key]"
    # after a dict key it refused; drop them
    return tuple(p for p in loc if not (isinstance(p, str) and (
        "[" in p and "]" in p and "(" in p or p.startswith("function-") or p == "[key]")))


def _inline_secrets(doc: Any) -> list[tuple[tuple, str]]:
    """(path, message) of every string in the plan that holds a password inline."""
    found = []
    stack: list[tuple[tuple, Any]] = [((), doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            kind = inline_secrets.find(value)
            if kind:
                found.append((path, f"holds {kind}: passwords never go in the plan; give a URL without "
                                    "'user:password@' and the credentials as {env: VAR} / {file: PATH} "
                                    "where the field takes them, or a secret file the tool reads"))
        elif isinstance(value, dict):
            stack.extend((path + (key,), child) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((path + (index,), child) for index, child in enumerate(value))
    return found


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
    reported = {issue.path for issue in issues}
    for path, message in _inline_secrets(doc):
        if _dotted(path) not in reported:  # an inline connection string is already refused
            issues.append(PlanIssue(_dotted(path), _line_for(lines, path), message))
    if issues:
        issues.sort(key=lambda i: (i.line or 0, i.path))
        raise PlanInvalid(source, issues)
    assert plan is not None
    return plan


def load_plan(path: str | os.PathLike) -> Plan:
    """Read and validate a plan file. Raises PlanInvalid (with every problem, located; a
    file that is too large, binary, not UTF-8 or not YAML is one problem) or DrfleetError
    when the file cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise DrfleetError(f"cannot read plan file: {exc.strerror}", path=str(path),
                           hint="pass an existing plan, e.g. examples/microservices.yaml") from None
    return load_plan_text(data, source=str(path))


def load_plan_text(text: str | bytes, *, source: str = "<plan>") -> Plan:
    """Validate a plan document given as text (or UTF-8 bytes); raises PlanInvalid."""
    try:
        node = compose_yaml(text, source=source, max_bytes=MAX_PLAN_BYTES, max_depth=MAX_PLAN_DEPTH,
                            max_aliases=MAX_PLAN_ALIASES, max_nodes=MAX_PLAN_NODES)
        doc = construct_yaml(node, source=source)
    except YamlRefused as exc:
        raise PlanInvalid(source, [PlanIssue("", exc.line, exc.reason)]) from None
    lines = _line_index(node) if node is not None else {}
    return validate_document(doc, source=source, lines=lines)


def plan_json_schema() -> dict:
    """The JSON Schema of a plan document."""
    return Plan.model_json_schema(mode="validation")
