"""Errors that name what is wrong in one line; the CLI prints them without a traceback."""

import re


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


# OpenVINO opens each nested exception's message with the source line that threw it
# ("Exception from src/inference/src/cpp/core.cpp:117:"), which names no problem.
_WHERE_THROWN = re.compile(r"^Exception from \S+:\d+:$")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message that says something more than where
    it was thrown (its type name when it has none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    told = [line for line in lines if not _WHERE_THROWN.match(line)]
    return (told or lines or [type(exc).__name__])[0][:limit]
