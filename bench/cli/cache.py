"""`movibench cache ls|verify|prune`: look after the artifact cache.

Exit codes (all three): 0 nothing wrong, 1 a problem found (a damaged entry, or something
prune left in place), 2 bad usage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli.options import EXIT_FAILED, EXIT_OK, JsonOpt, console, non_negative, stdout

app = typer.Typer(help="List, verify and prune the content-addressed artifact cache.",
                  no_args_is_help=True)

CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache", help="Cache folder (default: $MOVIBENCH_CACHE, else ~/.cache/movibench).")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cache")


def open_cache(path: Path | None):
    """The ArtifactCache at `path`; a path that is not a folder is a usage error."""
    from converters.cache import ArtifactCache
    from core.errors import MovibenchError

    cache = ArtifactCache(path)
    if cache.root.exists() and not cache.root.is_dir():
        raise MovibenchError(f"--cache {cache.root} is not a folder")
    return cache


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _iso(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M")


@dataclass
class Row:
    """One line of `ls`/`verify`/`prune` output: an entry or a leftover directory."""

    key: str
    artifact: str
    format: str
    size_mb: float
    status: str  # ok | corrupt | unverified | unchecked (ls) | staging | building | trash
    problem: str = ""
    last_used: str = ""
    path: str = ""
    action: str = ""  # prune: removed | kept | would remove | in use


def _entry_row(check, last_used: float | None) -> Row:
    return Row(check.key, check.artifact, str(check.info.get("format", "")),
               round(check.size_bytes / 2**20, 3), check.status, check.problem,
               _iso(last_used), str(check.directory))


def _leftover_rows(cache) -> list[tuple[Row, object]]:
    """(row, Leftover) for every staging/trash directory."""
    rows = []
    for left in cache.leftovers():
        status = "building" if left.in_use else left.kind
        problem = ("a build is writing it" if left.in_use else
                   "an interrupted build (never served)" if left.kind == "staging" else
                   "an interrupted removal (never served)")
        rows.append((Row(left.key, "", "", 0.0, status, problem, _iso(_mtime(left.path)),
                         str(left.path)), left))
    return rows


def _print(rows: list[Row], title: str, as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        print(json.dumps({**(extra or {}), "entries": [r.__dict__ for r in rows]}, indent=2))
        return
    table = Table(title=title, box=None)
    columns = ["key", "artifact", "MB", "status", "last used", "problem"]
    if any(r.action for r in rows):
        columns.append("action")
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        colour = {"ok": "green", "corrupt": "red", "unverified": "yellow"}.get(r.status, "")
        status = f"[{colour}]{r.status}[/]" if colour else r.status
        cells = [r.key[:12], r.artifact, f"{r.size_mb:.2f}" if r.artifact else "", status,
                 r.last_used, r.problem]
        if "action" in columns:
            cells.append(r.action)
        table.add_row(*cells)
    stdout.print(table)


@app.command("ls")
def ls_cmd(cache_dir: CacheOpt = None, as_json: JsonOpt = False) -> None:
    """List cache entries (without hashing them) and leftover build directories.

    Exit 0; 1 when build.json of an entry is missing or unreadable.
    """
    cache = open_cache(cache_dir)
    rows = []
    for key in cache.keys():
        check = cache.check(key, contents=False)
        if check is not None:
            rows.append(_entry_row(check, _mtime(check.directory)))
    rows += [row for row, _ in _leftover_rows(cache)]
    _print(rows, f"{cache.root}: {sum(bool(r.artifact) for r in rows)} entries", as_json,
           {"cache": str(cache.root)})
    raise typer.Exit(EXIT_FAILED if any(r.status == "corrupt" for r in rows) else EXIT_OK)


@app.command("verify")
def verify_cmd(cache_dir: CacheOpt = None, as_json: JsonOpt = False) -> None:
    """Check every entry's files against the sizes and SHA-256 recorded when it was built.

    Exit 0 when all are intact; 1 when any is damaged or has no checksums (the next export
    of it rebuilds it; `movibench cache prune` removes it now).
    """
    cache = open_cache(cache_dir)
    rows = []
    for key in cache.keys():
        check = cache.check(key)
        if check is not None:
            rows.append(_entry_row(check, _mtime(check.directory)))
    rows += [row for row, _ in _leftover_rows(cache)]
    bad = [r for r in rows if r.status in ("corrupt", "unverified")]
    _print(rows, f"{cache.root}: {len(rows)} checked, {len(bad)} damaged or unverified", as_json,
           {"cache": str(cache.root), "problems": len(bad)})
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


def _prune_action(keep: bool, dry_run: bool, remove) -> str:
    """What prune does to one entry or leftover: keep it, say it would go, or `remove()` it
    (False when another process holds it)."""
    if keep:
        return "kept"
    if dry_run:
        return "would remove"
    return "removed" if remove() else "in use"


@app.command("prune")
def prune_cmd(
    cache_dir: CacheOpt = None,
    unused_days: Annotated[Optional[float], typer.Option(
        "--unused-days", help="Also remove intact entries not used for this many days.",
        callback=non_negative)] = None,
    everything: Annotated[bool, typer.Option(
        "--all", help="Remove every entry (generated datasets stay).")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be removed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove damaged or unverified entries and leftovers of interrupted builds.

    Entries and directories a running build holds are left alone. Exit 0 when nothing that
    should go is left; 1 when something is (in use, not removable, or --dry-run).
    """
    cache = open_cache(cache_dir)
    now = time.time()
    rows = []
    for key in cache.keys():
        check = cache.check(key)
        if check is None:
            continue
        last_used = _mtime(check.directory)
        row = _entry_row(check, last_used)
        stale = unused_days is not None and last_used is not None and \
            now - last_used > unused_days * 86400
        keep = check.ok and not (everything or stale)
        row.action = _prune_action(keep, dry_run, lambda: cache.prune_key(key))
        rows.append(row)
    for row, left in _leftover_rows(cache):
        row.action = _prune_action(left.in_use, dry_run, lambda: cache.prune_leftover(left))
        rows.append(row)
    left_over = [r for r in rows if r.action in ("would remove", "in use")]
    removed = sum(r.action == "removed" for r in rows)
    freed = sum(r.size_mb for r in rows if r.action == "removed")
    _print(rows, f"{cache.root}: removed {removed} ({freed:.1f} MB)"
                 + (f", {len(left_over)} left" if left_over else ""), as_json,
           {"cache": str(cache.root), "removed": removed, "left": len(left_over)})
    if not as_json and not rows:
        console.print(f"nothing in {cache.root}")
    raise typer.Exit(EXIT_FAILED if left_over else EXIT_OK)
