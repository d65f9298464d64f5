"""Writing files safely, and saying in plain words why a write failed.

Every file the project writes (run status, config, events, checkpoints, marks) goes through
here. `atomic_write_bytes` writes a temporary file beside the target and renames it over
the target, so a reader, a crash or a full disk never leaves half a file. `StorageError`
turns the operating system's "[Errno 28] No space left on device" (or PyTorch's
"enforce fail at inline_container.cc") into a sentence that names the folder, says what is
wrong and what to do.

A message that names a file names it through `shown_path`: in full on a private install, where
the person can go and look, and never as the server's absolute path on a hosted demo.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class StorageError(OSError):
    """A file could not be written; the message names the folder and what to do."""


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or anything in its chain, is the disk (or a quota) running out of room."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        if os.strerror(errno.ENOSPC) in str(error):  # a library's own error (pyarrow's, Ray's) that kept only the words
            return True
        error = error.__cause__ or error.__context__
    return False


def hosted() -> bool:
    """Whether this process serves a hosted demo (`MNIST_HOSTED`; ui/hosted.py also sets it from
    Streamlit's secrets, so the core and every job it starts agree)."""
    return os.environ.get("MNIST_HOSTED", "").strip().lower() in ("1", "true", "yes")


def display_path(path: str | Path) -> str:
    """`path` without the server's absolute path: relative to the current folder when inside it,
    else the file's parent folder and name (`20261125-183914-seed-200f/checkpoint.pt`)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except (ValueError, OSError):  # outside the current folder, or the current folder is gone
        return str(Path(absolute.parent.name, absolute.name))


def shown_path(path: str | Path) -> str:
    """`path` as a message shows it: whole on a private install; on a hosted demo `display_path`,
    since a server's own paths mean nothing in a visitor's browser and tell a stranger too much."""
    return display_path(path) if hosted() else str(Path(os.path.abspath(path)))


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+[\w.@+-]*")


def plain_error(error: BaseException) -> str:
    """An error as a page shows it. An OSError says what went wrong and with which file (no
    "[Errno 2]"); on a hosted demo any absolute path left in the text is shortened (`display_path`),
    whatever library wrote the message."""
    if isinstance(error, OSError) and error.strerror and error.filename and not isinstance(error, StorageError):
        text = f"{error.strerror}: {shown_path(error.filename)}"
    else:
        text = str(error) or type(error).__name__
    return _ABSOLUTE_PATH.sub(lambda match: display_path(match.group(0)), text) if hosted() else text


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 100_000 else f"{count / 1e3:,.0f} kB"


def explain_write_error(error: BaseException, path: Path, needed_bytes: int | None = None) -> str:
    """One sentence on why writing `path` failed, for people rather than programmers."""
    folder = Path(path).parent
    free = free_bytes(folder)
    # PyTorch's zip writer reports a full disk as "enforce fail … unexpected pos": no errno to go by,
    # so the free space decides when the write needed more room than the disk has.
    short_of_room = needed_bytes is not None and free is not None and free < needed_bytes + (1 << 20)
    if is_disk_full(error) or short_of_room:
        need = f" {Path(path).name} needs about {_megabytes(needed_bytes)};" if needed_bytes else ""
        left = f" {_megabytes(free)} is free" if free is not None else ""
        return (f"The disk holding {shown_path(folder)} is full:{need}{left}. Free some space (or point MNIST_RUNS_DIR "
                f"at a roomier folder) and try again; files written earlier are kept.")
    if isinstance(error, OSError) and error.errno in READ_ONLY_ERRNOS:
        return f"Cannot write in {shown_path(folder)}: {error.strerror.lower()}. Choose a folder this program may write to."
    reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
    return f"Could not write {shown_path(path)}: {reason}."


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], object], needed_bytes: int | None = None) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    Raises StorageError (an OSError) with a plain message when the write fails; `path` then
    still holds its previous contents and no temporary file is left behind."""
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise StorageError(explain_write_error(error, path, needed_bytes)) from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; runs are meant to be shared
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, Exception) and not isinstance(error, StorageError):
            raise StorageError(explain_write_error(error, path, needed_bytes)) from error
        raise


def overwrite_small_file(path: Path, data: bytes) -> None:
    """Rewrite a small existing file in place, with one write call.

    The fallback for recording a run's final state when the disk is full: a new file needs a
    free block, but rewriting the block an existing small file already owns does not. It is
    used only when `atomic_write_bytes` has failed, and only for files under one block."""
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate()
        file.flush()
        os.fsync(file.fileno())


def append_line(path: Path, line: str) -> None:
    """Append one whole line to a text file, or nothing: a failed write is cut back off.

    Readers see whole lines only; a full disk in the middle of a line must not leave a torn
    last line behind for the next append to glue onto."""
    data = line.encode() if line.endswith("\n") else (line + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(descriptor).st_size
        try:
            written = os.write(descriptor, data)
            if written != len(data):  # a short write: the disk filled up mid-line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        except OSError as error:
            try:
                os.ftruncate(descriptor, start)
            except OSError:
                pass
            raise StorageError(explain_write_error(error, path)) from error
    finally:
        os.close(descriptor)


class LogOutput(io.TextIOBase):
    """A background job's stdout or stderr: each write goes straight to its file descriptor (the
    job's log), and on a full disk the text is dropped instead of raised.

    A log is for reading afterwards; the job's status is what records how it ended. Without this,
    the traceback of a write that failed on a full disk could itself fail to print, and that second
    error would end the job before it recorded anything. Unbuffered, so nothing is left waiting in
    a buffer to fail again at exit. Any other error (a closed pipe) is raised as usual."""

    def __init__(self, descriptor: int, encoding: str = "utf-8") -> None:
        super().__init__()
        self._descriptor = descriptor
        self._encoding = encoding

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def errors(self) -> str:
        return "backslashreplace"

    def fileno(self) -> int:
        return self._descriptor

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self._descriptor)

    def write(self, text: str) -> int:
        data = memoryview(text.encode(self._encoding, "backslashreplace"))
        try:
            while data:
                data = data[os.write(self._descriptor, data):]
        except OSError as error:
            if not is_disk_full(error):
                raise
        return len(text)


class CacheDamaged(ValueError):
    """A stored .npz (an audit's result, an embedding map) cannot be read back.

    The message names the file by its name only, never the server's folders, and says in plain
    words what is wrong: "audit.npz of run … is damaged (it ends early)". `name` and `reason`
    are kept apart for callers that say it their own way."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} is damaged ({reason})")
        self.name, self.reason = name, reason


def read_npz(path: Path, name: str | None = None, required: tuple[str, ...] = ()) -> dict:
    """Every array of the .npz file at `path`, read whole (no pickle), or CacheDamaged.

    `name` is how messages call the file (its file name by default); `required` are the arrays
    it must hold. A missing file raises FileNotFoundError as usual: absent is not damaged."""
    import numpy as np

    path = Path(path)
    name = name or path.name
    try:
        # Read every member now: a damaged member fails on access, which must happen in here.
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged zip raises almost anything: BadZipFile, EOFError,
        # zlib.error, numpy's ValueError (with its allow_pickle advice, wrong here), tokenize's TokenError…
        raise CacheDamaged(name, _why_unreadable(path, error)) from error
    missing = [key for key in required if key not in arrays]
    if missing:
        raise CacheDamaged(name, f"it lacks {', '.join(missing)}")
    return arrays


def _why_unreadable(path: Path, error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return "this program may not read it"
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            head = file.read(4)
            file.seek(max(0, size - (1 << 16) - 22))  # a zip's end record sits in its last 64 kB
            tail = file.read()
    except OSError:
        return "it cannot be read"
    if size == 0:
        return "it is empty"
    if not b"PK\x03\x04".startswith(head):  # a zip (an .npz) begins so; a cut-off one with part of it
        return "it is not a file of stored arrays"
    if b"PK\x05\x06" not in tail:  # no end record: the file was cut off
        return "it ends early"
    return "its contents are corrupted"
