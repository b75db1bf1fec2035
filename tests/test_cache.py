"""The artifact cache never serves a damaged file, builds each key once, and survives crashes.

The cache is exercised on real files with a stand-in build (bytes written to the staging
folder), so the checks here take milliseconds; the export tests at the end run the real ONNX
exporter through `movibench export`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from converters.cache import (
    BUILD_INFO, CORRUPT, OK, UNVERIFIED, ArtifactCache, CacheIntegrityWarning, sha256_file,
)
from converters.filelock import FileLock
from core.errors import ArtifactError
from core.manifest import manifest_path_for

KEY = "ab" + "0" * 62
NAME = "model.onnx"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def build(cache: ArtifactCache, key: str = KEY, payload: bytes = PAYLOAD):
    """One build through the same slot export_model uses: artifact + manifest, committed."""
    with cache.build_slot(key, NAME) as slot:
        if slot.entry is not None:
            return slot.entry, slot
        (slot.staging / NAME).write_bytes(payload)
        manifest_path_for(slot.staging / NAME).write_text('{"states": []}\n')
        slot.commit({"format": "onnx", "build_seconds": 0.1})
    return slot.entry, slot


def invoke(*args):
    """The CLI in-process; `.code` is what `movibench` would exit with."""
    result = CliRunner().invoke(app, list(args), standalone_mode=False, catch_exceptions=True)
    exc = result.exception
    result.code = getattr(exc, "exit_code", None) if exc is not None else (result.return_value or 0)
    return result


@pytest.fixture
def cache(tmp_path):
    return ArtifactCache(tmp_path / "cache")


def test_a_build_records_checksums_and_a_hit_verifies_them(cache):
    entry, slot = build(cache)
    info = json.loads((entry.directory / BUILD_INFO).read_text())
    assert info["artifact"] == NAME
    assert info["files"][NAME] == {"sha256": sha256_file(entry.artifact), "bytes": len(PAYLOAD)}
    assert set(info["files"]) == {NAME, NAME + ".manifest.json"}
    assert cache.lookup(KEY, NAME) == entry and cache.check(KEY).status == OK
    assert not slot.replaced and not cache.leftovers()


@pytest.mark.parametrize("damage, problem", [
    (lambda e: e.artifact.write_bytes(PAYLOAD[: len(PAYLOAD) // 2]), "524288 bytes, 1048576 were recorded"),
    (lambda e: e.artifact.write_bytes(PAYLOAD[:-1] + b"\x00"), "does not match the SHA-256"),
    (lambda e: manifest_path_for(e.artifact).unlink(), "manifest.json is missing"),
    (lambda e: (e.directory / BUILD_INFO).write_text("{trunc"), "build.json is unreadable"),
    (lambda e: (e.directory / BUILD_INFO).unlink(), "build.json is missing"),
])
def test_a_damaged_entry_is_never_served_and_is_rebuilt_with_a_warning(cache, damage, problem):
    entry, _ = build(cache)
    damage(entry)
    assert cache.lookup(KEY, NAME) is None
    check = cache.check(KEY, NAME)
    assert check.status == CORRUPT and problem in check.problem
    with pytest.warns(CacheIntegrityWarning, match="failed its check"):
        rebuilt, slot = build(cache)
    assert problem in slot.replaced
    assert rebuilt.artifact.read_bytes() == PAYLOAD and cache.lookup(KEY, NAME) is not None
    # The damaged copy went through the trash and is gone: nothing left to serve or prune.
    assert not cache.leftovers()


def test_an_entry_without_checksums_is_rebuilt(cache):
    entry, _ = build(cache)
    info = json.loads((entry.directory / BUILD_INFO).read_text())
    del info["files"]
    (entry.directory / BUILD_INFO).write_text(json.dumps(info))
    assert cache.check(KEY).status == UNVERIFIED and cache.lookup(KEY, NAME) is None
    with pytest.warns(CacheIntegrityWarning, match="no checksums"):
        _, slot = build(cache)
    assert slot.replaced and cache.check(KEY).status == OK


def test_an_interrupted_build_leaves_nothing_servable(cache):
    with pytest.raises(KeyboardInterrupt):
        with cache.build_slot(KEY, NAME) as slot:
            (slot.staging / NAME).write_bytes(PAYLOAD[:1000])
            raise KeyboardInterrupt
    assert cache.lookup(KEY, NAME) is None and not cache.leftovers()
    assert not cache.key_busy(KEY)


BUILDER = textwrap.dedent("""
    import os, signal, sys, time
    from converters.cache import ArtifactCache
    from core.manifest import manifest_path_for
    root, key, mode = sys.argv[1:4]
    cache = ArtifactCache(root, on_wait=lambda m: print("WAIT", m, flush=True))
    with cache.build_slot(key, "model.onnx") as slot:
        if slot.entry is not None:
            print("SERVED", slot.entry.artifact, flush=True)
            sys.exit(0)
        (slot.staging / "model.onnx").write_bytes(b"x" * 500_000)
        if mode == "kill":  # dies mid-build, as a SIGKILL or the OOM killer would do it
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.5)
        manifest_path_for(slot.staging / "model.onnx").write_text("{}")
        slot.commit({"format": "onnx"})
    print("BUILT", slot.entry.artifact, flush=True)
""")


def _builder(cache: ArtifactCache, mode: str = "build") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(cache.root), KEY, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_build_killed_mid_write_leaves_only_a_staging_folder_that_prune_removes(cache):
    proc = _builder(cache, "kill")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert cache.lookup(KEY, NAME) is None and cache.check(KEY) is None
    (left,) = cache.leftovers()
    assert left.kind == "staging" and left.key == KEY and not left.in_use
    listed = invoke("cache", "ls", "--cache", str(cache.root), "--json")
    assert listed.code == 0 and json.loads(listed.stdout)["entries"][0]["status"] == "staging"
    pruned = invoke("cache", "prune", "--cache", str(cache.root), "--json")
    assert pruned.code == 0 and json.loads(pruned.stdout)["removed"] == 1
    assert not cache.leftovers()
    # The kernel dropped the dead builder's lock: the next build goes ahead at once.
    entry, slot = build(cache)
    assert not slot.waited and entry.artifact.read_bytes() == PAYLOAD


def test_two_processes_building_one_key_build_it_once(cache):
    """Both builders start while the key's lock is held, so both must queue on it."""
    lock = FileLock(cache.lock_path(KEY))
    lock.acquire()
    procs = [_builder(cache) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().startswith("WAIT waiting for another process building")
    finally:
        lock.release()
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert sorted(out[-2] for out in outputs) == ["BUILT", "SERVED"]
    assert {out[-1] for out in outputs} == {str(cache.entry_dir(KEY) / NAME)}
    assert cache.check(KEY).status == OK and not cache.leftovers()



IMPORTER = textwrap.dedent("""
    import pickle, sys
    from converters.cache import ArtifactCache
    root, key, packed = sys.argv[1:4]
    cache = ArtifactCache(root, on_wait=lambda m: print("WAIT", m, flush=True))
    print("READY", flush=True)
    sys.stdin.readline()
    entry = cache.import_entry(key, "model.onnx", pickle.loads(open(packed, "rb").read()))
    print("PUBLISHED", entry.artifact, flush=True)
""")


def test_two_nodes_publishing_one_key_at_once_leave_one_valid_entry(cache, tmp_path):
    """What the Ray launcher does when two cells on one node fetch the artifact an export made
    on another: both import the packed entry under the key's build lock, one publishes."""
    import pickle

    source = ArtifactCache(tmp_path / "elsewhere")
    entry, _ = build(source)
    packed = tmp_path / "packed.pkl"
    packed.write_bytes(pickle.dumps(ArtifactCache.pack(entry.directory)))
    lock = FileLock(cache.lock_path(KEY))
    lock.acquire()  # both start importing while the key is locked, so both must queue
    procs = [subprocess.Popen([sys.executable, "-c", IMPORTER, str(cache.root), KEY, str(packed)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().startswith("READY")
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout.readline().startswith("WAIT waiting for another process building")
    finally:
        lock.release()
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert {out[-1] for out in outputs} == {str(cache.entry_dir(KEY) / NAME)}
    assert cache.check(KEY).status == OK and not cache.leftovers()
    assert cache.lookup(KEY, NAME).artifact.read_bytes() == PAYLOAD


def test_an_imported_entry_is_checked_against_its_record(cache, tmp_path):
    entry, _ = build(ArtifactCache(tmp_path / "elsewhere"))
    files = ArtifactCache.pack(entry.directory)
    damaged = dict(files, **{NAME: files[NAME][:-1] + b"?"})
    with pytest.raises(ArtifactError, match=f"damaged: {NAME} does not match the SHA-256"):
        cache.import_entry(KEY, NAME, damaged)
    without_record = {k: v for k, v in files.items() if k != BUILD_INFO}
    with pytest.raises(ArtifactError, match=f"no readable {BUILD_INFO}"):
        cache.import_entry(KEY, NAME, without_record)
    assert cache.check(KEY) is None and not cache.leftovers()
    assert cache.import_entry(KEY, NAME, files).artifact.read_bytes() == PAYLOAD


def test_cache_cli_verify_and_prune(cache, tmp_path):
    build(cache)
    other = "cd" + "1" * 62
    build(cache, other)
    assert invoke("cache", "verify", "--cache", str(cache.root)).code == 0
    (cache.entry_dir(other) / NAME).write_bytes(b"truncated")
    verify = invoke("cache", "verify", "--cache", str(cache.root), "--json")
    report = json.loads(verify.stdout)
    assert verify.code == 1 and report["problems"] == 1
    by_key = {e["key"]: e for e in report["entries"]}
    assert by_key[other]["status"] == "corrupt" and "9 bytes" in by_key[other]["problem"]
    assert by_key[KEY]["status"] == "ok" and by_key[KEY]["size_mb"] == pytest.approx(1.0, abs=0.01)
    dry = invoke("cache", "prune", "--cache", str(cache.root), "--dry-run", "--json")
    assert dry.code == 1 and cache.entry_dir(other).exists()
    pruned = invoke("cache", "prune", "--cache", str(cache.root), "--json")
    assert pruned.code == 0 and json.loads(pruned.stdout)["removed"] == 1
    assert cache.keys() == [KEY]
    # Intact entries go only when asked: by age of last use, or all of them.
    old = time.time() - 3 * 86400
    os.utime(cache.entry_dir(KEY), (old, old))
    assert json.loads(invoke("cache", "prune", "--cache", str(cache.root), "--unused-days", "5",
                             "--json").stdout)["removed"] == 0
    assert json.loads(invoke("cache", "prune", "--cache", str(cache.root), "--unused-days", "2",
                             "--json").stdout)["removed"] == 1
    assert cache.keys() == []
    # Generated datasets live under the same root and are not entries.
    (cache.root / "datasets" / "synth-x").mkdir(parents=True)
    assert invoke("cache", "prune", "--cache", str(cache.root), "--all").code == 0
    assert (cache.root / "datasets" / "synth-x").is_dir()
    listed = invoke("cache", "ls", "--cache", str(cache.root / "nowhere"), "--json")
    assert listed.code == 0 and json.loads(listed.stdout)["entries"] == []


@pytest.mark.parametrize("args, message", [
    (["prune", "--unused-days", "-1"], "--unused-days"),
    (["verify", "--cache", "{file}"], "is not a folder"),
    (["verify", "--colour"], "No such option"),
])
def test_cache_cli_bad_usage_is_exit_2_in_one_line(tmp_path, args, message):
    afile = tmp_path / "afile"
    afile.write_text("x")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "bench", "cache",
                             *[a.format(file=afile) for a in args]],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    if "not a folder" in message:
        assert len(result.stderr.strip().splitlines()) == 1


# -- the real exporter -------------------------------------------------------------------------

T0_ARGS = ["--model", "t0", "--variant", "stream", "--resolution", "64", "--classes", "5"]


@pytest.mark.slow
def test_a_truncated_cached_artifact_is_rebuilt_and_the_export_says_so(t0_stream_onnx, tmp_path,
                                                                       monkeypatch):
    """An artifact in a cache of this test's own is cut in half (a full disk, an interrupted
    copy); the next export rebuilds it instead of serving it. The artifact is the optimized
    ONNX, which is rebuilt from the plain export's file (the session's entry, copied in):
    the same cache logic as any format, without a second conversion."""
    root = tmp_path / "cache"
    entry = Path(t0_stream_onnx.path).parent
    shutil.copytree(entry, root / entry.parent.name / entry.name)
    monkeypatch.setenv("MOVIBENCH_CACHE", str(root))
    hit = invoke("export", *T0_ARGS, "--formats", "onnx", "--json")
    assert hit.code == 0 and json.loads(hit.stdout)["artifacts"][0]["cached"]
    built = invoke("export", *T0_ARGS, "--formats", "onnx+opt", "--json")
    assert built.code == 0, built.output

    artifact = Path(json.loads(built.stdout)["artifacts"][0]["path"])
    good = artifact.read_bytes()
    artifact.write_bytes(good[: len(good) // 2])
    result = invoke("export", *T0_ARGS, "--formats", "onnx+opt", "--out", str(tmp_path / "out"),
                    "--json")
    assert result.code == 0, result.output
    row = json.loads(result.stdout)["artifacts"][0]
    assert not row["cached"] and "were recorded at build" in row["cache_rebuilt"]
    assert row["details"]["cache_rebuilt"] == row["cache_rebuilt"]
    assert "failed its check" in result.stderr and "rebuilt it" in result.stderr
    # A new build (not necessarily byte-identical to the first), recorded and intact.
    assert ArtifactCache(root).check(row["key"]).status == OK
    from runtimes.loader import open_session

    with open_session(tmp_path / "out" / artifact.name) as session:
        assert session.manifest.resolution == 64
    # A matrix run's export job (the worker's run_export) reports the rebuild too.
    from bench.jobs.deployment import Deployment
    from bench.jobs.job import ExportJob
    from bench.launchers.worker import run_export
    from core.zoo import ModelConfig

    artifact.write_bytes(artifact.read_bytes()[:1000])
    exported = run_export(ExportJob(Deployment(ModelConfig("t0", "stream", 64, 5).resolved(),
                                               "onnx+opt")))
    assert Path(exported["artifact"]) == artifact and not exported["cached"]
    assert "were recorded at build" in exported["cache_rebuilt"]


@pytest.mark.slow
def test_two_export_processes_of_one_key_build_once(tmp_path):
    """Two `movibench export` of the same artifact at once, into one fresh cache: one builds,
    the other waits for it and is served its build; both --out copies load."""
    root = tmp_path / "cache"
    args = ["--model", "t0", "--variant", "stream", "--resolution", "32", "--classes", "2",
            "--formats", "onnx", "--json"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MOVIBENCH_CACHE=str(root))
    # Hold the key's lock until both processes queue on it, so the overlap is certain.
    from converters.cache import library_versions
    from converters.export import ExportOptions, artifact_key, resolve_frames
    from core.formats import get_format
    from core.zoo import ModelConfig

    config = ModelConfig("t0", "stream", 32, 2).resolved()
    spec = get_format("onnx")
    frames = resolve_frames(config, spec, None, ExportOptions())
    key, _ = artifact_key(config, spec, None, frames, ExportOptions(), library_versions())
    lock = FileLock(ArtifactCache(root).lock_path(key))
    lock.acquire()
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "export", *args,
                               "--out", str(tmp_path / f"out{i}")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        for proc in procs:
            line = ""
            while "waiting for another process" not in line:
                line = proc.stderr.readline()
                assert line or proc.poll() is None, "export ended before it waited"
    finally:
        lock.release()
    results = [proc.communicate(timeout=600) for proc in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-500:] for r in results]
    rows = [json.loads(out)["artifacts"][0] for out, _ in results]
    assert sorted(r["cached"] for r in rows) == [False, True]
    assert rows[0]["key"] == rows[1]["key"] == key
    copies = [Path(r["path"]) for r in rows]
    assert copies[0].read_bytes() == copies[1].read_bytes()
    assert ArtifactCache(root).check(key).status == OK
    from runtimes.loader import open_session

    for copy in copies:
        with open_session(copy) as session:
            assert session.manifest.num_classes == 2
