"""hwflow.cluster: Dask tasks on a 2-process LocalCluster, a killed worker retried, errors recorded per task."""

import os
import time

import pytest

from hwflow import cluster
from hwflow.cluster import ClusterSettings, client, jobqueue_cluster, raise_failures, report_progress, run_tasks
from hwflow.config import load_card
from hwflow.util import HwflowError


def _square(x):
    return x * x


def _fail_on_three(arg):
    """Raise for x == 3, counting its runs in a file: a task's own error must not be retried like a dead worker."""
    x, counter = arg
    if x == 3:
        with open(counter, "a") as f:
            f.write("run\n")
        raise ValueError("three is not allowed\nsecond line")
    return x


def _die_once(arg):
    """Kill this worker process the first time (a marker file remembers it), succeed on the retry."""
    x, marker = arg
    if x == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return x + 100


def _report_then_finish(x):
    report_progress(f"step {x}")
    time.sleep(1.0)  # the event reaches the client (milliseconds on one machine) before the result
    return x


@pytest.fixture(scope="module")
def two_workers():
    with client(ClusterSettings(n_workers=2)) as c:
        yield c


def test_results_in_task_order_with_worker_names(two_workers):
    res = run_tasks(
        _square, list(range(6)), [f"s{i}" for i in range(6)], desc="sq", progress=False, dask_client=two_workers
    )
    assert [r.value for r in res] == [i * i for i in range(6)]
    assert {r.worker for r in res} <= {str(w["name"]) for w in two_workers.scheduler_info()["workers"].values()}


def test_task_error_recorded_once_and_others_finish(two_workers, tmp_path):
    counter = tmp_path / "runs"
    tasks = [(x, str(counter)) for x in (1, 2, 3, 4)]
    res = run_tasks(_fail_on_three, tasks, ["a", "b", "c", "d"], progress=False, dask_client=two_workers)
    assert [r.value for r in res] == [1, 2, None, 4]
    assert res[2].error == "ValueError: three is not allowed"
    assert counter.read_text().count("run") == 1  # retries are for dead workers only
    with pytest.raises(HwflowError, match=r"1 of 4 trials failed: c: ValueError"):
        raise_failures(res, "trials")


def test_killed_worker_is_retried(tmp_path):
    marker = str(tmp_path / "died")
    with client(ClusterSettings(n_workers=2, retries=2)) as c:
        res = run_tasks(
            _die_once, [(i, marker) for i in range(4)], [f"k{i}" for i in range(4)], progress=False, dask_client=c
        )
    assert os.path.exists(marker)
    assert [r.value for r in res] == [100, 101, 102, 103]
    assert all(r.error is None for r in res)


def test_unreachable_scheduler_is_one_line():
    with (
        pytest.raises(HwflowError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
        client(ClusterSettings(scheduler="tcp://127.0.0.1:9")),
    ):
        pass


def test_settings_from_card_and_environment(monkeypatch):
    card = load_card("jet_transformer", {"dask": {"n_workers": 3, "retries": 5}})
    s = ClusterSettings.from_card(card)
    assert (s.n_workers, s.retries, s.scheduler) == (3, 5, None)
    monkeypatch.setenv("HWFLOW_DASK_SCHEDULER", "tcp://10.0.0.1:8786")
    assert ClusterSettings.from_card(card).scheduler == "tcp://10.0.0.1:8786"
    assert ClusterSettings.from_card(card, scheduler="tcp://h:1").scheduler == "tcp://h:1"


@pytest.mark.parametrize(
    "kind,directive,extra",
    [
        ("slurm", "#SBATCH", {"walltime": "02:00:00", "queue": "short"}),
        ("pbs", "#PBS", {"walltime": "02:00:00"}),
        ("htcondor", "RequestCpus", {"disk": "4GB"}),  # HTCondor has no walltime; it needs a disk request
    ],
)
def test_jobqueue_cluster_from_card_settings(kind, directive, extra):
    """The card's dask.jobqueue section builds the dask-jobqueue cluster: its job script carries the settings."""
    card = load_card(
        "jet_transformer",
        {"dask": {"jobqueue": {"kind": kind, "jobs": 4, "cores": 8, "memory": "16GB", **extra}}},
    )
    settings = ClusterSettings.from_card(card)
    cluster = jobqueue_cluster(settings)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert directive in script
    assert "--nworkers 8" in script and "--nthreads 1" in script


def test_jobqueue_bad_key_is_one_line():
    with pytest.raises(HwflowError, match=r"dask.jobqueue \(htcondor\): .*walltime"):
        jobqueue_cluster(
            ClusterSettings(
                jobqueue={"kind": "htcondor", "cores": 1, "memory": "1GB", "disk": "1GB", "walltime": "01:00:00"}
            )
        )


def test_unknown_jobqueue_kind():
    with pytest.raises(HwflowError, match="dask.jobqueue.kind = 'lsf'"):
        jobqueue_cluster(ClusterSettings(jobqueue={"kind": "lsf"}))


def test_running_tasks_show_their_step_beside_the_bar(two_workers, monkeypatch):
    """report_progress inside a task reaches the client running it: the latest line of each running task is the
    bar's postfix, and a finished task leaves it; outside a task report_progress does nothing."""
    seen = []
    monkeypatch.setattr(cluster._RunningStatus, "show", lambda self: seen.append(dict(self.lines)))
    res = run_tasks(_report_then_finish, [1, 2], ["a", "b"], desc="p", dask_client=two_workers)
    assert [r.value for r in res] == [1, 2]
    assert {"a: step 1", "b: step 2"} <= {line for lines in seen for line in lines.values()}
    assert seen[-1] == {}
    report_progress("not in a task")
