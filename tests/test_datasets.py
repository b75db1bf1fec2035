"""Synthetic dataset generation and both dataset loaders, on real encoded files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.data.datasets import (
    ALL_SPLITS, DatasetError, load_dataset, load_folder, load_kinetics_csv, read_class_map,
)
from bench.data.synth import SynthConfig, class_names, generate, make_video
from bench.data.video import read_clip
from core.errors import MovibenchError

CONFIG = SynthConfig(classes=3, videos_per_class=4, frames=12, size=32, seed=7, val_fraction=0.25)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, CONFIG)
    return out


def test_generator_layout_and_labels(synth_dir):
    data = load_folder(synth_dir)
    assert data.classes == tuple(class_names(3)) == ("flashes_1", "flashes_2", "flashes_3")
    assert len(data) == 12 and data.splits == ("train", "val")
    assert len(data.split("val")) == 3 and len(data.split("validation")) == 3
    assert data.split("train").class_counts() == {c: 3 for c in data.classes}
    with open(synth_dir / "labels.csv") as fh:
        for row in csv.DictReader(fh):
            # Label k means k flashes, at distinct times.
            flashes = [int(f) for f in row["flash_frames"].split()]
            assert len(flashes) == int(row["label"].split("_")[1]) == len(set(flashes))
    meta = json.loads((synth_dir / "metadata.json").read_text())
    assert meta["counts"] == {"train": 9, "val": 3}


def test_flashes_are_visible_after_encoding(synth_dir):
    with open(synth_dir / "labels.csv") as fh:
        row = next(csv.DictReader(fh))
    sample = next(s for s in load_folder(synth_dir).samples if row["youtube_id"] in s.path.name)
    frames = read_clip(sample.path, 32)
    brightest = frames.max(axis=(1, 2, 3))
    for t in map(int, row["flash_frames"].split()):
        assert brightest[t] > 0.9 and brightest[t + 1] > 0.9


def test_generation_is_deterministic(synth_dir, tmp_path):
    generate(tmp_path, CONFIG)
    assert (tmp_path / "labels.csv").read_text() == (synth_dir / "labels.csv").read_text()
    first = sorted(p.relative_to(synth_dir) for p in synth_dir.rglob("*.mp4"))
    assert first == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.mp4"))
    # Bytes first: a mismatch here is the encoder's, one below the decoder's.
    assert [(synth_dir / p).read_bytes() for p in first] == [(tmp_path / p).read_bytes() for p in first]
    for path in (synth_dir / first[0], tmp_path / first[0]):
        np.testing.assert_array_equal(read_clip(path, 32), read_clip(synth_dir / first[0], 32))
    a, _ = make_video(2, 12, 32, np.random.default_rng([1, 2]))
    b, _ = make_video(2, 12, 32, np.random.default_rng([1, 3]))
    assert not np.array_equal(a, b)


def test_kinetics_csv_maps_rows_to_the_same_files(synth_dir):
    folder = load_folder(synth_dir)
    meta = json.loads((synth_dir / "metadata.json").read_text())
    csv_data = load_kinetics_csv(synth_dir / "labels.csv", pattern=meta["file_pattern"])
    assert csv_data.classes == folder.classes
    assert sorted((s.path, s.label_index, s.split) for s in csv_data.samples) == \
        sorted((s.path, s.label_index, s.split) for s in folder.samples)
    assert len(load_dataset(synth_dir / "labels.csv", "val")) == 3


def test_kinetics_default_pattern_class_map_and_missing(tmp_path, synth_dir):
    src = next(synth_dir.rglob("*.mp4"))
    (tmp_path / "abc_000010_000020.mp4").write_bytes(src.read_bytes())
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "riding a bike,abc,10,20,train\n"
        "archery,gone,0.0,10.0,validate\n")
    (tmp_path / "classes.json").write_text(json.dumps({"archery": 1, "riding a bike": 0}))
    data = load_kinetics_csv(tmp_path / "k.csv", classes=tmp_path / "classes.json")
    assert data.classes == ("riding a bike", "archery")
    assert [(s.path.name, s.label_index, s.split) for s in data.samples] == [
        ("abc_000010_000020.mp4", 0, "train"), ("gone_000000_000010.mp4", 1, "val")]
    assert len(load_kinetics_csv(tmp_path / "k.csv", missing="skip")) == 1
    with pytest.raises(DatasetError, match="gone"):
        load_kinetics_csv(tmp_path / "k.csv", missing="error")
    with pytest.raises(DatasetError, match="no column"):
        load_kinetics_csv(tmp_path / "k.csv", pattern="{video_id}.mp4")


def test_plain_class_folders_and_class_maps(tmp_path, synth_dir):
    for name in ("cat", "dog"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "a.mp4").write_bytes(next(synth_dir.rglob("*.mp4")).read_bytes())
    data = load_folder(tmp_path / "d")
    assert data.classes == ("cat", "dog") and data.splits == ()
    assert [s.label_index for s in data.samples] == [0, 1]
    with pytest.raises(DatasetError, match='no split folders .*split = "all"'):
        data.split("val")
    # A matrix's [data] always names a split: "all" is how it takes a folder without any.
    assert data.split(ALL_SPLITS) is data and len(load_dataset(tmp_path / "d", "all")) == 2
    (tmp_path / "map.csv").write_text("index,name\n1,cat\n0,dog\n")
    assert read_class_map(tmp_path / "map.csv") == ("dog", "cat")
    (tmp_path / "gap.csv").write_text("0,dog\n2,cat\n")
    with pytest.raises(DatasetError, match="gaps"):
        read_class_map(tmp_path / "gap.csv")
    with pytest.raises(DatasetError, match="not found"):
        load_folder(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="split 'test'"):
        load_folder(synth_dir).split("test")


def test_synth_config_errors():
    with pytest.raises(MovibenchError, match="frames"):
        SynthConfig(classes=5, frames=12).validate()
    with pytest.raises(MovibenchError, match="container"):
        SynthConfig(container="gif").validate()


def test_data_cli(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--classes", "2",
                                 "--videos-per-class", "2", "--frames", "6", "--size", "16",
                                 "--container", "webm", "--val-fraction", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == {"train": 2, "val": 2}
    assert len(list(out.rglob("*.webm"))) == 4
    info = runner.invoke(app, ["data", "info", str(out), "--json"])
    assert json.loads(info.stdout)["counts"]["val"] == {"flashes_1": 1, "flashes_2": 1}
