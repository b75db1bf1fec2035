"""The cell worker: runs ONE benchmark cell (or one export) in its own process.

`python -m bench.launchers.worker JOB.json RESULT.json`. The parent (bench.launchers.local) turns a crash, hang
or out-of-memory of this process into a failed row; nothing here needs to survive those.
Only the runtime the cell names is imported, so peak memory is the runtime's own.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.trackers.memory import LatencyStats, peak_rss_mb, rss_mb

FAULT_ENV = "MOVIBENCH_FAULT"  # testing hook: 'crash:<label substring>' or 'hang:<substring>'
OVERHEAD_BLOCKS = 5  # harness vs bare loop: alternating blocks of the timed iterations


def _inject_fault(label: str) -> None:
    """Make this worker really crash or hang, so the harness's isolation can be tested."""
    spec = os.environ.get(FAULT_ENV, "")
    kind, _, target = spec.partition(":")
    if kind and target and target in label:
        if kind == "crash":
            os.abort()
        if kind == "hang":
            time.sleep(10**6)


def run_export(job: dict) -> dict:
    """Export (or fetch from the cache) one artifact; return its path and build facts."""
    from bench.data.calibration_clips import export_options
    from converters.export import export_model
    from converters.zoo import ModelConfig

    start = time.perf_counter()
    options = export_options(job["format"], job.get("calibration_videos") or [],
                             job.get("calibration_frames") or 16)
    artifact = export_model(ModelConfig.from_dict(job["config"]), job["format"],
                            checkpoint=job.get("checkpoint") or None,
                            frames_per_step=job.get("frames_per_step"), options=options)
    return {"artifact": str(artifact.path), "cached": artifact.cached,
            "build_s": artifact.build_seconds, "wall_s": time.perf_counter() - start,
            "artifact_mb": artifact.size_bytes / 2**20}


def open_session(job: dict):
    """Load the cell's runtime: the TF reference from config, or an exported artifact."""
    cell = job["cell"]
    if cell["format"] == "tensorflow":
        from converters.zoo import ModelConfig
        from runtimes.tensorflow import TensorFlowSession

        return TensorFlowSession.from_config(ModelConfig.from_dict(job["config"]),
                                             job.get("checkpoint") or None, threads=cell["threads"])
    from runtimes.loader import open_session as open_artifact

    return open_artifact(job["artifact"], threads=cell["threads"])


def step_input(session, job: dict) -> np.ndarray:
    """The frames one timed call takes: real decoded frames when a dataset is given."""
    m = session.manifest
    frames = m.frames_per_step or (1 if m.causal else job.get("clip_frames") or 8)
    video = job.get("first_video")
    if video:
        from bench.data.video import read_clip

        clip = read_clip(video, m.resolution, max_frames=frames)
        if clip.shape[0] == frames:
            return clip[None]
    return np.random.default_rng(0).random((1, frames, m.resolution, m.resolution, 3), dtype=np.float32)


def measure_latency(session, frames: np.ndarray, warmup: int, iterations: int) -> dict:
    """First call, warm-up, timed calls, and the harness overhead vs a bare engine loop."""
    causal = session.manifest.causal
    states = session.init_states() if causal else None

    def call(states):
        if causal:
            return session.step(frames, states)[1]
        session.predict(frames)
        return None

    def bare(states):
        # The same engine call without the harness: no input checks, no state bookkeeping.
        if causal:
            return session._step(frames, states)[1]
        session._predict(frames)
        return None

    session.step_ns.clear()
    states = call(states)
    first_ms = session.step_ns[0] / 1e6
    for _ in range(warmup):
        states = call(states)
    session.step_ns.clear()
    harness_ns, bare_ns = [], []
    # Alternating blocks, so that drift (clock boost, a busy neighbour) hits both loops alike;
    # medians, so that one descheduled call does not decide the overhead. One state chain runs
    # through both loops: a runtime that keeps states in its own buffers (TensorRT's ping-pong
    # pair) would have a second chain overwrite the states the harness passes next.
    for block in np.array_split(np.arange(iterations), OVERHEAD_BLOCKS):
        for _ in block:
            start = time.perf_counter_ns()
            states = call(states)
            harness_ns.append(time.perf_counter_ns() - start)
        for _ in block:
            start = time.perf_counter_ns()
            states = bare(states)
            bare_ns.append(time.perf_counter_ns() - start)
    harness, bare_call = float(np.median(harness_ns)), float(np.median(bare_ns))
    samples = list(session.step_ns)
    stats = LatencyStats.from_ns(samples)
    per_step = frames.shape[1]
    return {
        "first_step_ms": first_ms, "warmup_steps": warmup, "step_n": stats.n,
        "step_p50_ms": stats.p50_ms, "step_p90_ms": stats.p90_ms, "step_p99_ms": stats.p99_ms,
        "step_mean_ms": stats.mean_ms, "step_std_ms": stats.std_ms,
        "frame_p50_ms": stats.p50_ms / per_step, "fps": per_step * 1000.0 / stats.p50_ms,
        "harness_step_ms": harness / 1e6, "bare_step_ms": bare_call / 1e6,
        "harness_overhead_pct": 100.0 * (harness - bare_call) / bare_call,
        "_samples_ms": [s / 1e6 for s in samples],
    }


def run_eval(session, job: dict) -> dict:
    """Accuracy and cost of one protocol over the dataset, plus per-step latency."""
    from bench.data.datasets import load_dataset
    from bench.evaluation.evaluate import evaluate

    cell = job["cell"]
    out = measure_latency(session, step_input(session, job), cell["warmup"], cell["iterations"])
    dataset = load_dataset(job["dataset"], job.get("split"))
    samples = list(dataset.samples)[: job.get("max_videos") or None]
    result = evaluate(session, samples, cell["protocol"], classes=dataset.classes)
    summary = result.summary()
    ok = [v for v in result.videos if v.ok]
    out.update({
        "videos": summary["videos"], "videos_failed": summary["failed"],
        "top1": summary["top1"], "top5": summary["top5"],
        "mean_class_accuracy": summary["mean_class_accuracy"],
        "frames_per_video": summary["frames_processed_per_video"],
        "video_ms": 1000 * summary["model_s_per_video"],
        "video_wall_ms": 1000 * summary["wall_s_per_video"],
        "confusion": summary["confusion"], "classes": summary["classes"],
    })
    out["_predictions"] = [
        {"video": v.path, "label_index": v.label_index, "pred_index": v.pred_index, "ok": v.ok,
         "error": v.error, "probs": json.dumps([round(float(p), 6) for p in v.probs]),
         "trace": json.dumps(np.round(v.trace, 5).tolist()) if (v.trace is not None and v is ok[0]) else ""}
        for v in result.videos
    ] if ok or result.videos else []
    return out


def run_memory(session, job: dict) -> dict:
    """Peak memory and time of one clip of `clip_frames` frames: one call vs frame by frame."""
    from runtimes.base import chunks, stream

    cell = job["cell"]
    m = session.manifest
    frames = cell["clip_frames"]
    clip = np.random.default_rng(0).random((frames, m.resolution, m.resolution, 3), dtype=np.float32)
    if cell["sweep_mode"] == "full-clip":
        def run():
            session.predict(clip[None])
    else:
        if not m.causal:
            raise ValueError(f"{m.model_id}/{m.variant} is not causal: it cannot stream")

        def run():
            stream(session, chunks(clip, m.frames_per_step or 1))
    # The first call traces (TF) or plans (other engines) for this input shape: seconds that
    # say nothing about clip length. Time the second; the peak RSS covers both.
    run()
    start = time.perf_counter()
    run()
    return {"sweep_s": time.perf_counter() - start, "frames_per_video": float(frames)}


def run_cell(job: dict) -> dict:
    """Measure one cell; the returned dict uses bench.results.schema column names."""
    cell = job["cell"]
    _inject_fault(job.get("label", ""))
    if cell["format"] == "tensorflow":
        import tensorflow  # noqa: F401  (the idle baseline of a TF cell includes TF itself)
    idle = rss_mb()
    start = time.perf_counter()
    session = open_session(job)
    load_s = time.perf_counter() - start
    out = {"rss_idle_mb": idle, "load_s": load_s, "rss_loaded_mb": rss_mb(),
           "frames_per_step": session.manifest.frames_per_step,
           "precision": session.manifest.precision}
    out.update(run_eval(session, job) if cell["kind"] == "eval" else run_memory(session, job))
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_delta_mb"] = out["peak_rss_mb"] - idle
    session.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    job_path, result_path = (argv or sys.argv[1:])[:2]
    job = json.loads(Path(job_path).read_text())
    code = 0
    try:
        result = run_export(job) if job.get("job") == "export" else run_cell(job)
    except Exception as exc:  # any failure of the thing measured becomes a failed row
        text = str(exc).strip().splitlines()
        result = {"_error": f"{type(exc).__name__}: {text[0] if text else ''}"[:500]}
        code = 1
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float))
    tmp.replace(result_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
