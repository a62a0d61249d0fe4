"""Streaming uploads for ``S3Store``: a multipart upload fed one part at a time.

Memory is bounded: the writer fills one part-sized buffer; a full part goes to a small
thread pool that uploads it while the producer fills the next one, and the producer blocks
while ``parts_in_flight`` parts are already queued or uploading. So a writer holds at most
``(1 + parts_in_flight) * part_size`` bytes, whatever the object's size
(``peak_buffered_bytes`` records the high-water mark).

An object that fits in one part is sent as one PutObject at commit and never starts a
multipart upload.

Resumption: before starting a multipart upload the writer looks for an incomplete upload of
the same key and storage class (left by a worker that was killed or restarted mid-object)
and, if there is one, continues it: each part whose number, size and MD5 match a part the
server already holds is not sent again (its ETag, the part's MD5 on S3 without SSE-KMS, is
the proof); any other part is uploaded over it. So a copy of a large object that was cut
off resumes where it stopped, while an object whose bytes differ (a new backup) is simply
uploaded in full. Nothing is visible before CompleteMultipartUpload either way. Every failure (in ``write``, in a part upload, in CompleteMultipartUpload)
and every abort calls AbortMultipartUpload; if that call fails too (endpoint down), the
upload is left for ``S3Store.abort_incomplete_uploads``. So is an upload the server created
but whose CreateMultipartUpload answer was lost or cut short (asked again, up to 3 times).
"""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from drfleet.providers.storage.base import ObjectInfo, ObjectWriter
from drfleet.providers.storage.errors import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from drfleet.providers.storage.s3 import S3Store

MIN_PART_SIZE = 5 << 20
MAX_PARTS = 10_000


class MultipartWriter(ObjectWriter):
    """The ``ObjectWriter`` of ``S3Store``; see the module doc for memory and cleanup."""

    def __init__(self, store: S3Store, key: str, storage_class: str | None) -> None:
        super().__init__(store.name, key)
        self._store = store
        self._storage_class = storage_class
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[Future, int]] = deque()
        self._etags: dict[int, str] = {}
        self._next_part = 1
        self._reusable: dict[int, tuple[str, int]] = {}
        self.peak_buffered_bytes = 0
        self.parts_reused = 0
        self.resumed_upload: str | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes this writer holds now: the part being filled plus parts not yet sent."""
        return len(self._buffer) + sum(size for _, size in self._pending)

    def _write(self, data: memoryview) -> None:
        part_size = self._store.part_size
        while data:
            if len(self._buffer) == part_size:  # full, and more data follows
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)
            room = part_size - len(self._buffer)
            self._buffer += data[:room]
            data = data[room:]
            self._note_peak()
        self._collect(block=False)  # surface a failed part upload early

    def _commit(self) -> ObjectInfo:
        if self._upload_id is None:
            body, self._buffer = self._buffer, bytearray()
            self._store.put_object(self.key, body, self._storage_class,
                                   content_md5=content_md5(body))
            return ObjectInfo(self.key, self.bytes_written)
        if self._buffer:
            part, self._buffer = self._buffer, bytearray()
            self._send_part(part)
        while self._pending:
            self._collect(block=True)
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self._etags.items())]
        response = self._store.call("complete_multipart_upload", self.key,
                                    Key=self._store.object_key(self.key), UploadId=self._upload_id,
                                    MultipartUpload={"Parts": parts})
        self._shutdown()
        self._store.ensure_locked(self.key, response.get("VersionId"))
        return ObjectInfo(self.key, self.bytes_written)

    def _abort(self) -> None:
        self._buffer = bytearray()
        self._shutdown()
        self._pending.clear()
        if self._upload_id is not None:
            self._store.abort_upload(self.key, self._upload_id)

    def _send_part(self, part: bytearray) -> None:
        store = self._store
        if self._upload_id is None:
            store.check_bucket(self.key)
            found = store.resumable_upload(self.key, self._storage_class)
            if found is not None:
                self._upload_id, self._reusable = found
                self.resumed_upload = self._upload_id
            else:
                params = {"Key": store.object_key(self.key), **store.lock_params(self.key)}
                if self._storage_class:
                    params["StorageClass"] = self._storage_class
                self._upload_id = self._create_upload(params)
            self._executor = ThreadPoolExecutor(max_workers=store.parts_in_flight,
                                                thread_name_prefix="s3-part-upload")
        if self._next_part > MAX_PARTS:
            raise StoreError(f"object needs more than {MAX_PARTS} parts", store=self.store_name,
                             key=self.key, part_size=store.part_size,
                             hint="raise part_size for objects this large")
        held = self._reusable.get(self._next_part)
        if held is not None and held == (hashlib.md5(part, usedforsecurity=False).hexdigest(), len(part)):
            self._etags[self._next_part] = f'"{held[0]}"'
            self.parts_reused += 1
            self._next_part += 1
            return
        self._note_peak(extra=len(part))
        while len(self._pending) >= store.parts_in_flight:
            self._collect(block=True)
        assert self._executor is not None
        future = self._executor.submit(self._upload_part, self._next_part, part)
        self._pending.append((future, len(part)))
        self._next_part += 1

    def _create_upload(self, params: dict) -> str:
        """CreateMultipartUpload; a 200 whose body was cut short parses without an
        UploadId, so it is asked again (the lost upload is left for
        ``S3Store.abort_incomplete_uploads``). Raises StoreUnavailable after 3 such answers."""
        for _ in range(3):
            response = self._store.call("create_multipart_upload", self.key, **params)
            if response.get("UploadId"):
                return response["UploadId"]
        raise StoreUnavailable(self.store_name, self.key,
                               "CreateMultipartUpload answered without an UploadId (response cut short?)",
                               bucket=self._store.bucket, endpoint=self._store.endpoint,
                               operation="create_multipart_upload")

    def _upload_part(self, number: int, part: bytearray) -> tuple[int, str]:
        response = self._store.call(
            "upload_part", self.key, Key=self._store.object_key(self.key),
            UploadId=self._upload_id, PartNumber=number, Body=part,
            ContentMD5=content_md5(part))
        return number, response["ETag"]

    def _collect(self, *, block: bool) -> None:
        """Record finished part uploads (oldest first); re-raise the first failure."""
        while self._pending and (block or self._pending[0][0].done()):
            future, _ = self._pending.popleft()
            number, etag = future.result()
            self._etags[number] = etag
            block = False

    def _note_peak(self, extra: int = 0) -> None:
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, self.buffered_bytes + extra)

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def content_md5(data: bytes | bytearray) -> str:
    """Content-MD5 lets the server reject a part corrupted on the way."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
