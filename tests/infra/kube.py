"""A real Kubernetes API server (etcd + kube-apiserver) for the operator tests.

Why not a fake: the operator's correctness depends on API-server behaviour that
mocks get wrong (CRD schema validation and defaulting, RBAC, resourceVersion
conflicts, watch semantics, server-side apply). Why not kind/minikube/Docker:
none of them run on our machines. What does run is the Go toolchain and the Go
module proxy, so the control plane is compiled from the upstream Go modules by
the small wrapper module in ``tests/infra/kube/`` (``go.mod`` pins the
versions; ``go.sum`` makes the build reproducible from a warm cache).

Everything that is expensive to produce lives under ``CACHE_DIR``: the module
cache, the build cache and the finished binaries (in a directory named after a
hash of the recipe), so a warm machine's ``build()`` is a stat() or two.

There is no kubelet: Pods stay Pending. Tests assert on the objects the
operator creates. ``start(controller_manager=True)`` additionally runs
kube-controller-manager for garbage collection and Deployment -> ReplicaSet.

CLI::

    python -m tests.infra.kube build           # prints the binaries as JSON
    python -m tests.infra.kube start [--controller-manager]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import ctypes
import datetime
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

try:
    from .ports import free_port
except ImportError:  # ports.py is owned by a colleague; keep working without it.
    import socket

    def free_port() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


CACHE_DIR: Path = Path(
    os.environ.get("CELLCHAT_CACHE") or Path.home() / ".cache" / "cellchat"
).expanduser()

GO_MODULE_DIR: Path = Path(__file__).resolve().parent / "kube"

# helm is installed with `go install pkg@version`, which uses helm's own go.sum,
# so it needs no entry in our go.mod; the version is pinned here instead. 3.20
# is built against client-go 0.35, the same minor as the server we build.
HELM_VERSION = "v3.20.2"

# Bump when the build changes in a way the hash cannot see (environment, flags
# other than -ldflags, which are hashed as they are passed).
_RECIPE_VERSION = "1"

_GO_BINARIES = ("kube-apiserver", "etcd", "kube-controller-manager")
_ALL_BINARIES = (*_GO_BINARIES, "helm")

# The apiserver's clusterIP range. 10.0.0.1 becomes the `kubernetes` Service IP,
# which the serving certificate must name for in-cluster-style clients.
_SERVICE_CIDR = "10.0.0.0/24"
_SERVICE_IP = "10.0.0.1"


# --------------------------------------------------------------------------- build


def _go() -> str:
    go = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists() and not shutil.which(go):
        raise RuntimeError(f"Go toolchain not found (tried {go!r}); set $GO")
    return go


def _recipe_hash() -> str:
    h = hashlib.sha256()
    # go.mod + go.sum decide every dependency; the mains and the helm pin are
    # the rest of what ends up in the binaries.
    files = [GO_MODULE_DIR / "go.mod", GO_MODULE_DIR / "go.sum"]
    files += sorted((GO_MODULE_DIR / "cmd").glob("*/main.go"))
    for f in files:
        h.update(f.relative_to(GO_MODULE_DIR).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    h.update(f"recipe={_RECIPE_VERSION};{_kube_ldflags()};{_helm_ldflags()}".encode())
    return h.hexdigest()[:16]


def bin_dir() -> Path:
    return CACHE_DIR / f"kube-bin-{_recipe_hash()}"


def _kubernetes_version() -> str:
    m = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (GO_MODULE_DIR / "go.mod").read_text(), re.M)
    if not m:
        raise RuntimeError("k8s.io/kubernetes is not required in tests/infra/kube/go.mod")
    return m.group(1)


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(CACHE_DIR / "gomod"),
        GOCACHE=str(CACHE_DIR / "gocache"),
        # Without -modcacherw the module cache is read-only and `rm -rf` of
        # CACHE_DIR fails, which is the one thing people do with a cache.
        GOFLAGS="-modcacherw -buildvcs=false",
        # Never try to download a different Go toolchain: there is no network
        # for that, and the installed Go accepts every pinned go directive.
        GOTOOLCHAIN="local",
        # Static binaries: no C compiler needed to build, no libc to match at
        # run time, and the same build-cache keys on every machine.
        CGO_ENABLED="0",
    )
    env.pop("GOWORK", None)
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _run_logged(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: IO[str]) -> None:
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    rc = subprocess.call(list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        log.flush()
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed with exit code {rc}; see {log.name}")


def build() -> dict[str, Path]:
    """Return paths of kube-apiserver, etcd, kube-controller-manager and helm,
    compiling them first if this recipe has not been built on this machine."""
    out = bin_dir()
    binaries = {name: out / name for name in _ALL_BINARIES}
    if all(p.is_file() for p in binaries.values()):
        return binaries

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers (or two terminals) may all call build(); let one
    # compile while the others wait, then find the finished directory.
    with open(CACHE_DIR / "kube-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(p.is_file() for p in binaries.values()):
            return binaries
        # Holding the lock means no other build is running: any staging
        # directory left over is from a build that was killed.
        for stale in CACHE_DIR.glob("kube-bin-*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=CACHE_DIR))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the binaries from other users
        log_path = CACHE_DIR / "kube-build.log"
        started = time.monotonic()
        print(
            f"tests.infra.kube: building Kubernetes {_kubernetes_version()} control plane and "
            f"helm {HELM_VERSION} into {out} (cold: tens of minutes on 2 cores; log: {log_path})",
            file=sys.stderr,
            flush=True,
        )
        try:
            with open(log_path, "w") as log:
                _build_into(staging, log)
        except Exception as e:
            shutil.rmtree(staging, ignore_errors=True)
            tail = _tail(log_path)
            raise RuntimeError(f"{e}\n--- {log_path} (tail) ---\n{tail}") from e
        # Publish atomically so a half-built directory is never mistaken for a
        # cached one (the existence check above is the whole cache protocol).
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        print(
            f"tests.infra.kube: built in {time.monotonic() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )
    return binaries


def _kube_ldflags() -> str:
    version = _kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    # Built as a library, kube-apiserver would report v0.0.0-master: helm's
    # kubeVersion checks and clients' discovery want the real version.
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )


def _helm_ldflags() -> str:
    major, minor = _kubernetes_version().lstrip("v").split(".")[:2]
    # helm's release Makefile injects these; without them `helm template` and
    # `helm lint` (no cluster to ask) assume Kubernetes 1.20 and reject charts
    # whose kubeVersion wants anything newer.
    return " ".join(
        [
            "-s",
            "-w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
        ]
    )


def _build_into(dest: Path, log: IO[str]) -> None:
    go = _go()
    _run_logged(
        [
            go,
            "build",
            "-mod=readonly",  # go.sum is committed; never rewrite it here.
            "-trimpath",
            f"-ldflags={_kube_ldflags()}",
            "-o",
            str(dest) + "/",
            *(f"./cmd/{name}" for name in _GO_BINARIES),
        ],
        cwd=GO_MODULE_DIR,
        env=_go_env(),
        log=log,
    )
    _run_logged(
        [
            go,
            "install",
            "-trimpath",
            f"-ldflags={_helm_ldflags()}",
            f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}",
        ],
        # Outside any module, so `go install pkg@version` uses helm's own go.mod.
        cwd=CACHE_DIR,
        env=_go_env(gobin=dest),
        log=log,
    )


# --------------------------------------------------------------------------- certificates


def _write_credentials(certs: Path) -> tuple[Path, Path, Path, Path]:
    """Create a CA, a serving cert signed by it, and a service-account key.

    A CA of our own (rather than --cert-dir's self-signed cert) lets every
    client verify TLS normally, so nobody needs insecure-skip-tls-verify and the
    warnings it brings. Returns (ca.crt, serving.crt, serving.key, sa.key).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    certs.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)  # tolerate clock skew
    not_after = now + datetime.timedelta(days=7)

    def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    # EC keys: generation is instant, unlike RSA, and every client here supports them.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cellchat-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName(name)
        for name in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1", _SERVICE_IP)]
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    # Service-account tokens are signed with RS256 by default, so this one is RSA.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    paths = (
        certs / "ca.crt",
        certs / "serving.crt",
        certs / "serving.key",
        certs / "service-account.key",
    )
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(pem_key(srv_key))
    paths[3].write_bytes(pem_key(sa_key))
    for p in (paths[2], paths[3]):
        p.chmod(0o600)
    return paths


# --------------------------------------------------------------------------- processes

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


# Looked up here, not in the child: loading libraries between fork and exec can
# deadlock on a lock some other thread held at fork time.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The kernel SIGKILLs the child when the thread that forked it exits, which
    # covers what atexit cannot (SIGKILL, a crash, an unhandled SIGTERM). Only
    # used when forking from the main thread: a worker thread's exit would
    # otherwise take etcd down in the middle of a test.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawn(cmd: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    on_main_thread = threading.current_thread() is threading.main_thread()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group, so terminating it can't hit the test runner and
            # so anything the server forks goes down with it.
            start_new_session=True,
            preexec_fn=_die_with_parent if on_main_thread else None,
        )
    with _live_lock:
        _live.add(proc)
    return proc


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    with _live_lock:
        _live.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        _terminate(proc, grace=5.0)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"<unreadable: {e}>"


# --------------------------------------------------------------------------- server


class KubeAPIServer:
    """A running etcd + kube-apiserver (+ optional kube-controller-manager).

    ``kubeconfig`` authenticates as an admin (group system:masters, which RBAC
    always allows) with a static bearer token and verifies the server against
    the generated CA; it works for the ``kubernetes`` client, kopf (via
    ``KUBECONFIG``) and helm alike.
    """

    def __init__(
        self,
        *,
        url: str,
        kubeconfig: Path,
        token: str,
        ca_file: Path,
        workdir: Path,
        processes: list[subprocess.Popen[bytes]],
        owns_workdir: bool,
    ) -> None:
        self.url = url
        self.kubeconfig = kubeconfig
        self.token = token
        self.ca_file = ca_file
        self.workdir = workdir
        self._processes = processes
        self._owns_workdir = owns_workdir

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, for running kopf, helm or kubectl against us."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def stop(self) -> None:
        # Reverse start order: clients of etcd first, so nothing logs a storm
        # of connection errors while etcd is already gone.
        for proc in reversed(self._processes):
            _terminate(proc)
        self._processes = []
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KubeAPIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KubeAPIServer(url={self.url!r}, kubeconfig={str(self.kubeconfig)!r})"


def _write_kubeconfig(path: Path, *, url: str, ca_file: Path, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "cellchat-test",
                "cluster": {
                    "server": url,
                    # Inline data, so the file stays valid if copied elsewhere.
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {"name": "cellchat-test", "context": {"cluster": "cellchat-test", "user": "admin"}}
        ],
        "current-context": "cellchat-test",
    }
    # JSON is valid YAML, and needs no YAML library here.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _wait_until(
    what: str,
    ready: Callable[[], bool],
    procs: dict[str, subprocess.Popen[bytes]],
    deadline: float,
) -> None:
    last = ""
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise _StartError(f"{name} exited with code {proc.returncode} before {what}")
        try:
            if ready():
                return
        except (OSError, http.client.HTTPException) as e:  # URLError, SSLError are OSErrors
            last = str(e)
        time.sleep(0.1)
    raise _StartError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


class _StartError(RuntimeError):
    pass


def _http_get(url: str, *, token: str | None = None, ctx: ssl.SSLContext | None = None) -> str:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
            body: bytes = resp.read()
    except urllib.error.HTTPError as e:
        # /readyz answers 500 with the failing checks while starting up.
        body = e.read()
    return body.decode(errors="replace")


def start(
    workdir: Path | None = None,
    timeout: float = 120,
    *,
    controller_manager: bool = False,
) -> KubeAPIServer:
    """Start etcd and kube-apiserver on free loopback ports; return once /readyz is ok.

    ``workdir`` keeps the data, certificates and logs (``etcd.log``,
    ``kube-apiserver.log``) after stop(); without it a temp dir is used and
    removed on stop(). ``controller_manager`` also starts
    kube-controller-manager (garbage collector, Deployment/ReplicaSet, namespace
    deletion) and waits until it has created the default ServiceAccount.
    """
    binaries = build()
    owns_workdir = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="cellchat-kube-")) if workdir is None else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    # Ports come from bind-to-0-and-release, so another process can grab one
    # before we use it; such a start fails fast and a retry picks new ports.
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(binaries, wd, deadline, owns_workdir, controller_manager)
        except _StartError as e:
            if attempt < attempts and _lost_port_race(wd) and time.monotonic() < deadline:
                continue
            # The workdir is kept even if it is ours, so the full logs stay readable.
            raise RuntimeError(
                f"Kubernetes test API server failed to start: {e}\n"
                f"workdir: {wd}\n"
                f"--- etcd.log (tail) ---\n{_tail(wd / 'etcd.log')}\n"
                f"--- kube-apiserver.log (tail) ---\n{_tail(wd / 'kube-apiserver.log')}"
                + (
                    f"\n--- kube-controller-manager.log (tail) ---\n"
                    f"{_tail(wd / 'kube-controller-manager.log')}"
                    if controller_manager
                    else ""
                )
            ) from e
    raise AssertionError("unreachable")


def _lost_port_race(wd: Path) -> bool:
    return any(
        "address already in use" in _tail(wd / log, 200)
        for log in ("etcd.log", "kube-apiserver.log")
    )


def _start_once(
    binaries: dict[str, Path],
    wd: Path,
    deadline: float,
    owns_workdir: bool,
    controller_manager: bool,
) -> KubeAPIServer:
    for stale in ("etcd", "etcd.log", "kube-apiserver.log", "kube-controller-manager.log"):
        p = wd / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    started: list[subprocess.Popen[bytes]] = []
    try:
        return _launch(binaries, wd, deadline, owns_workdir, controller_manager, started)
    except BaseException:
        for proc in reversed(started):
            _terminate(proc, grace=5.0)
        raise


def _launch(
    binaries: dict[str, Path],
    wd: Path,
    deadline: float,
    owns_workdir: bool,
    controller_manager: bool,
    started: list[subprocess.Popen[bytes]],
) -> KubeAPIServer:
    client_port, peer_port, secure_port = free_port(), free_port(), free_port()
    while len({client_port, peer_port, secure_port}) < 3:
        peer_port, secure_port = free_port(), free_port()

    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd = _spawn(
        [
            str(binaries["etcd"]),
            "--name=test",
            f"--data-dir={wd / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            "--initial-cluster-state=new",
            # Test data is disposable; fsync dominates etcd latency on CI disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        wd / "etcd.log",
    )
    started.append(etcd)
    _wait_until(
        "etcd /health",
        lambda: '"health":"true"' in _http_get(f"{etcd_url}/health"),
        {"etcd": etcd},
        deadline,
    )

    ca, serving_crt, serving_key, sa_key = _write_credentials(wd / "certs")
    token = secrets.token_urlsafe(32)
    token_file = wd / "tokens.csv"
    # token,user,uid,"groups": system:masters bypasses RBAC entirely.
    token_file.write_text(f'{token},admin,admin,"system:masters"\n')
    token_file.chmod(0o600)

    url = f"https://127.0.0.1:{secure_port}"
    apiserver = _spawn(
        [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            f"--secure-port={secure_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={wd / 'certs'}",
            f"--tls-cert-file={serving_crt}",
            f"--tls-private-key-file={serving_key}",
            f"--service-cluster-ip-range={_SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={token_file}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--allow-privileged=true",
            # The ServiceAccount admission plugin rejects Pods until a
            # controller has created the namespace's `default` ServiceAccount;
            # without kube-controller-manager that never happens.
            *([] if controller_manager else ["--disable-admission-plugins=ServiceAccount"]),
            "--profiling=false",
        ],
        wd / "kube-apiserver.log",
    )
    started.append(apiserver)

    ctx = ssl.create_default_context(cafile=str(ca))
    _wait_until(
        "kube-apiserver /readyz",
        lambda: _http_get(f"{url}/readyz", token=token, ctx=ctx).strip() == "ok",
        {"etcd": etcd, "kube-apiserver": apiserver},
        deadline,
    )

    kubeconfig = wd / "kubeconfig"
    _write_kubeconfig(kubeconfig, url=url, ca_file=ca, token=token)

    if controller_manager:
        kcm = _spawn(
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                # 0 = don't serve /healthz etc.; avoids fighting over port 10257.
                "--secure-port=0",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={ca}",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                "--use-service-account-credentials=false",
            ],
            wd / "kube-controller-manager.log",
        )
        started.append(kcm)
        # The default ServiceAccount is the first thing tests trip over when the
        # controllers aren't up yet; its existence means they are.
        _wait_until(
            "kube-controller-manager to create default/default ServiceAccount",
            lambda: (
                '"kind":"ServiceAccount"'
                in _http_get(
                    f"{url}/api/v1/namespaces/default/serviceaccounts/default", token=token, ctx=ctx
                )
            ),
            {"etcd": etcd, "kube-apiserver": apiserver, "kube-controller-manager": kcm},
            deadline,
        )

    return KubeAPIServer(
        url=url,
        kubeconfig=kubeconfig,
        token=token,
        ca_file=ca,
        workdir=wd,
        processes=list(started),
        owns_workdir=owns_workdir,
    )


# --------------------------------------------------------------------------- CLI


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.infra.kube", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find cached) binaries and print their paths as JSON")
    p_start = sub.add_parser(
        "start", help="start a server, print the kubeconfig path, wait for Ctrl-C"
    )
    p_start.add_argument("--workdir", type=Path, help="keep data, certs and logs here")
    p_start.add_argument("--timeout", type=float, default=120)
    p_start.add_argument(
        "--controller-manager", action="store_true", help="also run kube-controller-manager"
    )
    args = parser.parse_args(argv)

    if args.command == "build":
        print(json.dumps({k: str(v) for k, v in build().items()}, indent=2))
        return 0

    t0 = time.monotonic()
    server = start(args.workdir, args.timeout, controller_manager=args.controller_manager)
    print(
        f"# ready in {time.monotonic() - t0:.1f}s at {server.url}; Ctrl-C stops it", file=sys.stderr
    )
    print(server.kubeconfig, flush=True)
    # SIGTERM should clean up like Ctrl-C (atexit alone doesn't run on a signal).
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
