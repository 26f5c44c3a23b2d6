"""Build the sandbox image: the OpenClaw gateway (npm package ``openclaw``) under tini.

Two routes, one Dockerfile (``container/Dockerfile``):

``registry``
    ``FROM node:24-bookworm-slim`` (``base_image``); apt and npm run inside the build. Needs a
    machine whose containers reach the Debian and npm registries.
``offline``
    For machines where no image can be pulled and containers reach no registry. The base is
    bootstrapped from Debian packages with mmdebstrap and ``docker import``-ed as
    ``moltconsole/base:bookworm``; Node 24 (npm package ``node@24``) and OpenClaw are
    npm-installed on the host into a per-version cache and sent to the build as the context's
    ``prepared/`` folder, so the build itself runs with no network at all.
``auto``
    ``registry`` when ``base_image`` is already present locally, ``offline`` otherwise.

Everything here blocks; the backend calls :meth:`ImageBuilder.build` from a worker thread.
``python -m moltconsole_backend.sandbox.image`` builds from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, get_args

import docker
import docker.errors

Route = Literal["auto", "registry", "offline"]

VERSION_LABEL = "moltconsole.openclaw_version"
DEFAULT_REPOSITORY = "moltconsole/openclaw"
BASE_REPOSITORY = "moltconsole/base"
DEBIAN_SUITE = "bookworm"
BASE_TAG = DEBIAN_SUITE
BASE_PACKAGES = ("tini", "ca-certificates", "git")
NODE_MAJOR = 24
MIN_NODE = (24, 16, 0)
CONTEXT_FILES = (
    "Dockerfile",
    "entrypoint.sh",
    "render-config.mjs",
    "healthcheck.mjs",
    "openclaw.template.json5",
)

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")
_NODE_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)")
_TAIL_LINES = 25
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)


class ImageBuildError(Exception):
    """The image could not be built; the message names the cause and what to do about it."""


@dataclass(frozen=True)
class BuildProgress:
    """One line of build progress.

    ``step`` is one of "route", "base", "node", "openclaw", "context", "docker-build", "done".
    """

    step: str
    message: str


ProgressCallback = Callable[[BuildProgress], None]


def container_dir() -> Path:
    """The folder holding the Dockerfile and the files it copies.

    ``moltconsole_backend/container``: in a checkout a symlink to ``<repo>/container``, in an
    installed wheel a copy of it.
    """
    here = Path(__file__).resolve()
    candidates = (here.parents[1] / "container", here.parents[3] / "container")
    for candidate in candidates:
        if (candidate / "Dockerfile").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ImageBuildError(
        f"the sandbox image files (container/Dockerfile) are missing; looked in {tried}. "
        "Reinstall moltconsole or run from a complete source checkout."
    )


def image_tag(repository: str, version: str) -> str:
    """The tag of the sandbox image for one OpenClaw version, e.g. moltconsole/openclaw:2026.9.6."""
    return f"{repository}:{version}"


def base_image_tag() -> str:
    """The tag of the Debian base the offline route bootstraps."""
    return f"{BASE_REPOSITORY}:{BASE_TAG}"


class ImageBuilder:
    """Builds ``<repository>:<version>`` by the registry or the offline route."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        repository: str,
        version: str,
        route: Route,
        base_image: str,
        cache_dir: Path,
    ) -> None:
        if not _VERSION_RE.match(version):
            raise ImageBuildError(f"{version!r} is not an OpenClaw version; use one such as 2026.9.6.")
        if route not in get_args(Route):
            raise ImageBuildError(f"unknown build route {route!r}; use auto, registry or offline.")
        self._client = client
        self.repository = repository
        self.version = version
        self.route: Route = route
        self.base_image = base_image
        self.cache_dir = Path(cache_dir)
        self.tag = image_tag(repository, version)

    # ------------------------------------------------------------------ queries

    def exists(self) -> bool:
        """Whether the image for this version is present locally."""
        try:
            image = self._client.images.get(self.tag)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.DockerException as exc:
            raise ImageBuildError(f"cannot ask Docker for {self.tag}: {exc}") from exc
        labels = image.labels or {}
        return labels.get(VERSION_LABEL) == self.version

    def resolved_route(self) -> Literal["registry", "offline"]:
        """The route :meth:`build` takes.

        ``auto`` picks the registry route when base_image is local or can be pulled now, and
        the offline route otherwise (a pull with no registry in reach fails in milliseconds).
        """
        if self.route != "auto":
            return self.route
        if self._has_image(self.base_image):
            return "registry"
        try:
            self._client.images.pull(self.base_image)
        except docker.errors.DockerException:
            return "offline"
        return "registry"

    @property
    def prepared_root(self) -> Path:
        """Where the host-side preparations of the offline route are cached."""
        return self.cache_dir / "sandbox-image"

    # ------------------------------------------------------------------ build

    def build(self, progress: ProgressCallback) -> str:
        """Build the image and return its id; raise ImageBuildError naming cause and fix."""
        started = time.monotonic()
        route = self.resolved_route()
        progress(BuildProgress("route", f"building {self.tag} by the {route} route"))
        if route == "offline":
            self.prepared_root.mkdir(parents=True, exist_ok=True)
            with self._lock():
                base = self._ensure_base(progress)
                prefix = self._ensure_prepared(progress)
                image_id = self._docker_build(progress, base=base, prepared=prefix, offline=True)
        else:
            image_id = self._docker_build(progress, base=self.base_image, prepared=None, offline=False)
        elapsed = time.monotonic() - started
        progress(BuildProgress("done", f"built {self.tag} ({image_id[:19]}) in {elapsed:.0f} s"))
        return image_id

    # ------------------------------------------------------------------ offline: base

    def _ensure_base(self, progress: ProgressCallback) -> str:
        tag = base_image_tag()
        if self._has_image(tag):
            progress(BuildProgress("base", f"using the existing base image {tag}"))
            return tag
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise ImageBuildError(
                "mmdebstrap is not installed, and the offline route needs it to bootstrap the "
                "Debian base image. Install it (apt-get install -y mmdebstrap) or run "
                "scripts/setup.sh; or use the registry route on a machine that can pull "
                f"{self.base_image}."
            )
        progress(
            BuildProgress(
                "base",
                f"bootstrapping Debian {DEBIAN_SUITE} (minbase + {', '.join(BASE_PACKAGES)}) with mmdebstrap",
            )
        )
        with tempfile.TemporaryDirectory(prefix=".base-", dir=self.prepared_root) as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            command = [
                mmdebstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                *(f"--dpkgopt={opt}" for opt in _DPKG_EXCLUDES),
                DEBIAN_SUITE,
                str(rootfs),
            ]
            _run(
                command,
                step="base",
                progress=progress,
                what="mmdebstrap",
                fix="Check that apt can reach the Debian archive (apt-get update) and that "
                "mmdebstrap runs as root or with user namespaces enabled.",
            )
            progress(BuildProgress("base", f"importing the root filesystem as {tag}"))
            try:
                self._client.api.import_image(
                    src=str(rootfs),
                    repository=BASE_REPOSITORY,
                    tag=BASE_TAG,
                    changes=[
                        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        'CMD ["/bin/sh"]',
                    ],
                )
            except docker.errors.DockerException as exc:
                raise ImageBuildError(
                    f"docker import of the Debian root filesystem failed: {exc}. "
                    "Check free disk space under Docker's data root."
                ) from exc
        if not self._has_image(tag):
            raise ImageBuildError(f"docker import finished but {tag} is not there; retry the build.")
        return tag

    # ------------------------------------------------------------------ offline: node+openclaw

    def _ensure_prepared(self, progress: ProgressCallback) -> Path:
        """The install prefix (bin/node, lib/node_modules/openclaw) for this version, cached."""
        root = self.prepared_root
        _remove_stale_staging(root)
        final = root / f"openclaw-{self.version}"
        if _prefix_complete(final, self.version):
            progress(BuildProgress("openclaw", f"using the cached OpenClaw {self.version} in {final}"))
            return final
        if final.exists():
            progress(BuildProgress("openclaw", f"discarding an incomplete {final}"))
            shutil.rmtree(final)

        npm = shutil.which("npm")
        if npm is None:
            raise ImageBuildError(
                "npm was not found on PATH, and the offline route installs Node 24 and OpenClaw "
                "with it on this machine. Install Node.js and npm (apt-get install -y npm) or "
                "run scripts/setup.sh, then build again."
            )
        node = self._ensure_node(progress, npm)

        stage = Path(tempfile.mkdtemp(prefix=".openclaw-", dir=root))
        try:
            progress(
                BuildProgress(
                    "openclaw",
                    f"npm install -g openclaw@{self.version} (Node {NODE_MAJOR} first on PATH)",
                )
            )
            env = _npm_env(node.parent)
            _run(
                [
                    npm,
                    "install",
                    "--global",
                    "--prefix",
                    str(stage),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=warn",
                    f"openclaw@{self.version}",
                ],
                step="openclaw",
                progress=progress,
                what=f"npm install openclaw@{self.version}",
                fix="Check that the version exists (npm view openclaw versions) and that npm "
                "can reach its registry (npm ping).",
                env=env,
                cwd=stage,
            )
            have = _package_version(stage / "lib" / "node_modules" / "openclaw")
            if have != self.version:
                raise ImageBuildError(
                    f"npm installed openclaw {have or '(nothing)'} instead of {self.version}; "
                    "check the version and your npm configuration."
                )
            (stage / "bin").mkdir(exist_ok=True)
            _link_or_copy(node, stage / "bin" / "node")
            self._check_launcher(progress, stage)
            stage.rename(final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        size = _tree_size(final)
        progress(BuildProgress("openclaw", f"prepared OpenClaw {self.version} ({size / 1e6:.0f} MB)"))
        return final

    def _check_launcher(self, progress: ProgressCallback, prefix: Path) -> None:
        """Run the installed launcher once on this machine, with the Node that goes in the image.

        This proves the install runs, and lets OpenClaw finish package lifecycle steps that an
        npm without install scripts would have left pending: the image's package directory is
        read-only at run time, so they must not be left for the first container start.
        """
        package = prefix / "lib" / "node_modules" / "openclaw"
        with tempfile.TemporaryDirectory(prefix=".check-", dir=self.prepared_root) as scratch:
            env = {
                "PATH": f"{prefix / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "HOME": scratch,
                "TMPDIR": scratch,
                "OPENCLAW_STATE_DIR": str(Path(scratch) / "state"),
                "NODE_DISABLE_COMPILE_CACHE": "1",
            }
            try:
                result = subprocess.run(
                    [str(prefix / "bin" / "node"), str(package / "openclaw.mjs"), "--version"],
                    capture_output=True,
                    text=True,
                    errors="replace",
                    env=env,
                    timeout=120,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ImageBuildError(
                    f"the freshly installed OpenClaw {self.version} did not run: {exc}"
                ) from exc
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or self.version not in output:
            raise ImageBuildError(
                f"the freshly installed OpenClaw {self.version} failed its version check "
                f"(exit {result.returncode}): {output[-2000:] or '(no output)'}"
            )
        pending = [
            marker
            for marker in (".openclaw-lifecycle-pending", "dist/openclaw-install-guard")
            if (package / marker).exists()
        ]
        if pending:
            raise ImageBuildError(
                f"OpenClaw's install steps did not complete ({', '.join(pending)} remain); "
                "allow npm install scripts (npm config get ignore-scripts) and build again."
            )
        progress(BuildProgress("openclaw", f"checked: {output.splitlines()[-1]}"))

    def _ensure_node(self, progress: ProgressCallback, npm: str) -> Path:
        final = self.prepared_root / f"node-{NODE_MAJOR}"
        binary = final / "bin" / "node"
        if binary.is_file() and _node_version_ok(binary):
            progress(BuildProgress("node", f"using the cached Node {_node_version(binary)}"))
            return binary
        if final.exists():
            shutil.rmtree(final)
        stage = Path(tempfile.mkdtemp(prefix=".node-", dir=self.prepared_root))
        try:
            scratch = stage / "npm"
            scratch.mkdir()
            progress(BuildProgress("node", f"npm install node@{NODE_MAJOR} (a real Node binary)"))
            _run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(scratch),
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--loglevel=warn",
                    f"node@{NODE_MAJOR}",
                ],
                step="node",
                progress=progress,
                what=f"npm install node@{NODE_MAJOR}",
                fix="Check that npm can reach its registry (npm ping) and that install scripts "
                "are allowed (the node package downloads its binary in one).",
                env=_npm_env(None),
                cwd=scratch,
            )
            installed = scratch / "node_modules" / "node" / "bin" / "node"
            if not installed.is_file():
                raise ImageBuildError(
                    f"npm install node@{NODE_MAJOR} left no binary at {installed}; npm may be "
                    "set to ignore install scripts (npm config get ignore-scripts)."
                )
            if not _node_version_ok(installed):
                raise ImageBuildError(
                    f"node@{NODE_MAJOR} gave Node {_node_version(installed) or '(unrunnable)'}, "
                    f"but OpenClaw needs {'.'.join(map(str, MIN_NODE))} or newer."
                )
            (stage / "bin").mkdir()
            shutil.copy2(installed, stage / "bin" / "node")
            shutil.rmtree(scratch)
            stage.rename(final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        progress(BuildProgress("node", f"prepared Node {_node_version(binary)}"))
        return binary

    # ------------------------------------------------------------------ docker build

    def _docker_build(
        self, progress: ProgressCallback, *, base: str, prepared: Path | None, offline: bool
    ) -> str:
        source = container_dir()
        spool_dir = self.prepared_root if offline else None
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=spool_dir) as context:
            what = f"with {prepared.name}" if prepared else "without prepared files"
            progress(BuildProgress("context", f"packing the build context from {source} {what}"))
            started = time.monotonic()
            _write_context(context, source, prepared)
            size = context.tell()
            context.seek(0)
            progress(
                BuildProgress(
                    "context",
                    f"build context: {size / 1e6:.0f} MB in {time.monotonic() - started:.1f} s",
                )
            )
            return self._stream_build(progress, context, base=base, offline=offline)

    def _stream_build(
        self, progress: ProgressCallback, context: IO[bytes], *, base: str, offline: bool
    ) -> str:
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        image_id: str | None = None
        kwargs: dict[str, Any] = {}
        if offline:
            # Nothing in the offline build needs the network; make sure nothing uses it.
            kwargs["network_mode"] = "none"
        try:
            stream = self._client.api.build(
                fileobj=context,
                custom_context=True,
                tag=self.tag,
                buildargs={"BASE_IMAGE": base, "OPENCLAW_VERSION": self.version},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                timeout=None,
                **kwargs,
            )
            for chunk in stream:
                if not isinstance(chunk, Mapping):
                    continue
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = str(chunk.get("error") or detail.get("message") or chunk)
                    raise ImageBuildError(_build_failure(message, tail, base, offline))
                text = chunk.get("stream")
                if isinstance(text, str):
                    for line in text.splitlines():
                        line = line.rstrip()
                        if line:
                            tail.append(line)
                            progress(BuildProgress("docker-build", line))
                aux = chunk.get("aux")
                if isinstance(aux, Mapping) and isinstance(aux.get("ID"), str):
                    image_id = aux["ID"]
        except docker.errors.DockerException as exc:
            raise ImageBuildError(_build_failure(str(exc), tail, base, offline)) from exc
        try:
            image = self._client.images.get(self.tag)
        except docker.errors.ImageNotFound as exc:
            raise ImageBuildError(
                _build_failure("the build ended without producing the image", tail, base, offline)
            ) from exc
        return str(image.id or image_id)

    # ------------------------------------------------------------------ helpers

    def _has_image(self, name: str) -> bool:
        try:
            self._client.images.get(name)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.DockerException as exc:
            raise ImageBuildError(
                f"cannot reach the Docker engine to look up {name}: {exc}. "
                "Start dockerd and check access to its socket."
            ) from exc
        return True

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One preparation at a time per cache directory (other processes wait)."""
        path = self.prepared_root / ".lock"
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------- module helpers


def _run(
    command: list[str],
    *,
    step: str,
    progress: ProgressCallback,
    what: str,
    fix: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run a command, forwarding its output line by line; raise ImageBuildError on failure."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    except OSError as exc:
        raise ImageBuildError(f"{what} could not be started: {exc}. {fix}") from exc
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                progress(BuildProgress(step, line))
        code = proc.wait()
    if code != 0:
        output = "\n".join(tail) or "(no output)"
        raise ImageBuildError(f"{what} failed with exit code {code}. {fix}\nLast output:\n{output}")


def _npm_env(node_bin: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if node_bin is not None:
        env["PATH"] = f"{node_bin}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("npm_config_update_notifier", "false")
    env.setdefault("npm_config_fund", "false")
    env.setdefault("npm_config_audit", "false")
    return env


def _node_version(binary: Path) -> str | None:
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _node_version_ok(binary: Path) -> bool:
    match = _NODE_VERSION_RE.match(_node_version(binary) or "")
    if not match:
        return False
    parts = tuple(int(p) for p in match.groups())
    return parts[0] == NODE_MAJOR and parts >= MIN_NODE


def _package_version(package_dir: Path) -> str | None:
    try:
        data = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _prefix_complete(prefix: Path, version: str) -> bool:
    node = prefix / "bin" / "node"
    package = prefix / "lib" / "node_modules" / "openclaw"
    return (
        node.is_file()
        and os.access(node, os.X_OK)
        and (package / "openclaw.mjs").is_file()
        and _package_version(package) == version
    )


def _remove_stale_staging(root: Path) -> None:
    """Drop staging dirs left by an interrupted preparation (the caller holds the lock)."""
    for entry in root.glob(".*-*"):
        if entry.is_dir() and entry.name.startswith((".node-", ".openclaw-", ".base-")):
            shutil.rmtree(entry, ignore_errors=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _write_context(fileobj: IO[bytes], source: Path, prepared: Path | None) -> None:
    """Tar the Dockerfile's files, plus prepared/ (empty apart from .keep, or the prefix)."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        # Ownership inside the image comes from the Dockerfile, not from this machine.
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in CONTEXT_FILES:
            path = source / name
            if not path.is_file():
                raise ImageBuildError(
                    f"{path} is missing from the sandbox image files; reinstall moltconsole or "
                    "restore the file from the source checkout."
                )
            tar.add(path, arcname=name, filter=normalise)
        keep = tarfile.TarInfo("prepared")
        keep.type = tarfile.DIRTYPE
        keep.mode = 0o755
        keep.mtime = int(time.time())
        tar.addfile(keep)
        placeholder = tarfile.TarInfo("prepared/.keep")
        placeholder.mode = 0o644
        tar.addfile(placeholder)
        if prepared is not None:
            for entry in sorted(prepared.iterdir()):
                tar.add(entry, arcname=f"prepared/{entry.name}", filter=normalise)


def _build_failure(message: str, tail: deque[str], base: str, offline: bool) -> str:
    last = tail[-1] if tail else ""
    if " FROM " in last or "pull access denied" in message.lower():
        hint = (
            f" The base image {base} is not present locally and could not be pulled. On a machine "
            "without a container registry use the offline route (--route offline, or "
            'sandbox.build_route = "offline"); otherwise check the pull (docker pull '
            f"{base})."
        )
    elif offline:
        hint = " The offline route builds from files prepared on this machine; see the log below."
    else:
        hint = (
            " The registry route runs apt-get and npm inside the build, which needs network "
            "access from containers; use the offline route if this machine's containers have none."
        )
    output = "\n".join(tail) or "(no output)"
    return f"docker build failed: {message.strip()}.{hint}\nLast lines of the build log:\n{output}"


# ---------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m moltconsole_backend.sandbox.image [--version V] [--route R]``."""
    from moltconsole_backend.settings import load_settings
    from moltconsole_shared.config import ConfigError

    parser = argparse.ArgumentParser(
        prog="python -m moltconsole_backend.sandbox.image",
        description="Build the moltconsole sandbox image (the OpenClaw gateway).",
    )
    parser.add_argument("--version", help="OpenClaw version (default: from settings)")
    parser.add_argument("--route", choices=get_args(Route), help="build route (default: settings)")
    parser.add_argument("--repository", help="image repository (default: from settings)")
    parser.add_argument("--base-image", help="base image of the registry route")
    parser.add_argument("--cache-dir", type=Path, help="where host-side preparations are kept")
    parser.add_argument("--force", action="store_true", help="build even when the image already exists")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sandbox = settings.sandbox
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        print(f"error: cannot reach the Docker engine: {exc}", file=sys.stderr)
        return 1
    try:
        builder = ImageBuilder(
            client,
            repository=args.repository or sandbox.image_repository,
            version=args.version or sandbox.openclaw_version,
            route=args.route or sandbox.build_route,
            base_image=args.base_image or sandbox.base_image,
            cache_dir=args.cache_dir or settings.paths.cache_dir,
        )
        if builder.exists() and not args.force:
            print(f"{builder.tag} already exists (use --force to rebuild)")
            return 0

        def show(event: BuildProgress) -> None:
            print(f"[{event.step}] {event.message}", flush=True)

        image_id = builder.build(show)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(image_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
