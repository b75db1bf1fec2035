"""Run directories: one live run per --out, a clean handover after a killed run, and every
cell exactly once however the runs before were stopped (SIGKILL, SIGTERM, Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from bench.matrix.config import expand, load_config, parse_config
from bench.matrix.run import run_matrix
from bench.matrix.runlock import LOCK_NAME, RunDirLockedError, RunLock
from bench.results.store import ResultsStore, load_cells
from core.errors import MovibenchError
from tiny_matrix import tiny_matrix


def _default_sigint() -> None:
    # As from a terminal. A child that inherits an ignored SIGINT gets no KeyboardInterrupt
    # handler from Python; step 4 below ran to exit 0 twice under pytest-xdist without this
    # (the ignoring ancestor was not identified).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *args],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kwargs)


def wait_gone(pid: int, timeout: float = 30) -> bool:
    """True once `pid` has exited (a zombie awaiting its parent counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


TINY = {"name": "locked", "models": [{"model": "t0", "resolution": 32, "classes": 2}]}


def test_a_held_run_directory_is_refused_naming_the_run(tmp_path):
    out = tmp_path / "run"
    holder = RunLock(out)
    assert holder.acquire("movibench matrix run x") == ""
    try:
        with pytest.raises(RunDirLockedError) as err:
            run_matrix(parse_config(TINY), out, cells=[], command="second")
        message = str(err.value)
        assert "\n" not in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert holder.holder().started in message
        # The lock is per process and file: nothing of the refused run was written.
        assert not ResultsStore(out).exists() and not (out / "run.json").exists()
    finally:
        holder.release()
    assert not (out / LOCK_NAME).exists()
    # Released cleanly: the next run neither waits nor "takes over" anything.
    notes = []
    run_matrix(parse_config(TINY), out, cells=[], command="third", on_note=notes.append)
    assert notes == []


def test_the_cli_refuses_a_busy_out_with_one_line_exit_2(tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "tiny.toml"
    config.write_text('[[models]]\nmodel = "t0"\nresolution = 32\nclasses = 2\n')
    hold = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from bench.matrix.runlock import RunLock
        RunLock({str(out)!r}).acquire("movibench matrix run other.toml")
        print("held", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held"
        refused = cli("matrix", "run", str(config), "--out", str(out))
        _, stderr = refused.communicate(timeout=120)
        assert refused.returncode == 2
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:")
        assert f"pid {hold.pid} on {socket.gethostname()}" in lines[0] and "started" in lines[0]
    finally:
        hold.kill()
        hold.wait()


def test_a_dead_runs_lock_is_taken_over_and_its_leftover_worker_stopped(tmp_path):
    """The holder records a worker (in its own session, like a cell) and is SIGKILLed."""
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, subprocess, sys
        from bench.matrix.runlock import RunLock
        lock = RunLock({str(out)!r})
        lock.acquire("movibench matrix run x")
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                  start_new_session=True)
        lock.set_workers([worker.pid])
        print(worker.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)], stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    holder.wait(timeout=60)
    try:
        assert holder.returncode == -signal.SIGKILL and psutil.pid_exists(worker)
        stale = json.loads((out / LOCK_NAME).read_text())
        assert stale["pid"] == holder.pid and stale["workers"][0][0] == worker
        lock = RunLock(out)
        note = lock.acquire("resume")
        assert f"pid {holder.pid}" in note and "no longer running" in note
        assert "stopped 1 worker(s)" in note
        assert wait_gone(worker)
        lock.release()
    finally:
        if not wait_gone(worker, timeout=0):
            os.killpg(worker, signal.SIGKILL)


def test_a_worker_pid_reused_by_another_process_is_left_alone(tmp_path):
    out = tmp_path / "run"
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=True)
    try:
        # A stale description naming the bystander's pid with another start time.
        (out).mkdir()
        (out / LOCK_NAME).write_text(json.dumps({
            "pid": 1, "host": socket.gethostname(), "started": "then", "command": "",
            "workers": [[bystander.pid, psutil.Process(bystander.pid).create_time() - 100]]}))
        lock = RunLock(out)
        note = lock.acquire()
        assert "took over" in note and "stopped" not in note
        assert bystander.poll() is None
        lock.release()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_holder_killed_while_rewriting_its_description_is_still_known(tmp_path):
    """A run killed between writing its new description and cutting the old one's tail
    leaves both in the file; the next run reads the new one and takes over with a note."""
    out = tmp_path / "run"
    out.mkdir()
    old = {"pid": 1, "host": socket.gethostname(), "started": "then", "command": "",
           "workers": [[1, 0.0], [2, 0.0]]}
    new = {**old, "started": "now", "workers": []}
    old_text, new_text = json.dumps(old) + "\n", json.dumps(new) + "\n"
    assert len(new_text) < len(old_text)
    (out / LOCK_NAME).write_text(new_text + old_text[len(new_text):])
    lock = RunLock(out)
    assert lock.holder().started == "now"
    note = lock.acquire()
    assert "took over" in note and "started now" in note
    lock.release()


def test_an_out_that_is_a_file_is_a_usage_error(tmp_path):
    out = tmp_path / "afile"
    out.write_text("x")
    with pytest.raises(MovibenchError, match="is not a folder"):
        run_matrix(parse_config(TINY), out, cells=[])


def test_a_consolidation_killed_midway_and_a_cell_killed_after_its_tables(tmp_path):
    """What a kill during the store's writes leaves, and that the next run cleans it up."""
    store = ResultsStore(tmp_path / "run")
    store.init({}, "")
    base = {"run_id": "r", "kind": "eval", "model": "t0", "status": "ok"}
    store.append({**base, "cell_id": "a"}, [1.0, 2.0])
    # Killed mid-consolidation: temporary files half written, never renamed into place.
    (store.root / ".cells.parquet.999.tmp").write_bytes(b"PAR1\x00half")
    (store.parts / ".b.parquet.999.tmp").write_bytes(b"PAR1")
    # Killed after cell b's samples, before its row (the commit point): b is not done...
    store.append({**base, "cell_id": "b"}, [5.0])
    (store.parts / "b.parquet").unlink()
    assert store.done_cells() == {"a"}
    # ...and its re-run fails without samples: the old attempt's samples must not survive.
    store.append({**base, "cell_id": "b", "status": "failed"}, None)
    cells = store.consolidate()
    assert sorted(cells["cell_id"]) == ["a", "b"]
    samples = pd.read_parquet(store.root / "samples.parquet")
    assert sorted(samples["cell_id"]) == ["a", "a"]


# -- the real thing: a tiny matrix run through the CLI, stopped four ways ----------------------

KILL_MATRIX = tiny_matrix("kill", ["onnx"], ["stream", "full-clip"], threads=(1, 2), resolution=64,
                          classes=5, frames=16, seed=3, timeout_s=300)


def worker_jobs(run: subprocess.Popen) -> dict[int, dict]:
    """The run's live worker processes and the job each was given."""
    jobs = {}
    try:
        children = psutil.Process(run.pid).children()
    except psutil.NoSuchProcess:
        return jobs
    for child in children:
        try:
            # A worker is `python -m <worker module> JOB.json RESULT.json`.
            job = next((arg for arg in child.cmdline() if arg.endswith("job.json")), None)
            if job:
                jobs[child.pid] = json.loads(Path(job).read_text())
        except (psutil.Error, OSError, ValueError):
            continue  # ended meanwhile
    return jobs


def stop_when(run: subprocess.Popen, sig: int, wanted, timeout: float = 300) -> int:
    """Send `sig` to the run once a worker whose job satisfies `wanted` is alive; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, job in worker_jobs(run).items():
            if wanted(job):
                run.send_signal(sig)
                return pid
        assert run.poll() is None, run.communicate()[1][-2000:]
        time.sleep(0.02)
    raise AssertionError("the run never reached the point to stop it at")


def is_export(job: dict) -> bool:
    # A run's exports reach a worker as a batch (one process per model: ExportBatch).
    return job.get("job") in ("export", "exports")


def cell_labelled(text: str):
    return lambda job: not is_export(job) and job.get("label", "").endswith(text)


def test_resume_after_sigkill_sigterm_and_ctrl_c_runs_every_cell_once(tmp_path, t0_stream_onnx):
    config_path = tmp_path / "kill.toml"
    config_path.write_text(KILL_MATRIX)
    out = tmp_path / "run"
    planned = expand(load_config(config_path))
    expected = {c.cell_id for c in planned}
    # Per thread count: one latency cell, then the two protocols' accuracy cells.
    assert [c.label.split(" ", 2)[2] for c in planned] == [
        "t1 latency@1f", "t1 stream", "t1 full-clip", "t2 latency@1f", "t2 stream", "t2 full-clip"]
    run_args = ["matrix", "run", str(config_path), "--out", str(out), "--export-jobs", "1"]

    # 1. SIGKILL while the artifact export runs.
    run = cli(*run_args)
    stop_when(run, signal.SIGKILL, is_export)
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
    assert ResultsStore(out).done_cells() == set()

    # 2. SIGKILL during the fifth cell, which hangs (MOVIBENCH_FAULT): its worker outlives
    #    the run, as a real worker does.
    run = cli(*run_args, "--resume", env={"MOVIBENCH_FAULT": "hang:t2 stream"})
    orphan = stop_when(run, signal.SIGKILL, cell_labelled("t2 stream"))
    run.communicate(timeout=60)
    assert len(ResultsStore(out).done_cells()) == 4 and psutil.pid_exists(orphan)

    # 3. SIGTERM during the last cell: the run takes over the dead run's lock, stops its
    #    leftover worker first, then stops its own worker and keeps the finished cells.
    #    The cell hangs, so it cannot finish (and be rightly kept) before the signal is
    #    handled: a run that handled SIGTERM only once its cell ended would hang here.
    hang_last = {"MOVIBENCH_FAULT": "hang:t2 full-clip"}
    run = cli(*run_args, "--resume", env=hang_last)
    own = stop_when(run, signal.SIGTERM, cell_labelled("t2 full-clip"))
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr[-2000:]
    assert "took over" in stderr and "stopped 1 worker(s)" in stderr
    assert wait_gone(orphan) and wait_gone(own)
    assert len(ResultsStore(out).done_cells()) == 5
    assert not (out / LOCK_NAME).exists()

    # 4. Ctrl-C (SIGINT) during the last cell (hung again, for the same reason).
    run = cli(*run_args, "--resume", env=hang_last)
    own = stop_when(run, signal.SIGINT, cell_labelled("t2 full-clip"))
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-2000:]
    assert "took over" not in stderr and wait_gone(own)

    # 5. The last resume finishes: every cell exactly once, all ok.
    run = cli(*run_args, "--resume", "--json")
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-2000:]
    assert json.loads(stdout) == {"out": str(out), "cells": 6, "failed": 0}
    cells = load_cells(out)
    assert sorted(cells["cell_id"]) == sorted(expected)
    assert (cells["status"] == "ok").all()
    assert len(pd.read_csv(out / "cells.csv")) == 6
    assert sorted(p.name for p in (out / "parts").glob("*.parquet") if p.name.count(".") == 1) == \
        sorted(f"{c}.parquet" for c in expected)
    latency = {c.cell_id for c in planned if c.kind == "latency"}
    assert set(pd.read_parquet(out / "samples.parquet")["cell_id"]) == latency
