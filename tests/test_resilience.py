"""The bulkhead around outbound calls: it bounds concurrency, refuses after its wait timeout with
an error naming the dependency, frees its slot however a call ends, and is wired into the RPC
client, the data-lake source, the live app's settings and its metrics."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import generate_latest

from obsrvr_ray.errors import ConfigError, SourceError, TransientSourceError
from obsrvr_ray.live.follow import url_masker
from obsrvr_ray.live.live_metrics import ApiMetrics
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.resilience import Bulkhead, BulkheadFullError, CircuitBreaker, RetryPolicy, call_with_retry
from obsrvr_ray.sources.lake_source import LakeSource
from obsrvr_ray.sources.open import SourceOptions, open_source
from obsrvr_ray.sources.rpc import RpcClient

NO_RETRY = RetryPolicy(attempts=1)


def test_concurrency_is_bounded_by_the_limit():
    bulkhead = Bulkhead("rpc test", limit=2, max_wait=10)
    running, peak, lock = 0, 0, threading.Lock()

    def call() -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return 1

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call_with_retry(call, policy=NO_RETRY,
                                                                               bulkhead=bulkhead)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 8  # every call ran: waiting callers got a slot in time
    assert peak == 2
    assert bulkhead.snapshot() == {"in_use": 0, "limit": 2, "rejected": 0}


def test_a_call_waiting_longer_than_max_wait_fails_fast_naming_the_dependency_and_is_not_retried():
    bulkhead = Bulkhead("lake s3://bucket/ledgers", limit=1, max_wait=0.2)
    breaker = CircuitBreaker("lake s3://bucket/ledgers", threshold=1)
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with bulkhead.slot():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    attempts: list[int] = []
    began = time.monotonic()
    with pytest.raises(BulkheadFullError, match=r"bulkhead for lake s3://bucket/ledgers is full: 1 calls") as err:
        call_with_retry(lambda: attempts.append(1), policy=RetryPolicy(attempts=4, base_delay=0), breaker=breaker,
                        bulkhead=bulkhead)
    waited = time.monotonic() - began
    release.set()
    holder.join()
    assert isinstance(err.value, TransientSourceError) and err.value.origin == "lake s3://bucket/ledgers"
    assert 0.2 <= waited < 1.0  # waited max_wait once, no retries
    assert attempts == []  # never attempted
    assert breaker.state == CircuitBreaker.CLOSED  # not a failure of the dependency
    assert bulkhead.rejected == 1 and bulkhead.in_use == 0


@pytest.mark.parametrize("error", [TransientSourceError("503"), SourceError("not found"), RuntimeError("bug")])
def test_the_slot_is_released_whatever_the_call_raises(error):
    bulkhead = Bulkhead("rpc test", limit=1, max_wait=0)

    def fail() -> None:
        assert bulkhead.in_use == 1
        raise error

    with pytest.raises(type(error)):
        call_with_retry(fail, policy=RetryPolicy(attempts=2, base_delay=0), bulkhead=bulkhead)
    assert bulkhead.in_use == 0
    assert call_with_retry(lambda: "free", policy=NO_RETRY, bulkhead=bulkhead) == "free"  # max_wait 0: at once


def test_backoff_sleeps_hold_no_slot():
    bulkhead = Bulkhead("rpc test", limit=1, max_wait=0)
    calls, in_use_while_sleeping = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientSourceError("timeout")
        return "ok"

    result = call_with_retry(flaky, policy=RetryPolicy(attempts=3, base_delay=0), bulkhead=bulkhead,
                             sleep=lambda _: in_use_while_sleeping.append(bulkhead.in_use))
    assert result == "ok" and in_use_while_sleeping == [0, 0]


def test_bad_limits_are_config_errors():
    with pytest.raises(ConfigError, match="must be >= 1"):
        Bulkhead("rpc x", limit=0)
    with pytest.raises(ConfigError, match="wait timeout"):
        Bulkhead("rpc x", max_wait=-1)


def test_rpc_client_and_lake_source_go_through_their_bulkheads(tmp_path):
    client = RpcClient("http://127.0.0.1:9/", bulkhead=Bulkhead("rpc http://127.0.0.1:9/", limit=1, max_wait=0))
    with client.bulkhead.slot(), pytest.raises(BulkheadFullError, match=r"rpc http://127\.0\.0\.1:9/"):
        client.get_health()  # refused before any connection is tried
    assert client.bulkhead.rejected == 1 and client.breaker.state == CircuitBreaker.CLOSED

    lake = LakeSource(LocalStore(tmp_path), bulkhead=Bulkhead(f"lake {tmp_path}", limit=1, max_wait=0))
    with lake.bulkhead.slot():
        (record,) = list(lake.records(2, 2))
    assert isinstance(record.error, BulkheadFullError) and "is full" in str(record.error)

    assert open_source(str(tmp_path), SourceOptions(prefetch=3)).bulkhead.limit == 3  # default: prefetch
    opened = open_source(str(tmp_path), SourceOptions(max_concurrent=5, bulkhead_wait=1.5))
    assert (opened.bulkhead.limit, opened.bulkhead.max_wait) == (5, 1.5)


def test_live_app_settings_configure_the_bulkheads():
    from obsrvr_ray.serve.serve_settings import live_config_from_args

    base = {"rpc_url": "http://127.0.0.1:9/", "dataset": "/tmp/obsrvr-unused", "network": "sandbox"}
    config = live_config_from_args({**base, "resilience": {"rpc_max_concurrent": 2, "lake_max_concurrent": 3,
                                                           "bulkhead_wait": 0.5, "rpc_timeout": 4}})
    follower = config.follower
    assert (follower.rpc_max_concurrent, follower.bulkhead_wait, follower.rpc_timeout) == (2, 0.5, 4)
    assert (follower.lake_options.max_concurrent, follower.lake_options.bulkhead_wait) == (3, 0.5)
    for bad in ({"rpc_max_concurrent": 0}, {"rpc_max_concurrent": 1.5}, {"bulkhead_size": 2}, {"bulkhead_wait": "x"}):
        with pytest.raises(ConfigError, match="resilience"):
            live_config_from_args({**base, "resilience": bad})


def test_bulkheads_are_prometheus_metrics_beside_the_circuit_breaker():
    status = {"breaker": "open", "bulkheads": {"rpc": {"in_use": 3, "limit": 4, "rejected": 7},
                                               "lake": {"in_use": 0, "limit": 8, "rejected": 0}}}
    text = generate_latest(ApiMetrics(lambda: status).registry).decode()
    assert "circuit_breaker_state 2.0" in text
    assert 'bulkhead_in_use{dependency="rpc"} 3.0' in text
    assert 'bulkhead_limit{dependency="rpc"} 4.0' in text
    assert 'bulkhead_rejections_total{dependency="rpc"} 7.0' in text
    assert 'bulkhead_limit{dependency="lake"} 8.0' in text


def test_url_masker_hides_what_may_be_a_credential():
    url = "https://alice:pa55@rpc.example:8443/v1/KEY123?apikey=s3cret"
    mask = url_masker(url)
    error = (f"{url}: RPC unreachable: ConnectionError: HTTPSConnectionPool(host='rpc.example', port=8443): "
             f"Max retries exceeded with url: /v1/KEY123?apikey=s3cret; rpc {url} is open")
    masked = mask(error)
    for secret in ("alice", "pa55", "KEY123", "s3cret"):
        assert secret not in masked
    assert "https://rpc.example:8443/***" in masked and "HTTPSConnectionPool(host='rpc.example'" in masked
    plain = "http://127.0.0.1:8000/"
    assert url_masker(plain)(f"{plain} answered HTTP 503") == f"{plain} answered HTTP 503"
