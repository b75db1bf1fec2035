"""int8 calibration data from real videos: what the exporters' representative datasets stream."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bench.data.video import read_clip
from core.errors import MovibenchError, VideoError
from converters.export import CalibrationData, ExportOptions

log = logging.getLogger(__name__)


def calibration_from_videos(paths: list[Path], frames: int) -> CalibrationData:
    """CalibrationData that decodes `paths` (the first `frames` frames of each).

    Its name hashes the files' names and sizes, so a different set of videos is a different
    artifact in the cache.
    """
    if not paths:
        raise MovibenchError("no videos given for int8 calibration")
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        digest.update(str(Path(path).stat().st_size if Path(path).is_file() else -1).encode())

    def source(resolution: int):
        # A broken video among the calibration set costs its clip, not the export.
        decoded, first_error = 0, None
        for path in paths:
            try:
                clip = read_clip(path, resolution, max_frames=frames)
            except VideoError as exc:
                first_error = first_error or exc
                log.warning("int8 calibration skips %s: %s", path, exc)
                continue
            decoded += 1
            yield clip
        if not decoded:
            raise VideoError(f"none of the {len(paths)} calibration videos decodes "
                             f"(the first: {first_error})")

    return CalibrationData(name=f"videos:{digest.hexdigest()[:16]}", clips=len(paths),
                           frames=frames, source=source)


def export_options(fmt: str, calibration_videos: list[str] | tuple[str, ...],
                   frames: int) -> ExportOptions:
    """The ExportOptions the matrix builds `fmt` with: int8 calibrates on the given videos."""
    from core.formats import get_format

    if not get_format(fmt).calibrated or not calibration_videos:
        return ExportOptions()
    return ExportOptions(calibration=calibration_from_videos(
        [Path(p) for p in calibration_videos], frames))
