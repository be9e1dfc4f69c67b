"""``corese-edge serve ARTIFACT``: NVIDIA Triton Inference Server on the artifact's model repository.

corese-edge has no server of its own.  ``serve`` writes the repository of
:func:`corese_edge.serve.triton.package_triton` and runs a real ``tritonserver`` on it:

* ``--tritonserver PATH``, or ``tritonserver`` on ``PATH`` (NVIDIA's container, Triton's Jetson
  tarball): every backend it was built with, so ``coresse`` uses the artifact's native backend;
* otherwise the Triton server inside the ``nvidia-pytriton`` wheel (extra ``serve``).  That build
  has only the Python backend, so ``coresse`` is the Python-backend model running corese-edge's own
  runner (``package --backend python``).

The bundled server needs three things that the wheel leaves to its own ``Triton`` class, which
corese-edge does not use (it would bind Python functions, not serve a repository):

* a backend folder holding the Python-backend stub built for the running interpreter's
  ``major.minor`` (the wheel ships one per version under ``python_backend_stubs/``);
* the running interpreter's ``libpython`` first on ``LD_LIBRARY_PATH``: the stub links
  ``libpython3.X.so.1.0`` by name, and where the system has another patch release of it (a pyenv
  or uv Python beside Debian's), model load fails with ``AttributeError: '_thread.RLock' object
  has no attribute '_recursion_count'``;
* this environment's ``site-packages`` (and the folder corese-edge is imported from) on
  ``PYTHONPATH``, because the stub's embedded interpreter starts from the base installation, not
  from the virtual environment.

Lifecycle: ports are checked before the start (a busy one is one line naming it and the option);
the server is polled on ``/v2/health/ready`` and each model's ``ready`` endpoint; SIGINT and
SIGTERM are passed on to ``tritonserver``, which stops taking new requests, answers those in flight
(up to ``--exit-timeout-secs``) and exits 0.  The server runs in its own session, so a terminal's
Ctrl-C reaches it once, through us, and it dies with us (``PR_SET_PDEATHSIG``) if we are killed.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from corese_edge.errors import MissingExtra, UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
#: seconds tritonserver waits for requests in flight after SIGINT / SIGTERM (its --exit-timeout-secs)
DEFAULT_EXIT_TIMEOUT_S = 30
#: seconds to wait for the server and every model to be ready
DEFAULT_READY_TIMEOUT_S = 180
BUNDLED_HINT = ("pip install 'corese-edge[serve]' (the Triton server bundled with nvidia-pytriton), "
                "or pass --tritonserver PATH (NVIDIA's tritonserver container, Triton's Jetson release tarball)")


@dataclass(frozen=True)
class TritonBinary:
    """A ``tritonserver`` executable.  ``bundled``: nvidia-pytriton's build (Python backend only),
    with its library folder and the package folder holding its backends and stubs."""

    executable: Path
    bundled: bool
    libs: Path | None = None
    package: Path | None = None

    @property
    def description(self) -> str:
        return f"{self.executable} (bundled with nvidia-pytriton: Python backend only)" if self.bundled else str(self.executable)


def find_tritonserver(explicit: str | os.PathLike | None = None) -> TritonBinary:
    """``explicit`` (it must be an executable file), else ``tritonserver`` on ``PATH``, else the
    server inside the ``nvidia-pytriton`` wheel; none of them is a :class:`MissingExtra` line."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise UserError(f"--tritonserver {path}: not an executable file; give the tritonserver binary "
                            "(/opt/tritonserver/bin/tritonserver in NVIDIA's container)")
        return TritonBinary(path, bundled=False)
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonBinary(Path(on_path), bundled=False)
    return bundled_tritonserver()


def bundled_tritonserver() -> TritonBinary:
    """nvidia-pytriton's ``tritonserver``, found without importing pytriton (which starts logging,
    zmq and its own client stack)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(f"no tritonserver on PATH and nvidia-pytriton is not installed: {BUNDLED_HINT}")
    package = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    executable = package / "bin" / "tritonserver"
    # a wheel install keeps the vendored libraries beside the package, an editable one inside it
    libs = next((p for p in (package.parent.parent / "nvidia_pytriton.libs", package / "external_libs") if p.is_dir()), None)
    if not executable.is_file() or libs is None:
        raise MissingExtra(f"nvidia-pytriton at {package.parent} has no tritonserver build "
                           f"(a platform without its wheel?): {BUNDLED_HINT}")
    return TritonBinary(executable, bundled=True, libs=libs, package=package)


def python_stub(binary: TritonBinary, version: str | None = None) -> Path:
    """The bundled Python-backend stub built for ``version`` (default: this interpreter's ``X.Y``)."""
    assert binary.package is not None
    version = version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    stubs = binary.package / "python_backend_stubs"
    stub = stubs / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in stubs.iterdir() if p.is_dir()) if stubs.is_dir() else []
        raise UserError(f"nvidia-pytriton has no Python-backend stub for Python {version} (it has {', '.join(have) or 'none'}); "
                        "run corese-edge under one of those, or pass --tritonserver PATH")
    return stub


def prepare_backends(binary: TritonBinary, workspace: Path) -> Path:
    """``workspace/backends``: the bundled Python backend with this interpreter's stub (links, not copies)."""
    assert binary.package is not None
    source = binary.package / "backends" / "python"
    target = workspace / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    links = {entry.name: entry for entry in source.iterdir()}
    links["triton_python_backend_stub"] = python_stub(binary)
    for name, src in links.items():
        dst = target / name
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        dst.symlink_to(src.resolve())
    return workspace / "backends"


def bundled_environment(binary: TritonBinary, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the bundled server and its Python-backend stubs need (see the module doc)."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldpath = [p for p in (libdir, str(binary.libs or "")) if p]
    if env.get("LD_LIBRARY_PATH"):
        ldpath.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ldpath)
    import corese_edge

    here = str(Path(corese_edge.__file__).resolve().parent.parent)
    paths = [here] + [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # the stub and anything it starts see this environment's console scripts first
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


# ----------------------------------------------------------------------------- ports
def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound now (another server holds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(n: int, host: str = DEFAULT_HOST) -> list[int]:
    """``n`` distinct ports on ``host`` that are free now (bound to port 0 together, then released;
    another process may take one before it is used)."""
    socks = [socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def check_ports(host: str, ports: dict[str, int]) -> None:
    """One line for the first busy port, naming the option that moves it; also refuses duplicates."""
    seen: dict[int, str] = {}
    for kind, port in ports.items():
        if port in seen:
            raise UserError(f"--{kind}-port {port} is also the {seen[port]} port; give each its own port")
        seen[port] = kind
        if not 0 < port < 65536:
            raise UserError(f"--{kind}-port {port} is not a TCP port (1-65535)")
    for kind, port in ports.items():
        if port_in_use(host, port):
            raise UserError(f"port {port} on {host} is already in use (Triton's {kind} port; another server?); "
                            f"stop it or pass --{kind}-port N")


# ----------------------------------------------------------------------------- the server process
def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


_ERROR_LINE = re.compile(r"^E\d{4} [\d:.]+ +\d+ [^\]]*\] ?(.*)$")
#: error lines Triton prints on every machine without a CUDA driver, whether or not anything fails
_NOISE = ("CudaDriverHelper has not been initialized",)


def first_error(log: str) -> str | None:
    """The error that explains a failed start: the first model that failed to load, else the first
    error line that is not start-up noise; without glog's prefix (``E1204 03:50:00.1 42 file.cc:10]``)
    and the quotes Triton puts around it."""
    errors = []
    for line in log.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if m and m.group(1).strip():
            message = m.group(1).strip()
            if len(message) > 1 and message[0] == message[-1] == '"':
                message = message[1:-1]
            if not any(n in message for n in _NOISE):
                errors.append(message)
    return next((e for e in errors if e.startswith("failed to load")), errors[0] if errors else None)


_IN_FLIGHT = re.compile(r"Found (\d+) model versions that have in-flight inferences")


def answered_everything(log: str) -> bool:
    """Whether a tritonserver that was told to stop had no inference left in flight when it exited.

    On SIGINT / SIGTERM Triton first waits, up to ``--exit-timeout-secs``, for its HTTP / gRPC
    connections to close, then for the inferences in flight, and exits 1 ("Exit timeout expired")
    if anything is still open when the time is up.  An idle keep-alive connection (a client that was
    never closed) is enough for that, although every request was answered: the log's last count of
    in-flight inferences, taken after the requests finished, tells the two apart."""
    tail = log[log.rfind("Signal ("):] if "Signal (" in log else log
    counts = _IN_FLIGHT.findall(tail)
    return bool(counts) and counts[-1] == "0"


def _url_host(host: str) -> str:
    """``host`` as it stands in a URL or ``host:port`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


@dataclass
class TritonServer:
    """A running ``tritonserver`` on ``repository`` (start with :meth:`start`, stop with :meth:`stop`)."""

    binary: TritonBinary
    repository: Path
    models: Sequence[str]
    host: str = DEFAULT_HOST
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    workspace: Path | None = None
    exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S
    log_verbose: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    backends: Path | None = None  # the bundled server's backend folder, made by start()

    @property
    def http_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.ports['http']}"

    @property
    def _probe_host(self) -> str:
        # a wildcard address is reached on loopback
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    def command(self) -> list[str]:
        cmd = [str(self.binary.executable), f"--model-repository={self.repository}",
               f"--http-address={self.host}", f"--http-port={self.ports['http']}",
               f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
               f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
               "--allow-gpu-metrics=false" if self.binary.bundled else "--allow-gpu-metrics=true",
               f"--exit-timeout-secs={self.exit_timeout_s}", "--exit-on-error=true", "--strict-readiness=true",
               f"--log-verbose={self.log_verbose}"]
        if self.binary.bundled:
            assert self.backends is not None, "start() prepares the bundled server's backends"
            cmd.append(f"--backend-directory={self.backends}")
            caches = self.binary.package / "caches" if self.binary.package else None
            if caches is not None and caches.is_dir():
                cmd.append(f"--cache-directory={caches}")
        return cmd

    def start(self) -> None:
        check_ports(self.host, self.ports)
        workspace = self.workspace or Path(tempfile.mkdtemp(prefix="corese-serve-"))
        self.workspace = workspace
        if self.binary.bundled:
            self.backends = prepare_backends(self.binary, workspace)
        env = bundled_environment(self.binary) if self.binary.bundled else dict(os.environ)
        self.log_path = workspace / "tritonserver.log"
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            raise UserError(f"could not start {self.binary.executable}: {exc.strerror or exc}") from None
        finally:
            log.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def _get(self, path: str) -> int:
        # no proxy: an http_proxy in the environment must not stand between us and our own server
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{_url_host(self._probe_host)}:{self.ports['http']}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return 0

    def wait_ready(self, timeout_s: float = DEFAULT_READY_TIMEOUT_S, poll_s: float = 0.2) -> None:
        """Block until the server and every model in :attr:`models` answer ready; a server that
        exits or stays unready is one :class:`UserError` line with its first error."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise UserError(self._failure(f"tritonserver exited with status {code} before it was ready"))
            if self._get("/v2/health/ready") == 200 and all(self._get(f"/v2/models/{m}/ready") == 200 for m in self.models):
                return
            if time.monotonic() > deadline:
                self.stop(kill_after_s=5)
                raise UserError(self._failure(f"tritonserver was not ready after {timeout_s:.0f} s"))
            time.sleep(poll_s)

    def _failure(self, what: str) -> str:
        log = self.log_text()
        if "Address already in use" in log:
            return f"{what}: a port is already in use ({self.ports}); pass other --http-port/--grpc-port/--metrics-port"
        reason = first_error(log)
        return f"{what}: {reason or 'see its log'} (full log: {self.log_path})"

    def send(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, signum: int = signal.SIGTERM, kill_after_s: float | None = None) -> int | None:
        """Ask the server to stop (it answers requests in flight first); kill it after
        ``kill_after_s`` (default: its exit timeout plus 10 s)."""
        if self.process is None:
            return None
        self.send(signum)
        try:
            return self.process.wait(timeout=self.exit_timeout_s + 10 if kill_after_s is None else kill_after_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- corese-edge serve
@dataclass(frozen=True)
class ServeOptions:
    """``corese-edge serve``'s options (the CLI builds one)."""

    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_PORTS["http"]
    grpc_port: int = DEFAULT_PORTS["grpc"]
    metrics_port: int = DEFAULT_PORTS["metrics"]
    backend: str = "auto"
    max_batch: int | None = None
    max_queue_delay_us: int | None = None
    instances: int | None = None  # None: auto (see :func:`cpu_layout`)
    threads: int | None = None  # None: auto
    faces: bool = True
    face_model: str | None = None
    tritonserver: str | None = None
    repository: str | None = None
    exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    log_verbose: int = 0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}


def _backend_for(binary: TritonBinary, asked: str) -> str:
    if asked == "auto":
        return "python" if binary.bundled else "native"
    if asked == "native" and binary.bundled:
        raise UserError("the Triton server bundled with nvidia-pytriton has only the Python backend: "
                        "use --backend python (or auto), or pass --tritonserver PATH to a full tritonserver")
    return asked


#: runner backend -> (module, extra) the Python-backend coresse imports inside the bundled server
_PYTHON_MODEL_NEEDS = {"ort": ("onnxruntime", "export"), "openvino": ("openvino", "openvino")}


def cpu_layout(backend: str, runner: str | None, instances: int | None, threads: int | None,
               cores: int | None = None) -> tuple[int, int | None]:
    """``(instances, threads per instance)`` for ``coresse``; ``runner``: the artifact's runner
    backend (:func:`corese_edge.runtime.artifacts.format_of`), ``None`` when unknown.

    What the user gave is kept.  Otherwise, for the Python backend on a CPU artifact (ONNX Runtime,
    OpenVINO), two instances with half the cores each: one instance does the Python backend's
    request hop and its runner's compute one after the other, so two overlap them
    (``benchmarks/serve_load.py``: coresse-lite INT8 on 2 cores, 16 clients, 803 img/s with 2 x 1
    thread against 639 with 1 x 2 threads).  A plan, or a native backend, keeps one instance and
    its backend's own threads."""
    cores = cores or os.cpu_count() or 1
    cpu = backend == "python" and runner in _PYTHON_MODEL_NEEDS
    if instances is None:
        instances = 2 if cpu and cores >= 2 else 1
    if threads is None and cpu:
        threads = max(1, cores // instances)
    return instances, threads


def runtime_of_python_model(artifact: str | os.PathLike, runner: str) -> None:
    """Refuse, before Triton starts, an artifact whose runtime (``runner``, its runner backend) the
    bundled server's Python environment (this one) lacks: one :class:`MissingExtra` line instead
    of a failed model load."""
    from corese_edge.errors import require

    need = _PYTHON_MODEL_NEEDS.get(runner)
    if need is not None:
        require(need[0], need[1], f"the Python-backend coresse runs {Path(artifact).name} with it")


def serve(artifact: str | os.PathLike, options: ServeOptions, echo: Callable[[str], None] = print) -> int:
    """Package ``artifact``, run Triton on it until SIGINT / SIGTERM, and return its exit status."""
    from corese_edge.serve.triton import DEFAULT_QUEUE_DELAY_US, package_triton

    if not options.host:
        raise UserError("--host must name an address (127.0.0.1 by default; 0.0.0.0 for every interface)")
    binary = find_tritonserver(options.tritonserver)
    backend = _backend_for(binary, options.backend)
    check_ports(options.host, options.ports)  # before the repository is written: a busy port costs nothing
    from corese_edge.runtime.artifacts import format_of

    # a missing file or an unknown format is package_triton's to name (read_artifact's line)
    try:
        runner = format_of(artifact).backend if Path(artifact).is_file() else None
    except UserError:
        runner = None
    if backend == "python" and runner is not None:
        runtime_of_python_model(artifact, runner)  # a missing one is not worth writing a repository for
    instances, threads = cpu_layout(backend, runner, options.instances, options.threads)
    workspace = Path(tempfile.mkdtemp(prefix="corese-serve-"))
    root = Path(options.repository) if options.repository else workspace / "models"
    try:
        repo = package_triton(artifact, root, backend=backend, max_batch=options.max_batch,
                              max_queue_delay_us=DEFAULT_QUEUE_DELAY_US if options.max_queue_delay_us is None else options.max_queue_delay_us,
                              instances=instances, threads=threads, faces=options.faces, face_model=options.face_model)
    except BaseException:
        shutil.rmtree(workspace, ignore_errors=True)  # nothing ran: no log worth keeping
        raise
    for note in repo.notes:
        echo(note)
    server = TritonServer(binary, repo.root, list(repo.models), host=options.host, ports=options.ports,
                          workspace=workspace, exit_timeout_s=options.exit_timeout_s, log_verbose=options.log_verbose)
    received: list[int] = []
    clean = False  # a stop with every request answered: the workspace (and its log) can go

    def forward(signum, _frame):
        received.append(signum)
        if signum == signal.SIGINT and received.count(signal.SIGINT) > 1 and server.process is not None:
            server.process.kill()  # a second Ctrl-C: do not wait for the requests in flight any longer
        else:
            server.send(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        try:
            server.wait_ready(options.ready_timeout_s)
        except UserError:
            if received:  # stopped while it was starting: not a failure
                code = server.wait()
                clean = code in (0, -signal.SIGTERM, -signal.SIGINT)
                return code
            raise
        t = repo.tensors
        echo(f"Triton is serving {', '.join(repo.models)} from {repo.root} "
             f"({repo.backend} backend; {binary.description})")
        echo(f"  {'coresse':<14} {t.input_name} {t.input_dtype} [N, {', '.join(map(str, t.input_dims))}] -> "
             f"{t.output_name} float32 [N, {', '.join(map(str, t.output_dims))}], max batch {repo.max_batch}, "
             f"dynamic batching (preferred {repo.opt_batch}), {instances} instance{'s' if instances > 1 else ''}"
             + (f" x {threads} thread{'s' if threads > 1 else ''}" if threads else ""))
        if "coresse_faces" in repo.models:
            echo(f"  {'coresse_faces':<14} image BYTES [1] (one JPEG or PNG) -> boxes, landmarks, scores, probabilities, labels")
        host = _url_host(options.host)
        echo(f"  HTTP     {server.http_url}   (KServe v2: POST /v2/models/coresse/infer)")
        echo(f"  gRPC     {host}:{options.grpc_port}")
        echo(f"  metrics  http://{host}:{options.metrics_port}/metrics")
        echo("Ctrl-C or SIGTERM stops it after the requests in flight are answered.")
        code = server.wait()
        if code != 0 and not received:
            raise UserError(server._failure(f"tritonserver exited with status {code}"))
        if received and code == 1 and answered_everything(server.log_text()):
            echo(f"coresse: every request was answered; idle client connections kept Triton waiting "
                 f"for the whole --exit-timeout ({options.exit_timeout_s} s) before it stopped")
            code = 0
        clean = code in (0, -signal.SIGTERM, -signal.SIGINT)
        return 0 if received and clean else code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if server.process is not None and server.process.poll() is None:
            server.stop(kill_after_s=options.exit_timeout_s + 10)
        if clean or server.process is None:
            shutil.rmtree(workspace, ignore_errors=True)  # kept after a failure: it holds the log
