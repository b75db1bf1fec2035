"""The report's figures, drawn with matplotlib's object API onto Agg canvases (no display, no
pyplot global state). Each function takes plain tables, writes one PNG and returns its path;
what to plot is decided in bench.report.sections, how it looks is decided here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator

DPI = 110
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    # No 'Software' metadata: the same run gives byte-identical images whatever the version.
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _style_of(values) -> dict:
    """A stable value -> index map (sorted), so a protocol keeps its colour across figures."""
    return {v: i for i, v in enumerate(sorted(set(values)))}


def pareto_plot(points: pd.DataFrame, front: pd.DataFrame, path: Path, title: str) -> Path:
    """Top-1 vs model time per video; colour = protocol, marker = format; the Pareto front
    (nothing both cheaper and more accurate) as a step line. Columns: video_ms, top1,
    protocol, format."""
    fig = _figure(8.5, 5.2)
    ax = fig.add_subplot()
    colors, markers = _style_of(points["protocol"]), _style_of(points["format"])
    for (protocol, fmt), group in points.groupby(["protocol", "format"], sort=True):
        ax.scatter(group["video_ms"], 100 * group["top1"], s=55, alpha=0.85,
                   color=COLORS[colors[protocol] % len(COLORS)],
                   marker=MARKERS[markers[fmt] % len(MARKERS)], edgecolors="black", linewidths=0.5)
    front = front.sort_values("video_ms")
    ax.step(front["video_ms"], 100 * front["top1"], where="post", color="black", lw=1.2,
            ls="--", zorder=0)
    ax.set_xlabel("model time per video (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    if points["video_ms"].max() > 10 * points["video_ms"].min() > 0:
        ax.set_xscale("log")
        # Plain numbers (20, 50, 100), not 2×10¹; minor ticks only at 2 and 5 per decade, so
        # their labels never run into each other.
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter("{x:g}")
        ax.tick_params(axis="x", which="both", labelsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    handles = [Line2D([], [], color=COLORS[i % len(COLORS)], marker="o", ls="", label=p)
               for p, i in colors.items()]
    handles += [Line2D([], [], color="gray", marker=MARKERS[i % len(MARKERS)], ls="", label=f)
                for f, i in markers.items()]
    handles.append(Line2D([], [], color="black", ls="--", label="Pareto front"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              title="protocol / format", title_fontsize=8, frameon=False)
    return _save(fig, path)


def memory_plot(sweep: pd.DataFrame, path: Path, title: str) -> Path:
    """Peak RSS over idle and time vs clip length, one line per series. Columns: series,
    sweep_mode, clip_frames, peak_rss_delta_mb, sweep_s."""
    fig = _figure(10, 4.2)
    mem_ax, time_ax = fig.subplots(1, 2)
    colors = _style_of(sweep["series"])
    for series, group in sweep.groupby("series", sort=True):
        group = group.sort_values("clip_frames")
        style = dict(color=COLORS[colors[series] % len(COLORS)], marker="o",
                     ls="-" if group["sweep_mode"].iloc[0] == "stream" else "--", label=series)
        mem_ax.plot(group["clip_frames"], group["peak_rss_delta_mb"], **style)
        time_ax.plot(group["clip_frames"], group["sweep_s"], **style)
    for ax, ylabel in ((mem_ax, "peak RSS over idle baseline (MB)"), (time_ax, "time for the clip (s)")):
        ax.set_xlabel("clip length (frames)")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sweep["clip_frames"].unique()))
        ax.get_xaxis().set_major_formatter("{x:g}")
        ax.grid(True, alpha=0.3)
    mem_ax.set_title("peak memory vs clip length")
    time_ax.set_title("time vs clip length")
    mem_ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def trace_plot(frames: np.ndarray, probs: pd.DataFrame, windows: list[tuple[str, list[int], int]],
               total: int, true_class: str | None, path: Path, title: str) -> Path:
    """Stream probabilities after each step (one line per column of `probs`, indexed like
    `frames`) above the multi-clip windows: (protocol, subclip starts, subclip length)."""
    rows = max(len(windows), 1)
    fig = _figure(9, 4.2 + 0.35 * rows)
    trace_ax, win_ax = fig.subplots(2, 1, sharex=True,
                                    gridspec_kw={"height_ratios": [4, 0.6 + 0.45 * rows]})
    for i, name in enumerate(probs.columns):
        is_true = name == true_class
        trace_ax.plot(frames, probs[name], color=COLORS[i % len(COLORS)], lw=2.4 if is_true else 1.4,
                      label=f"{name} (true class)" if is_true else name)
    trace_ax.set_ylim(-0.02, 1.02)
    trace_ax.set_ylabel("softmax probability")
    trace_ax.set_title(title)
    trace_ax.grid(True, alpha=0.3)
    trace_ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                    title="class", title_fontsize=8)
    for row, (label, starts, length) in enumerate(windows):
        color = COLORS[(row + len(probs.columns)) % len(COLORS)]
        for k, start in enumerate(starts):
            # Alternate heights so overlapping subclips stay distinguishable.
            y = row + (0.1 if k % 2 else -0.1)
            win_ax.broken_barh([(start + 0.5, length)], (y - 0.15, 0.3), facecolors=color,
                               edgecolors="black", linewidth=0.5, alpha=0.8)
    win_ax.set_yticks(range(len(windows)), [w[0] for w in windows], fontsize=8)
    win_ax.set_ylim(-0.6, rows - 0.4)
    win_ax.set_xlim(0, total + 1)
    win_ax.set_xlabel("frame (1 = first frame of the video)")
    if not windows:
        win_ax.text(0.5, 0.5, "no multi-clip protocol in this run", ha="center", va="center",
                    transform=win_ax.transAxes, fontsize=8)
    win_ax.set_title("multi-clip subclips (frames each covers) → that protocol's prediction", fontsize=9)
    return _save(fig, path)


def speedup_plot(speedups: pd.DataFrame, path: Path, title: str) -> Path:
    """Grouped bars of speedup over TensorFlow; x = format, one bar per series. Columns:
    format, series, speedup."""
    fig = _figure(8.5, 4.5)
    ax = fig.add_subplot()
    formats = sorted(speedups["format"].unique())
    series = sorted(speedups["series"].unique())
    width = 0.8 / len(series)
    for j, name in enumerate(series):
        sub = speedups[speedups["series"] == name].set_index("format")
        xs = [i + (j - (len(series) - 1) / 2) * width for i, f in enumerate(formats) if f in sub.index]
        ys = [float(sub.at[f, "speedup"]) for f in formats if f in sub.index]
        bars = ax.bar(xs, ys, width * 0.95, color=COLORS[j % len(COLORS)], label=name)
        ax.bar_label(bars, labels=[f"{y:.2f}×" for y in ys], fontsize=7, padding=2)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="TensorFlow (1×)")
    ax.set_xticks(range(len(formats)), formats)
    ax.set_xlabel("format")
    ax.set_ylabel("speedup over TensorFlow (×, per-frame p50)")
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def confusion_plot(matrices: list[tuple[str, np.ndarray]], classes: list[str], path: Path,
                   title: str) -> Path:
    """One heatmap per (protocol, confusion matrix [true, predicted] of counts), side by side:
    colour = share of the true class's videos (each row sums to 1), text = the count."""
    n = len(matrices)
    side = max(2.6, 0.45 * len(classes) + 1.4)
    fig = _figure(side * n + 0.8, side + 1.4)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, (protocol, counts) in zip(axes, matrices):
        totals = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        if len(classes) <= 20:  # beyond that the digits no longer fit their squares
            for (i, j), count in np.ndenumerate(counts):
                ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, rotation=90, fontsize=7)
        ax.set_yticks(ticks, classes if ax is axes[0] else [], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(protocol, fontsize=9)
    axes[0].set_ylabel("true class")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the true class's videos")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def serving_plot(curves: pd.DataFrame, path: Path, title: str) -> Path:
    """p99 latency (arrival to logits) vs stream count, one panel per frame rate with its
    deadline (one frame period) dashed, one line per cell; a hollow marker is a count that did
    not hold. Columns: serve_fps, label, streams, p99_ms, holds."""
    rates = sorted(curves["serve_fps"].unique())
    fig = _figure(6.0 * len(rates), 4.4)
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    colors = _style_of(curves["label"])
    for ax, fps in zip(axes, rates):
        for label, group in curves[curves["serve_fps"] == fps].groupby("label", sort=True):
            group = group.sort_values("streams")
            color = COLORS[colors[label] % len(COLORS)]
            ax.plot(group["streams"], group["p99_ms"], color=color, lw=1.2, label=label)
            held = group["holds"].astype(bool)
            ax.scatter(group["streams"][held], group["p99_ms"][held], color=color, s=22)
            ax.scatter(group["streams"][~held], group["p99_ms"][~held], facecolors="white",
                       edgecolors=color, s=40, linewidths=1.5, zorder=3)
        ax.axhline(1000.0 / fps, color="black", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter("{x:g}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter("{x:g}")
        ax.set_xlabel("streams")
        ax.set_ylabel("p99 latency, arrival to logits (ms)")
        ax.set_title(f"{fps:g} fps (deadline {1000.0 / fps:.1f} ms, dashed)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
