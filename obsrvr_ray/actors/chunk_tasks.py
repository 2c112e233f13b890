"""The two kinds of Ray worker of a backfill.

`ChunkReader` actors fetch a chunk's objects from the source, decompress and split them, and
return the ledgers as one Arrow table (into the object store). They are I/O bound, so they
reserve no CPU: a bounded pool of them bounds the load on the source and keeps each one's
connections and circuit-breaker state across chunks, while every core goes to `commit_chunk`
tasks, which decode, extract, write and commit (CPU bound, one core each).

Both survive a killed worker process or a lost node: Ray restarts a reader (on another node if
its own is gone) and runs its pending reads again, runs a task again, and rebuilds a read whose
object was lost with its node by running the read again (lineage); the commit protocol makes a
second attempt harmless. Readers are spread over the nodes (SPREAD), tasks go where a CPU is
free (preferring the node that holds their ledgers): nothing is pinned to a node, so an
autoscaler can add and remove workers under a running backfill.

Each chunk's result records where it ran and what Ray repeated (`Placement`): the reader passes
its part along in the schema metadata of the table it returns.
"""

from __future__ import annotations

import json
import time
import warnings

import pyarrow as pa
import ray

from obsrvr_ray.chunks.plan import WorkUnit
from obsrvr_ray.chunks.process import ChunkResult, ChunkSettings, Placement, process_unit
from obsrvr_ray.chunks.raw import read_unit
from obsrvr_ray.errors import Failure
from obsrvr_ray.sources.open import SourceSpec

RESTARTS = 3  # process deaths survived per reader and per task
READ_INFO = b"obsrvr.read"  # schema metadata key of a read's placement


def _attempt() -> int:
    """Ray's attempt number of the running task or actor task (0: the first)."""
    try:
        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number())
    except Exception:  # a private API: without it, attempts read as 0
        return 0


def _restarted() -> bool:
    """Whether Ray has restarted the running actor (after its process or node was lost)."""
    with warnings.catch_warnings():  # Ray 2.60 warns about its own use of a deprecated property here
        warnings.simplefilter("ignore")
        try:
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
        except Exception:
            return False


# A reader's tasks are retried for as long as Ray may restart it (max_task_retries=-1): while its
# node is being declared dead the actor is unavailable, and a bounded number of retries would be
# spent before Ray restarts it elsewhere. Once its restarts are used up it is dead and they fail.
@ray.remote(num_cpus=0, max_restarts=RESTARTS, max_task_retries=-1, scheduling_strategy="SPREAD")
class ChunkReader:
    def __init__(self, source: SourceSpec) -> None:
        self.source = source.open()
        self.restarted = _restarted()

    def read(self, unit: WorkUnit) -> pa.Table:
        began, cpu = time.monotonic(), time.process_time()
        table = read_unit(self.source, unit)
        context = ray.get_runtime_context()
        info = {"node": context.get_node_id(), "attempt": _attempt(),
                "restarted": self.restarted, "ended": time.time(),
                "seconds": time.monotonic() - began, "cpu_seconds": time.process_time() - cpu}
        return table.replace_schema_metadata({READ_INFO: json.dumps(info).encode()})


@ray.remote(num_cpus=1, max_retries=RESTARTS, retry_exceptions=False)
def commit_chunk(unit: WorkUnit, raw: pa.Table, settings: ChunkSettings, carried: tuple[Failure, ...]) -> ChunkResult:
    started, cpu = time.time(), time.process_time()
    result = process_unit(unit, raw, settings, carried)
    result.placement = placement(raw, started, time.process_time() - cpu)
    return result


def placement(raw: pa.Table, started: float, cpu_seconds: float) -> Placement:
    """Where the running commit task and the read of its `raw` ledgers ran."""
    read = json.loads((raw.schema.metadata or {}).get(READ_INFO, b"{}"))
    return Placement(
        node=ray.get_runtime_context().get_node_id(), read_node=read.get("node", ""), attempt=_attempt(),
        read_attempt=read.get("attempt", 0), reader_restarted=read.get("restarted", False),
        raw_bytes=raw.nbytes, read_seconds=read.get("seconds", 0.0), read_cpu_seconds=read.get("cpu_seconds", 0.0),
        cpu_seconds=cpu_seconds, handoff_seconds=max(0.0, started - read.get("ended", started)),
    )
