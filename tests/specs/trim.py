"""Cut a provider's published OpenAPI document down to the paths drfleet uses.

    python -m tests.specs.trim SOURCE OUTPUT PATH [PATH ...]

Keeps each named path item whole (every method), the ``components`` entries they reference
(followed transitively), and the document's header keys (``openapi``, ``info``, ``servers``,
``security``); everything else is left out. A YAML source is cut as text: every kept block is
copied byte for byte from the source. A JSON source is written back with ``json.dumps(indent=2)``
in the source's key order, so the kept values are identical (the upstream files are themselves
two-space indented). A relative ``$ref`` to another file (DigitalOcean's split specification)
is not followed here: ``copy_referenced_files`` copies those files unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

HEADER_KEYS = ("openapi", "info", "servers", "security")


def load(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=yaml.CSafeLoader)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def component_closure(doc: dict, paths: list[str]) -> dict[str, list[str]]:
    """{section: [names]} of the components the kept paths reach, in source order."""
    wanted: set[tuple[str, str]] = set()
    todo = [doc["paths"][p] for p in paths] + [doc.get("security", [])]
    while todo:
        for ref in refs(todo.pop()):
            match = re.fullmatch(r"#/components/([^/]+)/([^/]+)", ref)
            if match and (match[1], match[2]) not in wanted:
                wanted.add((match[1], match[2]))
                todo.append(doc["components"][match[1]][match[2]])
    for name in (doc.get("components") or {}).get("securitySchemes") or {}:
        wanted.add(("securitySchemes", name))
    return {section: [n for n in entries if (section, n) in wanted]
            for section, entries in (doc.get("components") or {}).items()
            if any((section, n) in wanted for n in entries)}


def yaml_block(lines: list[str], key_line: int) -> list[str]:
    """The lines of the mapping entry starting at ``key_line``: up to the next line indented no
    deeper than its key that is not an item of a sequence written at the key's indentation."""
    indent = len(lines[key_line]) - len(lines[key_line].lstrip(" "))
    end = key_line + 1
    while end < len(lines):
        line = lines[end]
        deeper = len(line) - len(line.lstrip(" ")) > indent
        item = len(line) - len(line.lstrip(" ")) == indent and line.lstrip(" ").startswith("- ")
        if line.strip() and not line.lstrip(" ").startswith("#") and not deeper and not item:
            break
        end += 1
    return lines[key_line:end]


def key_lines(lines: list[str], indent: int, start: int = 0, stop: int | None = None) -> dict[str, int]:
    found = {}
    pattern = re.compile(" " * indent + r"""(?P<key>"[^"]+"|'[^']+'|[^\s#'"][^:]*):(\s|$)""")
    for n in range(start, len(lines) if stop is None else stop):
        match = pattern.match(lines[n])
        if match and not lines[n][indent].isspace():
            found[match["key"].strip("'\"")] = n
    return found


def trim_yaml(source: Path, doc: dict, paths: list[str]) -> str:
    lines = source.read_text().splitlines(keepends=True)
    top = key_lines(lines, 0)
    out: list[str] = []
    for key in HEADER_KEYS:
        if key in top:
            out += yaml_block(lines, top[key])
    out.append("paths:\n")
    path_block = yaml_block(lines, top["paths"])
    offset = top["paths"]
    entries = key_lines(lines, 2, offset + 1, offset + len(path_block))
    for path in paths:
        out += yaml_block(lines, entries[path])
    if "components" in top:
        out.append("components:\n")
        comp = top["components"]
        sections = key_lines(lines, 2, comp + 1, comp + len(yaml_block(lines, comp)))
        for section, names in component_closure(doc, paths).items():
            start = sections[section]
            out.append(lines[start])
            entries = key_lines(lines, 4, start + 1, start + len(yaml_block(lines, start)))
            for name in names:
                out += yaml_block(lines, entries[name])
    return "".join(out)


def trim_json(doc: dict, paths: list[str]) -> str:
    kept: dict[str, Any] = {k: doc[k] for k in HEADER_KEYS if k in doc}
    kept["paths"] = {p: doc["paths"][p] for p in paths}
    closure = component_closure(doc, paths)
    if closure:
        kept["components"] = {s: {n: doc["components"][s][n] for n in names}
                              for s, names in closure.items()}
    return json.dumps(kept, indent=2, ensure_ascii=False) + "\n"


def copy_referenced_files(doc: Any, source_dir: Path, target_dir: Path) -> list[Path]:
    """Copy, unchanged, every file ``doc`` (a document of ``source_dir``) reaches by relative
    ``$ref``, to the same relative place under ``target_dir``."""
    copied: list[Path] = []
    todo: list[tuple[Any, Path]] = [(doc, source_dir.resolve())]
    seen: set[Path] = set()
    while todo:
        node, here = todo.pop()
        for ref in refs(node):
            file_part = ref.split("#", 1)[0]
            if not file_part:
                continue
            target = (here / file_part).resolve()
            if target in seen:
                continue
            seen.add(target)
            relative = target.relative_to(source_dir.resolve())
            (target_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, target_dir / relative)
            copied.append(relative)
            todo.append((load(target), target.parent))
    return copied


def main(argv: list[str]) -> None:
    source, output, *paths = argv
    src = Path(source)
    doc = load(src)
    missing = [p for p in paths if p not in doc["paths"]]
    if missing:
        raise SystemExit(f"not in {source}: {', '.join(missing)}")
    text = trim_json(doc, paths) if src.suffix == ".json" else trim_yaml(src, doc, paths)
    Path(output).write_text(text)
    copy_referenced_files(load(Path(output)), src.parent, Path(output).parent)


if __name__ == "__main__":
    main(sys.argv[1:])
