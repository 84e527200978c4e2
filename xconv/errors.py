"""The one exception family for user mistakes: the CLI prints its message as one line, no traceback."""


class XconvError(Exception):
    """A user-facing error; the message is a complete sentence naming what was wrong and how to fix it."""

    def __init__(self, *args):
        super().__init__(*args)
        self._message_args = args

    def __reduce__(self):
        # Pickled from the message it was raised with: Ray Data appends retry advice to a failed task's
        # ``args`` before sending the error back, which would otherwise reach the user's one line.
        state = {key: value for key, value in vars(self).items() if key != "_message_args"}
        return type(self), self._message_args, state


class XconvWarning(UserWarning):
    """Something the user should know but that does not stop the work (an assumed preprocessing, say)."""


class UnknownNameError(XconvError):
    """A model, explainer, renderer, layer or class name that does not exist; lists the valid ones."""

    def __init__(self, kind: str, name: str, choices, note: str = ""):
        self.kind, self.name, self.choices, self.note = kind, name, list(choices), note
        shown = ", ".join(map(str, self.choices[:40]))
        more = f" (and {len(self.choices) - 40} more)" if len(self.choices) > 40 else ""
        super().__init__(f"unknown {kind} {name!r}; choose from: {shown}{more}" + (f" ({note})" if note else ""))

    def __reduce__(self):  # rebuilt from its arguments (see XconvError.__reduce__)
        return type(self), (self.kind, self.name, self.choices, self.note)


class PluginError(XconvError):
    """A plugin raised inside load, explain or render; the message names the plugin, its distribution and
    the error, and the original exception is kept as ``__cause__`` for ``--debug``."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line reports."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


def one_line(error: BaseException, limit: int = 600) -> str:
    """The exception's type and message on one line (pluggy's reasons span several), cut at ``limit``
    characters: TensorFlow puts whole tensors in some messages, thousands of lines of numbers."""
    text = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    text = text if len(text) <= limit else text[:limit].rstrip() + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
