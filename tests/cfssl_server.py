"""Run the real ``cfssl serve`` for interop tests and benchmarks.

``cfssl_serve()`` creates a CA with ``cfssl gencert -initca`` in a temp dir, writes a config with an
HMAC-authenticated profile (key read from a ``file:`` written without a trailing newline, as Debian's
2016 build requires) and an unauthenticated ``default`` (or an authenticated one, to show the silent
fallback of unknown profile names), starts ``cfssl serve`` on a free 127.0.0.1 port, waits until
``POST /api/v1/cfssl/info {}`` answers, and stops it on exit.

``FaultProxy`` is a TCP relay in front of it that can refuse connections, black-hole them (accept,
swallow the request, never answer) or reset them, to test unavailability handling against the real
server rather than a fake.

If ``cfssl`` is not installed, :class:`CfsslNotInstalled` is raised; tests turn it into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
from cryptography import x509

DEFAULT_HMAC_KEY = "0123456789ABCDEF0123456789ABCDEF"
AUTH_PROFILE = "device"
DEVICE_EXPIRY_HOURS = 87600
DEFAULT_EXPIRY_HOURS = 8760


class CfsslNotInstalled(RuntimeError):
    """The ``cfssl`` binary is missing."""


def cfssl_binary() -> str:
    """Path of ``cfssl``, or raise :class:`CfsslNotInstalled` with install instructions."""
    path = shutil.which("cfssl")
    if path is None:
        raise CfsslNotInstalled(
            "the `cfssl` binary is not on PATH; the CFSSL interop tests need the real server: "
            "`apt-get install -y golang-cfssl` (Debian) or "
            "`go install github.com/cloudflare/cfssl/cmd/cfssl@latest`"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_ca(workdir: Path, cn: str = "Test Device CA") -> tuple[Path, Path, x509.Certificate]:
    """``cfssl gencert -initca`` an ECDSA P-256 CA; returns (cert path, key path, certificate)."""
    csr = workdir / "ca-csr.json"
    csr.write_text(
        json.dumps({"CN": cn, "key": {"algo": "ecdsa", "size": 256}, "names": [{"C": "GB", "O": "Test"}]})
    )
    out = subprocess.run(
        [cfssl_binary(), "gencert", "-initca", str(csr)], capture_output=True, check=True, timeout=60
    )
    doc = json.loads(out.stdout)
    cert_path, key_path = workdir / "ca.pem", workdir / "ca-key.pem"
    cert_path.write_text(doc["cert"])
    key_path.write_text(doc["key"])
    os.chmod(key_path, 0o600)
    return cert_path, key_path, x509.load_pem_x509_certificate(doc["cert"].encode())


def write_config(
    workdir: Path, *, hmac_key_hex: str, default_auth: bool = False, no_auth: bool = False
) -> Path:
    """config.json: profile ``device`` with ``auth_key``; ``default`` without it (unless ``default_auth``).

    ``no_auth`` drops every ``auth_key``: CFSSL then does not serve ``/authsign`` at all.
    """
    key_file = workdir / "hmac.key"
    # No trailing newline: Debian's cfssl does not trim file: keys and refuses to start.
    key_file.write_bytes(hmac_key_hex.encode())
    os.chmod(key_file, 0o600)
    default: dict[str, object] = {"usages": ["signing", "client auth"], "expiry": f"{DEFAULT_EXPIRY_HOURS}h"}
    device: dict[str, object] = {
        "usages": ["digital signature", "client auth"],
        "expiry": f"{DEVICE_EXPIRY_HOURS}h",
    }
    config: dict[str, object] = {"signing": {"default": default, "profiles": {AUTH_PROFILE: device}}}
    if not no_auth:
        device["auth_key"] = "primary"
        if default_auth:
            default["auth_key"] = "primary"
        config["auth_keys"] = {"primary": {"type": "standard", "key": f"file:{key_file}"}}
    path = workdir / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass
class CfsslServer:
    """A running ``cfssl serve``."""

    url: str
    port: int
    pid: int
    ca_certificate: x509.Certificate
    hmac_key_hex: str
    workdir: Path
    log_path: Path
    process: asyncio.subprocess.Process = field(repr=False)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def _wait_ready(url: str, process: asyncio.subprocess.Process, within: float) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"cfssl serve exited with code {process.returncode}")
            try:
                async with session.post(f"{url}/api/v1/cfssl/info", data=b"{}") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"cfssl serve did not answer POST /info within {within}s")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def cfssl_serve(
    *,
    hmac_key_hex: str = DEFAULT_HMAC_KEY,
    default_auth: bool = False,
    no_auth: bool = False,
    port: int | None = None,
    startup_timeout: float = 20.0,
) -> AsyncIterator[CfsslServer]:
    """Start a real ``cfssl serve`` with a fresh CA; yield it; stop it and delete its files."""
    binary = cfssl_binary()
    with tempfile.TemporaryDirectory(prefix="cfssl-test-") as tmp:
        workdir = Path(tmp)
        cert_path, key_path, ca_cert = await asyncio.to_thread(make_ca, workdir)
        config = write_config(workdir, hmac_key_hex=hmac_key_hex, default_auth=default_auth, no_auth=no_auth)
        log_path = workdir / "serve.log"
        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between probing and binding
            chosen = port or free_port()
            with log_path.open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    binary,
                    "serve",
                    "-address",
                    "127.0.0.1",
                    "-port",
                    str(chosen),
                    "-ca",
                    str(cert_path),
                    "-ca-key",
                    str(key_path),
                    "-config",
                    str(config),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            url = f"http://127.0.0.1:{chosen}"
            server = CfsslServer(url, chosen, process.pid, ca_cert, hmac_key_hex, workdir, log_path, process)
            try:
                await _wait_ready(url, process, startup_timeout)
            except RuntimeError as exc:
                await _stop(process)
                last_error = RuntimeError(f"{exc}\n--- cfssl serve log ---\n{server.log_tail()}")
                if port is not None or "address already in use" not in server.log_tail():
                    break
                continue
            try:
                yield server
            finally:
                await _stop(process)
            return
        assert last_error is not None
        raise last_error


ProxyMode = Literal["forward", "blackhole", "reset"]


class FaultProxy:
    """A TCP relay to ``target`` on a fixed 127.0.0.1 port with switchable faults.

    ``forward`` relays; ``blackhole`` accepts and reads but never answers; ``reset`` closes each
    connection at once; :meth:`refuse` stops listening (connection refused) until :meth:`listen`.
    Switching modes drops existing connections so pooled keep-alive connections see the change.
    """

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.mode: ProxyMode = "forward"
        self.accepted: dict[ProxyMode, int] = {"forward": 0, "blackhole": 0, "reset": 0}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def listen(self) -> None:
        """Start (or resume) accepting connections."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def refuse(self) -> None:
        """Stop listening and drop connections: new connections are refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._drop_all()

    async def set_mode(self, mode: ProxyMode) -> None:
        """Switch behaviour for new and existing connections."""
        self.mode = mode
        await self._drop_all()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0.02)  # let clients see the EOF before the next request

    async def aclose(self) -> None:
        """Stop everything."""
        await self.refuse()

    async def __aenter__(self) -> FaultProxy:
        await self.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        self.accepted[mode] += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if mode == "reset":
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            if mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(up_writer)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(Exception):
                    dst.close()

            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
            self._writers.discard(up_writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
