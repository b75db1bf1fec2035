"""A synthetic video dataset whose label only the whole video decides.

Each video is a noisy grey background with a dim drifting blob (so consecutive frames look like
video, not static) and `k` short flashes: a bright square for two frames at a random place,
at distinct random times spread over the whole video. The label is `k` (1..N). A short subclip
sees only some of the flashes, so it cannot count them; a model that keeps the whole temporal
context can. This separates `stream` / `full-clip` from `multi-clip` (t0 stream trained on it: 87.5% full clip vs 37.5% for multi-clip 4x4).

Written as real encoded files in the folder-per-class layout plus a Kinetics-style CSV, so
both dataset loaders and the decoder are exercised on the same data.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.data.video import CODEC_FOR_SUFFIX, write_video
from core.errors import MovibenchError

FLASH_FRAMES = 2
# A flash occupies a slot of FLASH_FRAMES frames plus a gap, so two flashes never merge.
SLOT_FRAMES = FLASH_FRAMES + 1
LABELS_CSV = "labels.csv"
CLASSES_TXT = "classes.txt"
METADATA_JSON = "metadata.json"
# How labels.csv rows map to files; the same pattern `load_kinetics_csv` takes.
FILE_PATTERN = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}{ext}"


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of one generated dataset; the same config and seed give the same videos."""

    classes: int = 4
    videos_per_class: int = 24
    frames: int = 32
    size: int = 64
    seed: int = 0
    val_fraction: float = 0.25
    fps: int = 25
    container: str = "mp4"

    def validate(self) -> None:
        """Raise MovibenchError naming the first parameter that cannot work."""
        slots = self.frames // SLOT_FRAMES
        if self.classes < 2:
            raise MovibenchError(f"--classes must be >= 2, got {self.classes}")
        if self.classes > slots:
            raise MovibenchError(
                f"{self.frames} frames hold at most {slots} separate flashes: "
                f"--classes {self.classes} needs --frames >= {self.classes * SLOT_FRAMES}")
        if self.videos_per_class < 1:
            raise MovibenchError(f"--videos-per-class must be >= 1, got {self.videos_per_class}")
        if self.size < 16 or self.size % 2:
            raise MovibenchError(f"--size must be an even number >= 16, got {self.size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MovibenchError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if "." + self.container not in CODEC_FOR_SUFFIX:
            raise MovibenchError(f"unknown container {self.container!r}; known: "
                                 f"{', '.join(s[1:] for s in CODEC_FOR_SUFFIX)}")


def class_names(n: int) -> list[str]:
    """Class i (0-based) is 'flashes_<i+1>'; zero-padded so sorting by name keeps the order."""
    width = len(str(n))
    return [f"flashes_{k:0{width}d}" for k in range(1, n + 1)]


def make_video(num_flashes: int, frames: int, size: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, list[int]]:
    """One video as uint8 [frames, size, size, 3] and the first frame of each flash."""
    base = rng.uniform(0.3, 0.45)
    video = np.full((frames, size, size, 3), base, np.float32)
    # A dim blob drifting across the frame: motion that carries no label information.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    start, velocity = rng.uniform(0, size, 2), rng.uniform(-1.0, 1.0, 2)
    tint = rng.uniform(-0.12, 0.12, 3).astype(np.float32)
    for t in range(frames):
        cy, cx = (start + velocity * t) % size
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
        video[t] += blob[..., None] * tint
    video += rng.normal(0.0, 0.04, video.shape).astype(np.float32)
    slots = sorted(rng.choice(frames // SLOT_FRAMES, size=num_flashes, replace=False).tolist())
    side = max(4, size // 6)
    starts = []
    for slot in slots:
        t0 = slot * SLOT_FRAMES
        y, x = rng.integers(0, size - side, 2)
        video[t0:t0 + FLASH_FRAMES, y:y + side, x:x + side] = 1.0
        starts.append(t0)
    return np.clip(video * 255.0 + 0.5, 0, 255).astype(np.uint8), starts


@dataclass(frozen=True)
class SynthVideo:
    """One generated file and what it holds."""

    path: str
    label: str
    label_index: int
    split: str
    youtube_id: str
    flash_frames: tuple[int, ...]


def generate(out: str | Path, config: SynthConfig) -> list[SynthVideo]:
    """Write the dataset under `out`: `<split>/<class>/*.<container>`, labels.csv,
    classes.txt and metadata.json. Deterministic for a config (seed included).
    """
    config.validate()
    out = Path(out)
    names = class_names(config.classes)
    n_val = round(config.videos_per_class * config.val_fraction)
    duration = int(np.ceil(config.frames / config.fps))
    ext = "." + config.container
    videos: list[SynthVideo] = []
    for index, name in enumerate(names):
        for j in range(config.videos_per_class):
            # One stream per video: adding classes or videos never changes the others.
            rng = np.random.default_rng([config.seed, index, j])
            frames, flashes = make_video(index + 1, config.frames, config.size, rng)
            split = "val" if j < n_val else "train"
            youtube_id = f"synth{config.seed}c{index:02d}v{j:04d}"
            rel = FILE_PATTERN.format(split=split, label=name, youtube_id=youtube_id,
                                      time_start=0, time_end=duration, ext=ext)
            write_video(out / rel, frames, fps=config.fps)
            videos.append(SynthVideo(rel, name, index, split, youtube_id, tuple(flashes)))
    with open(out / LABELS_CSV, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "flash_frames"])
        for v in videos:
            writer.writerow([v.label, v.youtube_id, 0, duration, v.split,
                             " ".join(map(str, v.flash_frames))])
    (out / CLASSES_TXT).write_text("\n".join(names) + "\n")
    metadata = {
        "generator": "movibench.bench.data.synth",
        "task": "label = number of 2-frame flashes spread over the whole video",
        "config": asdict(config),
        "classes": names,
        "file_pattern": FILE_PATTERN.replace("{ext}", ext),
        "counts": {s: sum(v.split == s for v in videos) for s in ("train", "val")},
    }
    (out / METADATA_JSON).write_text(json.dumps(metadata, indent=2) + "\n")
    return videos
