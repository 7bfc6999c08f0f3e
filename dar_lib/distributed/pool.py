"""The scheduler: batches dealt to a pool of actors, a lost actor's batch resubmitted (a bounded number
of times), and what a stage did (:class:`RunSummary`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Batches queued on each actor at once, so an actor never waits for the driver between batches.
IN_FLIGHT_PER_ACTOR = 2



@dataclass
class RunSummary:
    """What one distributed stage did.

    Attributes:
        stage: ``"generate"`` or ``"corpus"``.
        total: images the stage had to provide (generated images or corpus images).
        done: items in the store at the end.
        generated: items computed by the workers in this run.
        cached: items found in the store (before dispatch or by a worker).
        retries: batches resubmitted after their worker, node or result object was lost.
        failures: batches given up on: lost more than ``max_retries`` times, or failed with an
            error raised in the worker's own code (never retried).
        seconds: wall time of the stage.
        workers: actors used.
        errors: the first few error messages.
        fingerprint: the workers' model fingerprint (the driver's must match to find their entries).
    """

    stage: str
    total: int
    done: int = 0
    generated: int = 0
    cached: int = 0
    retries: int = 0
    failures: int = 0
    seconds: float = 0.0
    workers: int = 0
    errors: list[str] = field(default_factory=list)
    fingerprint: str | None = None

    @property
    def per_second(self) -> float:
        """Items computed per second of wall time (0 when nothing was computed)."""
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """Every field plus ``per_second`` (rounded to 3 decimals), as a JSON-ready dict."""
        return {**dataclasses.asdict(self), "per_second": round(self.per_second, 3)}

    def __str__(self) -> str:
        return (f"{self.stage}: {self.done}/{self.total} done ({self.generated} computed, {self.cached} cached) "
                f"by {self.workers} workers in {self.seconds:.1f} s, {self.retries} retries, {self.failures} failures")


def _is_system_failure(ray, exc: BaseException) -> bool:
    """A dead worker, node or object (retry elsewhere) rather than an error in our code (fail fast)."""
    ex = ray.exceptions
    kinds = tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError",
                                           "ObjectLostError", "OwnerDiedError", "ActorUnavailableError")
                  if hasattr(ex, n))
    return isinstance(exc, kinds)


def run_pool(ray, actors: list, make_actor, batches: list, call, summary: RunSummary, *, unit_of,
              max_retries: int, progress: bool, desc: str, unit: str) -> None:
    """Dispatch ``batches`` over a pool of actors with bounded resubmission; fills ``summary``.

    A batch whose actor died goes back to the queue (at most ``max_retries`` times) and the dead
    actor is replaced by a fresh replica, so the pool keeps its size; an error raised by our own
    code in the actor is not retried (it would fail again) and counts as a failure.

    Args:
        actors: the started actors (replaced in place when one dies).
        make_actor: () -> a new actor handle.
        call: (actor, batch) -> an ObjectRef of (computed, cached) item counts.
        unit_of: batch -> the number of items it holds (for progress).
    """
    from tqdm import tqdm

    n_actors = len(actors)
    summary.workers = n_actors
    load = [0] * n_actors
    incarnation = [0] * n_actors  # bumped when a slot's actor is replaced
    queue = list(range(len(batches)))[::-1]  # pop() from the end: batches go out in order
    attempts = [0] * len(batches)
    pending: dict = {}  # ref -> (batch index, actor slot, incarnation)
    bar = tqdm(total=summary.total, initial=summary.done, disable=not progress, desc=desc, unit=unit,
               dynamic_ncols=True)
    try:
        while queue or pending:
            for a in range(n_actors):
                while queue and load[a] < IN_FLIGHT_PER_ACTOR:
                    b = queue.pop()
                    pending[call(actors[a], batches[b])] = (b, a, incarnation[a])
                    load[a] += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                b, a, inc = pending.pop(ref)
                if inc == incarnation[a]:
                    load[a] -= 1
                try:
                    computed, cached = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - classified below
                    if _is_system_failure(ray, exc) and attempts[b] < max_retries:
                        attempts[b] += 1
                        summary.retries += 1
                        queue.append(b)
                        log.warning("%s: batch %d lost with its worker (%s); resubmitting (%d/%d)", desc, b,
                                    type(exc).__name__, attempts[b], max_retries)
                        if inc == incarnation[a] and isinstance(exc, ray.exceptions.RayActorError):
                            # Its other in-flight batches fail too; they must not count against the new one.
                            ray.kill(actors[a], no_restart=True)
                            actors[a], incarnation[a], load[a] = make_actor(), inc + 1, 0
                    else:
                        summary.failures += 1
                        if len(summary.errors) < 5:
                            summary.errors.append(f"batch {b}: {type(exc).__name__}: {str(exc)[-500:]}")
                    bar.set_postfix(retries=summary.retries, failures=summary.failures, refresh=False)
                    continue
                summary.generated += computed
                summary.cached += cached
                summary.done += computed + cached
                bar.update(unit_of(batches[b]))
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor, no_restart=True)


def remote_class(ray, cls, options: dict):
    """``cls`` as a Ray actor class with ``options`` (GPUs, CPUs) and Ray's own restarts and retries off."""
    # No automatic task retries: a task on a dying actor fails back to the driver, which
    # resubmits it to a fresh replica and counts the retry for the summary.
    return ray.remote(cls).options(max_restarts=0, max_task_retries=0, **options)


def start_pool(make_actor, n_actors: int, first) -> list:
    """The probe actor plus ``n_actors - 1`` new ones (the probe already loaded its model)."""
    return [first] + [make_actor() for _ in range(max(0, n_actors - 1))]


def finish(summary: "RunSummary", t0: float, raise_on_failure: bool, what: str) -> "RunSummary":
    """Stamp the wall time, log the summary, and raise if batches failed for good."""
    summary.seconds = time.perf_counter() - t0
    log.info("%s", summary)
    if summary.failures and raise_on_failure:
        raise RuntimeError(f"{what}: {summary}; rerun to resume. "
                           f"First error: {summary.errors[0] if summary.errors else '?'}")
    return summary
