"""Where an analytics export goes: a local folder or a blob container (and prefix). The same
few operations on both, so the exporter does not know which: read a small file (a manifest),
put a file from a local path (streamed), delete a file, list the files under a folder."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings


class Target(Protocol):
    def describe(self) -> str: ...
    def list(self, folder: str) -> list[str]: ...
    def read(self, path: str) -> bytes | None: ...
    def put(self, path: str, source: Path, content_type: str) -> None: ...
    def delete(self, path: str) -> None: ...
    def fetch(self, path: str, to: Path) -> None: ...


class DirTarget:
    """A local folder. Files are written beside their final name and renamed into place, so
    a reader never opens half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _local(self, path: str, follow: bool = True) -> Path:
        """`root/path`, refused (ValueError) unless it is inside root: paths come from
        manifests anyone who can write to the folder can write. `follow=False` checks the
        folder only (deleting or replacing a link acts on the link, not where it points)."""
        root = self.root.resolve()
        local = self.root / path
        where = local.resolve() if follow else local.parent.resolve() / local.name
        if local.name in ("", ".", "..") or not where.is_relative_to(root) or where == root:
            raise ValueError(f"{path!r} is outside {self.root}")
        return local

    def describe(self) -> str:
        return str(self.root)

    def read(self, path: str) -> bytes | None:
        try:
            return self._local(path).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, folder: str) -> list[str]:
        base = self.root / folder
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )

    def put(self, path: str, source: Path, content_type: str) -> None:
        final = self._local(path, follow=False)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.partial")
        with source.open("rb") as src, partial.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(partial, final)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._local(path, follow=False).unlink()

    def fetch(self, path: str, to: Path) -> None:
        data = self._local(path).read_bytes()
        to.parent.mkdir(parents=True, exist_ok=True)
        to.write_bytes(data)


class BlobTarget:
    """A blob container, under an optional prefix (ADLS Gen2 or a OneLake shortcut reads the
    same paths). Each blob is uploaded whole in one request sequence: readers see the old
    or the new blob, never a part."""

    def __init__(self, container: ContainerClient, prefix: str = "") -> None:
        self.container = container
        self.prefix = prefix.strip("/")

    def _name(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def describe(self) -> str:
        return f"blob:{self.container.container_name}" + (f"/{self.prefix}" if self.prefix else "")

    def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()

    def read(self, path: str) -> bytes | None:
        try:
            return self.container.download_blob(self._name(path)).readall()
        except ResourceNotFoundError:
            return None

    def list(self, folder: str) -> list[str]:
        prefix = self._name(folder.rstrip("/") + "/")
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            return sorted(
                b.name[strip:] for b in self.container.list_blobs(name_starts_with=prefix)
            )
        except ResourceNotFoundError:
            return []

    def put(self, path: str, source: Path, content_type: str) -> None:
        with source.open("rb") as data:
            self.container.upload_blob(
                self._name(path),
                data,
                overwrite=True,
                length=source.stat().st_size,
                content_settings=ContentSettings(content_type=content_type),
            )

    def delete(self, path: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.container.delete_blob(self._name(path))

    def fetch(self, path: str, to: Path) -> None:
        to.parent.mkdir(parents=True, exist_ok=True)
        with to.open("wb") as out:
            self.container.download_blob(self._name(path)).readinto(out)
