"""The log file tailer: identity, rotation, truncation, checkpoints, line framing (real files, fake clock)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suture.sidecar.sources.files import Checkpoints, FileSource, Mark


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
    cps.put("app", "1:999999999", Mark("0" * 64, 0, 5, False, str(tmp_path / "gone.log")))
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
