"""Files written whole or not at all: a crash, Ctrl-C or a full disk mid-write leaves the previous file.

A resumed job trusts the files its manifest lists, and a model file may be written over the checkpoint it
was loaded from, so a half-written file must never take the place of a whole one. And an output folder
that cannot be one is refused before the work that would fill it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from xconv.errors import XconvError


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it: done once, at import, before any writer thread
    os.umask(mask)
    return mask


UMASK = _umask()


@contextlib.contextmanager
def replacing(path: str | os.PathLike):
    """A temporary path beside ``path`` (same suffix: writers choose the format by it) that replaces
    ``path`` in one rename when the block succeeds, and is removed when it does not.

    The name is the process's own, so workers writing the same file at once do not write into each other's.
    A symbolic link at ``path`` stays a link: the file it points to is replaced, as a plain write would.
    """
    given = Path(path)  # its suffix names the format, whatever the name of a link's target
    path = Path(os.path.realpath(given)) if os.path.islink(given) else given
    if os.path.islink(path):  # a loop of links: nothing to write through, so the link itself is replaced
        path = given
    handle, name = tempfile.mkstemp(prefix=temporary_prefix(given, path.parent), suffix=given.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp makes the file private (0600); the result gets the mode a plain write would give it.
        os.chmod(temporary, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~UMASK)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def temporary_prefix(path: Path, folder: Path) -> str:
    """``.STEM.``, the stem cut (at a character boundary) so the temporary name in ``folder``, 10 bytes
    longer than ``path``'s, still fits the file system's name limit when ``path``'s own name is near it."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such folder yet (mkstemp says so), or no pathconf
        limit = 255
    room = max(0, limit - len(os.fsencode(path.suffix)) - len(".." + "x" * 8))
    return "." + os.fsencode(path.stem)[:room].decode("utf-8", errors="ignore") + "."


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def check_output_folder(out: str | os.PathLike) -> None:
    """Refuse an unusable output folder before any work (one line, not a wasted run), creating nothing:
    the nearest part of the path that exists must be a folder this process can write in."""
    out = Path(out)
    existing = next(folder for folder in (out, *out.absolute().parents) if os.path.lexists(folder))
    if not os.path.isdir(existing):
        raise XconvError(f"cannot use {out} as the output folder: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise XconvError(f"cannot use {out} as the output folder: {existing} is not writable")
