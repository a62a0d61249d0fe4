"""The encryption envelope of a stored object: STREAM over AES-256-GCM.

    header  = magic(8) | version(1) | chunk_size(4, BE) | nonce_prefix(7) | data_key_id(8)
    chunk_i = AES-256-GCM(object_key, nonce_prefix | uint32be(i) | final_flag,
                          plaintext_i, aad = header | object_name)

See docs/format.md, "The encryption envelope". ``ObjectSealer`` writes it one chunk at a
time (the caller chunks); ``ObjectOpener`` reads it back, yielding only authenticated
plaintext and classifying every failure. ``DataKey`` and the wrapping functions live in
``backup_format.datakey`` and are re-exported here.
"""

from __future__ import annotations

import io
import secrets
import struct
from typing import BinaryIO, Iterator, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drfleet.backup_format.datakey import DataKey, unwrap_data_key, wrap_data_key
from drfleet.backup_format.errors import EnvelopeCorrupt, EnvelopeTruncated, NotAnEnvelope, SealingMisuse, TrailingData
from drfleet.backup_format.layout import check_object_name

__all__ = ["DataKey", "wrap_data_key", "unwrap_data_key", "ObjectSealer", "ObjectOpener",
           "encrypt_bytes", "decrypt_bytes", "sealed_size", "MAGIC", "ENVELOPE_VERSION",
           "HEADER_SIZE", "TAG_SIZE", "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE"]

MAGIC = b"\x89DFE\r\n\x1a\n"
ENVELOPE_VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
MAX_CHUNKS = 1 << 32
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
_HEADER = struct.Struct(">8sBI7s8s")
HEADER_SIZE = _HEADER.size
_COUNTER_AND_FLAG = struct.Struct(">IB")


class _Opened(NamedTuple):
    chunk_size: int
    nonce_prefix: bytes
    cipher: AESGCM
    aad: bytes


def _nonce(nonce_prefix: bytes, index: int, final: bool) -> bytes:
    return nonce_prefix + _COUNTER_AND_FLAG.pack(index, 1 if final else 0)


def _object_cipher(data_key: DataKey, nonce_prefix: bytes, object_name: str) -> AESGCM:
    info = b"drfleet/v1/envelope\x00" + object_name.encode("utf-8")
    return AESGCM(data_key.derive(info, salt=nonce_prefix))


def sealed_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Stored size of an envelope holding ``plaintext_size`` bytes in ``chunk_size`` chunks."""
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + chunks * TAG_SIZE


class ObjectSealer:
    """Seals one object. Write ``header()`` then ``seal(chunk, final)`` for every chunk.

    Every chunk but the final must be exactly ``chunk_size`` bytes; the final one holds
    0..chunk_size bytes (an empty object is one empty final chunk). ``seal`` raises
    ``SealingMisuse`` for a wrong-sized chunk, a chunk after the final one, or more than
    2^32 chunks; the constructor raises ``InvalidName``/``SealingMisuse`` for a bad name
    or chunk size.
    """

    def __init__(self, data_key: DataKey, object_name: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        check_object_name(object_name)
        if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise SealingMisuse(object_name, None, f"chunk size must be 1..{MAX_CHUNK_SIZE} bytes")
        self.object_name, self.chunk_size = object_name, chunk_size
        self._prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
        self._header = _HEADER.pack(MAGIC, ENVELOPE_VERSION, chunk_size, self._prefix, data_key.id_bytes)
        self._aad = self._header + object_name.encode("utf-8")
        self._cipher = _object_cipher(data_key, self._prefix, object_name)
        self._index = 0
        self.finished = False

    def header(self) -> bytes:
        """The 28-byte header; store it before the first sealed chunk."""
        return self._header

    def seal(self, plaintext_chunk: bytes | bytearray | memoryview, final: bool) -> bytes:
        """Encrypt the next chunk; returns ciphertext plus its 16-byte tag."""
        nonce = self._next_nonce(_nbytes(plaintext_chunk), final)
        return self._cipher.encrypt(nonce, plaintext_chunk, self._aad)

    def seal_into(self, plaintext_chunk: bytes | bytearray | memoryview, final: bool,
                  out: bytearray | memoryview) -> int:
        """Like ``seal`` but writes into ``out`` (at least chunk + 16 bytes), so a caller can
        reuse one buffer instead of allocating a new one per chunk. Returns bytes written."""
        size = _nbytes(plaintext_chunk)
        if _nbytes(out) < size + TAG_SIZE:
            raise SealingMisuse(self.object_name, self._index, f"output buffer smaller than {size + TAG_SIZE}")
        nonce = self._next_nonce(size, final)
        target = memoryview(out).cast("B")[: size + TAG_SIZE]
        if hasattr(self._cipher, "encrypt_into"):  # cryptography >= 45
            return self._cipher.encrypt_into(nonce, plaintext_chunk, self._aad, target)
        target[:] = self._cipher.encrypt(nonce, plaintext_chunk, self._aad)
        return size + TAG_SIZE

    def _next_nonce(self, size: int, final: bool) -> bytes:
        if self.finished:
            raise SealingMisuse(self.object_name, self._index, "the final chunk was already sealed")
        if size != self.chunk_size and not (final and size < self.chunk_size):
            raise SealingMisuse(self.object_name, self._index,
                                f"chunk of {size} bytes; chunk size is {self.chunk_size}"
                                + ("" if final else " and only the final chunk may be shorter"))
        if self._index >= MAX_CHUNKS:
            raise SealingMisuse(self.object_name, self._index, "an envelope holds at most 2^32 chunks")
        nonce = _nonce(self._prefix, self._index, final)
        self._index += 1
        self.finished = bool(final)
        return nonce


class ObjectOpener:
    """Opens objects sealed under ``data_key`` with the name ``object_name``.

    The constructor raises ``InvalidName`` for an unsafe object name.
    """

    def __init__(self, data_key: DataKey, object_name: str) -> None:
        check_object_name(object_name)
        self.data_key, self.object_name = data_key, object_name

    def read_stream(self, readable: BinaryIO, *, expected_size: int | None = None) -> Iterator[bytes]:
        """Yield the object's plaintext chunk by chunk, each only after it authenticated.

        ``readable`` needs ``read(n)`` (``readinto`` is used when present). Raises
        ``NotAnEnvelope`` (bad magic, version or chunk size), ``EnvelopeCorrupt`` (a chunk
        fails authentication, or the object was sealed by another data key),
        ``EnvelopeTruncated`` (the final chunk is missing) and ``TrailingData`` (bytes
        after the final chunk). Chunks yielded before an error are authentic but partial.

        Every damage is detected either way; ``expected_size`` (the stored size the
        manifest records) only makes the verdict exact: without it, bytes appended after a
        short final chunk, or a cut inside the last chunk, surface as ``EnvelopeCorrupt``
        on that chunk; with it they are ``TrailingData`` and ``EnvelopeTruncated``.
        """
        source = readable if expected_size is None else _Bounded(readable, expected_size)
        opened = self._open_header(source)
        block_size = opened.chunk_size + TAG_SIZE
        buffer = bytearray(block_size + 1)  # one byte of look-ahead tells whether a block is last
        view = memoryview(buffer)
        filled = _fill(source, view)
        if filled == 0:
            raise EnvelopeTruncated(self.object_name, "no chunk follows the header")
        index = 0
        while True:
            last = filled <= block_size
            block = view[:filled] if last else view[:block_size]
            if len(block) < TAG_SIZE:
                raise EnvelopeTruncated(self.object_name, f"chunk {index} ends inside its tag")
            if index >= MAX_CHUNKS:
                raise EnvelopeCorrupt(self.object_name, index, "more chunks than an envelope can hold")
            if last and isinstance(source, _Bounded):
                self._check_length(source, index)
            yield self._open_chunk(opened, block, index, last)
            if last:
                return
            buffer[0] = buffer[block_size]
            filled = 1 + _fill(source, view[1:])
            index += 1

    def _check_length(self, source: "_Bounded", index: int) -> None:
        if source.consumed < source.limit:
            raise EnvelopeTruncated(self.object_name, f"object ends after {source.consumed} bytes; "
                                                      f"the manifest records {source.limit}")
        if _fill(source.raw, memoryview(bytearray(1))):
            raise TrailingData(self.object_name, index)

    def _open_header(self, readable: BinaryIO) -> _Opened:
        header = bytearray(HEADER_SIZE)
        got = _fill(readable, memoryview(header))
        if got < len(MAGIC):
            raise NotAnEnvelope(self.object_name, f"object is only {got} bytes long")
        if header[: len(MAGIC)] != MAGIC:
            raise NotAnEnvelope(self.object_name, "bad magic (not an envelope, or mangled in transfer)")
        if got == len(MAGIC):
            raise EnvelopeTruncated(self.object_name, "the object ends inside its header")
        if header[len(MAGIC)] != ENVELOPE_VERSION:
            raise NotAnEnvelope(self.object_name, f"unknown envelope version {header[len(MAGIC)]}")
        if got < HEADER_SIZE:
            raise EnvelopeTruncated(self.object_name, "the object ends inside its header")
        _, _, chunk_size, prefix, key_id = _HEADER.unpack(header)
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise NotAnEnvelope(self.object_name, f"chunk size {chunk_size} is out of range")
        if key_id != self.data_key.id_bytes:
            raise EnvelopeCorrupt(self.object_name, None,
                                  f"sealed with data key dk-{key_id.hex()}, not this backup's "
                                  f"{self.data_key.id} (an object from another backup?)")
        return _Opened(chunk_size, prefix, _object_cipher(self.data_key, prefix, self.object_name),
                       bytes(header) + self.object_name.encode("utf-8"))

    def _open_chunk(self, opened: _Opened, block: memoryview, index: int, last: bool) -> bytes:
        try:
            return opened.cipher.decrypt(_nonce(opened.nonce_prefix, index, last), block, opened.aad)
        except InvalidTag:
            pass
        try:  # classify: would the block authenticate with the other flag?
            opened.cipher.decrypt(_nonce(opened.nonce_prefix, index, not last), block, opened.aad)
        except InvalidTag:
            damage = " (damaged, or cut or extended inside this last chunk)" if last else ""
            raise EnvelopeCorrupt(self.object_name, index, f"chunk {index} failed authentication{damage}") from None
        if last:
            raise EnvelopeTruncated(self.object_name, f"chunk {index} is the last present but is not final")
        raise TrailingData(self.object_name, index)


def _nbytes(buffer: bytes | bytearray | memoryview) -> int:
    return buffer.nbytes if isinstance(buffer, memoryview) else len(buffer)


def _read_some(readable: BinaryIO, view: memoryview) -> int:
    """One read into ``view``; returns the bytes read (0 at the end of the stream)."""
    readinto = getattr(readable, "readinto", None)
    if readinto is not None:
        return readinto(view) or 0
    data = readable.read(len(view))
    if not data:
        return 0
    view[: len(data)] = data
    return len(data)


def _fill(readable: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until it is full or the stream ends; return the bytes read."""
    filled = 0
    while filled < len(view) and (count := _read_some(readable, view[filled:])):
        filled += count
    return filled


class _Bounded:
    """Presents at most ``limit`` bytes of ``raw``; counts what it handed out."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw, self.limit, self.consumed = raw, limit, 0

    def readinto(self, view: memoryview) -> int:
        allowed = self.limit - self.consumed
        count = _read_some(self.raw, view[:allowed]) if allowed > 0 else 0
        self.consumed += count
        return count


def encrypt_bytes(data_key: DataKey, object_name: str, data: bytes,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """The whole envelope of ``data`` (for small objects; stream large ones with the sealer).

    Raises ``InvalidName`` for an unsafe object name, ``SealingMisuse`` for a bad chunk size.
    """
    sealer = ObjectSealer(data_key, object_name, chunk_size)
    view = memoryview(data).cast("B")
    parts = [sealer.header()]
    start = 0
    while len(view) - start > chunk_size:
        parts.append(sealer.seal(view[start: start + chunk_size], final=False))
        start += chunk_size
    parts.append(sealer.seal(view[start:], final=True))
    return b"".join(parts)


def decrypt_bytes(data_key: DataKey, object_name: str, envelope: bytes) -> bytes:
    """The plaintext of a whole envelope; raises what ``ObjectOpener.read_stream`` raises."""
    return b"".join(ObjectOpener(data_key, object_name).read_stream(io.BytesIO(envelope)))
