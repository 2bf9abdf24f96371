"""The folder watcher on real folders: what counts as a change, and what it survives."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from suture.sidecar.watch import Pacer, Watcher

SOON = 5.0  # seconds a change may take to be reported on a loaded machine
QUIET = 0.3  # seconds of nothing that mean nothing was reported


@pytest.fixture
def watch() -> Iterator[type[Watcher]]:
    """Build watchers with inotify (skipped where there is none); every one is closed at the end."""
    made: list[Watcher] = []

    class Closing(Watcher):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)
            if not self.native:
                pytest.skip("no inotify here")

    yield Closing
    for watcher in made:
        watcher.close()


def settle(watcher: Watcher) -> None:
    """Read what is queued, so the next True is about what happens next."""
    while watcher.wait(QUIET):
        pass


def reported(watcher: Watcher) -> bool:
    """wait() with no timeout, so only an event can end it with True; closed if none came within SOON."""
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(watcher.wait(None)), daemon=True)
    waiter.start()
    waiter.join(SOON)
    if waiter.is_alive():
        watcher.close()
        waiter.join(SOON)
    return got == [True]


def append(path: Path, text: str = "a line\n") -> None:
    with open(path, "a") as fh:
        fh.write(text)


def test_append_is_a_change(tmp_path: Path, watch: type[Watcher]) -> None:
    """A line appended to a file in the folder is reported."""
    append(tmp_path / "app.log")
    watcher = watch([tmp_path])
    append(tmp_path / "app.log")
    assert reported(watcher)


def test_quiet_folder_times_out(tmp_path: Path, watch: type[Watcher]) -> None:
    """Nothing happening is a timeout: False."""
    assert watch([tmp_path]).wait(QUIET) is False


def test_new_file_is_a_change(tmp_path: Path, watch: type[Watcher]) -> None:
    """A file created in the folder is reported."""
    watcher = watch([tmp_path])
    (tmp_path / "new.log").write_text("")
    assert reported(watcher)


def test_rotation_by_rename(tmp_path: Path, watch: type[Watcher]) -> None:
    """Rotation (rename away, new file, lines in it) is reported at each step."""
    log = tmp_path / "app.log"
    append(log)
    watcher = watch([tmp_path])
    log.rename(tmp_path / "app.log.1")
    assert reported(watcher)
    settle(watcher)
    append(log)
    assert reported(watcher)
    settle(watcher)
    append(log)
    assert reported(watcher)


def test_deleted_file_is_a_change(tmp_path: Path, watch: type[Watcher]) -> None:
    """A file removed from the folder is reported."""
    append(tmp_path / "app.log")
    watcher = watch([tmp_path])
    (tmp_path / "app.log").unlink()
    assert reported(watcher)


def test_folder_created_later(tmp_path: Path, watch: type[Watcher]) -> None:
    """A folder (two levels) that does not exist yet is watched once it appears."""
    logs = tmp_path / "var" / "logs"
    watcher = watch([logs])
    assert watcher.wait(QUIET) is False
    logs.mkdir(parents=True)
    assert reported(watcher)
    settle(watcher)
    append(logs / "app.log")
    assert reported(watcher)


def test_folder_deleted_and_recreated(tmp_path: Path, watch: type[Watcher]) -> None:
    """Deleting the folder is a change; once it is made again, its files are watched again."""
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "app.log")
    watcher = watch([logs])
    shutil.rmtree(logs)
    assert reported(watcher)
    settle(watcher)
    logs.mkdir()
    assert reported(watcher)
    settle(watcher)
    append(logs / "app.log")
    assert reported(watcher)


def test_folder_replaced_by_rename(tmp_path: Path, watch: type[Watcher]) -> None:
    """A folder renamed over the watched one is the one watched from then on."""
    logs, fresh = tmp_path / "logs", tmp_path / "fresh"
    logs.mkdir()
    fresh.mkdir()
    append(fresh / "app.log")
    watcher = watch([logs])
    fresh.rename(logs)  # replaces the (empty) folder
    assert reported(watcher)
    settle(watcher)
    append(logs / "app.log")
    assert reported(watcher)


def test_writes_beside_the_folder_are_not_changes(tmp_path: Path, watch: type[Watcher]) -> None:
    """Files created and written next to the watched folder (in its parent) are not reported."""
    logs = tmp_path / "logs"
    logs.mkdir()
    watcher = watch([logs])
    append(tmp_path / "other.log")
    append(tmp_path / "other.log")
    assert watcher.wait(QUIET) is False


def test_new_subfolder_is_watched(tmp_path: Path, watch: type[Watcher]) -> None:
    """Recursive: a sub-folder made later is reported, and so are writes in it."""
    watcher = watch([tmp_path])
    (tmp_path / "2026" / "11").mkdir(parents=True)
    assert reported(watcher)
    settle(watcher)
    append(tmp_path / "2026" / "11" / "app.log")
    assert reported(watcher)


def test_not_recursive_ignores_subfolders(tmp_path: Path, watch: type[Watcher]) -> None:
    """recursive=False: writes in a sub-folder are not reported."""
    (tmp_path / "sub").mkdir()
    watcher = watch([tmp_path], recursive=False)
    append(tmp_path / "sub" / "app.log")
    assert watcher.wait(QUIET) is False


def test_symlinked_file_elsewhere(tmp_path: Path, watch: type[Watcher]) -> None:
    """A symlink in the folder makes the folder it points into watched (Kubernetes /var/log/containers)."""
    logs, pods = tmp_path / "containers", tmp_path / "pods"
    logs.mkdir()
    pods.mkdir()
    append(pods / "0.log")
    (logs / "app.log").symlink_to(pods / "0.log")
    watcher = watch([logs], recursive=False)
    append(pods / "0.log")
    assert reported(watcher)


def test_symlink_created_later_is_followed(tmp_path: Path, watch: type[Watcher]) -> None:
    """A symlink made after the watcher started is followed too (a new container's log link)."""
    logs, pods = tmp_path / "containers", tmp_path / "pods"
    logs.mkdir()
    pods.mkdir()
    watcher = watch([logs], recursive=False)
    append(pods / "1.log")
    (logs / "new.log").symlink_to(pods / "1.log")
    assert reported(watcher)
    settle(watcher)
    append(pods / "1.log")
    assert reported(watcher)


def test_configmap_symlink_swap(tmp_path: Path, watch: type[Watcher]) -> None:
    """A ConfigMap-style `..data` swap is reported, and the new version's file is watched after it."""
    (tmp_path / "..v1").mkdir()
    append(tmp_path / "..v1" / "app.log")
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "app.log").symlink_to("..data/app.log")
    watcher = watch([tmp_path])
    append(tmp_path / "app.log")
    assert reported(watcher)
    settle(watcher)
    (tmp_path / "..v2").mkdir()
    append(tmp_path / "..v2" / "app.log")
    (tmp_path / "..data_tmp").symlink_to("..v2")
    (tmp_path / "..data_tmp").rename(tmp_path / "..data")
    shutil.rmtree(tmp_path / "..v1")
    assert reported(watcher)
    settle(watcher)
    append(tmp_path / "app.log")
    assert reported(watcher)


def test_swap_no_event_shows_is_found_on_timeout(tmp_path: Path, watch: type[Watcher]) -> None:
    """A symlink swapped above the folder (no watch sees it): the next quiet timeout says True and re-arms."""
    for version in ("a", "b"):
        (tmp_path / version / "logs").mkdir(parents=True)
    (tmp_path / "link").symlink_to("a")
    watcher = watch([tmp_path / "link" / "logs"])
    (tmp_path / "link.tmp").symlink_to("b")
    (tmp_path / "link.tmp").rename(tmp_path / "link")
    assert watcher.wait(QUIET) is True
    append(tmp_path / "b" / "logs" / "app.log")
    assert reported(watcher)


def test_queue_overflow_is_a_change(tmp_path: Path, watch: type[Watcher]) -> None:
    """More events than the kernel queues (IN_Q_OVERFLOW) are reported as one change; watching goes on."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 200_000:
        pytest.skip(f"max_queued_events is {limit}: too many writes to provoke an overflow")
    watcher = watch([tmp_path])
    a, b = (os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND) for name in ("a.log", "b.log"))
    try:
        for _ in range(limit // 2 + 1000):  # alternating files: the kernel merges only repeats of the last event
            os.write(a, b"x\n")
            os.write(b, b"x\n")
    finally:
        os.close(a)
        os.close(b)
    assert reported(watcher)
    assert watcher.overflows >= 1
    settle(watcher)
    append(tmp_path / "a.log")
    assert reported(watcher)


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "fallback"])
def test_close_ends_a_wait_in_another_thread(tmp_path: Path, inotify: bool) -> None:
    """close() from another thread ends a wait without timeout at once, and it returns False."""
    watcher = Watcher([tmp_path], inotify=inotify)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(watcher.wait(None)))
    waiter.start()
    waiter.join(0.2)
    watcher.close()
    waiter.join(SOON)
    assert got == [False]


def test_close_on_an_event(tmp_path: Path) -> None:
    """close_on(event): setting the event ends a wait in progress, with False."""
    watcher, stop = Watcher([tmp_path]), threading.Event()
    watcher.close_on(stop)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(watcher.wait(None)))
    waiter.start()
    stop.set()
    waiter.join(SOON)
    assert (got, watcher.closed) == ([False], True)


def test_settle_waits_for_a_quiet_spell(tmp_path: Path, watch: type[Watcher]) -> None:
    """wait(settle=...) returns once the writes have stopped: nothing of them is left for the next wait."""
    watcher = watch([tmp_path])

    def save_in_pieces() -> None:
        for _ in range(5):
            append(tmp_path / "p.yaml")
            threading.Event().wait(0.02)

    writer = threading.Thread(target=save_in_pieces)
    writer.start()
    assert watcher.wait(SOON, settle=0.5) is True
    writer.join()
    assert watcher.wait(QUIET) is False


def test_wait_after_close_is_false(tmp_path: Path) -> None:
    """A closed watcher reports nothing, at once, and closing twice is fine."""
    watcher = Watcher([tmp_path])
    watcher.close()
    watcher.close()
    append(tmp_path / "app.log")
    assert watcher.wait(SOON) is False


def test_fallback_only_times_out(tmp_path: Path) -> None:
    """Without inotify, wait sleeps out its timeout and says False: the caller's rescan is what notices."""
    with Watcher([tmp_path], inotify=False) as watcher:
        append(tmp_path / "app.log")
        assert (watcher.native, watcher.wait(QUIET)) == (False, False)


def test_no_folders(watch: type[Watcher]) -> None:
    """No folders to watch: every wait is a timeout."""
    assert watch([]).wait(QUIET) is False


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_lets_a_burst_through() -> None:
    """After a quiet spell, ``burst`` reads go at once and the next waits 1/rate."""
    clock = Clock()
    pacer = Pacer(rate=20, burst=3, clock=clock)
    assert [pacer.delay() for _ in range(4)] == [0.0, 0.0, 0.0, 0.05]


def test_pacer_holds_a_steady_stream_to_rate() -> None:
    """Reads asked for every 10 ms are spread to one per 1/rate once the burst is spent."""
    clock = Clock()
    pacer = Pacer(rate=20, burst=2, clock=clock)
    delays = []
    for _ in range(40):
        delay = pacer.delay()
        delays.append(delay)
        clock.now += delay + 0.01  # the wait, then the next event 10 ms after the read
    assert delays[-1] == pytest.approx(0.04)


def test_pacer_refills_while_quiet() -> None:
    """A quiet spell of burst/rate seconds makes the whole burst available again."""
    clock = Clock()
    pacer = Pacer(rate=10, burst=2, clock=clock)
    pacer.delay(), pacer.delay()
    clock.now += 0.2
    assert [pacer.delay() for _ in range(3)] == [0.0, 0.0, 0.1]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (10, 0)])
def test_pacer_refuses_nonsense(rate: float, burst: int) -> None:
    """A rate that is not positive, or a burst under one, is refused."""
    with pytest.raises(ValueError, match="rate must be > 0"):
        Pacer(rate=rate, burst=burst)
