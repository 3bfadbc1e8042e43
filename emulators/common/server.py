"""Serve an emulator with uvicorn on 127.0.0.1 over HTTPS, with a certificate made at start.

:func:`serve` starts one in a background thread of the current process (tests, the demo) and
returns an :class:`EmulatorServer` handle; ``python -m emulators`` uses the same function and
then waits for SIGINT/SIGTERM. A fresh ``trustme`` CA signs a certificate for ``127.0.0.1`` and
``localhost``; clients trust it through ``ca_file`` (for example ``SSL_CERT_FILE=<ca_file>``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import uvicorn

from .app import Harness, build_app
from .backend import EmulatorBackend

HOST = "127.0.0.1"


def _http_implementation() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


@dataclass
class EmulatorServer:
    vendor: str
    base_url: str
    root_url: str
    api_key: str
    ca_file: str
    port: int
    harness: Harness
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _tmpdir: str = field(repr=False)

    @property
    def backend(self) -> EmulatorBackend:
        return self.harness.backend

    def info(self) -> dict[str, Any]:
        """The line ``python -m emulators`` prints."""
        return {"vendor": self.vendor, "base_url": self.base_url, "api_key": self.api_key, "ca_file": self.ca_file}

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # pragma: no cover - a stuck connection
            self._server.force_exit = True
            self._thread.join(timeout)
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A new CA and a server certificate for 127.0.0.1/localhost: (ca, cert chain, key) files."""
    ca = trustme.CA(organization_name="cdp-sync emulator CA")
    cert = ca.issue_cert(HOST, "localhost", "::1")
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    with cert_file.open("wb") as f:
        for pem in cert.cert_chain_pems:
            f.write(pem.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    return ca_file, cert_file, key_file


def serve(backend: EmulatorBackend, *, port: int = 0, latency_ms: float = 0.0, startup_timeout: float = 30.0,
          **hostile: Any) -> EmulatorServer:
    """Start ``backend`` on ``127.0.0.1:port`` (0: a free port) in a daemon thread."""
    tmpdir = tempfile.mkdtemp(prefix=f"cdp-emulator-{backend.vendor}-")
    ca_file, cert_file, key_file = make_certificate(Path(tmpdir))
    harness = build_app(backend, latency_ms=latency_ms, **hostile)
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP; with proto 0 every response waited ~40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(1024)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        harness,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=_http_implementation(),
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            failure.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"emulator-{backend.vendor}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if failure or not thread.is_alive():
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise RuntimeError(f"the {backend.vendor} emulator failed to start: {failure[0] if failure else 'exited'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the {backend.vendor} emulator did not start within {startup_timeout:.0f} s")
        time.sleep(0.01)
    root = f"https://{HOST}:{bound}"
    return EmulatorServer(
        vendor=backend.vendor,
        base_url=root + backend.base_path,
        root_url=root,
        api_key=backend.api_key,
        ca_file=str(ca_file),
        port=bound,
        harness=harness,
        _server=server,
        _thread=thread,
        _tmpdir=tmpdir,
    )
