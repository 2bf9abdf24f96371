"""MetricsSampler against the checked-in fake procfs (tests/fixtures/proc) and, once, the real /proc.

The fake tree's numbers (see tests/fixtures/proc/README.md): 16 000 000 kB of memory with
4 000 000 kB available, 2 000 000 kB of swap with 1 500 000 kB free, load 1.25 0.75 0.50,
gunicorn master 4242 (25 600 resident pages, 500 + 120 ticks of CPU), worker 4243
(12 800 pages), zombie 4299 named reporter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from suture.sidecar.sources.base import MetricSample
from suture.sidecar.sources.metrics import MetricsSampler

FAKE_PROC = Path(__file__).parent / "fixtures" / "proc"
PAGESIZE = os.sysconf("SC_PAGE_SIZE")  # statm counts pages of the machine running the test
MEM_TOTAL = 16_000_000 * 1024


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A writable copy of the fake procfs."""
    return Path(shutil.copytree(FAKE_PROC, tmp_path / "proc"))


@pytest.fixture
def pidfile(tmp_path: Path) -> Path:
    """A pid file naming the fake gunicorn master, 4242."""
    path = tmp_path / "app.pid"
    path.write_text("4242\n")
    return path


def values(samples: list[MetricSample]) -> dict[str, float]:
    return {s.name: s.value for s in samples}


def process_metrics(proc: Path, pidfile: Path) -> dict[str, float]:
    """The process.* metrics of one sample of the fake procfs, for a process "api" named by ``pidfile``."""
    got = values(MetricsSampler(proc_root=proc, processes={"api": {"pidfile": str(pidfile)}}).sample(1.0))
    return {k: v for k, v in got.items() if k.startswith("process.")}


def set_cpu_line(proc: Path, line: str) -> None:
    """Replace the first (aggregate) line of the fake /proc/stat."""
    lines = (proc / "stat").read_text().splitlines(keepends=True)
    (proc / "stat").write_text(line + "\n" + "".join(lines[1:]))


def set_process_times(proc: Path, pid: int, utime: int, stime: int) -> None:
    """Rewrite utime/stime (fields 14 and 15 of /proc/PID/stat)."""
    path = proc / str(pid) / "stat"
    head, _, rest = path.read_text().rpartition(")")
    fields = rest.split()
    fields[11], fields[12] = str(utime), str(stime)
    path.write_text(f"{head}) {' '.join(fields)}\n")


def test_memory_percent_from_meminfo(proc: Path) -> None:
    """memory_percent is the memory not available over MemTotal."""
    assert values(MetricsSampler(proc_root=proc).sample(1000.0))["memory_percent"] == 75.0


def test_swap_percent_from_meminfo(proc: Path) -> None:
    """swap_percent is SwapTotal minus SwapFree over SwapTotal."""
    assert values(MetricsSampler(proc_root=proc).sample(1000.0))["swap_percent"] == 25.0


def test_load_averages_from_loadavg(proc: Path) -> None:
    """load1/load5/load15 are the first three fields of loadavg."""
    got = values(MetricsSampler(proc_root=proc).sample(1000.0))
    assert {k: got[k] for k in ("load1", "load5", "load15")} == {"load1": 1.25, "load5": 0.75, "load15": 0.5}


def test_samples_are_stamped_with_now(proc: Path) -> None:
    """Every sample carries the time it was asked for."""
    assert {1234.5} == {s.at for s in MetricsSampler(proc_root=proc).sample(1234.5)}


def test_first_sample_reports_no_cpu(proc: Path) -> None:
    """The first sample only primes the CPU rate."""
    assert "cpu_percent" not in values(MetricsSampler(proc_root=proc).sample(1000.0))


def test_cpu_percent_between_two_stat_snapshots(proc: Path) -> None:
    """cpu_percent is busy ticks over all ticks since the previous sample (idle and iowait are not busy)."""
    sampler = MetricsSampler(proc_root=proc)
    sampler.sample(1000.0)
    set_cpu_line(proc, "cpu  1300 0 600 8500 600 0 0 0 0 0")  # +300 user +100 system +500 idle +100 iowait
    assert values(sampler.sample(1010.0))["cpu_percent"] == 40.0


def test_guest_time_is_not_counted_twice(proc: Path) -> None:
    """Guest ticks are already inside user ticks, so they leave the total unchanged."""
    sampler = MetricsSampler(proc_root=proc)
    sampler.sample(1000.0)
    set_cpu_line(proc, "cpu  1300 0 600 8500 600 0 0 0 100 0")  # 100 of the 300 user ticks ran a guest
    assert values(sampler.sample(1010.0))["cpu_percent"] == 40.0


def test_no_ticks_elapsed_reports_no_cpu(proc: Path) -> None:
    """An unchanged stat between samples gives no rate rather than a division by zero."""
    sampler = MetricsSampler(proc_root=proc)
    sampler.sample(1000.0)
    assert "cpu_percent" not in values(sampler.sample(1010.0))


def test_process_by_pidfile_reports_up_rss_and_memory(proc: Path, pidfile: Path) -> None:
    """A running process named by pid file: up, resident bytes from statm, and its share of memory."""
    rss = 25_600 * PAGESIZE
    assert process_metrics(proc, pidfile) == {
        "process.api.up": 1.0,
        "process.api.rss_bytes": float(rss),
        "process.api.memory_percent": round(rss / MEM_TOTAL * 100, 2),
    }


def test_process_cpu_percent_between_samples(proc: Path, pidfile: Path) -> None:
    """process cpu_percent is user+system seconds used over seconds elapsed, as a percent of one CPU."""
    sampler = MetricsSampler(proc_root=proc, processes={"api": {"pidfile": str(pidfile)}})
    sampler.sample(1000.0)
    set_process_times(proc, 4242, utime=700, stime=220)  # +2 s user, +1 s system
    assert values(sampler.sample(1010.0))["process.api.cpu_percent"] == 30.0


def test_restarted_process_primes_cpu_again(proc: Path, pidfile: Path) -> None:
    """A pid file now naming another process gives no CPU rate until that process is seen twice."""
    sampler = MetricsSampler(proc_root=proc, processes={"api": {"pidfile": str(pidfile)}})
    sampler.sample(1000.0)
    pidfile.write_text("4243\n")
    assert "process.api.cpu_percent" not in values(sampler.sample(1010.0))


def test_process_by_name_sums_every_match(proc: Path) -> None:
    """A name matches the master and its worker; their resident memory is summed."""
    got = values(MetricsSampler(proc_root=proc, processes={"web": {"name": "gunicorn"}}).sample(1000.0))
    assert float((25_600 + 12_800) * PAGESIZE) == got["process.web.rss_bytes"]


def test_missing_pidfile_reports_down(proc: Path, tmp_path: Path) -> None:
    """A pid file that does not exist gives up=0 and nothing else for that process."""
    assert process_metrics(proc, tmp_path / "no.pid") == {"process.api.up": 0.0}


@pytest.mark.parametrize("content", ["", "not a pid\n", "-1\n", "0\n"])
def test_unreadable_pidfile_reports_down(proc: Path, pidfile: Path, content: str) -> None:
    """A pid file without a usable pid gives up=0."""
    pidfile.write_text(content)
    assert process_metrics(proc, pidfile) == {"process.api.up": 0.0}


def test_pidfile_of_dead_process_reports_down(proc: Path, pidfile: Path) -> None:
    """A pid with no folder under the proc root is a dead process: up=0."""
    pidfile.write_text("31337\n")
    assert process_metrics(proc, pidfile) == {"process.api.up": 0.0}


def test_zombie_reports_down(proc: Path) -> None:
    """A process that exited but was not reaped (state Z) is not up."""
    got = values(MetricsSampler(proc_root=proc, processes={"reporter": {"name": "reporter"}}).sample(1.0))
    assert {k: v for k, v in got.items() if k.startswith("process.")} == {"process.reporter.up": 0.0}


def test_pseudo_and_image_filesystems_are_skipped(proc: Path) -> None:
    """Of the fake mounts only / is a real filesystem: proc, tmpfs and a squashfs snap are left out."""
    got = values(MetricsSampler(proc_root=proc).sample(1.0))
    assert sorted(k for k in got if k.startswith("disk")) == ["disk./.percent", "disk_percent"]


def test_disk_percent_is_the_root_mount(proc: Path) -> None:
    """disk_percent is the usage of / (statvfs of the real machine)."""
    got = values(MetricsSampler(proc_root=proc).sample(1.0))
    assert got["disk./.percent"] == got["disk_percent"]
    assert 0.0 <= got["disk_percent"] <= 100.0


def test_configured_mounts_are_reported_as_written(proc: Path, tmp_path: Path) -> None:
    """A configured mountpoint gets disk.<mountpoint>.percent, from statvfs of that path."""
    got = values(MetricsSampler(proc_root=proc, mounts=[str(tmp_path)]).sample(1.0))
    assert psutil.disk_usage(str(tmp_path)).percent == pytest.approx(got[f"disk.{tmp_path}.percent"], abs=1.0)


def test_vanished_mount_is_skipped_and_reported(proc: Path, tmp_path: Path) -> None:
    """A mountpoint that cannot be read is left out of the sample and named in errors."""
    sampler = MetricsSampler(proc_root=proc, mounts=[str(tmp_path / "gone")])
    got = values(sampler.sample(1.0))
    assert f"disk.{tmp_path / 'gone'}.percent" not in got
    assert any(str(tmp_path / "gone") in e for e in sampler.errors)


def test_missing_procfs_file_skips_only_its_metrics(proc: Path) -> None:
    """Without loadavg the load metrics are missing, the rest is reported, and nothing is raised."""
    (proc / "loadavg").unlink()
    sampler = MetricsSampler(proc_root=proc)
    got = values(sampler.sample(1.0))
    assert (
        [e.split(":")[0] for e in sampler.errors],
        [k for k in ("load1", "load5", "load15", "memory_percent") if k in got],
    ) == (["load"], ["memory_percent"])


def test_procfs_path_is_restored(proc: Path) -> None:
    """psutil reads the real /proc again once a sample of a fake one is over."""
    (proc / "meminfo").unlink()  # a sample with errors restores it too
    MetricsSampler(proc_root=proc).sample(1.0)
    assert psutil.PROCFS_PATH == "/proc"


@pytest.mark.parametrize("spec", [{}, {"pidfile": "a.pid", "name": "app"}, {"exe": "app"}])
def test_process_spec_needs_pidfile_or_name(spec: dict[str, str]) -> None:
    """A process is configured by exactly one of pidfile, name."""
    with pytest.raises(ValueError, match="exactly one of pidfile, name"):
        MetricsSampler(processes={"app": spec})


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real sleeping child process and a pid file naming it."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pidfile = tmp_path / "child.pid"
    pidfile.write_text(f"{process.pid}\n")
    yield process, pidfile
    process.kill()
    process.wait()


def test_real_process_by_pidfile_up_then_down(child: tuple[subprocess.Popen[bytes], Path]) -> None:
    """Against the real /proc: a running child is up with resident memory; once it exits it is down."""
    process, pidfile = child
    sampler = MetricsSampler(processes={"child": {"pidfile": str(pidfile)}})
    running = values(sampler.sample(1.0))
    process.terminate()
    process.wait()
    gone = values(sampler.sample(2.0))
    assert (running["process.child.up"], running["process.child.rss_bytes"] > 0) == (1.0, True)
    assert {k: v for k, v in gone.items() if k.startswith("process.")} == {"process.child.up": 0.0}
