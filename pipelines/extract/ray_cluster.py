"""Joining a Ray cluster for ``extract --engine ray``: start one here, or join one by address
with a fast, one-line failure for an address that is closed or is not Ray, and the token Ray
2.60 clusters ask for."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from annotator.core import failpoints
from annotator.core.errors import InputError
from pipelines.extract.detector import cores as _cores

CONNECT_TIMEOUT_S = 5.0  # a HOST:PORT that does not answer this fast is reported unreachable


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'facemask-annotator[ray]'") from None
    return ray


def connect(ray, address: str | None, *, token: bool = False) -> bool:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), or start one
    on this machine when None. True when this call connected (the caller shuts the connection
    down, and the cluster with it if this call started it); False when this process was
    connected already (a test's or a notebook's ``ray.init``): that cluster is used as it is.

    ``token``: whether this process sends a Ray token (see :func:`send_token`).

    Raises InputError, in one line, for an address that cannot be reached.
    """
    if ray.is_initialized():
        return False
    import annotator
    import models
    import pipelines

    # The workers run this process's code, whatever the nodes have installed (folders, not
    # module objects: Ray Client cannot pickle those).
    env: dict = {"py_modules": [str(Path(m.__file__).parent) for m in (annotator, pipelines, models)]}
    crash = {k: v for k, v in os.environ.items() if k in (failpoints.ENV, failpoints.ONCE)}
    if crash:  # a test crashing a worker on purpose
        env["env_vars"] = crash
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is None:  # "local": a new cluster, even where `ray start` runs one (that is auto)
        ray.init(address="local", num_cpus=_cores(), runtime_env=env, **quiet)
        return True
    address = address.strip()
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, runtime_env=env, log_to_driver=False,
                 logging_level=logging.ERROR)
    except Exception as exc:  # ConnectionError, or ValueError for a ray:// without ray[client]
        why = first_line(exc)
        if address == "auto" and isinstance(exc, ConnectionError):
            why = "no Ray cluster runs on this machine (start one: ray start --head)"
        elif not token:
            why += (" (a cluster with token authentication, Ray's default, needs its token here: "
                    "~/.ray/auth_token or RAY_AUTH_TOKEN)")
        raise InputError(f"cannot join the Ray cluster at {address}: {why}") from None
    return True


def send_token() -> bool:
    """Whether this driver has a Ray token, and sends it. Ray 2.60 clusters check a token by
    default, but a driver joining one by address sends it only with ``RAY_AUTH_MODE=token``
    (Ray sets that itself for ``auto``), read when Ray is imported: set it, before, when a
    token is here. A cluster without authentication accepts a token too (measured with both
    kinds of address)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or Path(path).is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return False


def _reachable(address: str) -> None:
    """Fail fast on a closed port: Ray itself waits two minutes, then exits the process."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=CONNECT_TIMEOUT_S) as conn:
            speaks = _speaks_grpc(conn)
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: "
                         f"{exc.strerror or exc}") from None
    if not speaks:  # an open port that is not Ray: ray.init would hang for minutes
        raise InputError(f"{address} is not a Ray cluster (it does not answer in gRPC); give "
                         "the head's GCS address (ray start --head prints it) or ray://HOST:10001")


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _speaks_grpc(conn: socket.socket) -> bool:
    """Whether the server on ``conn`` speaks HTTP/2, as Ray's GCS and Ray Client (gRPC) do: it
    answers the client preface with a SETTINGS frame (type 4) within the connect timeout."""
    try:
        conn.sendall(_HTTP2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:  # a timeout or a reset: not a gRPC server
        return False
    return head[3] == 4


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "cause", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
