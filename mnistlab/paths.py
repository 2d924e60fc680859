"""What a path that a user names really is, and opening it as a regular file and nothing else.

Opening a named pipe blocks until something writes to it, and opening a device can act on the device, so a path
is looked at before it is opened. No torch here, so that predict.py can check its arguments before slow imports.
"""
import errno
import os
import stat
from pathlib import Path

KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a device",
         stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}


def printable(path, escape_controls=True):
    """A path as valid UTF-8 text: bytes that are not UTF-8 as \\xNN; with escape_controls, control characters
    too (a newline as \\n), so that it prints on one line."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return text.translate(CONTROLS) if escape_controls else text


CONTROLS = {c: repr(chr(c))[1:-1] for c in [*range(32), 127]}


def relative(path):
    """path as a user would type it: relative to the working folder where it lies inside it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


class NotAFile(Exception):
    """A path that cannot be read as a regular file. str() says what it is instead, as a phrase for messages;
    missing and unreadable tell the two cases that want their own advice."""

    def __init__(self, what, missing=False, unreadable=False):
        super().__init__(what)
        self.missing, self.unreadable = missing, unreadable


def kind(mode):
    """What a file of this st_mode is, where it is not a regular file: "a folder", "a named pipe (FIFO)", ..."""
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def problem(error, path):
    """NotAFile for an OSError met while looking at or opening path."""
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotAFile("a broken symbolic link" if os.path.islink(path) else "no such file or folder", missing=True)
    if error.errno == errno.ELOOP:
        return NotAFile("a symbolic link loop")
    if error.errno in (errno.EACCES, errno.EPERM):
        return NotAFile(f"not readable ({error.strerror}); check its permissions", unreadable=True)
    return NotAFile(f"not readable ({error.strerror or error})", unreadable=True)


def open_file(path):
    """path open for reading in binary, where it is a regular file; NotAFile saying what it is otherwise."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(kind(mode))
        # O_NONBLOCK: a named pipe put there since the stat above does not block the open; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise problem(e, path) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(kind(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
