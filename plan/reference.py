"""The plan reference (docs/plan-reference.md), generated from the plan's JSON Schema so it
cannot drift from what the loader accepts.

``plan_reference_markdown()`` walks ``plan.loader.plan_json_schema()``: one section per model
(the top-level plan first, then each model in the order the plan reaches it), a table per
model (field, type, required, default, description) and an example for every field. An
example is, in order of preference: the schema's own ``examples``, the first real value at
that place in ``examples/microservices.yaml`` or ``examples/plugspace.yaml``, or one made
from the field's type. The phrase forms of ``trigger``, ``keep`` and ``copies`` come from
the parsers' docstrings and tables (``plan.triggers``, ``plan.retention``, ``plan.copies``).
Raises nothing of its own; an unreadable example file raises OSError.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import yaml

from drfleet.plan import copies, retention, triggers
from drfleet.plan.loader import plan_json_schema

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_FILES = ("examples/microservices.yaml", "examples/plugspace.yaml")
TOP = "Plan"


def _ref_name(node: dict) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _variants(node: dict) -> list[dict]:
    """The non-null alternatives of a field's schema (``X | None`` -> ``[X]``)."""
    alts = node.get("anyOf") or [node]
    return [a for a in alts if a.get("type") != "null"] or [node]


def _models(schema: dict) -> dict[str, dict]:
    return {TOP: schema, **schema.get("$defs", {})}


def model_order(schema: dict) -> list[str]:
    """Model names, the top-level plan first, then breadth-first as the plan reaches them."""
    defs, order, queue = _models(schema), [TOP], [TOP]
    while queue:
        for prop in defs[queue.pop(0)].get("properties", {}).values():
            for name in _refs_in(prop):
                if name not in order:
                    order.append(name)
                    queue.append(name)
    return order + sorted(set(defs) - set(order))


def _refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [_ref_name(node)] if _ref_name(node) else []
        return own + [r for v in node.values() for r in _refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs_in(v)]
    return []


def type_text(node: dict) -> str:
    """A short human type: ``string``, ``list of [Policy](#policy)``, ``map of name → …``."""
    parts = []
    for v in _variants(node):
        name = _ref_name(v)
        if name:
            parts.append(f"[{name}](#{name.lower()})")
        elif "const" in v:
            parts.append(f"`{v['const']}`")
        elif "enum" in v:
            parts.append("one of " + ", ".join(f"`{e}`" for e in v["enum"]))
        elif v.get("type") == "array":
            parts.append("list of " + type_text(v.get("items", {})))
        elif v.get("type") == "object" and isinstance(v.get("additionalProperties"), dict):
            parts.append("map of name → " + type_text(v["additionalProperties"]))
        elif v.get("type") == "object":
            parts.append("mapping")
        elif isinstance(v.get("type"), list):
            parts.append(" or ".join(v["type"]))
        else:
            parts.append(v.get("type", "any"))
    return " or ".join(parts)


def _constraints(node: dict) -> list[str]:
    out = []
    for v in _variants(node) + [node]:
        for key, label in (("pattern", "matches"), ("minimum", "≥"), ("maximum", "≤"),
                           ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<"),
                           ("minItems", "at least N items:"), ("minProperties", "at least N entries:")):
            if key in v:
                text = f"{label} `{v[key]}`" if "N" not in label else label.replace("N", str(v[key])).rstrip(":")
                if text not in out:
                    out.append(text)
    return out


def _description(node: dict) -> str:
    texts = [v["description"] for v in _variants(node) + [node] if v.get("description")]
    return "; ".join(dict.fromkeys(texts + _constraints(node)))


def collect_examples(schema: dict, docs: list[Any]) -> dict[tuple[str, str], Any]:
    """(model, field) -> the first value found at that place in ``docs`` (example plans)."""
    defs, found = _models(schema), {}

    def walk(model: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        props = defs[model].get("properties", {})
        for field, item in value.items():
            if field not in props:
                continue
            found.setdefault((model, field), item)
            for v in _variants(props[field]):
                _descend(v, item)

    def _descend(node: dict, value: Any) -> None:
        name = _ref_name(node)
        if name:
            walk(name, value)
        elif node.get("type") == "array" and isinstance(value, list):
            for item in value:
                _descend(node.get("items", {}), item)
        elif isinstance(node.get("additionalProperties"), dict) and isinstance(value, dict):
            for item in value.values():
                _descend(node["additionalProperties"], item)

    for doc in docs:
        walk(TOP, doc)
    return found


def _made_example(node: dict, defs: dict[str, dict]) -> Any:
    """A value of the field's type: the first enum value, a model's required fields (or its
    first field), or a placeholder per JSON type."""
    v = _variants(node)[0]
    if "const" in v:
        return v["const"]
    if "enum" in v:
        return v["enum"][0]
    if _ref_name(v):
        model = defs[_ref_name(v)]
        props = model.get("properties", {})
        names = model.get("required") or list(props)[:1]
        return {f: _made_example(props[f], defs) for f in names}
    kind = v.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    return {"string": "example", "integer": v.get("minimum", 1), "number": 0.5, "boolean": True,
            "array": [], "object": {}}.get(kind, "example")


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _shrink(value: Any) -> Any:
    """The same shape with one item per list and mapping, one level deeper each call."""
    if isinstance(value, list) and value:
        return [_shrink(value[0])] if len(value) == 1 else value[:1]
    if isinstance(value, dict) and value:
        first = next(iter(value))
        return {first: _shrink(value[first])} if len(value) == 1 else {first: value[first]}
    return value


def _compact(value: Any, limit: int = 140) -> str:
    """Flow YAML of ``value``, cut down to its first item (recursively) when too long."""
    for _ in range(8):
        text = _flow(value)
        if len(text) <= limit:
            return text
        smaller = _shrink(value)
        if smaller == value:
            break
        value = smaller
    return text[:limit] + "…"


def field_example(model: str, field: str, node: dict, found: dict, defs: dict[str, dict]) -> tuple[str, str]:
    """(example YAML, where it came from: ``schema``, ``examples``, ``default`` or ``generated``)."""
    examples = [e for v in _variants(node) + [node] for e in v.get("examples", [])]
    if examples:
        return " / ".join(f"{field}: {_compact(e)}" for e in examples[:3]), "schema"
    if (model, field) in found:
        return f"{field}: {_compact(found[(model, field)])}", "examples"
    default = node.get("default")
    if default not in (None, {}, [], ""):
        return f"{field}: {_compact(default)}", "default"
    return f"{field}: {_compact(_made_example(node, defs))}", "generated"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def model_section(schema: dict, model: str, found: dict, heading: str = "##") -> list[str]:
    node = _models(schema)[model]
    lines = [f"{heading} {model}", ""]
    doc = node.get("description")
    if doc:
        lines += [" ".join(doc.split()), ""]
    required = set(node.get("required", []))
    lines += ["| field | type | required | default | description | example |", "|---|---|---|---|---|---|"]
    for field, prop in node.get("properties", {}).items():
        default = "" if field in required or "default" not in prop else f"`{_compact(prop['default'])}`"
        example, _ = field_example(model, field, prop, found, _models(schema))
        lines.append(f"| `{field}` | {_cell(type_text(prop))} | {'yes' if field in required else 'no'} | "
                     f"{_cell(default)} | {_cell(_description(prop))} | `{_cell(example)}` |")
    lines.append("")
    return lines


def _phrase_sections() -> list[str]:
    word_crons = "\n".join(f"| `{w}` | `{c}` |" for w, c in triggers._WORD_CRONS.items())
    aliases = "\n".join(f"| `{a}` | `{k}` |" for a, k in copies._ALIASES.items())
    return [
        "## Phrases: `trigger`", "", inspect.getdoc(triggers), "",
        "Kinds: " + ", ".join(f"`{k}`" for k in triggers.TRIGGER_KINDS) + ". Word schedules (UTC):", "",
        "| word | cron |", "|---|---|", word_crons, "",
        "## Phrases: `keep`", "", inspect.getdoc(retention), "", inspect.getdoc(retention.parse_retention), "",
        "## Phrases: `copies`", "", inspect.getdoc(copies), "",
        "Kinds: " + ", ".join(f"`{k}`" for k in copies.COPY_KINDS) + ". Accepted spellings:", "",
        "| written | means |", "|---|---|", aliases, "",
    ]


def load_example_docs(files: tuple[str, ...] = EXAMPLE_FILES) -> list[Any]:
    return [yaml.safe_load((REPO / f).read_text()) for f in files]


def plan_reference_markdown(schema: dict | None = None, docs: list[Any] | None = None,
                            extra_sections: Callable[[], list[str]] | None = None) -> str:
    """The whole reference page. ``schema``/``docs`` default to the plan schema and the two
    example plans; ``extra_sections`` adds lines (the recovery section by default)."""
    schema = schema if schema is not None else plan_json_schema()
    docs = docs if docs is not None else load_example_docs()
    found = collect_examples(schema, docs)
    lines = ["# Plan reference", "",
             "<!-- generated by `drfleet plan docs --out docs/plan-reference.md`; do not edit by hand -->", "",
             "A plan is one YAML file. `drfleet plan check PLAN` validates it and lists every problem "
             "with its line; `drfleet plan schema` prints the JSON Schema this page is generated from. "
             "Examples come from the schema, else from `examples/microservices.yaml` / "
             "`examples/plugspace.yaml`, else the default, else one made from the field's type.", "",
             "Sections: " + ", ".join(f"[{m}](#{m.lower()})" for m in model_order(schema)) + ", "
             "[trigger phrases](#phrases-trigger), [keep phrases](#phrases-keep), "
             "[copies phrases](#phrases-copies), [recovery](#recovery-section).", ""]
    for model in model_order(schema):
        lines += model_section(schema, model, found)
    lines += _phrase_sections()
    lines += (extra_sections or _recovery_sections)()
    return "\n".join(lines).rstrip() + "\n"


def _recovery_sections() -> list[str]:
    """The ``recovery:`` section (validated by ``plan.recovery``), same table format."""
    from drfleet.plan.recovery import Recovery

    schema = Recovery.model_json_schema(mode="validation")
    schema["title"] = "Recovery"
    sections = [doc.get("recovery") or {} for doc in load_example_docs()]
    found = {(("Recovery" if m == TOP else m), f): v
             for (m, f), v in collect_examples(schema, sections).items()}
    lines = ["## Recovery section", "",
             "`recovery:` holds what the runbooks act on (services, DNS, clouds, standbys); "
             "`drfleet plan check` validates it with `plan.recovery.recovery_config`. Its "
             "examples come from the `recovery:` sections of `examples/microservices.yaml` and "
             "`examples/plugspace.yaml`.", ""]
    for model in model_order(schema):
        if model in plan_json_schema().get("$defs", {}):
            continue  # documented above (SecretRef)
        name = "Recovery" if model == TOP else model
        sub = {**schema, "$defs": {**schema.get("$defs", {}), "Recovery": schema}}
        lines += model_section(sub, name, found, heading="###")
    return lines
