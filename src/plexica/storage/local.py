"""The local-folder store of the embedded mode: ``<root>/<bucket>/<key>``.

Uploads go to a temporary file under ``<root>/.tmp`` and are renamed into place on commit, so a
reader never sees half an object. Content types live in sidecars named by the key's hash under
``<root>/.meta/<bucket>/`` (a key cannot collide with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote

from plexica.storage.errors import KeyConflictError
from plexica.storage.keys import validate_bucket, validate_key
from plexica.storage.signing import SIGNED_PATH, UrlSigner, load_or_create_key
from plexica.storage.store import Method, ObjectInfo, ObjectPage, PresignedUrl
from plexica_sdk.errors import NotFoundError

CHUNK = 256 * 1024


class LocalStore:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.signer: UrlSigner | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
        self.signer = UrlSigner(load_or_create_key(self.root / ".signing-key"))

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"{self.root} is not writable")

    def _bucket_dir(self, bucket: str) -> Path:
        return self.root / validate_bucket(bucket)

    def _meta_dir(self, bucket: str) -> Path:
        return self.root / ".meta" / validate_bucket(bucket)

    def path(self, bucket: str, key: str) -> Path:
        """The file of an object; refuses anything that would resolve outside the bucket."""
        base = self._bucket_dir(bucket)
        target = base.joinpath(*validate_key(key).split("/"))
        if not target.resolve().is_relative_to(base.resolve()):
            raise KeyConflictError("the key leaves the bucket's folder")
        return target

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self._meta_dir(bucket) / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    async def create_bucket(self, bucket: str) -> None:
        await asyncio.to_thread(self._bucket_dir(bucket).mkdir, parents=True, exist_ok=True)

    async def bucket_exists(self, bucket: str) -> bool:
        return self._bucket_dir(bucket).is_dir()

    async def delete_bucket(self, bucket: str) -> None:
        def remove() -> None:
            shutil.rmtree(self._bucket_dir(bucket), ignore_errors=True)
            shutil.rmtree(self._meta_dir(bucket), ignore_errors=True)

        await asyncio.to_thread(remove)

    async def begin_upload(self, bucket: str, key: str, content_type: str) -> _LocalUpload:
        target = self.path(bucket, key)
        if not self._bucket_dir(bucket).is_dir():
            raise NotFoundError("no such bucket")
        tmp = self.root / ".tmp" / uuid.uuid4().hex
        fh = await asyncio.to_thread(tmp.open, "xb")
        return _LocalUpload(
            self, bucket=bucket, key=key, content_type=content_type, target=target, tmp=tmp, fh=fh
        )

    def _info(self, bucket: str, key: str, path: Path) -> ObjectInfo | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        content_type = "application/octet-stream"
        etag = ""
        with contextlib.suppress(FileNotFoundError, ValueError):
            meta = json.loads(self._meta_path(bucket, key).read_text())
            content_type = str(meta["content_type"])
            etag = str(meta["etag"])
        return ObjectInfo(
            key, st.st_size, content_type, etag, datetime.fromtimestamp(st.st_mtime, UTC)
        )

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return await asyncio.to_thread(self._info, bucket, key, self.path(bucket, key))

    async def get(self, bucket: str, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        path = self.path(bucket, key)
        info = await asyncio.to_thread(self._info, bucket, key, path)
        if info is None:
            raise NotFoundError("no such object")
        fh = await asyncio.to_thread(path.open, "rb")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(fh.read, CHUNK):
                    yield chunk
            finally:
                fh.close()

        return info, chunks()

    def _keys(self, bucket: str, prefix: str) -> list[str]:
        base = self._bucket_dir(bucket)
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(base).as_posix()
            stem = "" if rel == "." else rel + "/"
            keys.extend(stem + name for name in filenames if (stem + name).startswith(prefix))
        keys.sort()
        return keys

    async def list(self, bucket: str, prefix: str, after: str | None, limit: int) -> ObjectPage:
        def page() -> ObjectPage:
            keys = [k for k in self._keys(bucket, prefix) if after is None or k > after]
            items = [
                info
                for k in keys[:limit]
                if (info := self._info(bucket, k, self.path(bucket, k))) is not None
            ]
            return ObjectPage(items, items[-1].key if len(keys) > limit and items else None)

        return await asyncio.to_thread(page)

    async def delete(self, bucket: str, key: str) -> None:
        path = self.path(bucket, key)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                path.unlink()
            with contextlib.suppress(FileNotFoundError):
                self._meta_path(bucket, key).unlink()
            base = self._bucket_dir(bucket)
            parent = path.parent
            while parent != base and parent.is_relative_to(base):
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

        await asyncio.to_thread(remove)

    async def presign(
        self,
        bucket: str,
        key: str,
        method: Method,
        expires_in: int,
        *,
        content_type: str | None = None,
        size: int | None = None,
    ) -> PresignedUrl:
        assert self.signer is not None
        claims: dict[str, object] = {"b": bucket, "k": key, "m": method}
        headers: dict[str, str] = {}
        if method == "PUT":
            claims |= {"ct": content_type, "len": size}
            headers = {"Content-Type": str(content_type), "Content-Length": str(size)}
        token, exp = self.signer.sign(claims, expires_in)
        return PresignedUrl(
            f"{SIGNED_PATH}?token={quote(token)}",
            method,
            headers,
            datetime.fromtimestamp(exp, UTC),
        )


class _LocalUpload:
    def __init__(
        self,
        store: LocalStore,
        *,
        bucket: str,
        key: str,
        content_type: str,
        target: Path,
        tmp: Path,
        fh: IO[bytes],
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._key = key
        self._type = content_type
        self._target = target
        self._tmp = tmp
        self._fh = fh
        self._hash = hashlib.md5(usedforsecurity=False)
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        await asyncio.to_thread(self._fh.write, chunk)

    async def commit(self) -> ObjectInfo:
        def finish() -> ObjectInfo:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            try:
                self._target.parent.mkdir(parents=True, exist_ok=True)
                if self._target.is_dir():
                    raise KeyConflictError("a folder of objects already has this key as prefix")
            except (FileExistsError, NotADirectoryError):
                raise KeyConflictError("a prefix of this key is an object") from None
            meta = self._store._meta_path(self._bucket, self._key)
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta_tmp = self._tmp.with_suffix(".meta")
            etag = self._hash.hexdigest()
            meta_tmp.write_text(json.dumps({"content_type": self._type, "etag": etag}))
            os.replace(meta_tmp, meta)
            os.replace(self._tmp, self._target)
            info = self._store._info(self._bucket, self._key, self._target)
            assert info is not None
            return info

        try:
            return await asyncio.to_thread(finish)
        except BaseException:
            await self.abort()
            raise

    async def abort(self) -> None:
        def remove() -> None:
            self._fh.close()
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()

        await asyncio.to_thread(remove)
