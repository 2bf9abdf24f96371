"""The log file tailer: identity, rotation, truncation, checkpoints, line framing, tracebacks (real files, fake clock)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suture.sidecar.sources.checkpoints import Checkpoints, Resume
from suture.sidecar.sources.files import FileSource


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(tmp_path: Path, clock: Clock) -> Iterator[Any]:
    """Build FileSources over tmp_path/state/checkpoints.json; all are closed at the end."""
    made: list[FileSource] = []

    def build(pattern: Path | str, **kw: Any) -> FileSource:
        kw.setdefault("checkpoints", Checkpoints(tmp_path / "state" / "checkpoints.json"))
        kw.setdefault("clock", clock)
        src = FileSource("app", str(pattern), **kw)
        made.append(src)
        return src

    yield build
    for src in made:
        src.close()


def texts(lines: list[Any]) -> list[str]:
    return [line.text for line in lines]


def append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def restart(src: FileSource, state: Path, make: Any, pattern: Path | str, **kw: Any) -> FileSource:
    """Commit-less shutdown of ``src`` and a fresh FileSource over a reloaded checkpoint file."""
    src.close()
    return make(pattern, checkpoints=Checkpoints(state), **kw)


def test_appends_are_followed(tmp_path: Path, make: Any) -> None:
    """Lines appended after the first poll come out in order, with source, path and time."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    assert src.poll() == []
    append(log, "one\ntwo\n")
    append(log, "three\n")
    lines = src.poll()
    assert texts(lines) == ["one", "two", "three"]
    assert {(ln.source, ln.path, ln.at, ln.partial, ln.truncated) for ln in lines} == {
        ("app", str(log), 1000.0, False, False)}
    assert src.poll() == []
    assert src.stats["lines"] == 3 and src.stats["bytes"] == 14 and src.stats["files"] == 1


def test_first_start_begins_at_end(tmp_path: Path, make: Any) -> None:
    """With a fresh checkpoint store, history in files present at the first poll is not replayed."""
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    src = make(log)
    assert src.poll() == []
    append(log, "new\n")
    assert texts(src.poll()) == ["new"]


def test_first_start_keeps_unfinished_last_line(tmp_path: Path, make: Any) -> None:
    """Starting at the end means at the start of an unfinished last line, not inside it."""
    log = tmp_path / "app.log"
    log.write_text("old\nhalf a ")
    src = make(log)
    assert src.poll() == []
    append(log, "line\n")
    assert texts(src.poll()) == ["half a line"]


def test_file_created_after_start_is_read_from_beginning(tmp_path: Path, make: Any) -> None:
    """A file that appears after the first poll is read whole."""
    src = make(tmp_path / "*.log")
    assert src.poll() == []
    (tmp_path / "late.log").write_text("a\nb\n")
    assert texts(src.poll()) == ["a", "b"]


def test_start_at_end_false_replays_existing_files(tmp_path: Path, make: Any) -> None:
    """start_at_end=False reads files present at the first poll from the beginning."""
    log = tmp_path / "app.log"
    log.write_text("old\n")
    assert texts(make(log, start_at_end=False).poll()) == ["old"]


def test_resume_from_checkpoint_after_restart(tmp_path: Path, make: Any) -> None:
    """A restart resumes exactly at the committed offset: nothing repeated, nothing lost."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("")
    first = make(log)
    first.poll()
    append(log, "a\nb\n")
    assert texts(first.poll()) == ["a", "b"]
    first.commit()
    first._checkpoints.save()
    append(log, "c\nd\n")  # written while suture is down
    second = restart(first, state, make, log)
    assert not second._checkpoints.fresh
    assert texts(second.poll()) == ["c", "d"]


def test_restart_without_commit_rereads(tmp_path: Path, make: Any) -> None:
    """Lines returned but never committed are read again after a restart (never skipped)."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("")
    first = make(log)
    first.poll()
    first.commit()
    first._checkpoints.save()
    append(log, "a\nb\n")
    assert texts(first.poll()) == ["a", "b"]  # crash here: no commit
    second = restart(first, state, make, log)
    assert texts(second.poll()) == ["a", "b"]


def test_unfinished_line_is_not_committed(tmp_path: Path, make: Any) -> None:
    """The checkpoint stops before an unfinished line, so after a restart it comes whole."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("")
    first = make(log)
    first.poll()
    append(log, "done\nhal")
    assert texts(first.poll()) == ["done"]
    first.commit()
    first._checkpoints.save()
    append(log, "f\n")
    second = restart(first, state, make, log)
    assert texts(second.poll()) == ["half"]


def test_checkpoints_saved_only_when_changed(tmp_path: Path, make: Any) -> None:
    """save() writes the file (mode 0600) when a checkpoint moved, and not otherwise."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("x\n")
    src = make(log)
    src.poll()
    src.commit()
    src._checkpoints.save()
    assert state.stat().st_mode & 0o777 == 0o600
    state.write_text("sentinel")  # a second save with no change must not rewrite it
    src.commit()
    src._checkpoints.save()
    assert state.read_text() == "sentinel"


def test_rename_create_rotation(tmp_path: Path, make: Any, clock: Clock) -> None:
    """app.log -> app.log.1 plus a new app.log: the old file is drained, the new one read from 0."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    with open(log, "ab", buffering=0) as writer:
        writer.write(b"before\n")
        assert texts(src.poll()) == ["before"]
        log.rename(tmp_path / "app.log.1")
        writer.write(b"after rename\n")  # the writer has not reopened yet
        log.write_text("new 1\n")
        assert texts(src.poll()) == ["after rename", "new 1"]
        writer.write(b"late\n")
        clock.now += 1
        assert texts(src.poll()) == ["late"]
    clock.now += 3
    assert src.poll() == []
    assert src.stats["rotations"] == 1 and src.stats["files"] == 1  # the old fd is closed
    append(log, "new 2\n")
    assert texts(src.poll()) == ["new 2"]


def test_closed_file_found_again_is_not_reread(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A file closed after leaving the glob resumes where it stopped if it matches again."""
    log, aside = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "a\n")
    assert texts(src.poll()) == ["a"]
    log.rename(aside)
    clock.now += 3
    src.poll()
    clock.now += 3
    assert src.poll() == [] and src.stats["files"] == 0
    append(aside, "b\n")
    aside.rename(log)
    assert texts(src.poll()) == ["b"]


def test_rotated_while_stopped_is_drained_from_checkpoint(tmp_path: Path, make: Any) -> None:
    """A file rotated away while suture was down is found by inode and read from its checkpoint."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("a\n")
    src = make(log)
    src.poll()
    src.commit()
    src._checkpoints.save()
    append(log, "b\n")
    src.close()
    log.rename(tmp_path / "app.log.1")
    log.write_text("c\n")
    again = make(log, checkpoints=Checkpoints(state))
    assert texts(again.poll()) == ["b", "c"]


def test_copytruncate(tmp_path: Path, make: Any) -> None:
    """A file truncated below the read offset is counted and read again from 0."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "first line\nsecond line\n")
    assert len(src.poll()) == 2
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "x\n")
    assert texts(src.poll()) == ["x"]
    assert src.stats["truncations"] == 1


def test_copytruncate_with_same_first_bytes(tmp_path: Path, make: Any) -> None:
    """A truncation that keeps the fingerprinted bytes (a fixed banner) is caught by the size."""
    log = tmp_path / "app.log"
    banner = "=" * 300 + "\n"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, banner + "a long line before rotation\n")
    assert len(src.poll()) == 2
    log.write_text(banner + "b\n")  # open(..., "w") truncates in place, same inode
    assert texts(src.poll()) == ["=" * 300, "b"]
    assert src.stats["truncations"] == 1


def test_truncate_then_grow_past_old_offset(tmp_path: Path, make: Any) -> None:
    """Truncated and rewritten past the old offset before a poll: detected by the fingerprint."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "aaaa\n")
    assert texts(src.poll()) == ["aaaa"]
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "bbbb\ncccc\n")
    assert texts(src.poll()) == ["bbbb", "cccc"]
    assert src.stats["truncations"] == 1


def test_deleted_open_file_is_drained_then_closed(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A deleted file is read to its end through the open fd, then closed."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    with open(log, "ab", buffering=0) as writer:
        writer.write(b"a\n")
        log.unlink()
        writer.write(b"b\n")
        assert texts(src.poll()) == ["a", "b"]
    clock.now += 3
    assert src.poll() == []
    assert src.stats["deleted"] == 1 and src.stats["files"] == 0


def test_inode_reuse_does_not_inherit_offset(tmp_path: Path, make: Any) -> None:
    """A new file on a checkpointed (dev, ino) with another fingerprint is read from 0."""
    old, new, state = tmp_path / "old.log", tmp_path / "new.log", tmp_path / "state" / "checkpoints.json"
    old.write_text("")
    src = make(tmp_path / "*.log")
    src.poll()
    append(old, "old line 1\nold line 2\n")
    src.poll()
    src.commit()
    src.close()
    old.unlink()
    new.write_text("fresh 1\nfresh 2\nfresh 3\n")  # longer than the old offset
    st = new.stat()
    key = f"{st.st_dev}:{st.st_ino}"
    cps = src._checkpoints
    old_mark = next(iter(cps.entries("app").values()))
    if key not in cps.entries("app"):  # the filesystem did not reuse the inode: simulate it
        cps.put("app", key, old_mark)
    cps.save()
    again = make(tmp_path / "*.log", checkpoints=Checkpoints(state))
    assert texts(again.poll()) == ["fresh 1", "fresh 2", "fresh 3"]


def test_doublestar_glob_picks_up_new_subfolder(tmp_path: Path, make: Any) -> None:
    """`**` matches a file created later in a new nested folder; watch_dirs is the static prefix."""
    root = tmp_path / "logs"
    root.mkdir()
    src = make(f"{root}/**/*.log")
    assert src.watch_dirs() == [root]
    assert src.poll() == []
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "svc.log").write_text("deep\n")
    lines = src.poll()
    assert texts(lines) == ["deep"] and lines[0].path == str(root / "a" / "b" / "svc.log")


def test_watch_dirs_plain_path_and_missing_folder(tmp_path: Path, make: Any) -> None:
    """A plain path watches its folder; a folder that does not exist is not returned."""
    assert make(tmp_path / "app.log").watch_dirs() == [tmp_path]
    assert make(tmp_path / "nope" / "*.log").watch_dirs() == []


def test_partial_line_flushed_after_timeout(tmp_path: Path, make: Any, clock: Clock) -> None:
    """An unfinished line waits, is flushed partial after the timeout, and its rest comes alone."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log, partial_flush_after=5.0)
    src.poll()
    append(log, "half")
    assert src.poll() == []
    clock.now += 4.9
    assert src.poll() == []
    clock.now += 0.2
    [flushed] = src.poll()
    assert (flushed.text, flushed.partial) == ("half", True)
    append(log, " rest\nnext\n")
    lines = src.poll()
    assert [(ln.text, ln.partial) for ln in lines] == [(" rest", False), ("next", False)]
    assert src.stats["partial_flushes"] == 1


def test_newline_right_after_partial_flush_adds_no_line(tmp_path: Path, make: Any, clock: Clock) -> None:
    """When only the newline follows a flushed partial line, no empty line is emitted."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "whole\r")
    src.poll()
    clock.now += 6
    assert texts(src.poll()) == ["whole"]
    append(log, "\n\nafter\n")
    assert texts(src.poll()) == ["", "after"]


def test_partial_flush_survives_restart(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A committed partial flush is not repeated after a restart; only the rest is read."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "head")
    src.poll()
    clock.now += 6
    assert texts(src.poll()) == ["head"]
    src.commit()
    src._checkpoints.save()
    append(log, "\ntail\n")
    again = restart(src, state, make, log)
    assert texts(again.poll()) == ["tail"]


def test_long_line_truncated_and_following_lines_read(tmp_path: Path, make: Any) -> None:
    """A 1 MiB line is cut to the 64 KiB cap, flagged and counted; the next lines still come."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log, max_line_bytes=64 * 1024)
    src.poll()
    append(log, b"x" * (1 << 20) + b"\nnext\n")
    lines = src.poll()
    assert [(len(ln.text), ln.truncated) for ln in lines] == [(64 * 1024, True), (4, False)]
    assert lines[1].text == "next" and src.stats["truncated"] == 1


def test_line_without_newline_keeps_memory_bounded(tmp_path: Path, make: Any) -> None:
    """Megabytes with no newline never buffer more than the line cap."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log, max_line_bytes=1024)
    src.poll()
    append(log, b"y" * (3 << 20))
    assert src.poll() == []
    assert max(len(tf.buf) for tf in src._files.values()) == 1024
    append(log, b"\nok\n")
    assert [(len(ln.text), ln.truncated) for ln in src.poll()] == [(1024, True), (2, False)]


def test_truncation_cuts_at_utf8_boundary(tmp_path: Path, make: Any) -> None:
    """A cut inside a multi-byte character drops the half character instead of mangling it."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log, max_line_bytes=8)
    src.poll()
    append(log, "abcdef€uro\n")  # € is 3 bytes at 6..8: the cap at 8 splits it
    [line] = src.poll()
    assert (line.text, line.truncated) == ("abcdef", True)
    assert src.stats["decode_errors"] == 0


def test_poll_cap_continues_next_poll(tmp_path: Path, make: Any) -> None:
    """A backlog larger than the per-poll caps comes over several polls, nothing lost or repeated."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log, max_poll_lines=3, max_poll_bytes=64, chunk_bytes=16)
    src.poll()
    append(log, "".join(f"line {i:03}\n" for i in range(20)))
    got: list[str] = []
    for _ in range(20):
        got += texts(src.poll())
        if not src.backlog:
            break
    assert got == [f"line {i:03}" for i in range(20)]


def test_invalid_utf8_replaced_and_counted(tmp_path: Path, make: Any) -> None:
    """Bytes that are not UTF-8 become U+FFFD and count as decode errors."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, b"bad \xff\xfe byte\ngood\n")
    assert texts(src.poll()) == ["bad \ufffd\ufffd byte", "good"]
    assert src.stats["decode_errors"] == 1


def test_nul_bytes_pass_through(tmp_path: Path, make: Any) -> None:
    """NUL bytes (e.g. a preallocated log) are kept in the text and do not break framing."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, b"\x00\x00a\x00b\n\x00\n")
    assert texts(src.poll()) == ["\x00\x00a\x00b", "\x00"]


def test_crlf_stripped(tmp_path: Path, make: Any) -> None:
    """One trailing \\r is removed from CRLF lines; an inner \\r is kept."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, b"dos\r\na\rb\r\n")
    assert texts(src.poll()) == ["dos", "a\rb"]


def test_bom_at_start_stripped(tmp_path: Path, make: Any) -> None:
    """A UTF-8 BOM at offset 0 is removed; the same bytes later in the file are kept."""
    src = make(tmp_path / "*.log")
    src.poll()
    (tmp_path / "bom.log").write_bytes(b"\xef\xbb\xbffirst\n\xef\xbb\xbfsecond\n")
    assert texts(src.poll()) == ["first", "\ufeffsecond"]


def test_multibyte_char_split_across_reads(tmp_path: Path, make: Any) -> None:
    """Characters split across writes and 7-byte reads decode intact."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log, chunk_bytes=7)
    src.poll()
    data = "héllo wörld €uro 😀\n".encode()
    cut = data.index("€".encode()) + 1
    append(log, data[:cut])
    assert src.poll() == []
    append(log, data[cut:])
    assert texts(src.poll()) == ["héllo wörld €uro 😀"]
    assert src.stats["decode_errors"] == 0


def test_corrupt_checkpoint_file_is_set_aside(tmp_path: Path, make: Any) -> None:
    """A corrupt checkpoint file is renamed *.corrupt, counted, and the store starts fresh."""
    state = tmp_path / "state" / "checkpoints.json"
    state.parent.mkdir()
    state.write_bytes(b'{"version": 1, "sources": {"app": {"1:2": {"fp": 3}}')
    cps = Checkpoints(state)
    assert cps.fresh and cps.corrupt == 1
    assert not state.exists() and (tmp_path / "state" / "checkpoints.json.corrupt").exists()
    log = tmp_path / "app.log"
    log.write_text("old\n")
    src = make(log, checkpoints=cps)
    assert src.poll() == []
    append(log, "new\n")
    assert texts(src.poll()) == ["new"]
    src.commit()
    cps.save()
    assert json.loads(state.read_text())["version"] == 1


def test_checkpoint_of_vanished_file_is_dropped(tmp_path: Path, make: Any) -> None:
    """Entries for files gone while stopped are removed at the next commit."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    cps = Checkpoints(state)
    cps.put("app", "1:999999999", Resume("0" * 64, 0, 5, False, str(tmp_path / "gone.log")))
    cps.save()
    log.write_text("")
    src = make(log, checkpoints=Checkpoints(state))
    src.poll()
    src.commit()
    assert list(src._checkpoints.entries("app")) == [f"{log.stat().st_dev}:{log.stat().st_ino}"]


def test_relative_pattern_rejected(make: Any) -> None:
    """A relative pattern is a configuration error, not a cwd-dependent tail."""
    with pytest.raises(ValueError, match="absolute"):
        make("logs/*.log")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_close_closes_every_fd(tmp_path: Path, make: Any) -> None:
    """close() releases every open file descriptor."""
    for i in range(3):
        (tmp_path / f"{i}.log").write_text("x\n")
    src = make(tmp_path / "*.log")
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    src.close()
    src.poll()
    assert fds() == before + 3
    src.close()
    assert fds() == before and src._files == {}


# -- regressions: bugs found while building the torture suite (tests/test_tailer_torture.py) --


def test_empty_store_is_saved_so_restart_is_not_fresh(tmp_path: Path, make: Any) -> None:
    """A first start with no log files yet still writes the store: files that appear before a restart are read whole."""
    state = tmp_path / "state" / "checkpoints.json"
    src = make(tmp_path / "*.log")
    assert src.poll() == []
    src.commit()
    src._checkpoints.save()
    assert state.exists()
    (tmp_path / "app.log").write_text("written while suture was down\n")
    again = restart(src, state, make, tmp_path / "*.log")
    assert texts(again.poll()) == ["written while suture was down"]


def test_same_size_rewrite_with_same_mtime_is_detected(tmp_path: Path, make: Any) -> None:
    """A rewrite to the same size within the mtime granularity is still caught by the fingerprint."""
    log = tmp_path / "app.log"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "aaaa\n")
    assert texts(src.poll()) == ["aaaa"]
    mtime = log.stat().st_mtime_ns
    log.write_text("bbbb\n")  # same size; a coarse-timestamp filesystem leaves mtime as it was
    os.utime(log, ns=(mtime, mtime))
    assert texts(src.poll()) == ["bbbb"]
    assert src.stats["truncations"] == 1


def test_rewritten_while_stopped_is_counted(tmp_path: Path, make: Any) -> None:
    """A checkpointed file whose first bytes changed while stopped is read from 0 and counted as a truncation."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("")
    src = make(log)
    src.poll()
    append(log, "old 1\n")
    src.poll()
    src.commit()
    src._checkpoints.save()
    src.close()
    append(log, "old 2, never read\n")
    with open(log, "r+b") as fh:  # copytruncate while suture is down, then the app writes on
        fh.truncate(0)
    append(log, "new 1 is a longer line than the old offset\n")
    again = make(log, checkpoints=Checkpoints(state))
    assert texts(again.poll()) == ["new 1 is a longer line than the old offset"]
    assert again.stats["truncations"] == 1


# -- Python tracebacks: one observation --

SIMPLE = """\
Traceback (most recent call last):
  File "/srv/app/main.py", line 25, in <module>
    handle(request)
  File "/srv/app/main.py", line 12, in handle
    return parse(body)
ValueError: bad value"""

CARETS = """\
Traceback (most recent call last):
  File "/srv/app/main.py", line 25, in <module>
    try: fn()
         ^^^^
  File "/srv/app/main.py", line 2, in f
    def f(d): return d["a"]["b"] + 1
                     ~~~~~~~~~~~~^~~
TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'"""

CHAINED = """\
Traceback (most recent call last):
  File "/srv/app/db.py", line 5, in load
    {{}}["x"]
    ~~^^^^^
KeyError: 'x'

{sentence}

Traceback (most recent call last):
  File "/srv/app/db.py", line 7, in load
    raise app.errors.LoadError("bad value")
app.errors.LoadError: bad value"""

GROUP = """\
  + Exception Group Traceback (most recent call last):
  |   File "/srv/app/main.py", line 14, in run
  |     raise ExceptionGroup("eg", [ValueError(1), ExceptionGroup("inner", [TypeError(2)])])
  | ExceptionGroup: eg (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | ValueError: 1
    +---------------- 2 ----------------
    | ExceptionGroup: inner (1 sub-exception)
    +-+---------------- 1 ----------------
      | TypeError: 2
      +------------------------------------"""

BARE = """\
Traceback (most recent call last):
  File "/srv/app/main.py", line 24, in <genexpr>
    yield table[key]
KeyError"""


def start(make: Any, log: Path, **kw: Any) -> FileSource:
    log.write_text("")
    src = make(log, **kw)
    assert src.poll() == []
    return src


@pytest.mark.parametrize("block", [SIMPLE, CARETS, BARE], ids=["simple", "carets", "bare"])
def test_traceback_is_one_line(tmp_path: Path, make: Any, block: str) -> None:
    """A traceback (frames, source, 3.11 caret lines, a bare exception line) is one Line; the next line is its own."""
    log = tmp_path / "app.log"
    src = start(make, log)
    append(log, block + "\nINFO next\n")
    assert texts(src.poll()) == [block, "INFO next"]
    assert src.stats["tracebacks"] == 1 and src.stats["lines"] == 2


@pytest.mark.parametrize("sentence", [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
], ids=["context", "cause"])
def test_chained_traceback_is_one_line(tmp_path: Path, make: Any, sentence: str) -> None:
    """Both kinds of chained traceback, blank lines and sentence included, are one Line."""
    log = tmp_path / "app.log"
    src = start(make, log)
    block = CHAINED.format(sentence=sentence)
    append(log, block + "\nINFO next\n")
    assert texts(src.poll()) == [block, "INFO next"]


def test_exception_group_traceback_is_one_line(tmp_path: Path, make: Any) -> None:
    """An ExceptionGroup traceback, nested groups included, is one Line."""
    log = tmp_path / "app.log"
    src = start(make, log)
    append(log, GROUP + "\nINFO next\n")
    assert texts(src.poll()) == [GROUP, "INFO next"]


def test_group_chained_after_plain_traceback_is_one_line(tmp_path: Path, make: Any) -> None:
    """A plain traceback chained to an exception group's traceback is one Line."""
    log = tmp_path / "app.log"
    src = start(make, log)
    block = SIMPLE + "\n\nDuring handling of the above exception, another exception occurred:\n\n" + GROUP
    append(log, block + "\nINFO next\n")
    assert texts(src.poll()) == [block, "INFO next"]


def test_log_line_before_traceback_stays_separate(tmp_path: Path, make: Any) -> None:
    """The log record that introduces a traceback stays its own Line; the traceback starts at its header."""
    log = tmp_path / "app.log"
    src = start(make, log)
    append(log, "2026-11-25 10:00:01,123 ERROR app: boom\n" + SIMPLE + "\n2026-11-25 10:00:02,000 INFO ok\n")
    assert texts(src.poll()) == ["2026-11-25 10:00:01,123 ERROR app: boom", SIMPLE, "2026-11-25 10:00:02,000 INFO ok"]


def test_blank_line_after_traceback_without_chain_is_its_own(tmp_path: Path, make: Any) -> None:
    """A blank line after the exception line that no chaining sentence follows is not glued to the traceback."""
    log = tmp_path / "app.log"
    src = start(make, log)
    append(log, SIMPLE + "\n\nINFO next\n")
    assert texts(src.poll()) == [SIMPLE, "", "INFO next"]


def test_back_to_back_tracebacks_are_two_lines(tmp_path: Path, make: Any) -> None:
    """A header right after an exception line starts a second traceback, not a chain."""
    log = tmp_path / "app.log"
    src = start(make, log)
    append(log, SIMPLE + "\n" + BARE + "\nINFO next\n")
    assert texts(src.poll()) == [SIMPLE, BARE, "INFO next"]


def test_traceback_at_end_of_file_waits_for_flush_timeout(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A complete traceback with nothing after it is held (a chain may follow) until multiline_flush_after."""
    log = tmp_path / "app.log"
    src = start(make, log, multiline_flush_after=0.2)
    append(log, SIMPLE + "\n")
    assert src.poll() == []
    clock.now += 0.1
    assert src.poll() == []
    clock.now += 0.1
    [line] = src.poll()
    assert (line.text, line.at, line.partial) == (SIMPLE, 1000.0, False)


def test_chain_arriving_after_a_poll_is_joined(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A chained traceback written after a poll saw the first one complete is still the same Line."""
    log = tmp_path / "app.log"
    src = start(make, log)
    first, _, rest = CHAINED.format(sentence="During handling of the above exception, "
                                             "another exception occurred:").partition("\n\n")
    append(log, first + "\n")
    assert src.poll() == []
    clock.now += 0.1
    append(log, "\n" + rest + "\nINFO next\n")
    assert texts(src.poll()) == [first + "\n\n" + rest, "INFO next"]


def test_traceback_split_across_polls_is_one_line(tmp_path: Path, make: Any, clock: Clock) -> None:
    """Half a traceback, then a poll, then the rest: one Line, nothing emitted early."""
    log = tmp_path / "app.log"
    src = start(make, log)
    lines = CARETS.split("\n")
    append(log, "\n".join(lines[:4]) + "\n" + lines[4][:10])
    assert src.poll() == []
    clock.now += 1
    assert src.poll() == []
    append(log, lines[4][10:] + "\n" + "\n".join(lines[5:]) + "\nINFO next\n")
    assert texts(src.poll()) == [CARETS, "INFO next"]


def test_unfinished_traceback_flushed_after_partial_timeout(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A traceback whose writer stopped before its exception line is emitted after partial_flush_after."""
    log = tmp_path / "app.log"
    src = start(make, log, partial_flush_after=5.0)
    head = "\n".join(SIMPLE.split("\n")[:3])
    append(log, head + "\n")
    assert src.poll() == []
    clock.now += 4.9
    assert src.poll() == []
    clock.now += 0.1
    assert texts(src.poll()) == [head]


def test_crash_with_held_traceback_rereads_it_whole(tmp_path: Path, make: Any, clock: Clock) -> None:
    """Lines of an unfinished traceback are not committed: after a crash it is read whole, once."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    src = start(make, log)
    lines = SIMPLE.split("\n")
    append(log, "before\n" + "\n".join(lines[:3]) + "\n")
    assert texts(src.poll()) == ["before"]
    src.commit()
    src._checkpoints.save()
    append(log, "\n".join(lines[3:]) + "\nafter\n")
    assert texts(src.poll()) == [SIMPLE, "after"]  # crash here: never committed
    again = restart(src, state, make, log)
    assert texts(again.poll()) == [SIMPLE, "after"]


def test_rotated_file_holding_a_traceback_is_not_closed_early(tmp_path: Path, make: Any, clock: Clock) -> None:
    """A file rotated away in the middle of a traceback stays open until the traceback is flushed."""
    log = tmp_path / "app.log"
    src = start(make, log, rotate_grace=2.0, partial_flush_after=5.0)
    head = "\n".join(SIMPLE.split("\n")[:3])
    append(log, head + "\n")
    assert src.poll() == []
    log.rename(tmp_path / "app.log.1")
    assert src.poll() == [] and src.stats["rotations"] == 1
    clock.now += 3  # past rotate_grace, not yet past partial_flush_after
    assert src.poll() == [] and src.stats["files"] == 1
    clock.now += 3
    assert texts(src.poll()) == [head]


def test_chaining_sentence_cut_by_the_line_cap_still_chains(tmp_path: Path, make: Any) -> None:
    """With a line cap shorter than the chaining sentence, its cut head still joins the chain."""
    log = tmp_path / "app.log"
    src = start(make, log, max_line_bytes=40)
    block = "Traceback (most recent call last):\n  File x\nKeyError\n\n" + \
        "During handling of the above exception, another exception occurred:\n\n" + \
        "Traceback (most recent call last):\n  File y\nValueError"
    append(log, block + "\nINFO next\n")
    [joined, nxt] = src.poll()  # one observation (cut at the cap), not the sentence and blanks as lines
    assert (joined.text, joined.truncated, nxt.text) == (block[:40], True, "INFO next")


def test_traceback_cap_truncates_and_counts(tmp_path: Path, make: Any) -> None:
    """Past max_traceback_lines the traceback is emitted truncated and counted; the rest of it is dropped."""
    log = tmp_path / "app.log"
    src = start(make, log, max_traceback_lines=3)
    append(log, SIMPLE + "\nINFO next\n")
    lines = src.poll()
    assert [(ln.text, ln.truncated) for ln in lines] == [
        ("\n".join(SIMPLE.split("\n")[:3]), True), ("INFO next", False)]
    assert src.stats["tracebacks"] == 1 and src.stats["tracebacks_truncated"] == 1


def test_traceback_byte_cap_bounds_joined_text(tmp_path: Path, make: Any) -> None:
    """The joined text never exceeds max_line_bytes, however many lines a traceback has."""
    log = tmp_path / "app.log"
    src = start(make, log, max_line_bytes=100, max_traceback_lines=10_000)
    frames = "".join(f'  File "/srv/app/deep.py", line {i}, in f\n    f(n - 1)\n' for i in range(5000))
    append(log, "Traceback (most recent call last):\n" + frames + "RecursionError: too deep\nINFO next\n")
    first, nxt = src.poll()
    assert len(first.text.encode()) == 100 and first.truncated and nxt.text == "INFO next"
    assert first.text.startswith("Traceback (most recent call last):\n  File ")
    held = next(iter(src._files.values())).joiner
    assert held is not None and held._texts == []  # nothing of the dropped rest is kept


def test_cut_traceback_rest_still_dropped_after_restart(tmp_path: Path, make: Any) -> None:
    """A restart in the middle of a capped traceback keeps dropping its rest instead of emitting it as lines."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    src = start(make, log, max_traceback_lines=3)
    lines = SIMPLE.split("\n")
    append(log, "\n".join(lines[:4]) + "\n")
    assert [ln.truncated for ln in src.poll()] == [True]
    src.commit()
    src._checkpoints.save()
    assert next(iter(json.loads(state.read_text())["sources"]["app"].values()))["skip"] == "tb"
    append(log, "\n".join(lines[4:]) + "\nINFO next\n")
    again = restart(src, state, make, log, max_traceback_lines=3)
    assert texts(again.poll()) == ["INFO next"]


def test_truncation_emits_held_traceback_first(tmp_path: Path, make: Any) -> None:
    """A traceback held when the file is truncated was read: it is emitted, then the new contents."""
    log = tmp_path / "app.log"
    src = start(make, log)
    append(log, SIMPLE + "\n")
    assert src.poll() == []
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "new\n")
    assert texts(src.poll()) == [SIMPLE, "new"]


def test_multiline_none_keeps_lines_separate(tmp_path: Path, make: Any) -> None:
    """multiline=None turns joining off: every line of a traceback is its own Line."""
    log = tmp_path / "app.log"
    src = start(make, log, multiline=None)
    append(log, SIMPLE + "\n")
    assert texts(src.poll()) == SIMPLE.split("\n")


def test_unknown_multiline_rejected(make: Any, tmp_path: Path) -> None:
    """An unknown multiline kind is a configuration error."""
    with pytest.raises(ValueError, match="multiline"):
        make(tmp_path / "app.log", multiline="java")


def test_empty_checkpoint_never_claims_a_file_by_inode_alone(tmp_path: Path, make: Any) -> None:
    """A file checkpointed while empty is not looked for by inode: a copy on its reused inode is not read."""
    log, state = tmp_path / "app.log", tmp_path / "state" / "checkpoints.json"
    log.write_text("")
    src = make(log)
    src.poll()
    src.commit()
    src.close()
    log.unlink()
    copy = tmp_path / "app.log.1"  # e.g. a copytruncate copy of another file, out of the glob
    copy.write_text("copied 1\ncopied 2\n")
    st = copy.stat()
    cps = src._checkpoints
    [old_mark] = cps.entries("app").values()
    assert old_mark.fp_len == 0
    cps.put("app", f"{st.st_dev}:{st.st_ino}", old_mark)  # the filesystem may or may not have reused the inode
    cps.save()
    log.write_text("")
    again = make(log, checkpoints=Checkpoints(state))
    assert again.poll() == []
    assert again.stats["files"] == 1 and again.stats["rotations"] == 0


def _expand(items):
    """Lines and Blocks -> (text, partial, truncated) per observation."""
    from suture.sidecar.sources.base import Block

    out = []
    for item in items:
        if isinstance(item, Block):
            out.extend((t, False, False) for t in item.data.decode("utf-8").split("\n")[:-1])
        else:
            out.append((item.text, item.partial, item.truncated))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_block_fast_path_yields_exactly_what_the_line_path_yields(tmp_path, seed):
    """Same file, written in random pieces: blocks=True and blocks=False observe the same, in the same order."""
    import random

    rnd = random.Random(seed)
    pieces = []
    for i in range(400):
        kind = rnd.random()
        if kind < 0.05:
            pieces.append("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    f()\nValueError: bad\n")
        elif kind < 0.08:
            pieces.append(f"windows line {i}\r\n")
        elif kind < 0.10:
            pieces.append("L" * 300 + f" long {i}\n")
        elif kind < 0.12:
            pieces.append(f"bad \udcff utf8 {i}\n".encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        else:
            pieces.append(f"2026-11-26T00:00:00Z INFO line {i} " + "x" * rnd.randint(0, 80) + "\n")
    results = {}
    for blocks in (False, True):
        folder = tmp_path / f"b{blocks}"
        folder.mkdir()
        log = folder / "app.log"
        log.write_bytes(b"")
        src = FileSource("app", str(folder / "*.log"), checkpoints=Checkpoints(folder / "cp.json"), start_at_end=False,
                         max_line_bytes=256, blocks=blocks, chunk_bytes=rnd.choice([64, 4096, 65536]),
                         clock=lambda: 0.0)
        seen = []
        rnd2 = random.Random(seed)
        with open(log, "ab") as fh:
            for piece in pieces:
                fh.write(piece.encode())
                if rnd2.random() < 0.2:
                    fh.flush()
                    seen += _expand(src.poll())
                    src.commit()
        for _ in range(3):
            seen += _expand(src.poll())
            src.commit()
        src.close()
        results[blocks] = seen
    assert results[True] == results[False]
