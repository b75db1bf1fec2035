"""Labelled video datasets: folder-per-class trees and Kinetics-style CSV annotations.

Both loaders produce the same typed `Dataset`: an ordered class list (index = model output
index) and `Sample`s pointing at files. Files are not opened here: a missing or corrupt video
surfaces when it is decoded, as one failed row, not as a lost dataset.
"""

from __future__ import annotations

import csv
import json
import string
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from bench.data.video import VIDEO_EXTENSIONS
from core.errors import MovibenchError

# The split name that keeps every sample: a matrix's [data] always names a split (default
# 'val'), and a folder of class folders has none.
ALL_SPLITS = "all"
# Split folder names recognised in `DIR/<split>/<class>/*`, and the names they mean.
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validate": "val", "validation": "val", "test": "test", "testing": "test"}
CLASSES_FILE = "classes.txt"
LABELS_CSV = "labels.csv"
METADATA_JSON = "metadata.json"
KINETICS_PATTERN = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


class DatasetError(MovibenchError, ValueError):
    """A dataset folder, annotation file or class map that cannot be read."""


@dataclass(frozen=True)
class Sample:
    """One labelled video file."""

    path: Path
    label: str
    label_index: int
    split: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Classes in model-output order and the samples labelled with them."""

    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    root: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({s.split for s in self.samples if s.split is not None}))

    def split(self, name: str | None) -> Dataset:
        """The samples of split `name` (aliases like 'validation' accepted); None or
        ALL_SPLITS keeps all."""
        if name is None or normalise_split(name) == ALL_SPLITS:
            return self
        wanted = normalise_split(name)
        if self.samples and all(s.split is None for s in self.samples):
            raise DatasetError(f"dataset {self.root} has no split folders (ROOT/<class>/ only): "
                               f"drop --split, or set split = \"{ALL_SPLITS}\" in a matrix's [data]")
        chosen = tuple(s for s in self.samples if s.split == wanted)
        if not chosen:
            raise DatasetError(f"no samples in split {name!r} of {self.root}; "
                               f"splits: {', '.join(self.splits) or 'none'}")
        return replace(self, samples=chosen)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.samples)
        return {c: counts.get(c, 0) for c in self.classes}

    def __len__(self) -> int:
        return len(self.samples)


def normalise_split(name: str) -> str:
    """'validation' -> 'val'; unknown names pass through lower-cased."""
    return SPLIT_ALIASES.get(name.strip().lower(), name.strip().lower())


def read_class_map(path: str | Path) -> tuple[str, ...]:
    """Classes in index order from a class map file.

    Accepts a text file with one class per line, a JSON list, a JSON object {name: index}, or
    a CSV with `index,name` rows (header optional). Indices must be 0..N-1 without gaps.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"class map not found: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"class map {path} is not valid JSON: {exc}") from None
        if isinstance(data, list):
            return _unique(tuple(str(c) for c in data), path)
        if isinstance(data, dict):
            return _from_index_pairs([(int(i), str(n)) for n, i in data.items()], path)
        raise DatasetError(f"class map {path} must be a JSON list or object")
    if path.suffix.lower() == ".csv":
        pairs = []
        for row in csv.reader(text.splitlines()):
            if len(row) < 2 or not row[0].strip().lstrip("-").isdigit():
                continue  # header or blank line
            pairs.append((int(row[0]), row[1].strip()))
        return _from_index_pairs(pairs, path)
    return _unique(tuple(line.strip() for line in text.splitlines() if line.strip()), path)


def _from_index_pairs(pairs: list[tuple[int, str]], path: Path) -> tuple[str, ...]:
    pairs.sort()
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise DatasetError(f"class map {path}: indices must be 0..{len(pairs) - 1} without gaps")
    return _unique(tuple(n for _, n in pairs), path)


def _unique(classes: tuple[str, ...], path: Path) -> tuple[str, ...]:
    if not classes:
        raise DatasetError(f"class map {path} is empty")
    dupes = [c for c, n in Counter(classes).items() if n > 1]
    if dupes:
        raise DatasetError(f"class map {path} repeats class {dupes[0]!r}")
    return classes


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def load_folder(root: str | Path, classes: tuple[str, ...] | str | Path | None = None) -> Dataset:
    """A folder-per-class tree: `ROOT/<split>/<class>/*` or plain `ROOT/<class>/*`.

    Split folders are recognised by name (train, val/validation, test). Classes come from
    `classes` (a sequence or a class map file), else `ROOT/classes.txt`, else the sorted
    class folder names across all splits.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        groups = [(normalise_split(d.name), c) for d in split_dirs
                  for c in sorted(p for p in d.iterdir() if p.is_dir())]
    else:
        groups = [(None, c) for c in subdirs]
    if not groups:
        raise DatasetError(f"no class folders in {root} (expected ROOT/<class>/ or ROOT/<split>/<class>/)")
    class_list = _resolve_classes(classes, root, sorted({c.name for _, c in groups}))
    index = {c: i for i, c in enumerate(class_list)}
    samples = []
    for split, folder in groups:
        if folder.name not in index:
            raise DatasetError(f"class folder {folder} is not in the class map")
        samples += [Sample(p, folder.name, index[folder.name], split) for p in _videos_in(folder)]
    if not samples:
        raise DatasetError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}")
    return Dataset(class_list, tuple(samples), root)


def _resolve_classes(classes, root: Path, found: list[str]) -> tuple[str, ...]:
    if classes is None and (root / CLASSES_FILE).is_file():
        classes = root / CLASSES_FILE
    if classes is None:
        return tuple(found)
    if isinstance(classes, (str, Path)):
        return read_class_map(classes)
    return _unique(tuple(classes), root)


class _Fields(dict):
    def __missing__(self, key):
        raise DatasetError(f"file pattern uses {{{key}}}, which the CSV has no column for")


def _format_path(pattern: str, row: dict[str, str]) -> str:
    fields = _Fields()
    for key, value in row.items():
        value = (value or "").strip()
        # Kinetics times are integers written as '10' or '10.0'; the pattern may pad them.
        try:
            number = float(value)
            fields[key] = int(number) if number.is_integer() else number
        except ValueError:
            fields[key] = value
    try:
        return string.Formatter().vformat(pattern, (), fields)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"file pattern {pattern!r} does not fit row {row}: {exc}") from None


def load_kinetics_csv(annotations: str | Path, video_root: str | Path | None = None, *,
                      pattern: str = KINETICS_PATTERN,
                      classes: tuple[str, ...] | str | Path | None = None,
                      missing: str = "keep") -> Dataset:
    """Kinetics-style annotations: a CSV with `label, youtube_id, time_start, time_end, split`.

    Each row maps to `video_root / pattern.format(**row)`; any CSV column can appear in the
    pattern (e.g. `{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`).
    Classes come from `classes` (a sequence or class map file), else sorted labels. Rows whose
    file is absent are kept (`missing="keep"`: they fail when decoded, visibly), dropped
    (`"skip"`), or rejected (`"error"`).
    """
    annotations = Path(annotations)
    if not annotations.is_file():
        raise DatasetError(f"annotation file not found: {annotations}")
    if missing not in ("keep", "skip", "error"):
        raise DatasetError(f"missing must be keep, skip or error, got {missing!r}")
    video_root = Path(video_root) if video_root is not None else annotations.parent
    with open(annotations, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DatasetError(f"annotation file {annotations} has no rows")
    absent = {"label", "youtube_id"} - set(rows[0])
    if absent:
        raise DatasetError(f"annotation file {annotations} lacks column(s) {', '.join(sorted(absent))}")
    class_list = _resolve_classes(classes, video_root, sorted({r["label"].strip() for r in rows}))
    index = {c: i for i, c in enumerate(class_list)}
    samples = []
    for row in rows:
        label = row["label"].strip()
        if label not in index:
            raise DatasetError(f"label {label!r} of {row['youtube_id']} is not in the class map")
        path = video_root / _format_path(pattern, row)
        if not path.exists():
            if missing == "skip":
                continue
            if missing == "error":
                raise DatasetError(f"video of {row['youtube_id']} not found: {path}")
        split = normalise_split(row["split"]) if row.get("split") else None
        samples.append(Sample(path, label, index[label], split))
    if not samples:
        raise DatasetError(f"no videos of {annotations} found under {video_root}")
    return Dataset(class_list, tuple(samples), video_root)


def load_dataset(path: str | Path, split: str | None = None) -> Dataset:
    """Open a dataset by path: a CSV file is Kinetics-style annotations (files beside it,
    pattern from a sibling metadata.json if it names one); a folder is folder-per-class.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        pattern = KINETICS_PATTERN
        meta = path.parent / METADATA_JSON
        if meta.is_file():
            pattern = json.loads(meta.read_text()).get("file_pattern", pattern)
        return load_kinetics_csv(path, pattern=pattern).split(split)
    return load_folder(path).split(split)
