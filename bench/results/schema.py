"""The results schema: every column of a benchmark run, its unit and meaning, in one place.

Reports, `compare` and the store all read column names from here. Units are in the names
(`_ms`, `_mb`, `_s`, `_pct`) so a CSV opened by hand is still unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pandas dtype
    unit: str
    description: str
    # What a row that does not say holds (written before the column existed); None: empty.
    default: object = None


CELL_COLUMNS: tuple[Column, ...] = (
    # identity of the cell (stable across runs: resume and compare key on cell_id)
    Column("cell_id", "string", "", "hash of the cell's definition"),
    Column("run_id", "string", "", "the run that produced the row"),
    Column("kind", "string", "", "scenario: 'latency' (timed calls), 'accuracy' (protocol over a dataset), 'memory' (clip-length sweep) or 'serving' (streams served open loop)"),
    Column("model", "string", "", "model id (t0, a0..a5)"),
    Column("variant", "string", "", "base, stream or mobile"),
    Column("checkpoint", "string", "", "checkpoint given in the config ('' = random init)"),
    Column("resolution", "Int64", "px", "input height = width"),
    Column("format", "string", "", "tensorflow, onnx, tflite-fp32, ... (core.formats)"),
    Column("precision", "string", "", "fp32, fp16, dynamic, int8"),
    Column("runtime", "string", "", "tensorflow, onnxruntime, litert, tensorrt"),
    Column("threads", "Int64", "", "intra-op threads given to the runtime"),
    Column("protocol", "string", "", "stream[:C=n], full-clip, multi-clip:KxL (bench.evaluation.protocols)"),
    Column("clip_frames", "Int64", "frames", "memory sweep: frames in the clip"),
    # outcome
    Column("status", "string", "", "ok or failed"),
    Column("error", "string", "", "one-line reason of a failed cell"),
    Column("exit_code", "Int64", "", "worker exit status (negative: killed by that signal)"),
    Column("cell_wall_s", "float64", "s", "wall time of the whole cell process"),
    Column("lost_node", "boolean", "",
           "the cell's node (or its Ray worker) was lost while it ran: --resume runs it again"),
    # where and when it ran (timed cells never overlap on one node: check with these)
    Column("node_host", "string", "", "host name of the machine that ran the cell"),
    Column("node_id", "string", "", "Ray node id (empty for the local executor)"),
    Column("node_cpu", "string", "", "CPU model of that machine: latencies of different ones are never pooled"),
    Column("node_cores", "Int64", "", "logical cores of that machine"),
    Column("runtime_version", "string", "", "version of the runtime's library on that machine"),
    Column("started_at", "float64", "s", "when the cell process started (Unix epoch seconds)"),
    Column("finished_at", "float64", "s", "when it ended (Unix epoch seconds)"),
    # artifact
    Column("artifact", "string", "", "path of the exported artifact ('' for tensorflow)"),
    Column("artifact_source", "string", "",
           "where the deployment's model came from: 'movibench' (its own export, or the TF "
           "reference it builds), '<recipe>:<name>' for an [[artifacts]] entry built during "
           "the run by that recipe (model-garden-tflite: Model Garden's own TFLite export), "
           "'file:<name>' for one read from a file made elsewhere", default="movibench"),
    Column("artifact_mb", "float64", "MB", "artifact size on disk"),
    Column("export_s", "float64", "s", "time the artifact took to build (as recorded when built, also when cached)"),
    Column("export_cached", "boolean", "", "the artifact was served from the cache"),
    Column("artifact_fetch_s", "float64", "s",
           "Ray: time to bring the artifact to the cell's node through the object store (0 when there already)"),
    Column("frames_per_call", "Int64", "frames", "frames one engine call takes (latency: the timed calls'; otherwise the artifact's fixed T, empty where the runtime takes any T)"),
    Column("load_s", "float64", "s", "artifact load / model build (+ compile) time"),
    Column("runtime_settings", "string", "", "how the runtime was set up to run the session, as JSON (Session.settings: ONNX Runtime's options read back from the session, LiteRT's threads and XNNPACK, OpenVINO's compiled properties; {} for runtimes with nothing to tell; empty in runs written before the column)"),
    # latency scenario: one engine call of frames_per_call frames, timed by the runtime base class
    Column("first_step_ms", "float64", "ms", "first call after load (includes lazy init)"),
    Column("warmup_steps", "Int64", "", "untimed warm-up calls, excluded from the stats"),
    Column("step_n", "Int64", "", "timed calls"),
    Column("step_p50_ms", "float64", "ms", "median engine-call latency"),
    Column("step_p90_ms", "float64", "ms", "90th percentile engine-call latency"),
    Column("step_p99_ms", "float64", "ms", "99th percentile engine-call latency"),
    Column("step_mean_ms", "float64", "ms", "mean engine-call latency"),
    Column("step_std_ms", "float64", "ms", "standard deviation of engine-call latency"),
    Column("frame_p50_ms", "float64", "ms", "median latency per frame (step / frames per call)"),
    Column("fps", "float64", "frames/s", "frames per second at the median step latency"),
    Column("harness_step_ms", "float64", "ms", "median time of a harness call (input checks + engine call)"),
    Column("bare_step_ms", "float64", "ms", "median time of a bare engine call (interleaved with the harness calls)"),
    Column("harness_overhead_pct", "float64", "%", "(harness - bare) / bare, from the two medians"),
    # latency cells only: how the runtime runs the deployment, in its own terms
    # (Session.execution_facts, docs/execution-facts.md), read after the timed calls and the last
    # memory reading; empty for the runtimes that have nothing to tell (TensorFlow, TensorRT)
    Column("exec_nodes", "Int64", "", "graph nodes the engine runs (LiteRT: the file's ops; ONNX Runtime: after its graph optimizations; OpenVINO: layers executed after its fusions)"),
    Column("exec_partitions", "Int64", "", "LiteRT: delegate kernels (XNNPACK partitions) the graph is cut into"),
    Column("exec_delegated_nodes", "Int64", "", "LiteRT: nodes run inside those partitions; the others run on LiteRT's built-in kernels"),
    Column("exec_builtin_ops", "string", "", "LiteRT: nodes left on the built-in kernels per op type and dtype ('ADD int32'), as JSON"),
    Column("exec_op_time", "string", "", "ONNX Runtime / OpenVINO: share of the profiled node time per op (layer) type, as JSON (the runtime's own profiler or per-layer counters, on a separate session)"),
    Column("exec_provider_time", "string", "", "ONNX Runtime: share of that time per execution provider; OpenVINO: per kernel implementation (jit_avx2_f32, ...); as JSON"),
    # memory
    # memory, every scenario (bench.trackers.memory): idle = after importing the cell's runtime
    # engine and the harness's libraries, before loading the model; the peak is the process's
    # resident high-water mark at the end of the cell (load + warm-up + measured phase, never reset)
    Column("rss_idle_mb", "float64", "MB", "RSS after importing the runtime's engine and the harness, before load"),
    Column("rss_loaded_mb", "float64", "MB", "RSS right after loading the model"),
    Column("peak_rss_mb", "float64", "MB", "resident high-water mark of the cell process (covers load, warm-up and the measured phase)"),
    Column("peak_rss_delta_mb", "float64", "MB", "peak_rss_mb minus rss_idle_mb"),
    Column("uss_idle_mb", "float64", "MB", "unique set size (memory only this process holds) at idle"),
    Column("uss_loaded_mb", "float64", "MB", "unique set size right after load"),
    Column("uss_max_mb", "float64", "MB", "largest unique set size read at the phase boundaries (idle, loaded, warm, end)"),
    Column("uss_delta_mb", "float64", "MB", "uss_max_mb minus uss_idle_mb"),
    # GPU runtimes only (bench.trackers.gpu); empty for CPU runtimes
    Column("gpu_mem_loaded_mb", "float64", "MB", "device memory in use after load minus before load"),
    Column("gpu_mem_peak_mb", "float64", "MB", "most device memory in use at any phase boundary minus before load"),
    Column("gpu_engine_mb", "float64", "MB", "device memory the engine reserves for activations"),
    # evaluation
    Column("videos", "Int64", "", "videos in the evaluation"),
    Column("videos_failed", "Int64", "", "videos that could not be decoded or run"),
    Column("top1", "float64", "fraction", "top-1 accuracy over the videos that ran"),
    Column("top5", "float64", "fraction", "top-5 accuracy (empty with 5 classes or fewer, where it is 100% by construction)"),
    Column("mean_class_accuracy", "float64", "fraction", "mean per-class top-1"),
    Column("frames_per_video", "float64", "frames", "frames through the model per video (counting overlap)"),
    Column("calls_per_video", "float64", "", "engine calls per video under the protocol"),
    Column("video_ms", "float64", "ms", "mean model time per video under the protocol"),
    Column("video_wall_ms", "float64", "ms", "mean wall time per video incl. decoding"),
    Column("confusion", "string", "", "confusion matrix as JSON (rows: true, cols: predicted)"),
    Column("classes", "string", "", "class names as JSON"),
    # agreement with the TensorFlow reference cell of the same model/variant/protocol
    Column("ref_max_abs_prob_diff", "float64", "", "max |Δ softmax| vs the TF reference, per video"),
    Column("ref_top1_agreement", "float64", "fraction", "share of videos with the reference's top-1"),
    # memory sweep
    Column("sweep_mode", "string", "", "memory sweep: 'full-clip' (one call) or 'stream' (frame by frame)"),
    Column("sweep_s", "float64", "s", "memory sweep: time to run the clip (a second run; the first traces)"),
    # serving (bench.scenarios.serving): N streams at serve_fps, frames arriving open loop on
    # each stream's clock; the settings are the plan's, the measurement the scenario's
    Column("serve_strategy", "string", "", "serving: how streams are served ('sessions': a session per stream, its states in it, a pool of serve_workers threads)"),
    Column("serve_fps", "float64", "frames/s", "serving: frames per second arriving on each stream (the deadline is one period, 1/fps)"),
    Column("serve_workers", "Int64", "", "serving: worker threads serving the streams"),
    Column("serve_jitter", "float64", "", "serving: stream starts spread uniformly over this fraction of a frame period (0: synchronised)"),
    Column("serve_policy", "string", "", "serving: 'queue' (every frame served in order) or 'latest' (frames waiting when a newer one arrived are dropped)"),
    Column("serve_duration_s", "float64", "s", "serving: seconds of arrivals per stream count measured (then at most 1 s of draining)"),
    Column("serve_search", "string", "", "serving: how the stream counts measured were chosen (doubling from 1 then bisection up to a cap, or a listed set)"),
    Column("serve_max_streams", "Int64", "", "serving: the largest stream count whose p99 latency stayed within one frame period with no frame dropped or unserved (0: not even one)"),
    Column("serve_max_streams_capped", "boolean", "", "serving: the search reached its cap still holding (the machine holds at least serve_max_streams)"),
    Column("serve_streams", "Int64", "", "serving: the stream count the row's other serve_* metrics are of (serve_max_streams, or the smallest count measured when none held)"),
    Column("serve_frames", "Int64", "frames", "serving: frames that arrived at that count"),
    Column("serve_delivered_fps", "float64", "frames/s", "serving: frames whose logits came back per second, over all streams"),
    Column("serve_p50_ms", "float64", "ms", "serving: median per-frame latency, arrival to logits (queueing included)"),
    Column("serve_p90_ms", "float64", "ms", "serving: 90th percentile per-frame latency, arrival to logits"),
    Column("serve_p99_ms", "float64", "ms", "serving: 99th percentile per-frame latency, arrival to logits (unserved frames count with the time they had waited)"),
    Column("serve_deadline_miss_rate", "float64", "fraction", "serving: share of the frames not dropped whose latency exceeded one frame period or that were never served"),
    Column("serve_dropped_frames", "Int64", "frames", "serving: frames the 'latest' policy dropped (0 under 'queue')"),
    Column("serve_unserved_frames", "Int64", "frames", "serving: frames not started when the drain after the last arrival ended"),
    Column("serve_cpu_util_pct", "float64", "%", "serving: the process's CPU time over wall time x the cores it may run on, at that count"),
    Column("serve_state_bytes_per_stream", "Int64", "bytes", "serving: bytes of one stream's states (the manifest's), kept per camera"),
    Column("serve_curve", "string", "", "serving: every stream count measured, as JSON (streams, frames, delivered/dropped/unserved, delivered_fps, p50/p90/p99_ms, miss_rate, cpu_util_pct, rss_mb read after the count, holds)"),
)

SAMPLE_COLUMNS: tuple[Column, ...] = (
    Column("cell_id", "string", "", "the cell"),
    Column("run_id", "string", "", "the run"),
    Column("step_ms", "float64", "ms", "one timed engine call"),
)

PREDICTION_COLUMNS: tuple[Column, ...] = (
    Column("cell_id", "string", "", "the cell"),
    Column("run_id", "string", "", "the run"),
    Column("video", "string", "", "video path"),
    Column("label_index", "Int64", "", "true class"),
    Column("pred_index", "Int64", "", "predicted class (-1 for a failed video)"),
    Column("ok", "boolean", "", "the video ran"),
    Column("error", "string", "", "why a video failed"),
    Column("probs", "string", "", "softmax probabilities as JSON"),
    Column("trace", "string", "", "stream: per-step logits as JSON (first video only)"),
)

CELL_KEY = ("model", "variant", "checkpoint", "resolution", "format", "runtime", "threads",
            "protocol", "clip_frames", "kind", "sweep_mode", "frames_per_call", "artifact_source",
            "serve_strategy", "serve_fps", "serve_workers", "serve_jitter", "serve_policy",
            "serve_search")


def frame(rows: list[dict], columns: tuple[Column, ...] = CELL_COLUMNS) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the schema's columns, in order, with their dtypes.

    Unknown keys are an error (a typo must not become a silent new column).
    """
    names = [c.name for c in columns]
    unknown = sorted({k for r in rows for k in r} - set(names))
    if unknown:
        raise KeyError(f"columns not in the results schema: {unknown}")
    df = pd.DataFrame(rows, columns=names)
    return df.astype({c.name: c.dtype for c in columns})


def conform(df: pd.DataFrame, columns: tuple[Column, ...] = CELL_COLUMNS) -> pd.DataFrame:
    """A table read back from disk, with the schema's columns in order: a column that an older
    movibench did not write yet is added empty, so old runs still load, resume and compare;
    a column with a default holds it in every row that does not say (artifact_source:
    every row from before it existed was of movibench's own deployments)."""
    missing = [c for c in columns if c.name not in df.columns]
    if missing:
        df = df.assign(**{c.name: pd.Series(None, index=df.index, dtype=object).astype(c.dtype)
                          for c in missing})
    defaults = {c.name: c.default for c in columns if c.default is not None}
    if defaults and df[list(defaults)].isna().any().any():
        df = df.fillna(defaults)
    return df[[c.name for c in columns]]


def describe() -> pd.DataFrame:
    """The schema itself as a table (for docs and `movibench matrix schema`)."""
    return pd.DataFrame([{k: v for k, v in c.__dict__.items() if k != "default"}
                         for c in CELL_COLUMNS])


# --- race.csv: `movibench race --out`, deployments timed side by side (bench.race.race) ---------
# One row per deployment and thread count, in bench.race.race.RaceRow's order. The report's
# "Side by side in one process" reads a run's race.csv (bench.results.rundir) by these names.
RACE_COLUMNS: tuple[Column, ...] = (
    Column("threads", "Int64", "", "intra-op threads of this race (each thread count is a race of its own)"),
    Column("label", "string", "", "the deployment: 'model/variant format' (+ ' T=n' for a clip artifact, ' [option=value]' for a --vary value)"),
    Column("artifact", "string", "", "path of the artifact raced"),
    Column("format", "string", "", "its format (core.formats)"),
    Column("runtime", "string", "", "the runtime that ran it"),
    Column("frames_per_call", "Int64", "frames", "frames one timed call takes"),
    Column("calls", "Int64", "", "timed calls"),
    Column("call_p50_ms", "float64", "ms", "median call latency"),
    Column("call_p90_ms", "float64", "ms", "90th percentile call latency"),
    Column("frame_p50_ms", "float64", "ms", "median latency per frame (call p50 / frames per call)"),
    Column("ratio_to_fastest", "float64", "", "frame p50 / the fastest deployment's of this thread count (1 = the fastest)"),
    Column("max_abs_diff_to_first", "float64", "", "largest |logit - the logit of the race's first deployment of the same model id, variant, classes and input shape| on the same noise inputs (0 for that one)"),
    Column("fastest", "boolean", "", "the lowest frame p50 of this thread count"),
    Column("speedup_vs_baseline", "float64", "", "the baseline's frame p50 / this one's at this thread count (--baseline; above 1: faster)"),
    Column("baseline", "boolean", "", "this is the --baseline deployment"),
    Column("macs_per_frame", "Int64", "", "multiply-adds per frame in the artifact's convolutions and matrix products, counted from its graph (Session.multiply_adds)"),
    Column("gmacs_per_s", "float64", "G multiply-adds/s", "the rate this deployment reaches at its frame p50"),
    Column("peak_gmacs", "float64", "G multiply-adds/s", "the CPU's measured matrix-product peak of the deployment's precision at this thread count (bench.trackers.roofline)"),
    Column("roofline_share", "float64", "fraction", "gmacs_per_s / peak_gmacs"),
    Column("top1", "float64", "fraction", "race --run: top-1 of the run's accuracy cell on this artifact"),
    Column("top1_agreement", "float64", "fraction", "race --run: that cell's share of videos with the TensorFlow reference's top-1"),
    Column("error", "string", "", "one-line reason the deployment failed to open or run ('' when it ran)"),
    Column("options", "string", "", "the runtime options --vary opened it with, as JSON"),
    Column("settings", "string", "", "how the runtime ran the session (Session.settings), as JSON"),
)
