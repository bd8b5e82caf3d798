"""Distributed work through Dask: one task per data shard or exploration trial.

``LocalCluster`` (one process per core) by default; a scheduler address (``--scheduler``, the card's
``dask.scheduler`` or ``$HWFLOW_DASK_SCHEDULER``) sends the same tasks to an existing cluster; a
``dask.jobqueue`` section builds a SLURM/PBS/HTCondor cluster with dask-jobqueue from the same
settings. Tasks are retried when their worker dies (``dask.retries``); a task that raises records its
one-line error and the others go on. Progress follows the futures; a running task may also say what it is doing
(``report_progress``: a training's epoch, a trial's stage), shown beside the bar, so a task of tens of minutes is
never silent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .util import HwflowError

SCHEDULER_ENV = "HWFLOW_DASK_SCHEDULER"
JOBQUEUE_KINDS = ("slurm", "pbs", "htcondor")
PROGRESS_TOPIC = "hwflow-progress"  # Dask event topic of report_progress


@dataclass(frozen=True)
class ClusterSettings:
    """Where tasks run. Defaults are the card schema's ``dask`` section (hwflow.config)."""

    scheduler: str | None = None  # address of a running scheduler (tcp://host:8786); None: start a cluster here
    n_workers: int | None = None  # LocalCluster processes; None: one per core
    threads_per_worker: int = 1  # Pythia, TF and g++ are single-threaded per task: one thread per process
    memory_limit: str = "auto"  # per LocalCluster worker; "auto" splits the machine's memory evenly
    retries: int = 2  # resubmissions of a task whose worker died (a raised exception is not retried)
    jobqueue: dict = field(default_factory=dict)  # {kind: slurm|pbs|htcondor, jobs, cores, memory, ...}

    @classmethod
    def from_card(cls, card, scheduler: str | None = None, n_workers: int | None = None) -> ClusterSettings:
        """Return the settings of a card's ``dask`` section, overridden by arguments and the environment."""
        section = dict(card["dask"]) if card is not None and "dask" in card else {}
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in section.items() if k in known and v is not None}
        values["scheduler"] = scheduler or os.environ.get(SCHEDULER_ENV) or values.get("scheduler")
        if n_workers:
            values["n_workers"] = n_workers
        return cls(**values)


def jobqueue_cluster(settings: ClusterSettings):
    """Return a dask-jobqueue cluster (not yet scaled) built from ``settings.jobqueue``."""
    jq = dict(settings.jobqueue)
    kind = jq.pop("kind", None)
    if kind not in JOBQUEUE_KINDS:
        raise HwflowError(f"dask.jobqueue.kind = {kind!r}: expected one of {', '.join(JOBQUEUE_KINDS)}")
    jq.pop("jobs", None)
    try:
        import dask_jobqueue
    except ImportError as e:  # pragma: no cover - pinned in requirements.lock
        raise HwflowError("dask-jobqueue is not installed: run `make setup`") from e
    cls = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "htcondor": dask_jobqueue.HTCondorCluster,
    }
    # one Dask worker process per job slot, one thread each (same reasoning as threads_per_worker)
    jq.setdefault("processes", jq.get("cores", 1))
    try:
        return cls[kind](**jq)
    except (TypeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0]
        raise HwflowError(f"dask.jobqueue ({kind}): {msg}: see dask-jobqueue's {cls[kind].__name__} keys") from None


@contextlib.contextmanager
def client(settings: ClusterSettings | None = None) -> Iterator[Any]:
    """Yield a ``distributed.Client`` on the configured cluster; a cluster started here is closed after."""
    from distributed import Client, LocalCluster

    settings = settings or ClusterSettings()
    if settings.scheduler:
        try:
            c = Client(settings.scheduler, timeout="20s")
        except OSError as e:
            raise HwflowError(
                f"cannot reach the Dask scheduler at {settings.scheduler} ({e}): start it, fix the address, "
                f"or unset --scheduler/${SCHEDULER_ENV} to use a local cluster"
            ) from None
        with c:
            yield c
        return
    if settings.jobqueue:
        cluster = jobqueue_cluster(settings)
        cluster.scale(jobs=int(settings.jobqueue.get("jobs", 1)))
    else:
        n = settings.n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=settings.threads_per_worker,
            processes=True,
            memory_limit=settings.memory_limit,
            dashboard_address=":0",  # any free port: two clusters on one machine never clash
            host="127.0.0.1",
        )
    with cluster, Client(cluster) as c:
        yield c


@dataclass
class TaskResult:
    """One task's outcome: its value, or the one-line error it raised, and the worker that ran it."""

    key: str
    value: Any = None
    error: str | None = None
    worker: str | None = None


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    keys: Sequence[str],
    settings: ClusterSettings | None = None,
    desc: str = "tasks",
    progress: bool = True,
    on_result: Callable[[int, TaskResult], None] | None = None,
    dask_client=None,
) -> list[TaskResult]:
    """Run ``fn(task)`` for every task on Dask; return one TaskResult per task, in task order.

    ``keys`` name the tasks (unique, stable: a shard or trial id) so reruns and retries are traceable.
    ``on_result(i, result)`` is called as each task finishes (e.g. to cache a shard at once), so an
    interrupted run keeps what finished. A worker that dies is retried ``settings.retries`` times by
    the scheduler; a task that raises is recorded with its error and the others go on.
    """
    from distributed import as_completed
    from tqdm import tqdm

    if len(keys) != len(tasks) or len(set(keys)) != len(keys):
        raise HwflowError(f"run_tasks: {len(tasks)} tasks need as many unique keys, got {len(set(keys))}")
    settings = settings or ClusterSettings()
    results: list[TaskResult | None] = [None] * len(tasks)
    if not tasks:
        return []
    with contextlib.ExitStack() as stack:
        c = dask_client or stack.enter_context(client(settings))
        bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress)
        names = {f"{desc}-{k}": k for k in keys}
        running = _RunningStatus(bar, names)
        if progress:  # subscribed before the tasks are submitted, so no task reports before it
            c.subscribe_topic(PROGRESS_TOPIC, running.update)
        futures: dict = {}
        try:
            # pure=False: a task is a run (seeded), never deduplicated against another submission
            futures = {
                c.submit(_with_worker, fn, t, key=key, pure=False, retries=settings.retries): i
                for i, (t, key) in enumerate(zip(tasks, names))
            }
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = _outcome(keys[i], fut)
                running.finished(fut.key)
                if on_result:
                    on_result(i, results[i])
                bar.update(1)
        finally:
            if progress:
                c.unsubscribe_topic(PROGRESS_TOPIC)
            bar.close()
            for fut in futures:
                fut.cancel()
    return results  # type: ignore[return-value]


def report_progress(text: str) -> None:
    """Say what the running Dask task is doing now (one short line); the client running it shows the latest line of
    each running task beside its progress bar. Outside a Dask task it does nothing, so stages call it freely."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not inside a task
        return
    key = worker.get_current_task()
    if key is not None:
        worker.log_event(PROGRESS_TOPIC, {"key": key, "text": str(text)})


class _RunningStatus:
    """The latest report_progress line of each running task of one run_tasks call, shown as the bar's postfix."""

    def __init__(self, bar, names: dict[str, str]):
        self.bar, self.names, self.lines = bar, names, {}

    def update(self, event) -> None:
        _, msg = event  # (scheduler time, message); events of other run_tasks calls are not ours
        if isinstance(msg, dict) and msg.get("key") in self.names:
            self.lines[msg["key"]] = f"{self.names[msg['key']]}: {msg['text']}"
            self.show()

    def finished(self, key: str) -> None:
        if self.lines.pop(key, None) is not None:
            self.show()

    def show(self) -> None:
        self.bar.set_postfix_str(" | ".join(self.lines.values()), refresh=True)


def _with_worker(fn, task):
    """Run one task on its worker; its own exception comes back as a value, so Dask's ``retries`` re-run a task
    only when its worker died (a raised error would fail the same way again)."""
    from distributed import get_worker

    worker = get_worker().name
    try:
        return fn(task), worker, None
    except Exception as e:
        return None, worker, _one_line(e)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _outcome(key: str, fut) -> TaskResult:
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    try:
        value, worker, error = fut.result()
    except KilledWorker:
        return TaskResult(key, error="its worker died on every retry (out of memory? see the worker logs)")
    except FutureCancelledError:
        return TaskResult(key, error="cancelled")
    except Exception as e:  # failed outside the task itself (e.g. its arguments could not be unpickled)
        return TaskResult(key, error=_one_line(e))
    return TaskResult(key, value=value, error=error, worker=str(worker))


def raise_failures(results: Sequence[TaskResult], what: str) -> None:
    """Raise one HwflowError naming every failed task, when any failed."""
    bad = [r for r in results if r.error]
    if bad:
        listed = "; ".join(f"{r.key}: {r.error}" for r in bad[:5])
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise HwflowError(f"{len(bad)} of {len(results)} {what} failed: {listed}{more}; rerun to retry only those")
