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
