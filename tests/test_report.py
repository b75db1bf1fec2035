"""`movibench report`: a real run directory (written with bench.results.store from generated numbers,
no TF) rendered to Markdown + self-contained HTML, checked the way a reader would."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.matrix.config import Cell
from bench.evaluation.protocols import softmax
from bench.report.analysis import pareto_front
from bench.report.build import build_report
from bench.results.store import ResultsStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["one", "two", "three", "four"]
FRAMES = 32
VIDEOS = 8
FORMATS = {  # format: (runtime, precision, frame ms at 1 thread, logit noise vs TF)
    "tensorflow": ("tensorflow", "fp32", 20.0, 0.0),
    "onnx": ("onnxruntime", "fp32", 4.5, 1e-6),
    "tflite-fp32": ("litert", "fp32", 3.3, 1e-6),
    "tflite-fp16": ("litert", "fp16", 6.6, 1e-3),
    "tflite-int8": ("litert", "int8", 11.0, 3.0),
}
PROTOCOLS = {"stream": 1.0, "full-clip": 1.0, "multi-clip:2x16": 0.8, "multi-clip:4x4": 0.5}
FAILED = ("tflite-int8", 2, "multi-clip:4x4")
EXECUTION = {  # runtime: the exec_* columns of its latency cells, as t0 stream records them
    "litert": {"exec_nodes": 445, "exec_partitions": 2, "exec_delegated_nodes": 401,
               "exec_builtin_ops": json.dumps({"ADD int32": 15, "CAST int32": 15, "RESHAPE int32": 14})},
    "onnxruntime": {"exec_nodes": 900, "exec_provider_time": json.dumps({"CPUExecutionProvider": 1.0}),
                    "exec_op_time": json.dumps({"Conv": 0.4, "Mul": 0.2, "Reshape": 0.1, "Add": 0.1,
                                                "Clip": 0.1, "CumSum": 0.06, "Concat": 0.04})},
}


def _cell(fmt: str, threads: int, protocol: str = "", kind: str = "", **kw) -> Cell:
    kind = kind or ("accuracy" if protocol else "memory")
    return Cell(kind, "t0", "stream", "demo:t0-stream-synth", 64, 4, fmt, threads, protocol, **kw)


def make_run(root: Path, *, memory: bool = True, traces: bool = True, execution: bool = True,
             race: bool = True, serving: bool = True, seed: int = 0,
             cpus: dict[int, str] | None = None) -> Path:
    """A run of t0/stream over 5 formats x 2 threads x 4 protocols (+ a memory sweep): rows,
    raw samples and per-video predictions written through ResultsStore like the runner does.
    `execution`: latency cells carry their runtime's EXECUTION columns. `cpus` maps thread
    counts to the CPU model (node_cpu) their cells ran on. `race`: a race.csv beside it.
    `serving`: SERVED's serving cells."""
    rng = np.random.default_rng(seed)
    store = ResultsStore(root)
    environment = {"cpu_model": "Test CPU", "logical_cores": 2,
                   "libraries": {"numpy": np.__version__, "tensorrt": ""}}
    store.init({"run_id": "20260101T000000Z", "name": "unit", "config_hash": "abc123",
                "command": "movibench matrix run unit.toml", "environment": environment},
               'name = "unit"\n[axes]\nformats = ["tensorflow", "onnx"]\n')
    labels = np.arange(VIDEOS) % len(CLASSES)
    # TF reference logits per protocol: the longer the temporal context, the more often right.
    reference = {}
    for protocol, skill in PROTOCOLS.items():
        logits = rng.normal(0, 1, (VIDEOS, len(CLASSES)))
        right = rng.random(VIDEOS) < skill
        logits[np.arange(VIDEOS), labels] += np.where(right, 4.0, -4.0)
        reference[protocol] = logits
    run_id = "20260101T000000Z"
    for fmt, (runtime, precision, frame_ms, noise) in FORMATS.items():
        for threads in (1, 2):
            artifact = dict(artifact="" if fmt == "tensorflow" else f"/cache/{fmt}.bin",
                            artifact_mb=None if fmt == "tensorflow" else 7.5 / (1 + (precision != "fp32")),
                            export_s=None if fmt == "tensorflow" else 40.0, export_cached=False,
                            load_s=0.5, peak_rss_mb=400.0 + 100 * (fmt == "tensorflow"),
                            peak_rss_delta_mb=150.0, uss_delta_mb=120.0)
            # The latency cell: one per deployment (one frame per call: a stream model).
            step = frame_ms / threads ** 0.7
            samples = list(step * rng.lognormal(0, 0.05, 50))
            p50 = float(np.median(samples))
            cell = _cell(fmt, threads, kind="latency", frames_per_call=1)
            node = {"node_cpu": cpus[threads]} if cpus else {}
            facts = EXECUTION.get(runtime, {}) if execution else {}
            store.append({**node, **facts, "cell_id": cell.cell_id, "run_id": run_id, "kind": "latency",
                          "model": "t0", "variant": "stream", "checkpoint": cell.checkpoint,
                          "resolution": 64, "format": fmt, "precision": precision,
                          "runtime": runtime, "threads": threads, "status": "ok", "exit_code": 0,
                          "cell_wall_s": 3.0, "frames_per_call": 1, **artifact, "step_n": 50,
                          "step_p50_ms": p50, "frame_p50_ms": p50, "fps": 1000 / p50,
                          "step_p99_ms": float(np.percentile(samples, 99)),
                          "first_step_ms": 30 * p50,
                          "harness_step_ms": 1.02 * p50, "bare_step_ms": p50,
                          "harness_overhead_pct": 2.0}, samples)
            for protocol in PROTOCOLS:
                cell = _cell(fmt, threads, protocol)
                row = {"cell_id": cell.cell_id, "run_id": run_id, "kind": "accuracy", "model": "t0",
                       "variant": "stream", "checkpoint": cell.checkpoint, "resolution": 64,
                       "format": fmt, "precision": precision, "runtime": runtime,
                       "threads": threads, "protocol": protocol}
                row.update(node)
                if (fmt, threads, protocol) == FAILED:
                    store.append({**row, "status": "failed", "exit_code": -6,
                                  "error": "worker killed by SIGABRT (core dumped)"})
                    continue
                logits = reference[protocol] + rng.normal(0, noise, reference[protocol].shape)
                probs = softmax(logits)
                preds = probs.argmax(1)
                frames = FRAMES if not protocol.startswith("multi") else \
                    {"multi-clip:2x16": 32, "multi-clip:4x4": 16}[protocol]
                confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
                np.add.at(confusion, (labels, preds), 1)
                row.update(status="ok", exit_code=0, cell_wall_s=3.0, **artifact,
                           confusion=json.dumps(confusion.tolist()),
                           frames_per_call=None if fmt == "tensorflow" else 1,
                           videos=VIDEOS, videos_failed=0,
                           top1=float(np.mean(preds == labels)),
                           frames_per_video=float(frames), video_ms=frames * p50,
                           # Decoding and resizing: a fixed 2 ms per frame on top of the model.
                           video_wall_ms=frames * (p50 + 2.0),
                           classes=json.dumps(CLASSES))
                trace = ""
                predictions = []
                for v in range(VIDEOS):
                    if traces and protocol == "stream" and v == 0:
                        ramp = np.linspace(0.05, 1, FRAMES)[:, None]
                        steps = ramp * logits[v] + rng.normal(0, 0.3, (FRAMES, len(CLASSES)))
                        trace = json.dumps(np.round(steps, 5).tolist())
                    predictions.append({"video": f"/data/val/{CLASSES[labels[v]]}/clip{v}.mp4",
                                        "label_index": int(labels[v]), "pred_index": int(preds[v]),
                                        "ok": True, "error": "",
                                        "probs": json.dumps([round(float(p), 6) for p in probs[v]]),
                                        "trace": trace if v == 0 else ""})
                store.append(row, None, predictions)
    if memory:
        for frames in (8, 32, 128):
            for mode in ("full-clip", "stream"):
                cell = _cell("tensorflow", 2, clip_frames=frames, sweep_mode=mode)
                grows = mode == "full-clip"
                store.append({"cell_id": cell.cell_id, "run_id": run_id, "kind": "memory", "model": "t0",
                              "variant": "stream", "checkpoint": cell.checkpoint, "resolution": 64,
                              "format": "tensorflow", "precision": "fp32", "runtime": "tensorflow",
                              "threads": 2, "clip_frames": frames, "sweep_mode": mode, "status": "ok",
                              "peak_rss_mb": 500 + (7.6 * frames if grows else 3),
                              "peak_rss_delta_mb": 140 + (7.6 * frames if grows else 3),
                              "sweep_s": (0.19 if grows else 0.02) * frames})
    if serving:
        _serving_cells(store, run_id, {"node_cpu": cpus[1]} if cpus else {})
    store.consolidate()
    if race:
        pd.DataFrame([{"threads": 2, "label": f"t0/stream {fmt}", "frames_per_call": 1,
                       "calls": 300, "call_p50_ms": ms, "call_p90_ms": ms * 1.1,
                       "frame_p50_ms": ms, "ratio_to_fastest": ms / 4.0,
                       "max_abs_diff_to_first": 0.0, "error": ""}
                      for fmt, ms in (("onnx", 8.0), ("tflite-fp32", 4.0))]
                     ).to_csv(root / "race.csv", index=False)
    return root


# Serving cells: (format, fps) -> (the counts measured with their p99 in ms, max streams, capped).
SERVED = {("onnx", 15.0): ({1: 5.0, 2: 6.0, 4: 9.0, 8: 80.0, 6: 60.0, 5: 20.0}, 5, False),
          ("onnx", 30.0): ({1: 5.0, 2: 6.0, 4: 40.0, 3: 30.0}, 3, False),
          ("tflite-fp32", 30.0): ({1: 2.0, 2: 2.5, 4: 3.0}, 4, True)}


def _serving_cells(store: ResultsStore, run_id: str, node: dict) -> None:
    from bench.jobs.job import ServingSettings
    from bench.matrix.run import serving_plan_columns

    for (fmt, fps), (curve, best, capped) in SERVED.items():
        settings = ServingSettings(fps=fps, workers=2, jitter=1.0, max_streams=4 if capped else 64)
        cell = _cell(fmt, 1, kind="serving", serving=settings)
        runtime, precision = FORMATS[fmt][:2]
        points = [{"streams": n, "p99_ms": p99, "holds": p99 <= 1000 / fps}
                  for n, p99 in sorted(curve.items())]
        store.append({**node, "cell_id": cell.cell_id, "run_id": run_id, "kind": "serving",
                      "model": "t0", "variant": "stream", "checkpoint": cell.checkpoint,
                      "resolution": 64, "format": fmt, "precision": precision,
                      "runtime": runtime, "threads": 1, "status": "ok", "frames_per_call": 1,
                      "serve_max_streams": best, "serve_max_streams_capped": capped,
                      "serve_streams": best, "serve_p99_ms": curve[best],
                      "serve_curve": json.dumps(points), **serving_plan_columns(settings)})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "unit")


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    return build_report(run_dir, tmp_path_factory.mktemp("report"))


class Page(HTMLParser):
    """The parts of report.html a test reads: headings, tables as rows of cells, images, and
    anything that would reach the network or run code."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self.images, self.external, self.scripts = [], [], [], [], 0
        self._cell = None
        self._heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag in ("h1", "h2"):
            self._heading = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None
        elif tag in ("h1", "h2"):
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._heading is not None:
            self._heading += data

    def table_with(self, header: str) -> list[dict]:
        """The first table whose header row has `header`, as dicts."""
        for table in self.tables:
            if header in table[0]:
                return [dict(zip(table[0], row)) for row in table[1:]]
        raise AssertionError(f"no table with a {header!r} column")


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    page.close()
    return page


def test_html_is_self_contained_with_tables_and_images(report):
    page = parse(report.html)
    assert page.scripts == 0 and page.external == []
    for title in report.sections:
        assert title in page.headings
    assert len(page.images) == len(report.images) == 6
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):]).startswith(PNG_SIGNATURE)
    assert report.omitted == []


def test_markdown_references_the_pngs_it_wrote(report):
    text = report.markdown.read_text()
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(names) == sorted(p.name for p in report.images)
    for name in names:
        path = report.markdown.parent / name
        assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_headline_picks_one_best_deployment_per_runtime_and_precision(report, run_dir):
    rows = parse(report.html).table_with("deployment")
    assert [(r["runtime"], r["precision"]) for r in rows] == [
        ("litert", "fp16"), ("litert", "fp32"), ("litert", "int8"), ("onnxruntime", "fp32"),
        ("tensorflow", "fp32")]
    cells = pd.read_parquet(run_dir / "cells.parquet")
    onnx = next(r for r in rows if r["runtime"] == "onnxruntime")
    # stream and full-clip tie on accuracy; 2 threads are faster, so t2 wins.
    assert onnx["deployment"] == "t0/stream onnx t2"
    best = cells[(cells["format"] == "onnx") & (cells["threads"] == 2) &
                 (cells["protocol"] == onnx["protocol"])].iloc[0]
    latency = cells[(cells["format"] == "onnx") & (cells["threads"] == 2) &
                    (cells["kind"] == "latency")].iloc[0]
    assert onnx["top-1 (%)"] == f"{100 * best['top1']:.1f}"
    # Latency comes from the deployment's latency cell, memory from the accuracy cell.
    assert onnx["per-frame p50 (ms)"] == f"{latency['frame_p50_ms']:,.3f}"
    assert onnx["frames / call (frames)"] == "1"
    assert onnx["peak RSS over idle (MB)"] == "150"
    assert onnx["top-1 (%)"] == f"{100 * cells[cells['status'] == 'ok']['top1'].max():.1f}"
    assert onnx["export (s)"] == "40.0" and onnx["load (s)"] == "0.50"
    assert next(r for r in rows if r["runtime"] == "tensorflow")["export (s)"] == "–"


def test_end_to_end_frames_per_second_beside_model_only_with_p99_and_first_call(report, run_dir):
    rows = parse(report.html).table_with("end to end (frames/s)")
    cells = pd.read_parquet(run_dir / "cells.parquet")
    accuracy = cells[(cells["kind"] == "accuracy") & (cells["status"] == "ok")]
    assert len(rows) == len(accuracy)
    walls = [float(r["end to end (frames/s)"].replace(",", "")) for r in rows]
    assert walls == sorted(walls, reverse=True)
    onnx = next(r for r in rows if r["deployment"] == "t0/stream onnx t2"
                and r["protocol"] == "stream")
    cell = accuracy[(accuracy["format"] == "onnx") & (accuracy["threads"] == 2) &
                    (accuracy["protocol"] == "stream")].iloc[0]
    latency = cells[(cells["format"] == "onnx") & (cells["threads"] == 2) &
                    (cells["kind"] == "latency")].iloc[0]
    frames = cell["frames_per_video"]
    assert onnx["end to end (frames/s)"] == f"{1000 * frames / cell['video_wall_ms']:,.1f}"
    assert onnx["model only, in the protocol (frames/s)"] == f"{1000 * frames / cell['video_ms']:,.1f}"
    assert onnx["model only, latency cell (frames/s)"] == f"{latency['fps']:,.1f}"
    assert onnx["call p99 (ms)"] == f"{latency['step_p99_ms']:,.3f}"
    assert onnx["first call (ms)"] == f"{latency['first_step_ms']:,.1f}"
    # 4 classes: top-5 is 100 % by construction and left out.
    assert "top-5 (%)" not in onnx


def test_equivalence_passes_float_formats_and_fails_int8(report):
    rows = {r["format"]: r for r in parse(report.html).table_with("verdict")}
    assert set(rows) == {"onnx", "tflite-fp32", "tflite-fp16", "tflite-int8"}
    assert rows["onnx"]["verdict"] == rows["tflite-fp32"]["verdict"] == "PASS"
    assert rows["tflite-fp16"]["verdict"] == "PASS"
    assert rows["tflite-int8"]["verdict"] == "FAIL"
    assert rows["tflite-int8"]["cells"] == "7"  # one int8 cell failed


def test_failed_cell_speedup_memory_and_trace_sections(report):
    page = parse(report.html)
    failed = page.table_with("error")
    assert len(failed) == 1 and "SIGABRT" in failed[0]["error"]
    assert "tflite-int8 t2 multi-clip:4x4" in failed[0]["cell"]
    speed = page.table_with("per-frame speedup (×)")
    onnx = [float(r["per-frame speedup (×)"]) for r in speed if r["format"] == "onnx"]
    assert len(onnx) == 8 and all(s > 2 for s in onnx)  # 20 ms vs 4.5 ms per frame
    memory = page.table_with("mode")
    assert len(memory) == 6
    trace = page.table_with("prediction")
    assert trace[0]["protocol"] == "stream (this trace)"
    assert {r["protocol"] for r in trace[1:]} == {"full-clip", "multi-clip:2x16", "multi-clip:4x4"}


def test_confusion_heatmaps_of_the_best_format_per_model(report, run_dir):
    """One figure for the one model: the format and threads with the highest mean top-1 over
    the protocols, a heatmap per protocol, beside a table of its accuracy per protocol."""
    cells = pd.read_parquet(run_dir / "cells.parquet")
    ok = cells[(cells["kind"] == "accuracy") & (cells["status"] == "ok")]
    mean = ok.groupby(["format", "threads"])["top1"].mean()
    latency = cells[cells["kind"] == "latency"].set_index(["format", "threads"])["frame_p50_ms"]
    # Ties on top-1 (formats that predict alike) go to the fastest deployment.
    fmt, threads = min(mean[mean == mean.max()].index, key=lambda k: latency[k])
    figures = [p for p in report.images if p.name.startswith("confusion_")]
    assert len(figures) == 1 and figures[0].read_bytes().startswith(PNG_SIGNATURE)
    rows = parse(report.html).table_with("mean per-class accuracy (%)")
    best = ok[(ok["format"] == fmt) & (ok["threads"] == threads)].sort_values("protocol")
    assert [r["protocol"] for r in rows] == list(best["protocol"])
    assert [r["top-1 (%)"] for r in rows] == [f"{100 * t:.1f}" for t in best["top1"]]
    text = report.markdown.read_text()
    assert f"t0/stream {fmt} t{threads}: true vs predicted" not in text  # the title is in the PNG
    assert f"Confusion matrices of t0/stream {fmt} t{threads} (demo:t0-stream-synth)." in text
    # Each matrix counts every video once: rows are true classes.
    for _, cell in best.iterrows():
        matrix = np.asarray(json.loads(cell["confusion"]))
        assert matrix.sum() == VIDEOS and np.trace(matrix) == round(cell["top1"] * VIDEOS)


def test_harness_overhead_table_lists_fastest_deployment_first(report):
    page = parse(report.html)
    rows = page.table_with("median overhead (%)")
    # One row per deployment (format x threads), shortest engine call first.
    assert len(rows) == len(FORMATS) * 2
    assert rows[0]["deployment"] == "t0/stream tflite-fp32 t2"
    assert rows[-1]["deployment"] == "t0/stream tensorflow t1"
    assert {r["median overhead (%)"] for r in rows} == {"2.00"}
    assert {r["cells"] for r in rows} == {"1"}  # latency is measured once per deployment


def test_where_the_time_goes_per_deployment(report):
    page = parse(report.html)
    litert = page.table_with("XNNPACK partitions")
    assert [r["deployment"] for r in litert] == [
        f"t0/stream tflite-{p} t{t}" for p in ("fp16", "fp32", "int8") for t in (1, 2)]
    assert {r["delegated nodes (%)"] for r in litert} == {"90.1"}  # 401 of 445
    assert litert[0]["left on built-in kernels (nodes)"] == "ADD int32 15, CAST int32 15, RESHAPE int32 14"
    ort = page.table_with("share of node time (%)")
    assert [r["deployment"] for r in ort] == ["t0/stream onnx t1", "t0/stream onnx t2"]
    # The TOP_OPS largest, then how many more.
    assert ort[0]["share of node time (%)"] == "Conv 40.0, Mul 20.0, Reshape 10.0, Add 10.0, Clip 10.0, +2 more"
    assert ort[0]["providers (% of node time)"] == "CPUExecutionProvider 100.0"
    # The same facts read out in words, once per deployment (at its highest thread count).
    why = {r["deployment"]: r["what the facts above say"]
           for r in page.table_with("what the facts above say")}
    assert set(why) == {"t0/stream onnx t2"} | {f"t0/stream tflite-{p} t2"
                                                for p in ("fp16", "fp32", "int8")}
    assert why["t0/stream tflite-fp32 t2"].startswith(
        "2 XNNPACK partitions; 44 nodes run on LiteRT's built-in kernels (most: ADD int32, 15)")
    assert why["t0/stream onnx t2"].startswith(
        "0.0 % of node time converts layouts (ReorderInput, ReorderOutput, Transpose), 40.0 % is "
        "convolution")


def test_reduced_precision_table_pairs_each_cell_with_its_fp32_twin(report, run_dir):
    page = parse(report.html)
    rows = page.table_with("top-1 agreement with fp32 (%)")
    # fp16 and int8 (LiteRT) x 2 threads x 4 protocols, less the failed int8 cell; the ONNX
    # and TF cells are fp32 and have no reduced-precision twin.
    assert len(rows) == 2 * 2 * len(PROTOCOLS) - 1
    assert {r["vs"] for r in rows} == {"tflite-fp32"}
    assert {r["format"] for r in rows} == {"tflite-fp16", "tflite-int8"}
    cells = pd.read_parquet(run_dir / "cells.parquet")
    preds = pd.read_parquet(run_dir / "predictions.parquet")

    def cell(fmt, threads, protocol):
        return cells[(cells["kind"] == "accuracy") & (cells["format"] == fmt)
                     & (cells["threads"] == threads) & (cells["protocol"] == protocol)].iloc[0]

    for r in rows:
        mine, fp32 = (cell(f, int(r["threads"]), r["protocol"]) for f in (r["format"], "tflite-fp32"))
        a, b = (preds[preds["cell_id"] == c["cell_id"]].sort_values("video")["pred_index"].to_numpy()
                for c in (mine, fp32))
        assert r["videos"] == str(VIDEOS)
        assert r["top-1 agreement with fp32 (%)"] == f"{100 * np.mean(a == b):.1f}"
        assert r["Δ top-1 (points)"] == f"{100 * (mine['top1'] - fp32['top1']):,.1f}"
    # Latency: fp16 runs 6.6 ms and fp32 3.3 ms per frame at 1 thread (noise of a few %).
    fp16 = [r for r in rows if r["format"] == "tflite-fp16" and r["threads"] == "1"]
    assert all(0.4 < float(r["speedup over fp32 (×)"]) < 0.6 for r in fp16)
    # int8 logits carry noise 3.0 around the reference: some videos flip; fp16 (1e-3) none.
    assert {r["top-1 agreement with fp32 (%)"] for r in fp16} == {"100.0"}
    assert any(r["top-1 agreement with fp32 (%)"] != "100.0" for r in rows if r["format"] == "tflite-int8")


def test_environment_command_and_config_are_reported(report):
    text = report.markdown.read_text()
    assert "movibench matrix run unit.toml" in text
    assert 'formats = ["tensorflow", "onnx"]' in text
    assert "Test CPU" in text and "not installed" in text


def test_regenerating_reproduces_the_same_report(run_dir, report, tmp_path):
    again = build_report(run_dir, tmp_path)
    assert again.markdown.read_text() == report.markdown.read_text()
    assert parse(again.html).tables == parse(report.html).tables


def test_cells_on_two_cpu_models_are_reported_apart(tmp_path):
    """Sections that rank or pool latencies come once per CPU model, each from that machine's
    cells only, and every figure of each part is written and referenced."""
    paths = build_report(make_run(tmp_path / "two", memory=False, cpus={1: "CPU A", 2: "CPU B"}),
                         tmp_path / "out")
    text = paths.markdown.read_text()
    parts = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    for title in ("Best deployment per runtime and precision", "Latency vs accuracy",
                  "Speedup over the TensorFlow reference", "Harness overhead"):
        assert f"{title} — CPU A" in parts and f"{title} — CPU B" in parts and title not in parts
    # The 2-thread deployments (faster) win only on their own machine.
    for cpu, threads in (("CPU A", "t1"), ("CPU B", "t2")):
        best = re.findall(r"^\| \S+ \| \S+ \| t0/stream \S+ (t\d) \|",
                          parts[f"Best deployment per runtime and precision — {cpu}"], re.M)
        assert len(best) == 5 and set(best) == {threads}
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"cpu1_speedup_vs_tensorflow.png", "cpu2_speedup_vs_tensorflow.png"} <= set(names)
    assert all((paths.markdown.parent / n).read_bytes().startswith(PNG_SIGNATURE) for n in names)


def test_missing_pieces_are_omitted_with_a_note(tmp_path):
    run = make_run(tmp_path / "bare", memory=False, traces=False, execution=False, race=False,
                   serving=False)
    paths = build_report(run, tmp_path / "out")
    assert set(paths.omitted) == {"Peak memory and time vs clip length", "Prediction trace of one video",
                                  "Where the time goes", "Side by side in one process",
                                  "Streams per machine"}
    text = paths.markdown.read_text()
    assert "no memory-sweep cells" in text and "no stream cell with a recorded per-step trace" in text
    assert "no latency cell recorded how its runtime runs the artifact" in text
    assert len(paths.images) == 3


def test_validation_table_is_included_when_present(tmp_path):
    run = make_run(tmp_path / "val", memory=False)
    pd.DataFrame([{"format": "onnx", "precision": "fp32", "max_abs": 3.1e-6, "mean_abs": 4e-7,
                   "top1_agreement": 1.0, "passed": True, "tolerance": "max|Δ| ≤ 0.0001"},
                  {"format": "tflite-int8", "precision": "int8", "max_abs": 1.77, "mean_abs": 0.4,
                   "top1_agreement": 0.5, "passed": False, "tolerance": "top-1 agreement ≥ 90%"}]
                 ).to_parquet(run / "validation.parquet")
    rows = parse(build_report(run, tmp_path / "out").html).table_with("max_abs")
    assert [(r["format"], r["max_abs"], r["passed"]) for r in rows] == [
        ("onnx", "3.10e-06", "PASS"), ("tflite-int8", "1.77e+00", "FAIL")]


def test_pareto_front_keeps_only_undominated_points():
    points = pd.DataFrame({"cost": [10, 20, 5, 30, 20, 40], "acc": [0.5, 0.7, 0.5, 0.6, 0.8, 0.8]})
    front = pareto_front(points, "cost", "acc")
    # (5, .5) dominates (10, .5); (20, .8) dominates (20, .7), (30, .6) and (40, .8).
    assert list(points[front].index) == [2, 4]


def test_report_cli_json_and_missing_run(run_dir, tmp_path, capsys, monkeypatch):
    from bench.cli.app import main

    monkeypatch.setattr("sys.argv", ["movibench", "report", str(run_dir), "--out", str(tmp_path), "--json"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["html"]).exists() and len(out["images"]) == 6
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["movibench", "report", "no-such-run"])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2
    assert err == ["error: run directory not found: no-such-run"]


@pytest.mark.parametrize("name", ["default", "default-full"])
def test_committed_reference_report_regenerates_from_its_results(name, tmp_path, monkeypatch):
    """results/NAME/report is exactly what `movibench report` makes of results/NAME."""
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    committed = Path("results") / name  # as the report names it: relative to the checkout
    if not (committed / "cells.parquet").exists():
        pytest.skip(f"no committed reference run in results/{name}")
    build_report(committed, tmp_path)
    assert (tmp_path / "report.md").read_text() == (committed / "report" / "report.md").read_text()
    page = parse(tmp_path / "report.html")
    assert page.tables and page.images


def test_a_race_beside_the_run_gets_its_own_section(tmp_path):
    """`movibench race --run RUN --out RUN/race.csv`: the report shows its ratios per thread
    count, fastest first, and a failed deployment with its reason; without it, says so."""
    import shutil

    from bench.report.sections.race import section_race
    from bench.report.render import render_markdown
    from bench.results.rundir import load_run

    run = tmp_path / "run"
    shutil.copytree("results/default-full", run, ignore=shutil.ignore_patterns("report", "parts"))
    assert section_race(load_run(run)).omitted
    pd.DataFrame([
        {"threads": 2, "label": "t0/stream onnx", "frames_per_call": 1, "calls": 300,
         "call_p50_ms": 8.0, "call_p90_ms": 9.0, "frame_p50_ms": 8.0, "ratio_to_fastest": 2.0,
         "max_abs_diff_to_first": 0.0, "error": ""},
        {"threads": 2, "label": "t0/stream tflite-fp32", "frames_per_call": 1, "calls": 300,
         "call_p50_ms": 4.0, "call_p90_ms": 4.5, "frame_p50_ms": 4.0, "ratio_to_fastest": 1.0,
         "max_abs_diff_to_first": 2e-6, "error": ""},
        {"threads": 2, "label": "t0/stream tflite-int8", "frames_per_call": 1, "calls": 0,
         "call_p50_ms": None, "call_p90_ms": None, "frame_p50_ms": None,
         "ratio_to_fastest": None, "max_abs_diff_to_first": None, "error": "worker crashed"},
    ]).to_csv(run / "race.csv", index=False)
    text = render_markdown("", "", [section_race(load_run(run))])
    rows = [line for line in text.splitlines() if line.startswith("| t0/")]
    assert rows == [
        "| t0/stream tflite-fp32 | 1 | 300 | 4.000 | 4.500 | 4.000 | 1.00 | 2.00e-06 |",
        "| t0/stream onnx | 1 | 300 | 8.000 | 9.000 | 8.000 | 2.00 | 0.00e+00 |",
        "| t0/stream tflite-int8 | 1 | 0 | – | – | failed: worker crashed | – | – |"]


def test_the_serving_bound_comes_from_the_deployments_latency_cell(run_dir):
    from bench.report.analysis import streams_per_machine
    from bench.results.rundir import load_run

    cells = load_run(run_dir).cells.assign(node_cores=2)
    table = streams_per_machine(cells).set_index("format")
    latency = cells[(cells["kind"] == "latency") & (cells["threads"] == 1)].set_index("format")
    for fmt in ("onnx", "tflite-fp32"):
        assert table.loc[fmt, "bound@30"] == int(latency.loc[fmt, "fps"] * 2 // 30)
    assert pd.isna(table.loc["tflite-fp32", "max_streams@15"])


def test_streams_per_machine_at_15_and_30_fps_with_the_p99_curve(report):
    page = parse(report.html)
    rows = page.table_with("streams at 15 fps")
    got = {r["deployment"]: (r["streams at 15 fps"], r["streams at 30 fps"]) for r in rows}
    assert got == {"t0/stream onnx t1": ("5", "3"), "t0/stream tflite-fp32 t1": ("–", "≥ 4")}
    assert {r["machine"] for r in rows} == {"unknown CPU (<NA> cores)"}
    # No cores recorded for these cells: no bound from their latency cells.
    assert {r["bound at 30 fps"] for r in rows} == {"–"}
    assert any(p.name == "serving_p99_vs_streams.png" for p in report.images)
    cells = page.table_with("max streams")
    assert [c["max streams"] for c in cells] == ["5", "3", "4"]
