"""Real proxy servers on 127.0.0.1 for tests: tinyproxy (HTTP CONNECT) and dante (SOCKS5).

Each runs as a child process on a free port with a configuration written to a
temporary folder, its log captured there; ``start()`` returns once the port
accepts connections, ``stop()`` ends the process and every process it forked
(it runs in a process group of its own) and removes the folder. ``kill()``
ends it at once (a proxy that dies mid-stream); ``start()`` again brings it
back on the same port.

Example::

    async with TinyProxy(allow_ports=[sim.port]) as proxy:
        config = create_websocket_config(sim.url, proxy=proxy.url)

The binaries come from Debian's ``tinyproxy`` and ``dante-server`` packages
(``scripts/install_test_servers.sh``). Dante checks user names and passwords
against the system's users: ``throwaway_user()`` creates one for a test (root
only) and removes it after.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional
from urllib.parse import quote

__all__ = ["DanteProxy", "ProxyProcess", "TinyProxy", "free_port", "process_group", "throwaway_user"]

# Seconds a proxy may take to listen, and to exit when asked.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0

DANTED = "/usr/sbin/danted"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProxyProcess:
    """A proxy server run as a child process on 127.0.0.1 (the base of ``TinyProxy`` and ``DanteProxy``).

    Args:
        scheme: The scheme of ``url`` (``http``, ``socks5``).
        user: User name the proxy requires, or None for none.
        password: That user's password.
    """

    def __init__(self, scheme: str, user: Optional[str] = None, password: Optional[str] = None) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.port = free_port()
        self.starts = 0
        self._folder = Path(tempfile.mkdtemp(prefix=f"fastws-{scheme}-proxy-"))
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def url(self) -> str:
        """The proxy's URL, with the credentials when it requires them."""
        return self.url_with(self.user, self.password)

    def url_with(self, user: Optional[str], password: Optional[str]) -> str:
        """The proxy's URL with other credentials (for a test of wrong ones)."""
        userinfo = "" if user is None else f"{quote(user, safe='')}:{quote(password or '', safe='')}@"
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """What the proxy logged so far (all its starts)."""
        path = self._folder / "proxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _command(self, config: Path) -> list[str]:
        raise NotImplementedError

    def _config(self) -> str:
        raise NotImplementedError

    async def start(self) -> None:
        """Start the proxy on its port and wait until it accepts connections.

        Raises:
            RuntimeError: it exited or did not listen within 10 s (its log is
                in the message).
        """
        if self.running:
            return
        config = self._folder / "proxy.conf"
        config.write_text(self._config())
        self._log = open(self._folder / "proxy.log", "ab")
        self._process = subprocess.Popen(self._command(config), stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + _START_TIMEOUT
        while not await _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"{self._command(config)[0]} did not start on port {self.port}:\n"
                                   f"{self.log_text()[-2000:]}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        """End the proxy and its children at once (SIGKILL): its connections drop."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """End the proxy (SIGTERM to its process group, SIGKILL after 5 s) and wait for it."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if process.poll() is None:
                self.kill()
                process.wait()
            # Children forked by the proxy are in its group: make sure none outlives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while process_group(process.pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    async def close(self) -> None:
        """Stop the proxy and remove its folder."""
        await self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)

    async def __aenter__(self) -> "ProxyProcess":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class TinyProxy(ProxyProcess):
    """tinyproxy: an HTTP proxy that opens CONNECT tunnels to ``allow_ports`` of any host.

    Args:
        allow_ports: Ports CONNECT may reach (tinyproxy refuses others with 403).
        user: With ``password``, the Basic credentials it requires (407 otherwise).
        password: The user's password.
    """

    def __init__(self, allow_ports: Iterable[int], user: Optional[str] = None,
                 password: Optional[str] = None) -> None:
        super().__init__("http", user, password)
        self.allow_ports = list(allow_ports)

    def _command(self, config: Path) -> list[str]:
        return ["tinyproxy", "-d", "-c", str(config)]

    def _config(self) -> str:
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Allow 127.0.0.1", "LogLevel Connect",
                 "MaxClients 100", "Timeout 600"]
        lines += [f"ConnectPort {port}" for port in self.allow_ports]
        if self.user is not None:
            lines.append(f"BasicAuth {self.user} {self.password}")
        return "\n".join(lines) + "\n"


class DanteProxy(ProxyProcess):
    """dante (``danted``): a SOCKS proxy to any address, logging each connection.

    Args:
        user: A system user whose name and password it requires
            (``socksmethod: username``, see ``throwaway_user``); None for
            no authentication.
        password: The user's password.
        scheme: ``socks5``, or ``socks4`` (the same server, ``url`` says
            which protocol to speak; SOCKS4 has no passwords).
        nodelay: Set ``TCP_NODELAY`` on both sides of every tunnel, so the
            proxy does not hold small writes back (Nagle's algorithm).
    """

    def __init__(self, user: Optional[str] = None, password: Optional[str] = None,
                 scheme: str = "socks5", nodelay: bool = False) -> None:
        super().__init__(scheme, user, password)
        self.nodelay = nodelay

    def _command(self, config: Path) -> list[str]:
        return [DANTED, "-f", str(config), "-N", "1"]

    def _config(self) -> str:
        method = "username" if self.user is not None else "none"
        return "\n".join([
            "logoutput: stderr",
            f"internal: 127.0.0.1 port = {self.port}",
            "external: 127.0.0.1",
            "clientmethod: none",
            f"socksmethod: {method}",
            "user.privileged: root",
            "user.unprivileged: nobody",
            # Server settings come before the rules.
            *(["internal.tcp.tcp_nodelay: 1", "external.tcp.tcp_nodelay: 1"] if self.nodelay else []),
            "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
            "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect disconnect error }",
        ]) + "\n"


@contextlib.contextmanager
def throwaway_user(password: Optional[str] = None) -> Iterator[tuple[str, str]]:
    """Create a system user with ``password`` (random by default) for the test; remove it after.

    Yields:
        The user's name and password. The user has no home and no login shell.

    Raises:
        PermissionError: not root (creating users needs it).
    """
    if os.geteuid() != 0:
        raise PermissionError("throwaway_user() creates a system user: run as root")
    name = f"fastws{os.getpid()}{secrets.token_hex(3)}"
    password = password or secrets.token_urlsafe(12)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}".encode(), check=True, capture_output=True)
        yield name, password
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def process_group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies left out), read from ``/proc``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:         # it ended meanwhile
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


async def _accepts(port: int) -> bool:
    """True if 127.0.0.1:``port`` accepts a TCP connection now."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
