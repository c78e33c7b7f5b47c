"""Storage: the content-addressed blob store (files named by their sha256)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    """Content-addressed blob files: ``<dir>/<sha[:2]>/<sha>``.

    Args:
        directory: folder, created on first write.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, sha256: str) -> Path:
        """Path of the blob with this hex sha256.

        Raises:
            ValueError: not a 64-character lowercase hex digest.
        """
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"invalid blob hash {sha256!r}")
        return self.directory / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent, atomic rename) and return its hex sha256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return digest

    def get(self, sha256: str) -> bytes:
        """Read a blob.

        Raises:
            FileNotFoundError: no such blob in this store.
        """
        return self.path_for(sha256).read_bytes()
