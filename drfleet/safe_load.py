"""Bounded readers of JSON and YAML documents: every document drfleet parses from a store,
a plan file, a keyring or an API goes through ``load_json`` or ``load_yaml``.

Each reader refuses, with ``DocumentRefused`` (a ``DrfleetError`` naming the source and
the limit, never the content), before it allocates or recurses without bound:

* size: more than ``max_bytes`` bytes;
* depth: arrays/objects (JSON) or sequences/mappings (YAML) nested more than
  ``max_depth`` levels. JSON is measured before it is parsed, at C speed (strings
  removed, brackets peeled one level per pass), so 100,000 nested brackets cost a few
  passes, never a RecursionError;
* YAML aliases: more than ``max_aliases`` ``*alias`` references, a recursive anchor, or
  a document whose aliases would expand to more than ``max_nodes`` nodes (a "billion
  laughs" plan is refused after its composition, in milliseconds, not after 9 GB);
* encoding: bytes that are not UTF-8 text.

Callers turn ``DocumentRefused`` into their own error (``ManifestInvalid``,
``KeyringInvalid``, ``PlanInvalid``...) with ``exc.reason``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import yaml

from drfleet.errors import DrfleetError

MAX_DEPTH = 64

_JSON_ESCAPE_BYTES = re.compile(rb"\\.", re.S)
_JSON_ESCAPE_TEXT = re.compile(r"\\.", re.S)
_JSON_STRING = re.compile(rb'"[^"]*"')  # once escapes are gone, a string has no '"' inside
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_OPEN_TO_SQUARE = bytes.maketrans(b"{}", b"[]")


class DocumentRefused(DrfleetError, ValueError):
    """A document that is too large, nested too deeply, alias-bombed, not UTF-8, or not
    valid JSON/YAML. ``reason`` says which, without quoting the document."""

    hint = "the document is damaged or hostile; restore it from a good copy, or fix the file"

    def __init__(self, source: str, reason: str) -> None:
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}", source=source)


def check_size(data: bytes | str, *, source: str, max_bytes: int) -> None:
    """Raise DocumentRefused when ``data`` is longer than ``max_bytes`` bytes (UTF-8)."""
    size = len(data)
    if isinstance(data, str) and 4 * size > max_bytes:  # a character is at most 4 bytes
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise DocumentRefused(source, f"the document is {size:,} bytes, more than the {max_bytes:,} allowed")


def json_depth_exceeds(data: bytes | str, max_depth: int) -> bool | None:
    """True when the JSON text nests arrays/objects more than ``max_depth`` deep; None when
    its brackets (outside strings) do not balance, which valid JSON always does."""
    if isinstance(data, str):
        data = _JSON_ESCAPE_TEXT.sub("", data) if "\\" in data else data
        data = data.encode("utf-8", "surrogatepass")
    else:
        data = bytes(data)
        data = _JSON_ESCAPE_BYTES.sub(b"", data) if b"\\" in data else data
    # escapes removed, keep only quotes and brackets, then drop the (now tiny) strings
    brackets = _JSON_STRING.sub(b"", data.translate(None, _NOT_STRUCTURE))
    if b'"' in brackets:
        return None  # an unterminated string: not JSON
    brackets = brackets.translate(_OPEN_TO_SQUARE)  # depth only: json.loads checks the kinds
    depth = 0
    while brackets:
        peeled = brackets.replace(b"[]", b"")  # one pass removes exactly the innermost level
        if len(peeled) == len(brackets):
            return None
        depth += 1
        if depth > max_depth:
            return True
        brackets = peeled
    return False


def load_json(data: bytes | str, *, source: str, max_bytes: int, max_depth: int = MAX_DEPTH,
              object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """Parse JSON ``data`` (bytes must be UTF-8). Raises DocumentRefused naming ``source``
    when it is larger than ``max_bytes``, nested deeper than ``max_depth``, or not valid
    JSON (the hook's ValueError included)."""
    if not isinstance(data, (bytes, bytearray, memoryview, str)):
        raise DocumentRefused(source, f"expected JSON text, got {type(data).__name__}")
    check_size(data, source=source, max_bytes=max_bytes)
    verdict = json_depth_exceeds(data, max_depth)
    if verdict:
        raise DocumentRefused(source, f"nested more than {max_depth} levels deep")
    if verdict is None:
        raise DocumentRefused(source, "not valid JSON: its brackets or quotes do not balance")
    try:
        return json.loads(data, object_pairs_hook=object_pairs_hook)
    except UnicodeDecodeError as exc:
        raise DocumentRefused(source, f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:  # a backstop: the depth check above should have caught it
        raise DocumentRefused(source, f"nested more than {max_depth} levels deep") from None
    except ValueError as exc:
        raise DocumentRefused(source, f"not valid JSON: {exc}") from None


def decode_text(data: bytes, *, source: str) -> str:
    """``data`` as UTF-8 text; raises DocumentRefused naming the first bad byte's offset."""
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentRefused(source, f"not UTF-8 text (byte {exc.start} is not valid UTF-8); "
                                      "is it a binary file?") from None


class _BoundedComposer(yaml.SafeLoader):
    """PyYAML's safe loader, composing at most ``max_depth`` levels and ``max_aliases``
    aliases (the checks run as each node is composed, before any recursion)."""

    max_depth = MAX_DEPTH
    max_aliases = 1000

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self.max_aliases:
                event = self.peek_event()
                raise _Bound(f"more than {self.max_aliases} aliases (*name)", event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > self.max_depth:
            raise _Bound(f"nested more than {self.max_depth} levels deep", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Bound(Exception):
    def __init__(self, reason: str, mark: Any) -> None:
        super().__init__(reason)
        self.reason, self.mark = reason, mark


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes the document has once every alias is expanded; raises _Bound past
    ``limit`` or for a node that contains itself (a recursive anchor)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > limit:
                raise _Bound(f"its aliases expand to more than {limit:,} nodes", node.start_mark)
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise _Bound("an anchor refers to itself (a recursive alias)", node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise _Bound("an anchor refers to itself (a recursive alias)", child.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class YamlRefused(DocumentRefused):
    """A YAML document refused by a bound or by the parser; ``line`` is 1-based (or None)."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(source, reason)


def compose_yaml(text: str | bytes, *, source: str, max_bytes: int, max_depth: int = MAX_DEPTH,
                 max_aliases: int = 1000, max_nodes: int = 200_000) -> yaml.Node | None:
    """The node graph of one YAML document (None when it is empty), composed by the safe
    loader within the bounds (see module doc). Raises YamlRefused (with the line where
    known) for a bound exceeded, text that is not UTF-8, or YAML that does not parse."""
    try:
        check_size(text, source=source, max_bytes=max_bytes)
        if isinstance(text, (bytes, bytearray)):
            text = decode_text(text, source=source)
    except DocumentRefused as exc:
        raise YamlRefused(source, exc.reason) from None
    loader = None
    try:
        loader = _BoundedComposer(text)  # the reader refuses control characters here
        loader.max_depth, loader.max_aliases = max_depth, max_aliases
        node = loader.get_single_node()
        if node is not None:
            _expanded_nodes(node, max_nodes)
        return node
    except _Bound as bound:
        raise YamlRefused(source, bound.reason, bound.mark.line + 1 if bound.mark else None) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlRefused(source, f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          mark.line + 1 if mark else None) from None
    except RecursionError:
        raise YamlRefused(source, f"nested more than {max_depth} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def construct_yaml(node: yaml.Node | None, *, source: str) -> Any:
    """The Python value of a node graph ``compose_yaml`` returned (safe types only)."""
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlRefused(source, f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()


def load_yaml(text: str | bytes, *, source: str, max_bytes: int, **bounds: int) -> Any:
    """``construct_yaml(compose_yaml(text, ...))``: one bounded, safe YAML document."""
    return construct_yaml(compose_yaml(text, source=source, max_bytes=max_bytes, **bounds), source=source)
