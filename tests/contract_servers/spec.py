"""Each provider's published OpenAPI document, as a checker of requests and responses.

``provider_spec(name)`` loads ``<name>/<file>`` from the first specification directory that
has it (``tests/specs/`` in this checkout, then a ``shared/specs/`` beside or above it; see
tests/specs/README.md) and returns a ``Spec``, or None when the document is not there.

``Spec.check_request`` lists what a request does that the document does not allow: an
undocumented path or method, an undocumented or malformed query/header parameter, a missing
required one, a body that fails its schema (required fields, types, enums, ranges, patterns;
OpenAPI 3.0 "write" rules: read-only fields need not be sent). ``Spec.check_response`` does
the same for an answer (OpenAPI 3.0 "read" rules). Schemas are checked by
openapi-schema-validator (OAS30WriteValidator/OAS30ReadValidator).

Documented flaws of an upstream document are corrected in ``PATCHES`` (each says why), never
by editing the vendored file.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

HERE = Path(__file__).resolve()
FILES = {"hetzner": "cloud.spec.json", "digitalocean": "DigitalOcean-public.v2.yaml",
         "linode": "openapi.yaml", "vultr": "swagger.json", "cloudflare": "openapi.yaml"}
# The part of a contract server's URL path that the document's ``servers`` URL already holds.
PREFIXES = {"hetzner": "/v1", "digitalocean": "", "linode": "", "vultr": "/v2",
            "cloudflare": "/client/v4"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def spec_dirs() -> list[Path]:
    """Where specification documents are looked for, in order."""
    repo = HERE.parents[2]
    return [repo / "tests" / "specs", *(p / "shared" / "specs" for p in repo.parents)]


def spec_file(provider: str) -> Path | None:
    for directory in spec_dirs():
        candidate = directory / provider / FILES[provider]
        if candidate.is_file():
            return candidate
    return None


def _load(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=yaml.CSafeLoader)


def dereference(root: Path) -> dict[str, Any]:
    """The document at ``root`` with every ``$ref`` (within it or to a relative file) replaced by
    its target; recursive schemas become shared (cyclic) objects."""
    files: dict[Path, Any] = {}
    done: dict[tuple[Path, str], Any] = {}

    def target(ref: str, here: Path) -> tuple[Path, str]:
        file_part, _, pointer = ref.partition("#")
        return ((here.parent / file_part).resolve() if file_part else here), pointer

    def walk(node: Any, here: Path) -> Any:
        if isinstance(node, list):
            return [walk(item, here) for item in node]
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("$ref"), str):
            key = target(node["$ref"], here)
            if key not in done:
                if key[0] not in files:
                    files[key[0]] = _load(key[0])
                raw = files[key[0]]
                for part in filter(None, key[1].split("/")):
                    raw = raw[part.replace("~1", "/").replace("~0", "~")]
                done[key] = placeholder = {}
                resolved = walk(raw, key[0])
                if isinstance(resolved, dict):
                    placeholder.update(resolved)
                else:
                    done[key] = resolved
            return done[key]
        return {k: walk(v, here) for k, v in node.items()}

    root = root.resolve()
    files[root] = _load(root)
    return walk(files[root], root)


@dataclass
class Operation:
    template: str
    method: str
    spec: dict[str, Any]
    parameters: list[dict[str, Any]]


class Spec:
    """One provider's document, ready to check what goes over the wire."""

    def __init__(self, provider: str, path: Path) -> None:
        self.provider = provider
        self.path = path
        self.doc = dereference(path)
        for patch in PATCHES.get(provider, ()):
            patch.apply(self.doc)
        self._paths = sorted(
            ((t, re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)))) for t in self.doc["paths"]),
            key=lambda tp: (tp[0].count("{"), -len(tp[0])))
        self.prefix = PREFIXES[provider]

    def operation(self, method: str, raw_path: str) -> Operation | str:
        path = raw_path[len(self.prefix):] if raw_path.startswith(self.prefix) else raw_path
        for template, pattern in self._paths:
            if pattern.fullmatch(path):
                item = self.doc["paths"][template]
                op = item.get(method.lower())
                if op is None:
                    return f"{method} {template}: the document has no such operation"
                params = {(p["name"], p["in"]): p for p in item.get("parameters", [])}
                params.update({(p["name"], p["in"]): p for p in op.get("parameters", [])})
                return Operation(template, method.upper(), op, list(params.values()))
        return f"{method} {path}: no such path in the document"

    def check_request(self, method: str, raw_path: str, query: dict[str, list[str]],
                      headers: dict[str, str], body: Any) -> list[str]:
        op = self.operation(method, raw_path)
        if isinstance(op, str):
            return [op]
        where = f"{op.method} {op.template}"
        problems = []
        given = {"query": {k: v[-1] for k, v in query.items()},
                 "header": {k.lower(): v for k, v in headers.items()}}
        documented = {p["name"] for p in op.parameters if p["in"] == "query"}
        problems += [f"{where}: undocumented query parameter {name!r}"
                     for name in query if name not in documented]
        for param in op.parameters:
            if param["in"] not in given:
                continue  # path parameters are checked by the route; cookies are not used
            value = given[param["in"]].get(param["name"] if param["in"] == "query"
                                           else param["name"].lower())
            if value is None:
                if param.get("required"):
                    problems.append(f"{where}: required {param['in']} parameter {param['name']!r} missing")
                continue
            problems += [f"{where}: {param['in']} parameter {param['name']!r}: {e}"
                         for e in _errors(OAS30WriteValidator, param.get("schema", {}),
                                          _typed(value, param.get("schema", {})))]
        request_body = op.spec.get("requestBody")
        if body is None:
            if request_body and request_body.get("required"):
                problems.append(f"{where}: required request body missing")
        elif not request_body:
            problems.append(f"{where}: the operation takes no request body")
        else:
            schema = request_body["content"].get("application/json", {}).get("schema", {})
            problems += [f"{where}: request body: {e}" for e in _errors(OAS30WriteValidator, schema, body)]
        return problems

    def check_response(self, method: str, raw_path: str, status: int, body: Any) -> list[str]:
        op = self.operation(method, raw_path)
        if isinstance(op, str):
            return [op]
        responses = op.spec.get("responses", {})
        code = str(status)
        answer = next((responses[k] for k in (code, code[0] + "XX", code[0] + "xx", "default")
                       if k in responses), None)
        where = f"{op.method} {op.template} -> {status}"
        if answer is None:
            return [f"{where}: status not documented (documented: {', '.join(responses)})"]
        content = answer.get("content") or {}
        if "application/json" not in content or body is None:
            return [] if body is None or not content else [f"{where}: body of an undocumented type"]
        schema = content["application/json"].get("schema", {})
        return [f"{where}: response body: {e}" for e in _errors(OAS30ReadValidator, schema, body)]


    def response_schema(self, method: str, raw_path: str, status: int) -> dict[str, Any] | None:
        op = self.operation(method, raw_path)
        if isinstance(op, str):
            return None
        responses, code = op.spec.get("responses", {}), str(status)
        answer = next((responses[k] for k in (code, code[0] + "XX", code[0] + "xx", "default")
                       if k in responses), None)
        return (((answer or {}).get("content") or {}).get("application/json") or {}).get("schema")

    def complete_response(self, method: str, raw_path: str, status: int, body: Any) -> Any:
        """``body`` with every required field it leaves out filled from the document (its
        examples, else the simplest value its schema takes): a contract server states only
        what it models (ids, names, statuses, addresses, pages); the rest is the provider's."""
        schema = self.response_schema(method, raw_path, status)
        return body if schema is None or body is None else complete(schema, body)


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties ``schema`` and its allOf/oneOf/anyOf branches declare."""
    found: dict[str, Any] = {}
    for key in ("allOf", "oneOf", "anyOf"):
        for branch in schema.get(key, []):
            found.update(_properties(branch))
    return {**found, **schema.get("properties", {})}


def complete(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, list) and "items" in schema:
        return [complete(schema["items"], v) for v in value]
    if not isinstance(value, dict):
        return value
    declared = _properties(schema)
    filled = dict(value)
    for name in schema.get("required", []):
        if name not in filled and name in declared:
            filled[name] = sample(declared[name])
    for branch in schema.get("allOf", []):
        filled = complete(branch, filled)
    for key in ("oneOf", "anyOf"):
        for branch in schema.get(key, []):
            candidate = complete(branch, copy.deepcopy(filled))
            if not _errors(OAS30ReadValidator, branch, candidate):
                filled = candidate
                break
    properties = schema.get("properties", {})
    return {k: complete(properties[k], v) if k in properties else v for k, v in filled.items()}


def sample(schema: dict[str, Any]) -> Any:
    """A value ``schema`` takes: its example, else the simplest one."""
    if "example" in schema and not _errors(OAS30ReadValidator, schema, schema["example"]):
        return copy.deepcopy(schema["example"])
    if schema.get("nullable"):
        return None
    for key in ("allOf", "oneOf", "anyOf"):
        if schema.get(key):
            return complete(schema, {}) if key == "allOf" else sample(schema[key][0])
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object":
        return complete(schema, {})
    if kind == "array":
        return [sample(schema["items"]) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "string":
        return {"date-time": "2024-01-01T00:00:00+00:00", "date": "2024-01-01",
                "ipv4": "192.0.2.1", "ipv6": "2001:db8::1",
                "uuid": "00000000-0000-4000-8000-000000000000"}.get(schema.get("format"), "x")
    return None


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """A query/header string as the type its schema names (what a server would parse)."""
    kind = schema.get("type") or next((s.get("type") for s in schema.get("oneOf", []) + schema.get("anyOf", [])
                                       if s.get("type")), None)
    try:
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            return int(value)
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind == "boolean" and value in ("true", "false"):
            return value == "true"
        if kind in ("object", "array"):
            return json.loads(value)
    except ValueError:
        pass
    return value


def _errors(validator: Any, schema: dict[str, Any], instance: Any) -> list[str]:
    found = validator(schema).iter_errors(instance)
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message[:300]}"
                  for e in found)


@dataclass(frozen=True)
class Patch:
    """A correction of an upstream document's flaw, with the reason (listed in SOURCE.md)."""

    why: str
    apply: Callable[[dict[str, Any]], None]


def _drop_closed_allof_branches(node: Any, seen: set[int] | None = None) -> None:
    """``allOf: [{additionalProperties: false, properties: A}, {properties: B}]`` rejects every
    B property; the author meant "A and B, nothing else"."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, dict):
        for branch in node.get("allOf", []):
            if isinstance(branch, dict) and branch.get("additionalProperties") is False:
                branch.pop("additionalProperties")
        for value in node.values():
            _drop_closed_allof_branches(value, seen)
    elif isinstance(node, list):
        for item in node:
            _drop_closed_allof_branches(item, seen)


def _cloudflare_request_records(doc: dict[str, Any]) -> None:
    """The 2023 document uses the response record (``id``, ``zone_name``, ``proxiable``,
    ``locked`` required) as the create/overwrite body, so any real create fails it; requests
    are checked against the record types' own schemas (type, name, content required)."""
    records = doc["paths"]["/zones/{zone_identifier}/dns_records"]["post"]["requestBody"]
    schema = records["content"]["application/json"]["schema"]
    body = {"oneOf": schema["oneOf"]}
    records["content"]["application/json"]["schema"] = body
    put = doc["paths"]["/zones/{zone_identifier}/dns_records/{identifier}"]["put"]["requestBody"]
    put["content"]["application/json"]["schema"] = body


def _cloudflare_delete_without_body(doc: dict[str, Any]) -> None:
    """Delete DNS Record declares a required request body with no schema; the API (and
    Cloudflare's own SDK) deletes with none."""
    doc["paths"]["/zones/{zone_identifier}/dns_records/{identifier}"]["delete"]["requestBody"]["required"] = False


def _hetzner_ssh_key_ids(doc: dict[str, Any]) -> None:
    """Create Server's ``ssh_keys`` says "SSH key IDs (integer) or names (string)" but its
    schema allows strings only; the official SDK (hcloud) sends integer IDs."""
    body = doc["paths"]["/servers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body["properties"]["ssh_keys"]["items"] = {"oneOf": [{"type": "integer"}, {"type": "string"}]}


PATCHES: dict[str, tuple[Patch, ...]] = {
    "hetzner": (Patch("Create Server's ssh_keys items: the description says integer IDs or "
                      "names, the schema says string only", _hetzner_ssh_key_ids),),
    "linode": (Patch("allOf branches with additionalProperties: false reject the other "
                     "branches' properties (Linode create body: label, region, type)",
                     _drop_closed_allof_branches),),
    "cloudflare": (Patch("request bodies of DNS record create/overwrite require response-only "
                         "fields (id, zone_name, proxiable, locked)", _cloudflare_request_records),
                   Patch("Delete DNS Record requires a request body that has no schema",
                         _cloudflare_delete_without_body)),
}


@lru_cache(maxsize=None)
def provider_spec(provider: str) -> Spec | None:
    """The provider's document (loaded once per process), or None when it is not installed."""
    path = spec_file(provider)
    return Spec(provider, path) if path else None
