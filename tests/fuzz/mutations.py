"""Byte-level mutations of a seed, drawn by hypothesis: flip, insert, delete, truncate,
duplicate a span, or splice in an "interesting" token."""

from __future__ import annotations

from hypothesis import strategies as st

INTERESTING = [b"\x00", b"\xff", b"-1", b"0", b"99999999999999999999", b"null", b"[]", b"{}",
               b'"', b"\\", b"..", b"/", b"\n", b": ", b"- ", b"&a", b"*a", b"!!python/object", b"1e999",
               b"\xef\xbb\xbf", b"NaN"]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate", "token"]))
        at = draw(st.integers(0, max(0, len(data))))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            data[at:at + draw(st.integers(1, 32))] = b""
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate" and data:
            span = data[at:at + draw(st.integers(1, 64))]
            data[at:at] = span
        elif op == "token":
            data[at:at] = draw(st.sampled_from(INTERESTING))
    return bytes(data)


# --- bombs: inputs built to exhaust a reader ------------------------------------------

DEPTHS = [33, 65, 129, 1000, 20_000, 100_000]
NESTERS = [(b"[", b"]"), (b'{"a":', b"}"), (b"{a: ", b"}"), (b'["x",', b"]")]


@st.composite
def depth_bomb(draw) -> bytes:
    """Brackets or braces nested deeper than any reader allows, closed or not."""
    depth = draw(st.sampled_from(DEPTHS))
    opener, closer = draw(st.sampled_from(NESTERS))
    if draw(st.booleans()):
        return opener * depth + b"1" + closer * depth
    return opener * depth


@st.composite
def block_bomb(draw) -> bytes:
    """YAML block sequences or mappings nested by indentation."""
    depth = draw(st.sampled_from([33, 65, 300, 2000]))
    if draw(st.booleans()):
        return b"".join(b" " * i + b"-\n" for i in range(depth)) + b" " * depth + b"- x\n"
    return b"".join(b" " * i + b"a:\n" for i in range(depth)) + b" " * depth + b"a: 1\n"


@st.composite
def alias_bomb(draw) -> bytes:
    """A "billion laughs": each level an anchor whose list repeats the level below."""
    levels, width = draw(st.integers(3, 12)), draw(st.integers(2, 12))
    lines = [b'l0: &l0 ["lol"]']
    for i in range(1, levels):
        lines.append(b"l%d: &l%d [" % (i, i) + b", ".join([b"*l%d" % (i - 1)] * width) + b"]")
    if draw(st.booleans()):
        lines.append(b"regions: *l%d" % (levels - 1))
    if draw(st.booleans()):
        lines.append(b"loop: &loop [*loop]")
    return b"\n".join(lines) + b"\n"


@st.composite
def spliced_bomb(draw, seeds: list[bytes]) -> bytes:
    """A seed with a depth bomb spliced in at some point (inside a value, a string...)."""
    data = draw(st.sampled_from(seeds))
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(depth_bomb()) + data[at:]


def bombs(seeds: list[bytes], *, yaml: bool = False):
    """Depth bombs, alone or spliced into a seed; with ``yaml``, alias and block bombs too."""
    strategies = [depth_bomb(), spliced_bomb(seeds)]
    if yaml:
        strategies += [alias_bomb(), block_bomb()]
    return st.one_of(*strategies)
