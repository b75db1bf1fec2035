"""Evaluation over a real folder of videos, failed rows, tables, and the shipped demo weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.data.datasets import load_folder
from bench.evaluation.evaluate import compute_metrics, evaluate, summary_path, write_table
from bench.evaluation.protocols import softmax
from bench.data.synth import SynthConfig, generate
from bench.data.video import read_clip
from core.errors import MovibenchError, UnknownModelError
from core.zoo import CONFIG_SIDECAR, DEMO_CHECKPOINTS, ModelConfig, config_for, demo_checkpoint

RES = 32


@pytest.fixture(scope="session")
def session():
    from runtimes.tensorflow import TensorFlowSession

    return TensorFlowSession.from_config(ModelConfig("t0", "stream", RES, 3))


@pytest.fixture(scope="session")
def broken_folder(tmp_path_factory):
    """A 3-class val split with real videos, plus one corrupt and one empty file."""
    root = tmp_path_factory.mktemp("evalset")
    generate(root, SynthConfig(classes=3, videos_per_class=2, frames=12, size=RES, seed=5,
                               val_fraction=0.5))
    (root / "val" / "flashes_1" / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 40)
    (root / "val" / "flashes_2" / "empty.mp4").write_bytes(b"")
    return root


@pytest.mark.parametrize("protocol", ["stream", "full-clip", "multi-clip:2x8"])
def test_failed_rows_and_correct_results(session, broken_folder, protocol):
    data = load_folder(broken_folder).split("val")
    seen = []
    result = evaluate(session, data.samples, protocol, classes=data.classes, on_video=seen.append)
    assert len(result.videos) == len(seen) == 5
    failed = {v.path.rsplit("/", 1)[-1]: v for v in result.videos if not v.ok}
    assert sorted(failed) == ["corrupt.mp4", "empty.mp4"]
    assert all(v.error and "\n" not in v.error and v.pred_index == -1 for v in failed.values())
    m = result.metrics
    assert (m.videos, m.evaluated, m.failed) == (5, 3, 2)
    assert sum(map(sum, m.confusion)) == 3
    for v in result.videos:
        if not v.ok:
            continue
        # Each good row holds what the model says about that decoded video.
        frames = read_clip(v.path, RES)
        if protocol == "multi-clip:2x8":
            expected = np.mean([softmax(session.predict(frames[None, s:s + 8]).reshape(-1))
                                for s in (0, 4)], axis=0)
        else:
            expected = softmax(session.predict(frames[None]).reshape(-1))
        np.testing.assert_allclose(v.probs, expected, atol=1e-4)
        assert v.pred_index == int(np.argmax(expected)) and v.correct == (v.pred_index == v.label_index)
        assert v.frames_processed == (16 if protocol == "multi-clip:2x8" else 12)
        assert v.model_s > 0 and v.wall_s >= v.model_s
        assert (v.trace is not None) == (protocol == "stream")
    assert result.summary()["failed"] == 2


def test_tables_round_trip(session, broken_folder, tmp_path):
    data = load_folder(broken_folder).split("val")
    result = evaluate(session, data.samples, "full-clip", classes=data.classes)
    for suffix in (".csv", ".parquet"):
        out = write_table(result.rows(), tmp_path / f"rows{suffix}")
        write_table([result.summary()], summary_path(out))
        rows = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert len(rows) == 5 and rows["ok"].sum() == 3
        assert len(json.loads(rows.loc[rows["ok"]].iloc[0]["probs"])) == 3
        assert summary_path(out).exists()
    with pytest.raises(MovibenchError, match="csv or .parquet"):
        write_table(result.rows(), tmp_path / "rows.txt")


def test_class_count_must_match(session, broken_folder):
    data = load_folder(broken_folder).split("val")
    with pytest.raises(MovibenchError, match="3"):
        evaluate(session, data.samples, "stream", classes=data.classes[:2])


def test_metrics_by_hand():
    from bench.evaluation.evaluate import VideoResult

    def row(label, pred, top5=True):
        return VideoResult("p", str(label), label, None, "x", True, pred_index=pred,
                           correct=label == pred, top5_correct=top5)
    rows = [row(0, 0), row(0, 1), row(1, 1), row(1, 1), VideoResult("q", "1", 1, None, "x", False)]
    m = compute_metrics(rows, ["a", "b"])
    assert m.top1 == 0.75 and m.mean_class_accuracy == 0.75 and m.failed == 1
    assert m.confusion == [[1, 1], [0, 2]] and m.per_class_accuracy == {"a": 0.5, "b": 1.0}
    # Top-5 over 2 classes is 100% by construction: not reported.
    assert np.isnan(m.top5)
    six = [str(i) for i in range(6)]
    assert compute_metrics([row(0, 1, top5=True), row(1, 1, top5=False)], six).top5 == 0.5


@pytest.fixture(scope="session")
def demo_val(tmp_path_factory):
    """Fresh videos from a seed the demo models never saw."""
    root = tmp_path_factory.mktemp("demo-val")
    generate(root, SynthConfig(classes=4, videos_per_class=3, frames=32, size=64, seed=1234,
                               val_fraction=0.0))
    return load_folder(root)


@pytest.mark.parametrize("name", ["t0-stream-synth", "t0-base-synth"])
def test_demo_checkpoints_beat_chance(name, demo_val):
    from runtimes.tensorflow import TensorFlowSession

    path = demo_checkpoint(name)
    assert (path / "SHA256SUMS").exists() and (path / "TRAINING.md").exists()
    config = config_for(None, None, checkpoint=path)
    assert config.num_classes == 4 and config.model_id == "t0"
    session = TensorFlowSession.from_config(config, path)
    result = evaluate(session, demo_val.samples, "full-clip", classes=demo_val.classes)
    assert result.metrics.top1 >= 0.5  # chance is 0.25 on 12 videos
    if config.causal:
        streamed = evaluate(session, demo_val.samples, "stream", classes=demo_val.classes)
        assert [v.pred_index for v in streamed.videos] == [v.pred_index for v in result.videos]
        for a, b in zip(streamed.videos, result.videos):
            np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)


@pytest.mark.parametrize("name", DEMO_CHECKPOINTS)
def test_demo_checkpoint_files_match_their_sha256sums(name):
    """What ships is what was trained: every file SHA256SUMS lists hashes as listed, and the
    sidecar names the architecture the directory's name says."""
    import hashlib

    path = demo_checkpoint(name)
    listed = [line.split() for line in (path / "SHA256SUMS").read_text().splitlines() if line]
    assert {f for _, f in listed} >= {"ckpt-1.index", "ckpt-1.data-00000-of-00001", CONFIG_SIDECAR}
    for digest, file in listed:
        assert hashlib.sha256((path / file).read_bytes()).hexdigest() == digest, file
    config = config_for(None, None, checkpoint=path)
    model_id, variant, _ = name.split("-", 2)
    assert (config.model_id, config.variant, config.num_classes) == (model_id, variant, 4)
    assert (path / "TRAINING.md").exists() and (path / "history.csv").exists()


@pytest.mark.heavy
def test_a0_demo_checkpoint_beats_chance_at_172(tmp_path):
    """A0 stream at 172x172 on fresh 16-frame videos (seed 1234: never trained on), streamed
    frame by frame as it ships. Minutes on 2 cores, so outside the default run."""
    from runtimes.tensorflow import TensorFlowSession

    generate(tmp_path, SynthConfig(classes=4, videos_per_class=3, frames=16, size=172, seed=1234,
                                   val_fraction=0.0))
    data = load_folder(tmp_path)
    path = demo_checkpoint("a0-stream-synth")
    session = TensorFlowSession.from_config(config_for(None, None, checkpoint=path), path)
    result = evaluate(session, data.samples, "stream", classes=data.classes)
    assert result.metrics.top1 >= 0.75  # chance is 0.25 on 12 videos


def test_unknown_demo_name_lists_names():
    with pytest.raises(UnknownModelError, match="t0-stream-synth"):
        demo_checkpoint("a0-kinetics")
