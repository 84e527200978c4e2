"""How the command line fails: one line on stderr and a non-zero exit for every mistake, never a traceback
(``--debug`` or ``XCONV_DEBUG=1`` shows it); warnings one line each, Keras's and TensorFlow's own only with
``--debug``; bad inputs of a batch listed while the good ones go on."""

from __future__ import annotations

import errno
import functools
import importlib.util
import json
import os
import stat
import sys
import traceback
import warnings
from pathlib import Path

import click
import typer

from xconv.errors import XconvError, XconvWarning, one_line
from xconv.quiet import debugging


def fail(message: str, code: int = 1):
    typer.echo(f"xconv: error: {message}", err=True)
    raise typer.Exit(code)


#: OSErrors about where the user asked xconv to read or write; others (a missing file of xconv's own) are bugs.
USER_FILE_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                    errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP}


def is_users_file_error(error: OSError) -> bool:
    """An OSError about a path the user gave: one of USER_FILE_ERRORS, or a path that does not exist and is
    not one of xconv's own (an output folder the system cannot create, such as one under /proc). A file
    missing among xconv's own is a broken install or a bug; looked up only when an error comes."""
    if error.errno in USER_FILE_ERRORS:
        return True
    if error.errno != errno.ENOENT or error.filename is None:
        return False
    own = tuple(os.path.join(str(Path(spec.origin).resolve().parent), "")  # "xconv/", never "xconv-out"
                for spec in map(importlib.util.find_spec, ("xconv", "xconv_plugins")) if spec and spec.origin)
    return not os.path.abspath(str(error.filename)).startswith(own)


def file_error_line(error: OSError) -> str:
    names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
    return f"{names}: {error.strerror}" if names else str(error.strerror or error)


def user_errors(command):
    """Every failure is one line on stderr and a non-zero exit; ``--debug`` adds the traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except XconvError as error:
            show_traceback(error)
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError as error:
            if not stdout_is_a_pipe():
                show_traceback(error)
                fail(f"internal error: {one_line(error)} (run with --debug for the traceback)", 2)
            # The reader stopped (`xconv predict DIR --json | head`): end quietly as other tools do, with the
            # status of a process SIGPIPE ended; output still buffered goes nowhere instead of failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except Exception as error:  # noqa: BLE001 - a bug, not a user mistake: still one line by default
            show_traceback(error)
            if isinstance(error, OSError) and is_users_file_error(error):  # where the user reads or writes
                fail(file_error_line(error))
            fail(f"internal error: {one_line(error)} (run with --debug for the traceback)", 2)

    return wrapper


def stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no real file behind it (a test runner's capture)
        return False


def show_traceback(error: BaseException) -> None:
    if debugging():
        traceback.print_exception(error, file=sys.stderr)


#: Warnings raised inside these packages are about xconv's own use of them (a retrace, a structure hint),
#: not about the user's work: shown with --debug only.
LIBRARY_INTERNALS = ("/keras/", "/tensorflow/", "/tf_keras/", "/absl/")


def show_warning(message, category, filename, lineno, file=None, line=None):
    """Each warning as one line; those from inside Keras and TensorFlow only with --debug."""
    if issubclass(category, XconvWarning):
        typer.echo(f"xconv: warning: {message}", err=True)
    elif debugging():
        typer.echo(warnings.formatwarning(message, category, filename, lineno, line), err=True, nl=False)
    elif not any(part in str(filename).replace("\\", "/") for part in LIBRARY_INTERNALS):
        typer.echo(f"xconv: warning: {category.__name__} from {Path(filename).name}:{lineno}: {message}", err=True)


def report_bad_inputs(errors, as_json: bool) -> int:
    for error in errors:
        if as_json:  # the fields of explain's records too, so one parser reads every line
            typer.echo(json.dumps({"path": error.path, "input": error.path, "status": "error", "error": error.reason}))
        else:
            typer.echo(f"xconv: error: {error}", err=True)
    return len(errors)


def finish(failures: int, total: int) -> None:
    if total == 0:
        fail("no input images (folders are searched recursively for .jpg, .png, .bmp, .webp, .tif and .gif files)")
    if failures:
        typer.echo(f"xconv: {failures} of {total} inputs failed", err=True)
        raise typer.Exit(1)
