import io
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drfleet.backup_format.envelope import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    MAGIC,
    TAG_SIZE,
    DataKey,
    ObjectOpener,
    ObjectSealer,
    decrypt_bytes,
    encrypt_bytes,
    sealed_size,
)
from drfleet.backup_format.errors import (
    EnvelopeCorrupt,
    EnvelopeError,
    EnvelopeTruncated,
    NotAnEnvelope,
    SealingMisuse,
    TrailingData,
)

NAME = "data-0000.zst.dfe"
CHUNK = 64
BLOCK = CHUNK + TAG_SIZE


def sealed(data_key, data, chunk_size=CHUNK, name=NAME):
    return encrypt_bytes(data_key, name, data, chunk_size=chunk_size)


def opened(data_key, blob, name=NAME, **kwargs):
    return b"".join(ObjectOpener(data_key, name).read_stream(io.BytesIO(blob), **kwargs))


def chunk_at(index):
    return slice(HEADER_SIZE + index * BLOCK, HEADER_SIZE + (index + 1) * BLOCK)


def flipped(blob, position):
    mutated = bytearray(blob)
    mutated[position] ^= 0x01
    return bytes(mutated)


# --- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_at_chunk_boundaries(data_key, size):
    data = os.urandom(size)
    blob = sealed(data_key, data)
    assert len(blob) == sealed_size(size, CHUNK)
    assert opened(data_key, blob) == data


@pytest.mark.parametrize("size", [0, 1, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1])
def test_round_trip_with_the_default_one_mib_chunks(data_key, size):
    data = os.urandom(size)
    assert decrypt_bytes(data_key, NAME, encrypt_bytes(data_key, NAME, data)) == data


def test_empty_plaintext_is_one_final_empty_chunk(data_key):
    blob = sealed(data_key, b"")
    assert len(blob) == HEADER_SIZE + TAG_SIZE
    assert list(ObjectOpener(data_key, NAME).read_stream(io.BytesIO(blob))) == [b""]


def test_header_records_magic_version_chunk_size_and_data_key_id(data_key):
    header = ObjectSealer(data_key, NAME, chunk_size=12345).header()
    assert len(header) == HEADER_SIZE == 28
    assert header[:8] == MAGIC and header[8] == 1
    assert struct.unpack(">I", header[9:13])[0] == 12345
    assert "dk-" + header[20:28].hex() == data_key.id


def test_every_object_gets_a_fresh_nonce_prefix(data_key):
    assert ObjectSealer(data_key, NAME).header()[13:20] != ObjectSealer(data_key, NAME).header()[13:20]


def test_opener_yields_one_plaintext_per_chunk(data_key):
    data = os.urandom(2 * CHUNK + 7)
    chunks = list(ObjectOpener(data_key, NAME).read_stream(io.BytesIO(sealed(data_key, data))))
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 7]


class Trickle:
    """A reader with only read(), returning at most 5 bytes per call, like a slow socket."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def read(self, size):
        return self._data.read(min(size, 5))


def test_short_reads_are_assembled_into_whole_chunks(data_key):
    data = os.urandom(3 * CHUNK + 1)
    stream = Trickle(sealed(data_key, data))
    assert b"".join(ObjectOpener(data_key, NAME).read_stream(stream)) == data


def test_sealer_accepts_memoryview_slices_without_copying(data_key):
    data = bytearray(os.urandom(2 * CHUNK))
    sealer = ObjectSealer(data_key, NAME, chunk_size=CHUNK)
    view = memoryview(data)
    blob = sealer.header() + sealer.seal(view[:CHUNK], final=False) + sealer.seal(view[CHUNK:], final=True)
    assert opened(data_key, blob) == bytes(data)


def test_seal_into_a_reused_buffer_gives_the_same_envelope_format(data_key):
    data = os.urandom(2 * CHUNK + 3)
    sealer = ObjectSealer(data_key, NAME, chunk_size=CHUNK)
    out = bytearray(BLOCK)
    parts = [sealer.header()]
    for start in range(0, len(data), CHUNK):
        piece = data[start: start + CHUNK]
        written = sealer.seal_into(piece, start + CHUNK >= len(data), out)
        parts.append(bytes(out[:written]))
    assert [len(p) for p in parts[1:]] == [BLOCK, BLOCK, 3 + TAG_SIZE]
    assert opened(data_key, b"".join(parts)) == data


def test_seal_into_refuses_a_buffer_too_small(data_key):
    with pytest.raises(SealingMisuse):
        ObjectSealer(data_key, NAME, chunk_size=CHUNK).seal_into(bytes(CHUNK), False, bytearray(CHUNK))


# --- sealer contract ------------------------------------------------------------------

@pytest.mark.parametrize("size, final", [(CHUNK - 1, False), (CHUNK + 1, False), (CHUNK + 1, True)])
def test_sealer_refuses_chunks_of_the_wrong_size(data_key, size, final):
    with pytest.raises(SealingMisuse):
        ObjectSealer(data_key, NAME, chunk_size=CHUNK).seal(bytes(size), final=final)


def test_sealer_refuses_anything_after_the_final_chunk(data_key):
    sealer = ObjectSealer(data_key, NAME, chunk_size=CHUNK)
    sealer.seal(b"end", final=True)
    with pytest.raises(SealingMisuse):
        sealer.seal(b"", final=True)


@pytest.mark.parametrize("chunk_size", [0, -1, (64 << 20) + 1])
def test_sealer_refuses_an_impossible_chunk_size(data_key, chunk_size):
    with pytest.raises(SealingMisuse):
        ObjectSealer(data_key, NAME, chunk_size=chunk_size)


# --- damage is detected and named -----------------------------------------------------

@pytest.fixture
def three_chunks(data_key):
    return sealed(data_key, os.urandom(3 * CHUNK))


@pytest.mark.parametrize("position, error", [
    (0, NotAnEnvelope),                      # magic
    (8, NotAnEnvelope),                      # version
    (12, EnvelopeCorrupt),                   # chunk size (low byte): chunk 0 fails
    (16, EnvelopeCorrupt),                   # nonce prefix
    (25, EnvelopeCorrupt),                   # data key id
    (HEADER_SIZE + 3, EnvelopeCorrupt),      # chunk 0 ciphertext
    (HEADER_SIZE + BLOCK - 1, EnvelopeCorrupt),  # chunk 0 tag
    (HEADER_SIZE + 2 * BLOCK + 10, EnvelopeCorrupt),  # final chunk
])
def test_a_flipped_byte_anywhere_is_detected_and_names_the_object(data_key, three_chunks, position, error):
    with pytest.raises(error) as caught:
        opened(data_key, flipped(three_chunks, position))
    assert caught.value.object_name == NAME and NAME in str(caught.value)


def test_corrupt_chunk_error_says_which_chunk(data_key, three_chunks):
    with pytest.raises(EnvelopeCorrupt) as caught:
        opened(data_key, flipped(three_chunks, chunk_at(1).start + 5))
    assert caught.value.chunk_index == 1


def test_swapped_chunks_are_detected(data_key, three_chunks):
    swapped = three_chunks[:HEADER_SIZE] + three_chunks[chunk_at(1)] + three_chunks[chunk_at(0)] \
        + three_chunks[chunk_at(2)]
    with pytest.raises(EnvelopeCorrupt) as caught:
        opened(data_key, swapped)
    assert caught.value.chunk_index == 0


def test_dropping_the_final_chunk_is_truncation(data_key, three_chunks):
    with pytest.raises(EnvelopeTruncated):
        opened(data_key, three_chunks[: chunk_at(2).start])


def test_object_with_only_a_header_is_truncated(data_key, three_chunks):
    with pytest.raises(EnvelopeTruncated):
        opened(data_key, three_chunks[:HEADER_SIZE])


@pytest.mark.parametrize("keep", [HEADER_SIZE - 1, 9, chunk_at(1).start + 7])
def test_cut_inside_the_header_or_a_tag_is_truncation(data_key, three_chunks, keep):
    with pytest.raises(EnvelopeTruncated):
        opened(data_key, three_chunks[:keep])


def test_cut_inside_a_chunk_fails_that_chunk_and_says_it_may_be_cut(data_key, three_chunks):
    with pytest.raises(EnvelopeCorrupt) as caught:
        opened(data_key, three_chunks[: chunk_at(1).start + 40])
    assert caught.value.chunk_index == 1 and "cut" in str(caught.value)


def test_cut_inside_a_chunk_is_truncation_when_the_stored_size_is_known(data_key, three_chunks):
    with pytest.raises(EnvelopeTruncated) as caught:
        opened(data_key, three_chunks[: chunk_at(1).start + 40], expected_size=len(three_chunks))
    assert str(len(three_chunks)) in str(caught.value)


@pytest.mark.parametrize("extra", [b"\x00", os.urandom(TAG_SIZE), os.urandom(BLOCK)], ids=["one-byte", "a-tag", "a-block"])
def test_bytes_after_a_full_final_chunk_are_trailing_data(data_key, three_chunks, extra):
    with pytest.raises(TrailingData):
        opened(data_key, three_chunks + extra)


def test_bytes_after_a_short_final_chunk_are_detected(data_key):
    blob = sealed(data_key, os.urandom(CHUNK + 10))
    with pytest.raises(EnvelopeCorrupt):
        opened(data_key, blob + b"junk")
    with pytest.raises(TrailingData):
        opened(data_key, blob + b"junk", expected_size=len(blob))


def test_correct_expected_size_opens_normally(data_key):
    data = os.urandom(CHUNK + 10)
    blob = sealed(data_key, data)
    assert opened(data_key, blob, expected_size=len(blob)) == data


def test_an_object_renamed_does_not_open(data_key):
    blob = sealed(data_key, b"payload", name="data-0000.zst.dfe")
    with pytest.raises(EnvelopeCorrupt) as caught:
        opened(data_key, blob, name="data-0001.zst.dfe")
    assert caught.value.object_name == "data-0001.zst.dfe"


def test_an_object_from_another_backup_is_named_as_such(data_key):
    blob = sealed(DataKey.generate(), b"payload")
    with pytest.raises(EnvelopeCorrupt) as caught:
        opened(data_key, blob)
    assert "another backup" in str(caught.value) and data_key.id in str(caught.value)


@pytest.mark.parametrize("blob", [b"", b"PK\x03\x04 a zip file, not an envelope", MAGIC[:5]])
def test_something_else_is_not_an_envelope(data_key, blob):
    with pytest.raises(NotAnEnvelope):
        opened(data_key, blob)


def test_an_unknown_envelope_version_is_named(data_key):
    blob = bytearray(sealed(data_key, b"x"))
    blob[8] = 2
    with pytest.raises(NotAnEnvelope) as caught:
        opened(data_key, bytes(blob))
    assert "version 2" in str(caught.value)


# --- properties -----------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ONE_KEY = DataKey.generate()


@FAST
@given(data=st.binary(max_size=2000), chunk_size=st.integers(min_value=1, max_value=300))
def test_any_data_at_any_chunk_size_round_trips(data, chunk_size):
    blob = encrypt_bytes(ONE_KEY, NAME, data, chunk_size=chunk_size)
    assert len(blob) == sealed_size(len(data), chunk_size)
    assert decrypt_bytes(ONE_KEY, NAME, blob) == data


def mutate(blob, kind, position, amount, byte):
    position %= len(blob)
    if kind == "flip":
        return blob[:position] + bytes([blob[position] ^ (byte or 1)]) + blob[position + 1:]
    if kind == "cut":
        return blob[:position]
    if kind == "append":
        return blob + bytes([byte]) * amount
    if kind == "delete":
        return blob[:position] + blob[position + amount:]
    return blob[:position] + bytes([byte]) * amount + blob[position:]  # insert


@FAST
@given(data=st.binary(max_size=600), chunk_size=st.integers(min_value=1, max_value=100),
       kind=st.sampled_from(["flip", "cut", "append", "delete", "insert"]),
       position=st.integers(min_value=0), amount=st.integers(min_value=1, max_value=200),
       byte=st.integers(min_value=0, max_value=255))
def test_no_mutation_ever_decrypts_silently(data, chunk_size, kind, position, amount, byte):
    blob = encrypt_bytes(ONE_KEY, NAME, data, chunk_size=chunk_size)
    mutated = mutate(blob, kind, position, amount, byte)
    if mutated == blob:
        return
    with pytest.raises(EnvelopeError):
        decrypt_bytes(ONE_KEY, NAME, mutated)
