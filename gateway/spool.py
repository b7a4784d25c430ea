"""Durable storage of received instances: fsync the file, rename it into place, fsync the folder.

Files are named by a hash of the instance's identity (SOP Instance UID plus the study, series,
SOP class and patient it claims), so a UID can never escape the spool folder, a re-sent
instance replaces its own file atomically, and an instance that re-uses a UID for another
patient can never overwrite the first copy, even when two such arrive at once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

from gateway.preallocation import trim_if_reserved
from radraft.errors import RadraftError
from radraft.free_space import free_bytes


class SpoolError(RadraftError):
    """The spool could not persist an instance (disk full, permissions, I/O error)."""


def spool_relative_path(identity: str) -> str:
    """Where an instance lives inside the spool, derived from its identity key only."""
    digest = hashlib.sha256(identity.encode("utf-8", "replace")).hexdigest()
    return spool_path_of_name(f"{digest}.dcm")


SET_ASIDE_FOLDER = ".purging"
"""Inside the spool (same filesystem, so a rename moves a file there and back atomically): files
a retention purge has taken out of place but whose rows have not committed as purged yet."""


REWRITE_FOLDER = ".rewriting"
"""Inside the spool: second names of files being rewritten in place (a patient update keeps
their spool name), so that a rewrite whose rows fail to commit puts the old content back."""


def spool_path_of_name(file_name: str) -> str:
    """The relative spool path of a spooled file's name (the inverse of its last component)."""
    return f"{file_name[:2]}/{file_name}"


class Spool:
    """A folder of received instances; ``incoming`` is where partial receptions are written."""

    def __init__(self, root: Path, incoming: Path) -> None:
        self.root = root
        self.incoming = incoming
        self.set_aside_dir = root / SET_ASIDE_FOLDER
        self.rewrite_dir = root / REWRITE_FOLDER
        self.root.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)

    def store(
        self, received_path: Path, identity: str, *, durable: bool = False
    ) -> tuple[str, int]:
        """Durably move a received file into the spool; returns (relative path, size).

        ``durable``: the file was fsynced after its last write (the reception's early fsync),
        so only its rename and folder entry are made durable here.

        Raises
        ------
        SpoolError
            If any step fails; the spool then holds either the old file or none, never a part.
        """
        relative = spool_relative_path(identity)
        target = self.root / relative
        try:
            target.parent.mkdir(exist_ok=True)
            with open(received_path, "rb") as stream:
                status = os.fstat(stream.fileno())
                if not durable:
                    os.fsync(stream.fileno())
                # A reserve the reception has not given back yet (it ended on pynetdicom's
                # path, or the early fsync's thread has not got to it): after the fsync, so
                # that truncating finds the last page written and does not wait for it.
                trim_if_reserved(received_path, status)
                size = status.st_size
            try:
                os.replace(received_path, target)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                self._copy_across_filesystems(received_path, target)
            fsync_path(target.parent)
        except OSError as error:
            raise SpoolError(f"cannot persist instance: {error.strerror}") from error
        return relative, size

    def free_bytes(self) -> int:
        """Bytes free to unprivileged writers on the spool's filesystem."""
        return free_bytes(self.root)

    def discard(self, relative: str) -> None:
        """Remove a spooled file that no row references (an instance refused after spooling)."""
        try:
            (self.root / relative).unlink()
        except FileNotFoundError:
            return

    def set_aside(self, relative: str) -> bool:
        """Move a spooled file out of place for a purge; False if it was not there.

        A rename, not an unlink, so a purge whose rows fail to commit puts the file back.
        """
        self.set_aside_dir.mkdir(exist_ok=True)
        try:
            os.replace(self.root / relative, self.set_aside_dir / Path(relative).name)
        except FileNotFoundError:
            return False
        return True

    def put_back(self, relative: str) -> None:
        """Return a set-aside file to its place, unless a re-send already put a newer copy there
        (``link`` never replaces, so that copy wins)."""
        aside = self.set_aside_dir / Path(relative).name
        target = self.root / relative
        try:
            os.link(aside, target)
        except FileExistsError:
            pass
        except FileNotFoundError:
            return
        aside.unlink()
        fsync_path(target.parent)

    def keep_previous(self, relative: str) -> Path:
        """A second name (a hard link) for a spooled file about to be replaced under its own
        name, for ``restore_previous``; readers keep seeing a whole file all along.

        Raises
        ------
        SpoolError
            If the link cannot be made.
        """
        self.rewrite_dir.mkdir(exist_ok=True)
        previous = self.rewrite_dir / f"{uuid.uuid4().hex}.previous"
        try:
            os.link(self.root / relative, previous)
        except OSError as error:
            raise SpoolError(
                f"cannot keep the file before rewriting it: {error.strerror}"
            ) from error
        return previous

    def restore_previous(self, relative: str, previous: Path) -> None:
        """Put the content ``keep_previous`` kept back under the spooled file's name."""
        os.replace(previous, self.root / relative)
        previous.unlink(missing_ok=True)  # rename does nothing when both name the same file
        fsync_path((self.root / relative).parent)

    def drop_set_aside(self, relatives: list[str]) -> None:
        """Delete set-aside files whose rows committed as purged."""
        for relative in relatives:
            try:
                (self.set_aside_dir / Path(relative).name).unlink()
            except FileNotFoundError:
                continue

    def set_aside_files(self) -> list[str]:
        """The relative spool paths of files left set aside (a purge interrupted by a crash)."""
        if not self.set_aside_dir.is_dir():
            return []
        return [
            spool_path_of_name(entry.name)
            for entry in self.set_aside_dir.iterdir()
            if entry.name.endswith(".dcm")
        ]

    def _copy_across_filesystems(self, source: Path, target: Path) -> None:
        partial = target.with_suffix(".partial")
        with open(source, "rb") as reader, open(partial, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(partial, target)

    def path_of(self, relative: str) -> Path:
        """Absolute path of a spooled instance."""
        return self.root / relative

    def clean_incoming(self, older_than_seconds: float = 0.0) -> int:
        """Remove partial receptions (never acknowledged) left by aborts or a crash, and the
        old contents a crash left kept for an in-place rewrite (its new content is in place)."""
        removed = 0
        cutoff = time.time() - older_than_seconds
        kept = self.rewrite_dir.iterdir() if self.rewrite_dir.is_dir() else iter(())
        for entry, changed in [
            *((entry, "st_mtime") for entry in self.incoming.iterdir()),
            *((entry, "st_ctime") for entry in kept),  # a link keeps the file's mtime
        ]:
            try:
                if entry.is_file() and getattr(entry.stat(), changed) <= cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder so the entries just made in it (a rename's new name) last."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
