"""Backfills across several Ray nodes on this machine, against the one-node run of the same
ledgers: every real pubnet ledger, a chunk per ledger.

* a 3-node cluster (`ray.cluster_utils.Cluster`: a head without CPUs, like the KubeRay head, and
  two 1-CPU workers, each its own raylet and object store): the commits spread over the workers
  (the readers over the nodes, as far as Ray's SPREAD does), chunks cross between object stores,
  each chunk's log line says where it ran, and the tables equal the one-node run's;
* a worker node lost (its workers, raylet and object store killed) while it runs a chunk: the job
  finishes on the nodes left, with the same tables, and its log shows the lost node, what Ray ran
  again and the reads it rebuilt from their lineage;
* an autoscaling cluster (Ray's autoscaler v2 with the fake multi-node provider, 0 to 2 workers):
  the backfill's demand brings up two workers, which the autoscaler removes once idle;
* the RayJob manifest asks for what the autoscaler can act on.

The multi-node clusters are separate from the session's `ray_head` (a second cluster in the
pytest process is trouble): the 3-node cluster lives in a child process that adds and removes
nodes on request, the autoscaling one is a `ray start --head --block`. Each has its own temp dir,
free ports and auth off; each test stops its cluster and checks that no process of it is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from obsrvr_ray.ranges import format_ranges, runs
from tests.backfill_helpers import descendants, process_title, run_backfill, table_contents
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.timeout(150)

SHAPE = ("--batch-size", "1", "--concurrent-readers", "3", "--partition-by", "date,event_type")
OBJECT_STORE = 200 * 2**20  # per node
# The GCS declares a node dead after 3 failed health checks 0.5 s apart (Ray's default: 5, 3 s
# apart). A killed raylet fails them at once; a busy one has Ray's timeout (10 s) to answer each.
HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
FAKE_HEAD_ID = "f" * 51 + "00000"  # the fake provider's fixed id of the head (workers: ...00001, ...)


@pytest.fixture(scope="module")
def ledgers(real_ledgers) -> str:
    return format_ranges(runs(real_ledgers))


@pytest.fixture(scope="module")
def one_node(ray_head, real_lake, ledgers, tmp_path_factory) -> dict:
    """The reference: the same backfill on the session's one-node cluster (2 CPUs)."""
    out = tmp_path_factory.mktemp("one-node") / "out"
    proc = run_backfill(ray_head, "--source", str(real_lake), "--ledgers", ledgers, "--out", str(out), *SHAPE,
                        timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = log_events(proc.stderr)
    assert len({e["node"] for e in events if e["event"] == "chunk_committed"}) == 1
    return table_contents(out)


# --- the clusters ------------------------------------------------------------------------------


def short_temp_dir() -> str:
    return tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must fit in 107 bytes


def processes_naming(marker: str) -> list[int]:
    """Processes whose command line names `marker` (a cluster's own temp dir)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()
            and marker in process_title(int(e))]


def started(pid: int) -> str | None:
    """A live process's start time (to tell it from a later one with the same pid); None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def under(root: int) -> dict[int, str]:
    """The processes below `root`, with their start times."""
    return {pid: when for pid in descendants(root) if (when := started(pid))}


def stop_everything(root: subprocess.Popen, seen: dict[int, str], temp_dir: str) -> list[int]:
    """After a cluster was asked to stop: SIGKILL whatever of it is still there (the root's
    process group, the processes seen under it, processes naming its temp dir); the pids found."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        root.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(root.pid, signal.SIGKILL)
    if root.poll() is None:
        root.kill()
    root.wait(timeout=10)
    time.sleep(0.5)
    left = sorted({pid for pid, when in seen.items() if started(pid) == when}
                  | {pid for pid in processes_naming(temp_dir) if started(pid)})
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)
    return left


def serve_cluster() -> None:
    """The child process holding a `ray.cluster_utils.Cluster` (argv[1]: JSON with `cpus` per node,
    head first, `port` and `temp_dir`). It prints the cluster as one JSON line, then obeys lines on
    stdin: `remove <node id>` (kill that node's processes at once, as a lost machine), `stop`."""
    import ray
    from ray.cluster_utils import Cluster

    spec = json.loads(sys.argv[1])
    # What `ray start --node-ip-address 127.0.0.1` does, so that drivers given 127.0.0.1 reach the GCS.
    ip = ray._private.services.resolve_ip_for_localhost("127.0.0.1")
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=spec["cpus"][0], node_ip_address=ip, gcs_server_port=spec["port"], temp_dir=spec["temp_dir"],
        include_dashboard=False, object_store_memory=OBJECT_STORE, _system_config=HEALTH))
    nodes = {cluster.head_node.node_id: cluster.head_node}
    for cpus in spec["cpus"][1:]:
        node = cluster.add_node(num_cpus=cpus, node_ip_address=ip, object_store_memory=OBJECT_STORE)
        nodes[node.node_id] = node
    cluster.wait_for_nodes()

    def reply(message: dict) -> None:
        print(json.dumps(message), flush=True)

    raylets = {n: node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
               for n, node in nodes.items()}
    reply({"address": f"127.0.0.1:{spec['port']}", "head": cluster.head_node.node_id,
           "workers": [n for n in nodes if n != cluster.head_node.node_id], "raylets": raylets})
    for line in sys.stdin:
        command, *args = line.split() or [""]
        if command == "remove":  # as a machine lost: its workers, raylet and object store at once
            node = nodes.pop(args[0])
            for pid in descendants(raylets[args[0]]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            cluster.remove_node(node, allow_graceful=False)
            reply({"removed": args[0]})
        elif command == "stop":
            break
    cluster.shutdown()
    reply({"stopped": True})


class NodeCluster:
    """A cluster of several nodes on this machine, held by a child process (`serve_cluster`)."""

    def __init__(self, cpus: list[int]) -> None:
        self.temp_dir = short_temp_dir()
        ray_dir = Path(self.temp_dir) / "ray"
        ray_dir.mkdir()
        spec = {"cpus": cpus, "port": free_port(), "temp_dir": str(ray_dir)}
        self.log = Path(self.temp_dir) / "controller.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_multinode import serve_cluster; serve_cluster()", json.dumps(spec)],
            cwd=REPO, env=dict(ENV, RAY_TMPDIR=self.temp_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log.open("w"), text=True, start_new_session=True)
        self.seen: dict[int, str] = {}
        info = self._reply(timeout=90)
        self.address, self.head, self.workers = info["address"], info["head"], info["workers"]
        self.raylets: dict[str, int] = info["raylets"]
        self.env = dict(ENV)

    def _reply(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the cluster did not answer: {self.log.read_text()[-3000:]}")
        self.seen |= under(self.proc.pid)
        return json.loads(line)

    def remove(self, node: str) -> None:
        self.proc.stdin.write(f"remove {node}\n")
        self.proc.stdin.flush()
        assert self._reply(timeout=60) == {"removed": node}

    def stop(self) -> list[int]:
        self.seen |= under(self.proc.pid)
        with contextlib.suppress(BrokenPipeError, RuntimeError, ValueError):
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self._reply(timeout=60)
        return stop_everything(self.proc, self.seen, self.temp_dir)


@pytest.fixture(scope="module")
def three_nodes():
    """A head without CPUs (the driver and readers run there, as on KubeRay) and two 1-CPU workers."""
    cluster = NodeCluster([0, 1, 1])
    try:
        yield cluster
    finally:
        assert cluster.stop() == [], "processes of the 3-node cluster were left behind"


def log_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def only(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["event"] == name]


class Backfill:
    """The backfill driver as a child process against a cluster; its JSON log lines as they come."""

    def __init__(self, address: str, env: dict, *args: str, out: Path) -> None:
        command = [sys.executable, "-m", "obsrvr_ray.jobs.backfill", "--address", address, *args, "--out", str(out)]
        self.output = out.with_name(out.name + ".stdout")
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.output.open("w"), stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def events(self) -> list[dict]:
        return log_events("".join(self.lines))

    @property
    def stdout(self) -> str:
        return self.output.read_text()

    def wait(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._pump.join(timeout=10)
        return self.proc.returncode

    def describe(self) -> str:
        return self.stdout + "".join(self.lines)[-6000:]


# --- what the RayJob asks of the autoscaler ----------------------------------------------------


def test_the_rayjob_gives_the_autoscaler_what_it_needs():
    """The backfill's requests can be met by adding worker pods: commit tasks need one CPU and
    nothing else (no custom resource, no node affinity), so they never land on the head
    (num-cpus 0) and wherever a worker joins; readers need no CPU and are spread. The driver
    fixes its window (2 x the cluster's CPUs) when it starts, so the CPUs of `minReplicas`
    workers must make enough demand to reach `maxReplicas`."""
    from obsrvr_ray.actors.chunk_tasks import ChunkReader, commit_chunk
    from tests.test_kuberay_manifests import BACKFILL, autoscaler_view, one

    task = commit_chunk._default_options
    assert task["num_cpus"] == 1 and not task.get("resources") and not task.get("num_gpus")
    assert task.get("scheduling_strategy") in (None, "DEFAULT")
    reader = ChunkReader._default_options
    assert reader["num_cpus"] == 0 and reader["scheduling_strategy"] == "SPREAD"
    assert reader["max_restarts"] > 0 and reader["max_task_retries"] == -1

    job = one(BACKFILL, "RayJob")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    nodes = autoscaler_view(job)
    assert nodes["headgroup"]["resources"]["CPU"] == 0
    workers = {name: node for name, node in nodes.items() if name != "headgroup"}
    assert workers and all(node["resources"]["CPU"] >= 1 for node in workers.values())
    at_start = sum(node["min_workers"] * node["resources"]["CPU"] for node in workers.values())
    at_most = sum(node["max_workers"] * node["resources"]["CPU"] for node in workers.values())
    assert at_start > 0, "with no CPU at the start the window is 2 chunks: the autoscaler adds one worker"
    assert at_most <= 2 * at_start, "the autoscaler can never reach maxReplicas: the window is 2 x CPUs at start"


# --- autoscaling -------------------------------------------------------------------------------


class AutoscalingCluster:
    """`ray start --head --block` with Ray's autoscaler (v2) and its fake multi-node provider: the
    autoscaler starts worker nodes on this machine (each its own raylet) for pending demand and
    stops them once idle. The head has no CPU, as the KubeRay head."""

    WORKERS = 2

    def __init__(self, idle_timeout_s: float = 6.0) -> None:
        import ray._private.services

        self.temp_dir = short_temp_dir()
        self.port = free_port()
        self.ip = ray._private.services.resolve_ip_for_localhost("127.0.0.1")
        config = {
            "cluster_name": "obsrvr-autoscaling-test",
            "max_workers": self.WORKERS,
            # "external" loads the fake provider by its class: Ray's wheel lacks the defaults file
            # that `type: fake_multinode` reads (fake_multi_node/example.yaml).
            "provider": {"type": "external",
                         "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
                         "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": f"{self.ip}:{self.port}",
                         "launch_multiple": True, "head_node_id": FAKE_HEAD_ID},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
                "cpu-1": {"resources": {"CPU": 1, "object_store_memory": OBJECT_STORE}, "node_config": {},
                          "min_workers": 0, "max_workers": self.WORKERS},
            },
            "head_node_type": "ray.head.default",
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": idle_timeout_s / 60,
            "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        }
        config_file = Path(self.temp_dir) / "autoscaling.json"
        config_file.write_text(json.dumps(config))
        env = dict(ENV, RAY_TMPDIR=self.temp_dir, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
                   RAY_enable_autoscaler_v2="1", RAY_CLOUD_INSTANCE_ID=FAKE_HEAD_ID,
                   RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_ID)
        ports = [free_port() for _ in range(5)]
        self.log = Path(self.temp_dir) / "ray-start.log"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address",
             "127.0.0.1", "--port", str(self.port), "--num-cpus", "0", "--object-store-memory", str(OBJECT_STORE),
             "--disable-usage-stats", "--include-dashboard", "false", "--ray-client-server-port", str(ports[0]),
             "--dashboard-agent-listen-port", str(ports[1]), "--dashboard-agent-grpc-port", str(ports[2]),
             "--metrics-export-port", str(ports[3]), "--runtime-env-agent-port", str(ports[4]),
             "--temp-dir", str(Path(self.temp_dir) / "ray"), "--autoscaling-config", str(config_file),
             "--system-config", json.dumps(HEALTH)],
            env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(ENV)
        self.seen: dict[int, str] = {}
        deadline = time.monotonic() + 60
        while self.workers() is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the autoscaling head did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def workers(self) -> list[str] | None:
        """The alive worker nodes (None while the GCS does not answer)."""
        from ray._raylet import GcsClient

        try:
            nodes = GcsClient(address=f"{self.ip}:{self.port}").get_all_node_info(timeout=5).values()
        except Exception:
            return None
        self.seen |= under(self.proc.pid)
        return sorted(n.node_id.hex() for n in nodes if n.state == 0 and n.node_id.hex() != FAKE_HEAD_ID)

    def stop(self) -> list[int]:
        self.seen |= under(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        return stop_everything(self.proc, self.seen, self.temp_dir)


def test_the_autoscaler_adds_workers_for_a_backfill_and_removes_them_after(real_lake, ledgers, one_node, tmp_path):
    cluster = AutoscalingCluster()
    try:
        assert cluster.workers() == []
        out = tmp_path / "out"
        job = Backfill(cluster.address, cluster.env, "--source", str(real_lake), "--ledgers", ledgers, *SHAPE,
                       out=out)
        seen: set[str] = set()
        peak = 0
        deadline = time.monotonic() + 120
        while job.proc.poll() is None:
            assert time.monotonic() < deadline, job.describe()
            alive = cluster.workers() or []
            seen |= set(alive)
            peak = max(peak, len(alive))
            time.sleep(0.5)
        assert job.wait(timeout=30) == 0, job.describe()
        assert "status     OK" in job.stdout
        assert table_contents(out) == one_node

        # Grew from none to the most the demand asks for (2 CPUs: the driver's window on a head
        # without CPUs), within the node type's maximum.
        assert peak == AutoscalingCluster.WORKERS, (peak, cluster.log.read_text()[-2000:])
        events = job.events
        joined = {e["node"] for e in only(events, "node_joined")}
        assert len(joined) >= 2 and joined <= seen
        assert {e["node"] for e in only(events, "chunk_committed")} <= joined  # the head has no CPU

        # ... and shrinks back to none once its workers are idle (idle timeout: 6 s).
        deadline = time.monotonic() + 60
        while cluster.workers() != []:
            assert time.monotonic() < deadline, f"workers still up: {cluster.workers()}"
            time.sleep(1)
    finally:
        left = cluster.stop()
    assert left == [], "processes of the autoscaling cluster were left behind"


# --- several nodes, one lost ------------------------------------------------------------------


def test_a_backfill_spreads_over_three_nodes_and_equals_the_one_node_run(three_nodes, real_lake, ledgers,
                                                                          one_node, tmp_path):
    out = tmp_path / "out"
    job = Backfill(three_nodes.address, three_nodes.env, "--source", str(real_lake), "--ledgers", ledgers, *SHAPE,
                   out=out)
    assert job.wait(timeout=120) == 0, job.describe()
    assert "status     OK" in job.stdout
    assert table_contents(out) == one_node

    events = job.events
    (connected,) = only(events, "cluster_connected")
    assert connected["driver_node"] == three_nodes.head
    assert {n["node"] for n in connected["nodes"]} == {three_nodes.head, *three_nodes.workers}
    chunks = only(events, "chunk_committed")
    assert len(chunks) == len(one_node["chunks"]) == 29
    # Commits run where there are CPUs: both workers, never the CPU-less head.
    assert {c["node"] for c in chunks} == set(three_nodes.workers)
    # Readers are spread over the nodes (SPREAD), best effort: Ray placed all three on one node
    # in about one run in eight here. Every read is recorded, on a node of the cluster.
    assert {c["read_node"] for c in chunks} <= {three_nodes.head, *three_nodes.workers}
    # The object store carried chunks from the node that read them to the node that committed them.
    moved = [c for c in chunks if c["transferred"]]
    assert moved and all(c["read_node"] != c["node"] and c["raw_bytes"] > 0 for c in moved)
    assert not any(c["attempt"] or c["read_attempt"] for c in chunks)  # nothing was lost, nothing repeated

    (summary,) = only(events, "nodes_summary")
    per_node = {n["node"]: n for n in summary["nodes"]}
    assert sum(n["chunks"] for n in per_node.values()) == sum(n["reads"] for n in per_node.values()) == 29
    for node in three_nodes.workers:
        mine = [c for c in chunks if c["node"] == node]
        assert per_node[node]["chunks"] == len(mine) > 0
        assert per_node[node]["received"] == sum(c["transferred"] for c in mine)
        assert per_node[node]["received_bytes"] == sum(c["raw_bytes"] for c in mine if c["transferred"])
    assert per_node.get(three_nodes.head, {}).get("chunks", 0) == 0


def committing_on(raylet: int) -> bool:
    """A worker process of the node whose raylet this is runs a commit task right now."""
    return any(process_title(pid).startswith("ray::commit_chunk") for pid in descendants(raylet))


def test_a_lost_node_costs_nothing_but_time(three_nodes, real_lake, ledgers, one_node, tmp_path):
    """A worker node is killed (raylet, object store, workers) once it has committed a chunk and
    while it runs another one's commit task. Ray runs that task again elsewhere, restarts a reader
    the node held on another node and rebuilds reads lost with its object store (lineage); the
    commit protocol keeps the rows of a chunk committed twice from being doubled."""
    victim, survivor = three_nodes.workers
    out = tmp_path / "out"
    job = Backfill(three_nodes.address, three_nodes.env, "--source", str(real_lake), "--ledgers", ledgers, *SHAPE,
                   out=out)
    deadline = time.monotonic() + 90
    while not (any(e["event"] == "chunk_committed" and e["node"] == victim for e in job.events)
               and committing_on(three_nodes.raylets[victim])):
        assert job.proc.poll() is None and time.monotonic() < deadline, job.describe()
        time.sleep(0.01)
    committed_before = len(only(job.events, "chunk_committed"))
    three_nodes.remove(victim)
    assert job.wait(timeout=120) == 0, job.describe()
    assert "status     OK" in job.stdout
    assert committed_before < 29, "the job had finished before the node was lost"
    assert table_contents(out) == one_node  # nothing lost, nothing doubled

    events = job.events
    assert [e["node"] for e in only(events, "node_lost")] == [victim]
    chunks = only(events, "chunk_committed")
    assert len(chunks) == 29
    lost_at = next(i for i, e in enumerate(events) if e["event"] == "node_lost")
    assert {c["node"] for c in events[lost_at:] if c["event"] == "chunk_committed"} <= {survivor}
    # The commit task it was running ran again on the survivor (and reads it held, if any, too);
    # the job log says which chunks Ray ran again.
    reruns = only(events, "chunk_rerun")
    assert any(r["attempt"] > 0 and r["node"] == survivor for r in reruns), job.describe()
    assert {r["chunk"] for r in reruns} == {c["chunk"] for c in chunks if c["attempt"] or c["read_attempt"]}
    rebuilt = only(events, "lineage_reconstruction")
    assert all(set(r["tasks"]) <= {"ChunkReader.read", "commit_chunk"} for r in rebuilt)
    (summary,) = only(events, "nodes_summary")
    assert sum(n["chunks"] for n in summary["nodes"]) == 29
