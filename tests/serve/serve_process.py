"""``corese-edge serve`` as a user starts it: a subprocess on free loopback ports, read until it
prints that it is ready (or exits)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from corese_edge.serve.server import free_ports

READY_LINE = "Ctrl-C or SIGTERM stops it"


class ServeProcess:
    """``python -m corese_edge serve ARTIFACT --http-port .. --grpc-port .. --metrics-port .. *args``."""

    def __init__(self, artifact: Path, *args: str, ports: list[int] | None = None, env: dict | None = None):
        self.http, self.grpc, self.metrics = ports or free_ports(3)
        self.cmd = [sys.executable, "-m", "corese_edge", "serve", str(artifact), "--http-port", str(self.http),
                    "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics), *args]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env if env is not None else dict(os.environ))
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True).start()

    def _pump(self, stream, lines: list[str], watch: bool) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if watch and READY_LINE in line:
                self._ready.set()
        if watch:
            self._ready.set()  # closed: it exited

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def wait_ready(self, timeout_s: float = 240.0) -> "ServeProcess":
        start = time.monotonic()
        if not self._ready.wait(timeout_s) or self.proc.poll() is not None:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"corese-edge serve was not ready after {time.monotonic() - start:.0f} s "
                                 f"(status {self.proc.returncode}):\n" + "\n".join(self.stdout + self.stderr))
        self.ready_s = time.monotonic() - start
        return self

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
