"""Backups and atomic writes.

A backup is a manifest (JSON: files with sha256, mode, owner; playbook,
confidence, reason, fix id) plus the files' bytes in a content-addressed
object store, as Puppet's filebucket does::

    state_dir/backups/objects/ab/abcdef...   (the bytes; name = sha256)
    state_dir/backups/manifests/<backup id>.json

Every write here is atomic: a temp file in the same folder, fsync, rename,
fsync of the folder. Reads of a target never follow a link swapped in after
the path was checked (O_NOFOLLOW on the real path). Restores are verified by
hash before they count.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import BackupError

BACKUP_ID = re.compile(r"^b-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6,32}$")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_target(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes and status of ``path``, reached without following any link on the way.

    The folder is opened one component at a time with O_NOFOLLOW (as writes are), then the file
    itself, and the status comes from the same descriptor, so a folder or file swapped for a link
    after the path was checked cannot pull bytes from elsewhere into a plan or a backup.
    Raises BackupError for a link on the way, OSError (FileNotFoundError, ELOOP) otherwise.
    """
    dfd = open_folder_nofollow(path.parent)
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BackupError(f"{path} is not a regular file")
        return fh.read(), st


def read_nofollow(path: Path) -> bytes:
    """The bytes of ``path``, reached without following any link (see :func:`read_target`)."""
    return read_target(path)[0]


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_folder_nofollow(folder: Path) -> int:
    """An fd of ``folder`` opened one component at a time, refusing any symlink on the way.

    Writes then go through this fd (``dir_fd=``), so a link swapped into the path after
    it was checked cannot redirect them.
    """
    if not folder.is_absolute():
        folder = folder.absolute()
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in folder.parts[1:]:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise BackupError(f"{folder}: '{part}' is a symlink or not a folder; refusing to write") from exc
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    owner: tuple[int, int] | None = None,
    before_rename: Any = None,
    durable: bool = True,
    trusted_folder: bool = False,
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new bytes, never a mix.

    A temp file in the same folder, fsync, rename, fsync of the folder; every step through
    a folder fd opened without following links. ``mode``/``owner`` default to the current
    file's (0o600 for a new file). ``durable=False`` skips both fsyncs: the rename is still
    atomic and survives the process being killed, only not a power loss (for files rewritten
    many times a second, such as read positions). ``before_rename`` is a test hook called
    with the temp path once it is written. ``trusted_folder`` skips the link-free walk for
    suture's own state folder.
    """
    name = path.name
    # targets: the folder is opened one component at a time, no links; suture's own state folder
    # (trusted_folder) is opened directly, which costs a syscall instead of one per component
    dfd = (os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if trusted_folder
           else open_folder_nofollow(path.parent))
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise BackupError(f"{path} became a symlink; refusing to write through it")
            mode = stat.S_IMODE(st.st_mode) if mode is None else mode
            owner = (st.st_uid, st.st_gid) if owner is None else owner
        except FileNotFoundError:
            mode = 0o600 if mode is None else mode
        tmp = f".{name}.suture-{os.getpid()}-{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # owner first: a chown clears the setuid and setgid bits, so the mode is set after it
            if owner is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        try:
            if before_rename is not None:
                before_rename(path.parent / tmp)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        if durable:
            os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """One file in a backup, as it was before the fix."""

    path: str  # as the playbook names it (relative to target_root)
    real: str  # the resolved path that was read and will be restored
    sha256: str
    size: int
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    id: str
    created_at: float
    fix_id: str
    playbook_id: str
    confidence: float
    reason: str
    files: tuple[FileRecord, ...]

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = [asdict(f) for f in self.files]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        return cls(**{**d, "files": tuple(FileRecord(**f) for f in d["files"])})


class BackupStore:
    """Content-addressed backups under ``root`` (normally ``state_dir/backups``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.manifests = root / "manifests"

    def _ensure(self) -> None:
        for folder in (self.root, self.objects, self.manifests):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def object_path(self, sha: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise BackupError(f"not a sha256: {sha!r}")
        return self.objects / sha[:2] / sha

    def put(self, data: bytes) -> str:
        """Store ``data``; return its sha256. Verified by reading it back."""
        sha = sha256_bytes(data)
        path = self.object_path(sha)
        if path.exists() and sha256_bytes(path.read_bytes()) == sha:
            return sha
        path.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write(path, data, mode=0o600)
        if sha256_bytes(path.read_bytes()) != sha:
            raise BackupError(f"backup object {sha[:12]} did not read back intact")
        return sha

    def get(self, sha: str) -> bytes:
        try:
            data = self.object_path(sha).read_bytes()
        except FileNotFoundError as exc:
            raise BackupError(f"backup object {sha[:12]} is missing") from exc
        if sha256_bytes(data) != sha:
            raise BackupError(f"backup object {sha[:12]} is corrupt (hash mismatch)")
        return data

    def create(
        self,
        *,
        backup_id: str,
        created_at: float,
        fix_id: str,
        playbook_id: str,
        confidence: float,
        reason: str,
        files: list[tuple[str, Path, bytes, os.stat_result]],
    ) -> Manifest:
        """Store every file's bytes and the manifest; raise BackupError if anything fails."""
        try:
            self._ensure()
            records = []
            for rel, real, data, st in files:
                sha = self.put(data)
                records.append(
                    FileRecord(
                        path=rel,
                        real=str(real),
                        sha256=sha,
                        size=len(data),
                        mode=stat.S_IMODE(st.st_mode),
                        uid=st.st_uid,
                        gid=st.st_gid,
                    )
                )
            manifest = Manifest(
                id=backup_id,
                created_at=created_at,
                fix_id=fix_id,
                playbook_id=playbook_id,
                confidence=confidence,
                reason=reason,
                files=tuple(records),
            )
            body = json.dumps(manifest.as_json(), indent=2, sort_keys=True).encode()
            atomic_write(self.manifest_path(backup_id), body, mode=0o600)
            return manifest
        except OSError as exc:
            reason_text = "disk full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
            raise BackupError(f"cannot write backup {backup_id}: {reason_text}") from exc

    def manifest_path(self, backup_id: str) -> Path:
        if not BACKUP_ID.match(backup_id):
            raise BackupError(f"not a backup id: {backup_id!r}")
        return self.manifests / f"{backup_id}.json"

    def load(self, backup_id: str) -> Manifest:
        path = self.manifest_path(backup_id)
        try:
            return Manifest.from_json(json.loads(path.read_text("utf-8")))
        except FileNotFoundError as exc:
            raise BackupError(f"no backup {backup_id}") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"backup manifest {backup_id} is unreadable: {exc}") from exc

    def all(self) -> Iterator[Manifest]:
        if not self.manifests.is_dir():
            return
        for path in sorted(self.manifests.glob("b-*.json"), reverse=True):
            try:
                yield self.load(path.stem)
            except BackupError:
                continue

    def restore(self, record: FileRecord, before_rename: Any = None) -> None:
        """Write the file back byte-identical, with its mode and owner; verify the hash."""
        data = self.get(record.sha256)
        real = Path(record.real)
        atomic_write(real, data, mode=record.mode, owner=(record.uid, record.gid), before_rename=before_rename)
        if sha256_bytes(read_nofollow(real)) != record.sha256:
            raise BackupError(f"{record.path}: restored bytes do not match the backup")

    def prune(self, now: float, *, keep_last: int, keep_days: float, keep_objects: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Delete backups that are neither among the newest ``keep_last`` nor younger than ``keep_days``.

        Objects no remaining manifest refers to are deleted too, unless listed in
        ``keep_objects`` (validated post-images a ``restore`` may still need) or younger
        than ``keep_days``. Returns the ids of the backups removed.
        """
        cutoff = now - keep_days * 86400
        manifests = sorted(self.all(), key=lambda m: m.created_at, reverse=True)
        removed = []
        for i, manifest in enumerate(manifests):
            if i < keep_last or manifest.created_at >= cutoff:
                continue
            self.manifest_path(manifest.id).unlink(missing_ok=True)
            removed.append(manifest.id)
        if not removed:
            return removed
        referenced = {f.sha256 for m in self.all() for f in m.files} | set(keep_objects)
        for obj in self.objects.glob("??/*"):
            if obj.name not in referenced and obj.stat().st_mtime < cutoff:
                obj.unlink(missing_ok=True)
        return removed
