"""Ray plumbing shared by batch scanning and distributed prepare: connect, size, and an actor pool
that survives dead workers (the task of a dead worker is retried on a fresh actor)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOCAL = "local"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ClusterError(RuntimeError):
    """Ray cannot be reached, or its workers cannot start (the message says why and what to do)."""


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of the block and yield the ``ray`` module.

    Args:
        address: ``None`` or ``"local"``: start a local Ray with ``num_cpus`` (default: this machine's
            cores), no dashboard, quiet logs (reusing one already started in this process); ``"auto"``,
            ``"HOST:6379"`` or ``"ray://HOST:10001"``: join that cluster.
        num_cpus: CPUs of a local Ray.
    """
    import ray

    started = False
    if not ray.is_initialized():
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
        try:
            if address in (None, LOCAL):
                _init_local(ray, num_cpus or os.cpu_count() or 1, quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterError(
                f"cannot connect to Ray at {address!r}: {e}; start the head with `ray start --head` "
                "(or pass the address `ray status` prints), or leave --ray-address out for a local Ray"
            ) from e
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _init_local(ray: Any, num_cpus: int, quiet: dict[str, Any]) -> None:
    """A local Ray whose workers run at normal priority (Ray nices them to 15 by default, which starves
    them on a machine shared with other work; ``$RAY_worker_niceness`` still wins)."""
    before = os.environ.get("RAY_worker_niceness")
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        # address="local": always a new instance, never a cluster `ray start` left in /tmp/ray
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    finally:
        if before is None:
            os.environ.pop("RAY_worker_niceness", None)


def worker_count(
    ray: Any, num_cpus: float, num_gpus: float, workers: int | None, cpu_workers: int = 0
) -> int:
    """``workers`` if given, else as many actors of this size as the cluster holds beside ``cpu_workers``
    one-CPU workers; checked against the cluster's CPUs and GPUs (a worker that does not fit would wait
    for ever).

    Raises:
        ClusterError: the workers asked for do not fit the cluster.
    """
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if workers is None:
        fits = int((cpus - cpu_workers) // num_cpus) if num_cpus > 0 else 1
        workers = min(fits, int(gpus // num_gpus)) if num_gpus > 0 else fits
    if workers < 1 or workers * num_cpus + cpu_workers > cpus + 1e-9 or workers * num_gpus > gpus + 1e-9:
        raise ClusterError(
            f"{workers} worker(s) of {num_cpus:g} CPU and {num_gpus:g} GPU, plus {cpu_workers} CPU "
            f"worker(s), do not fit this Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs): ask for fewer "
            "--workers, smaller --num-cpus/--num-gpus, or add nodes"
        )
    return workers


@dataclass
class Task:
    """One unit of work: ``key`` names it (a path), ``args`` go to the actor method; ``attempts`` counts
    the tries of this task and of the stages before it."""

    key: str
    args: tuple[Any, ...]
    attempts: int = 0


@dataclass
class Outcome:
    """A finished task: the method's ``value``, or ``error`` when its workers died on every try.

    ``payload``: with a pool of ``num_returns=2``, the reference to the method's second value, left where
    the worker put it (the first, small value comes to the driver; the second goes on to the next stage).
    """

    task: Task
    value: Any = None
    error: str | None = None
    payload: Any = None


_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit)): (.*)$")


def _reason(err: BaseException) -> str:
    """The exception a worker raised (``Type: message``, last in Ray's traceback), else the first line."""
    lines = _ANSI.sub("", str(err)).strip().splitlines()
    for line in reversed(lines):
        match = _RAISED.match(line.strip())
        if match:
            return f"{match[1]}: {match[2]}"[:500]
    return lines[0][:300] if lines else type(err).__name__


class ActorPool:
    """One actor per factory (a worker kind: GPU or CPU, say), one task in flight each; a dead actor is
    replaced by a fresh one from its own factory.

    A task whose actor dies (process killed, node lost, out of memory) is retried on a fresh actor up to
    ``retries`` times, then comes back as an :class:`Outcome` with ``error``. An exception raised by the
    method itself (not a death) comes back as an error at once: it would fail again. With
    ``num_returns=2`` the method returns two values: see :attr:`Outcome.payload`.
    """

    def __init__(
        self, factories: Sequence[Callable[[], Any]], method: str, retries: int = 2, num_returns: int = 1
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not factories:
            raise ValueError("an actor pool needs at least one worker")
        self.factories, self.method, self.retries = list(factories), method, retries
        self.num_returns = num_returns
        self.actors: list[Any] = []
        self.idle: list[Any] = []
        self.inflight: dict[Any, tuple[Any, Task, Any]] = {}  # ref -> (actor, task, payload ref)
        self.restarts = 0

    def start(self, probe: str = "info") -> list[Any]:
        """Create the actors and call ``probe`` on each; returns the probes' answers.

        Raises:
            ClusterError: an actor could not start (e.g. the model cannot be loaded); the cause is named.
        """
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        self.actors = [make() for make in self.factories]
        self.idle = list(self.actors)
        try:
            return ray.get([getattr(a, probe).remote() for a in self.actors])
        except (RayActorError, RayTaskError) as e:
            raise ClusterError(f"a Ray worker could not start: {_reason(e)}") from e

    def shutdown(self) -> None:
        """Kill the actors now (their CPUs and GPUs are free at once, not when Ray collects them)."""
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors, self.idle, self.inflight = [], [], {}

    def _replace(self, actor: Any) -> Any:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)
        self.restarts += 1
        slot = next(i for i, a in enumerate(self.actors) if a is actor)
        self.actors[slot] = self.factories[slot]()
        return self.actors[slot]

    def dispatch(self, pending: deque[Task]) -> None:
        """Give tasks from the left of ``pending`` to the idle actors."""
        while self.idle and pending:
            actor, task = self.idle.pop(), pending.popleft()
            task.attempts += 1
            call = getattr(actor, self.method)
            if self.num_returns == 1:
                ref, payload = call.remote(*task.args), None
            else:
                ref, payload = call.options(num_returns=self.num_returns).remote(*task.args)
            self.inflight[ref] = (actor, task, payload)

    def collect(self, ref: Any, pending: deque[Task]) -> Outcome | None:
        """The outcome of the finished ``ref`` (one of :attr:`inflight`); None when its actor died and the
        task went back to the left of ``pending`` for another try."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        actor, task, payload = self.inflight.pop(ref)
        try:
            value = ray.get(ref)
        except RayActorError as e:  # the worker died (ActorDiedError, ActorUnavailableError)
            log.warning("worker died on %s (try %d): %s", task.key, task.attempts, _reason(e))
            self.idle.append(self._replace(actor))
            if task.attempts <= self.retries:
                pending.appendleft(task)
                return None
            return Outcome(task, error=f"the worker died on each of {task.attempts} tries ({_reason(e)})")
        except RayTaskError as e:
            self.idle.append(actor)
            return Outcome(task, error=f"unexpected error in the worker: {_reason(e)}")
        self.idle.append(actor)
        return Outcome(task, value=value, payload=payload)

    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Run every task; outcomes in completion order. Call :meth:`start` first."""
        import ray

        pending = deque(tasks)
        while pending or self.inflight:
            self.dispatch(pending)
            (ref,), _ = ray.wait(list(self.inflight), num_returns=1)
            outcome = self.collect(ref, pending)
            if outcome is not None:
                yield outcome


def run_staged(
    first: ActorPool,
    second: ActorPool,
    tasks: Iterable[Task],
    handoff: Callable[[Outcome], Task | None],
    queue: int,
) -> Iterator[Outcome]:
    """Run every task through two pools: ``first`` (e.g. CPU workers that decode), then ``second`` (GPU
    workers that run the model); outcomes in completion order.

    ``handoff`` turns a first-stage outcome into the second stage's task, or None when the first stage
    already finished it (a failure, a skip): that outcome is yielded as is. At most ``queue`` handed-off
    tasks wait for the second pool (the first pool pauses beyond that: finished work waits in the object
    store, so this bounds its memory). A dead worker of either stage is replaced and only its own stage
    is retried.
    """
    import ray

    todo, handed = deque(tasks), deque()
    while todo or handed or first.inflight or second.inflight:
        if len(handed) < queue:
            first.dispatch(todo)
        second.dispatch(handed)
        (ref,), _ = ray.wait([*first.inflight, *second.inflight], num_returns=1)
        if ref in first.inflight:
            outcome = first.collect(ref, todo)
            nxt = handoff(outcome) if outcome is not None and outcome.error is None else None
            if nxt is not None:
                handed.append(nxt)
                continue
        else:
            outcome = second.collect(ref, handed)
        if outcome is not None:
            yield outcome
