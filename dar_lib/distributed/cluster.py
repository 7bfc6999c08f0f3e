"""Reaching a Ray cluster: the optional import, a bounded wait for an address, a probe that the
cluster answers, ``ray.init``, and how many actors of which kind it holds."""

from __future__ import annotations

import logging
import os

from dar_lib.errors import MissingDependencyError
from dar_lib.redact import redact

log = logging.getLogger(__name__)

INSTALL_HINT = 'the Ray backend needs the optional extra: pip install -e ".[ray]" (or pip install "ray[default]>=2.30")'


def _ray():
    """Import ray, or fail with a message that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return ray


#: Seconds to wait for a Ray address to answer before giving up (``dar eval --ray-timeout``).
CONNECT_TIMEOUT_S = 60.0


def wait_for_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Wait until something accepts TCP connections at a Ray address, or fail in one line after ``timeout_s``.

    Ray's own client retries an unreachable address for minutes; this check bounds the wait.
    ``None``, ``"auto"`` and ``"local"`` (found on this machine by Ray itself) are not checked.

    Args:
        address: ``"ray://host[:port]"`` (port 10001 by default) or ``"host:port"`` (the GCS).
        timeout_s: seconds to keep trying (a cluster that is still starting gets this long).

    Raises:
        ConnectionError: nothing answered in time; the message names the address and the wait.
        ValueError: an address that names no port (``host:port`` form) or a non-positive timeout.
    """
    import socket
    import time

    if timeout_s <= 0:
        raise ValueError(f"Ray connect timeout must be > 0 s, got {timeout_s}")
    if address is None or address in ("auto", "local"):
        return
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = (rest, "10001") if address.startswith("ray://") else (rest, "")
    if not port.isdigit() or not host:
        raise ValueError(f"Ray address {address!r}: expected auto, host:port or ray://host[:port]")
    end, last = time.monotonic() + timeout_s, "no attempt"
    while True:
        left = end - time.monotonic()
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=max(0.05, min(5.0, left))).close()
            return
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + 0.5 >= end:
            raise ConnectionError(f"Ray address {address!r}: nothing answered within {timeout_s:g} s ({last}); "
                                  f"start the cluster (ray start --head) or fix --ray-address "
                                  f"(--ray-timeout sets the wait)")
        time.sleep(0.5)


_PROBE = """
import sys
import ray
print("imported", flush=True)
ray.init(address=sys.argv[1], logging_level=40, log_to_driver=False, include_dashboard=False)
ray.shutdown()
"""


def probe_cluster(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to ``address`` once in a child process, killed after ``timeout_s`` seconds: a bound on ``ray.init``.

    A port that accepts connections is not yet a Ray cluster (a proxy or another service may
    answer), and ``ray.init`` itself retries for minutes; a child process is the one wait that can
    be cut short. The clock starts once the child has imported Ray.

    Raises:
        ConnectionError: no connection within ``timeout_s``, or the child failed (its last line, redacted).
    """
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", _PROBE, address], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # "imported": importing Ray is not the cluster's time
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise ConnectionError(f"Ray address {redact(address)!r}: no Ray cluster connected within {timeout_s:.3g} s; "
                              f"start the cluster (ray start --head) or fix --ray-address "
                              f"(--ray-timeout sets the wait)") from None
    if child.returncode != 0:
        lines = [ln for ln in child.stderr.read().splitlines() if ln.strip()]
        raise ConnectionError(f"Ray address {redact(address)!r}: cannot connect "
                              f"({redact(lines[-1].strip()) if lines else f'exit status {child.returncode}'})")


def connect(address: str | None = None, num_workers: int | None = None, timeout_s: float = CONNECT_TIMEOUT_S):
    """Connect to a Ray cluster, or start a local one; returns the ``ray`` module.

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or ``host:port``; ``None`` starts a local Ray
            with ``num_workers`` CPUs (default: every core). A no-op when Ray is already initialised.
        num_workers: CPUs of a locally started Ray.
        timeout_s: seconds an address may take to answer (:func:`wait_for_address`).

    Raises:
        MissingDependencyError: Ray is not installed (the message says how to install it).
        ConnectionError: the address did not answer within ``timeout_s``.
    """
    import time

    ray = _ray()
    if ray.is_initialized():
        return ray
    t0 = time.monotonic()
    wait_for_address(address, timeout_s)
    if address:
        probe_cluster(address, max(1.0, timeout_s - (time.monotonic() - t0)))
    kw = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    if address:
        ray.init(address=address, **kw)
    else:
        # Workers only exchange small batch descriptions (images go through the store), so a
        # small object store is enough and does not claim half of /dev/shm.
        ray.init(num_cpus=num_workers or os.cpu_count() or 1, object_store_memory=200 * 1024**2, **kw)
    return ray


def actor_resources(ray, num_workers: int | None) -> tuple[int, dict]:
    """(number of actors, actor options): one GPU per actor when the cluster has GPUs, else one CPU."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    if gpus >= 1:
        return (num_workers or gpus), {"num_gpus": 1, "num_cpus": 1}
    return (num_workers or max(1, cpus)), {"num_cpus": 1}
