"""Errors that name what is wrong in one line; the CLI prints them without a traceback."""


class MovibenchError(Exception):
    """Base class: a user-facing problem with a one-line message."""


class UnknownModelError(MovibenchError, ValueError):
    """An unknown model id, variant, conv/SE type or an invalid resolution."""


class CheckpointMismatchError(MovibenchError):
    """A checkpoint that does not fit the model built for it."""


class StateError(MovibenchError, ValueError):
    """Step inputs that do not match the state manifest (name, shape or dtype)."""


class ArtifactError(MovibenchError):
    """A missing, corrupt or mismatched exported artifact or manifest."""


class UnsupportedExportError(MovibenchError):
    """A model/format combination that cannot be exported, with the reason."""


class VideoError(MovibenchError):
    """A missing, corrupt, empty or undecodable video file."""


class UnknownFormatError(MovibenchError, ValueError):
    """An export format name that is not in the registry (core/formats.py)."""


class MissingDependencyError(MovibenchError, ImportError):
    """An optional engine (TensorRT, CUDA bindings) that is not installed here."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
