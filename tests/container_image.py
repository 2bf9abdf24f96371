"""Container images for the container tests, built here without a registry.

No registry image can be pulled on CI, so the base every image starts from is
made locally and cached:

1. :func:`base_rootfs`: ``debootstrap --variant=minbase bookworm`` with
   :data:`PACKAGES` (python3 3.11, CA certificates), trimmed (docs, man pages,
   locales, apt lists and downloaded packages: ~150 MB of a 267 MB tree),
   tarred to ``~/.cache/suture-ci/base-bookworm-<key>.tar``. The key hashes
   the suite, the packages and the trim recipe, so changing any of them
   builds a new one; a tar older than :data:`MAX_AGE_DAYS` is rebuilt too
   (security updates). ~1.5 min the first time, nothing after.
2. :func:`import_image`: ``podman import`` of that tar (~3 s).
3. :func:`build_image`: ``podman build`` on top of it, with the host network,
   the host CA bundle mounted (pip and apt go through this machine's
   registries only), and pip's and apt's download caches mounted from
   ``~/.cache/suture-ci/`` so a rebuild compiles and downloads nothing. The
   mounts are build-time only: nothing from them lands in a layer.

Everything here calls the ``podman`` CLI (root, rootful storage); the tests
drive containers with the same CLI. Builds from several sessions at once are
serialised by a lock in the cache folder (apt's archive folder is shared).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("SUTURE_CI_CACHE") or Path.home() / ".cache" / "suture-ci")
SUITE = "bookworm"
MIRROR = os.environ.get("SUTURE_CI_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MAX_AGE_DAYS = 30

# Emptied in the rootfs (the folders stay). Locales: only locale.alias is kept.
TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/log",
    "dev",
)
KEEP = ("usr/share/locale/locale.alias",)
# Later apt installs (the builder stage, the demo app image) skip the same things.
DPKG_EXCLUDES = """\
# suture-ci: keep images small (docs, man pages and translations are never read in a container)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
"""
RECIPE = 1  # bump when the steps below change what the tar holds


class ToolMissing(Exception):
    """A program the container tests need is not installed (and could not be)."""


def base_key() -> str:
    recipe = json.dumps([SUITE, sorted(PACKAGES), TRIM, KEEP, DPKG_EXCLUDES, RECIPE])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


@contextlib.contextmanager
def cache_lock(cache: Path = CACHE) -> Iterator[None]:
    """Exclusive use of the cache folder (rootfs builds, apt's archive folder) across sessions."""
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run(argv: Sequence[str | Path], log: Path, timeout: float = 900) -> str:
    """Run a command, append its output to ``log``; raise with the output's tail if it fails."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        started = time.monotonic()
        done = subprocess.run(list(map(str, argv)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
        out.write(done.stdout)
        out.write(f"[exit {done.returncode} after {time.monotonic() - started:.1f}s]\n".encode())
    text = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, list(map(str, argv)), output=text[-4000:])
    return text


def base_rootfs(log: Path, cache: Path = CACHE) -> Path:
    """The cached base rootfs tar, made with debootstrap if it is missing or older than MAX_AGE_DAYS."""
    tar = cache / f"base-{SUITE}-{base_key()}.tar"
    with cache_lock(cache):
        if tar.exists() and time.time() - tar.stat().st_mtime < MAX_AGE_DAYS * 86400:
            return tar
        if shutil.which("debootstrap") is None:
            raise ToolMissing("debootstrap is not installed (apt-get install debootstrap; .ci/run does)")
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
        try:
            root = work / "root"
            run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, root, MIRROR],
                log, timeout=1200)
            _trim(root)
            run(["tar", "--numeric-owner", "-C", root, "-cf", work / "base.tar", "."], log)
            os.replace(work / "base.tar", tar)
        finally:
            _remove_tree(work)
        for old in cache.glob(f"base-{SUITE}-*.tar"):
            if old != tar:
                old.unlink(missing_ok=True)
    return tar


def _trim(root: Path) -> None:
    for rel in TRIM:
        folder = root / rel
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if any(entry == root / keep for keep in KEEP):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/01-suture-ci-slim").write_text(DPKG_EXCLUDES)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        points = [line.split()[4] for line in info]
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -r a debootstrap tree, first unmounting what a failed run may have left mounted (proc, sys)."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False)
    if _mounts_under(path):
        raise RuntimeError(f"{path} still has mounts under it; not removing it")
    shutil.rmtree(path, ignore_errors=True)


def import_image(tar: Path, tag: str, log: Path) -> str:
    """``podman import`` the rootfs tar as ``tag``."""
    run(["podman", "import", "--quiet", tar, tag], log)
    return tag


def build_image(tag: str, context: Path, log: Path, *, containerfile: Path | None = None,
                build_args: Mapping[str, str] | None = None, cache: Path = CACHE) -> str:
    """``podman build`` ``context`` as ``tag``: docker format (so HEALTHCHECK is kept), host network, CA, caches."""
    pip_cache, apt_cache = cache / "pip", cache / "apt-archives"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    pip_cache.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = [
        "podman", "build", "--format", "docker", "--network", "host", "--layers=false", "--pull=never",
        "--tag", tag,
        "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "--volume", f"{pip_cache}:/root/.cache/pip",
        "--volume", f"{apt_cache}:/var/cache/apt/archives",
    ]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    if containerfile is not None:
        argv += ["--file", containerfile]
    with cache_lock(cache):
        run([*argv, context], log, timeout=1500)
    return tag


def image_size(tag: str) -> int:
    """The image's size in bytes, as ``podman image inspect`` reports it."""
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def image_config(tag: str) -> dict[str, object]:
    """The image's config (User, Env, Entrypoint, Healthcheck, Volumes, ...), as Docker's inspect shows it."""
    out = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True, check=True).stdout
    config: dict[str, object] = json.loads(out)[0]["Config"]
    return config


def image_healthcheck(tag: str) -> list[str]:
    """The image's HEALTHCHECK test (``["CMD", ...]``); empty if it has none (an OCI-format build drops it)."""
    out = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True, check=True).stdout
    check = json.loads(out)[0].get("Healthcheck") or {}
    return list(check.get("Test") or [])


def remove_stale_images(prefix: str, older_than: float) -> None:
    """Remove images named under ``prefix`` (``localhost/suture-ci/``) created more than ``older_than`` s ago."""
    out = subprocess.run(["podman", "images", "--format", "json"], capture_output=True, text=True, check=False).stdout
    for image in json.loads(out or "[]"):
        stale = time.time() - float(image.get("Created") or time.time()) > older_than
        for name in image.get("Names") or ():
            if stale and name.startswith(prefix):
                remove_images(name)


def remove_images(*tags: str) -> None:
    for tag in tags:
        subprocess.run(["podman", "rmi", "--force", "--ignore", tag], capture_output=True, check=False)
