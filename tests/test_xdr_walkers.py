"""The compiled decoder's two shortcuts, held to the slow paths they replace:

- skipping a value walks it with precomputed sizes and look-up tables: it must accept, reject
  and end exactly where the pure-Python walker of the same table does;
- a v4 TransactionMeta left encoded carries the contract events read on the way past it: they
  must equal the compact events built from stellar-sdk's objects, and the walk must accept and
  reject exactly what skipping the meta does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger.compact_events import compact_event
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.ledger.decoder_backends import LAZY_TYPES
from obsrvr_ray.network import PUBNET
from obsrvr_ray.xdr.fast import Codec, XdrError, compiled_available
from obsrvr_sandbox import generate_ledgers

pytestmark = pytest.mark.skipif(not compiled_available(), reason="the compiled decoder was not built")

V4_LEDGERS = [60659332, 63092982, 63092990, 63093001]  # protocol 24 and 26, TransactionMetaV4


def walk_outcome(codec: Codec, data: bytes) -> tuple:
    try:
        return "ok", codec.skip("LedgerCloseMeta", data)
    except (XdrError, ValueError, EOFError) as exc:  # the pure walker raises what xdrlib3 raises
        return "error", type(exc).__name__


def lazy_outcome(codec: Codec, data: bytes) -> tuple:
    try:
        return "ok", codec.decode("LedgerCloseMeta", data, whole=False)[1]
    except XdrError:
        return "error", "XdrError"


def reference_events(meta: X.TransactionMeta) -> tuple:
    v4 = meta.v4
    return ([(e.stage.value, compact_event(e.event)) for e in v4.events],
            [[compact_event(e) for e in op.events] for op in v4.operations])


@pytest.mark.parametrize("seq", V4_LEDGERS)
def test_scanned_events_equal_those_of_stellar_sdk_objects(real_ledgers, decoded, seq):
    fast = decode_ledger(real_ledgers[seq], PUBNET, sequence=seq, decoder="fast")
    reference = decoded(seq)
    assert len(fast.transactions) == len(reference.transactions) > 0
    events = 0
    for ours, theirs in zip(fast.transactions, reference.transactions, strict=True):
        scanned = ours.raw_meta.scanned_events
        assert scanned == reference_events(theirs.meta)
        events += sum(len(op) for op in scanned[1]) + len(scanned[0])
    assert events > 0


def test_compact_values_of_every_kind_equal_stellar_sdk_objects():
    """Addresses of every kind become the same strkeys, symbols and strings the same text (bad
    UTF-8 included), 128-bit integers the same values at their extremes."""
    key = bytes(range(32))

    def addr(kind, **arms):
        return X.SCVal(X.SCValType.SCV_ADDRESS, address=X.SCAddress(kind, **arms))

    account = X.AccountID(X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, X.Uint256(key)))
    topics = [
        X.SCVal(X.SCValType.SCV_SYMBOL, sym=X.SCSymbol(b"transfer")),
        addr(X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT, account_id=account),
        addr(X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT, contract_id=X.ContractID(X.Hash(key))),
        addr(X.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT,
             muxed_account=X.MuxedEd25519Account(X.Uint64(2**64 - 1), X.Uint256(key))),
        addr(X.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE,
             claimable_balance_id=X.ClaimableBalanceID(X.ClaimableBalanceIDType.CLAIMABLE_BALANCE_ID_TYPE_V0,
                                                       v0=X.Hash(key))),
        addr(X.SCAddressType.SC_ADDRESS_TYPE_LIQUIDITY_POOL, liquidity_pool_id=X.PoolID(X.Hash(key))),
        X.SCVal(X.SCValType.SCV_STRING, str=X.SCString(b"USDC:\xff\xfe")),
        X.SCVal(X.SCValType.SCV_SYMBOL, sym=X.SCSymbol(b"a\xc3")),
    ]
    i128 = [(0, 0), (0, 2**64 - 1), (-1, 2**64 - 1), (-1, 2**63), (-1, 0), (2**63 - 1, 2**64 - 1), (-(2**63), 0),
            (0, 2**63 - 1), (0, 2**63)]
    data = X.SCVal(X.SCValType.SCV_VEC, vec=X.SCVec(
        [X.SCVal(X.SCValType.SCV_I128, i128=X.Int128Parts(X.Int64(hi), X.Uint64(lo))) for hi, lo in i128]
        + [X.SCVal(X.SCValType.SCV_U128, u128=X.UInt128Parts(X.Uint64(2**64 - 1), X.Uint64(2**64 - 1)))]))
    event = X.ContractEvent(X.ExtensionPoint(0), X.ContractID(X.Hash(key)), X.ContractEventType.CONTRACT,
                            X.ContractEventBody(0, v0=X.ContractEventV0(topics, data)))
    meta = X.TransactionMeta(4, v4=X.TransactionMetaV4(
        X.ExtensionPoint(0), X.LedgerEntryChanges([]),
        [X.OperationMetaV2(X.ExtensionPoint(0), X.LedgerEntryChanges([]), [event, event])],
        X.LedgerEntryChanges([]), None,
        [X.TransactionEvent(X.TransactionEventStage.TRANSACTION_EVENT_STAGE_AFTER_ALL_TXS, event)], []))
    holder = X.TransactionResultMeta(
        X.TransactionResultPair(X.Hash(key), X.TransactionResult(
            X.Int64(100), X.TransactionResultResult(X.TransactionResultCode.txSUCCESS, results=[]),
            X.TransactionResultExt(0))),
        X.LedgerEntryChanges([]), meta)
    value, _, canonical = Codec(frozenset({"TransactionMeta"}), compiled=True).decode(
        "TransactionResultMeta", holder.to_xdr_bytes())
    assert canonical
    scanned = value.tx_apply_processing.scanned_events
    assert scanned == reference_events(meta)
    topic_values = [v for _, v in scanned[1][0][0][3]]
    assert topic_values[1:6] == [strkey.account(key), strkey.contract(key), strkey.muxed(key, 2**64 - 1),
                                 strkey.claimable_balance(key), strkey.liquidity_pool(key)]
    assert [v for _, v in scanned[1][0][0][4][1]] == [(hi << 64) | lo for hi, lo in i128] + [2**128 - 1]


def mutations(data: bytes):
    n = len(data)
    truncate = st.integers(0, n - 1).map(lambda i: data[:i])
    flip = st.tuples(st.integers(0, n - 1), st.integers(0, 7)).map(
        lambda p: data[: p[0]] + bytes([data[p[0]] ^ (1 << p[1])]) + data[p[0] + 1:])
    word = st.tuples(st.integers(0, n // 4 - 1), st.sampled_from([0, 1, 2, 3, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000])).map(
        lambda p: data[: 4 * p[0]] + p[1].to_bytes(4, "big") + data[4 * p[0] + 4:])
    return st.one_of(truncate, flip, word)


@pytest.fixture(scope="module")
def sandbox_ledger() -> bytes:
    """A generated protocol-26 ledger (~20 KB, V4 meta with contract events): small enough for
    the pure-Python walker to check hundreds of damaged copies."""
    ledgers = [data for _, data in generate_ledgers(12)]
    return max(ledgers, key=len)


def test_compiled_walker_accepts_and_rejects_what_the_pure_walker_does(sandbox_ledger):
    compiled, pure = Codec(compiled=True), Codec(compiled=False)
    assert walk_outcome(compiled, sandbox_ledger) == ("ok", len(sandbox_ledger))

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutations(sandbox_ledger))
    def run(data):
        ours = walk_outcome(compiled, data)
        theirs = walk_outcome(pure, data)
        assert ours[0] == theirs[0]
        if ours[0] == "ok":
            assert ours == theirs

    run()


@pytest.mark.parametrize("source", ["sandbox", 63092990])
def test_meta_scan_accepts_and_rejects_what_skipping_does(sandbox_ledger, real_ledgers, source):
    """Decoding with metas left encoded (their events read on the way) fails exactly when
    skipping the whole ledger fails, and ends at the same byte."""
    data = sandbox_ledger if source == "sandbox" else real_ledgers[source]
    lazy, walker = Codec(LAZY_TYPES, compiled=True), Codec(compiled=True)
    assert lazy_outcome(lazy, data) == walk_outcome(walker, data) == ("ok", len(data))

    @settings(max_examples=300 if source == "sandbox" else 200, deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutations(data))
    def run(damaged):
        assert lazy_outcome(lazy, damaged) == walk_outcome(walker, damaged)

    run()


def test_the_schema_is_built_once_when_threads_ask_for_it_at_once():
    """A lake read decodes in its prefetch threads: their first calls at once get one schema, built
    once (several builds at once ran ast.parse concurrently, which fails in CPython 3.11)."""
    code = """
import threading
from obsrvr_ray.xdr.type_model import load_schema
start, got = threading.Barrier(8), []
def ask():
    start.wait()
    got.append(id(load_schema()))
threads = [threading.Thread(target=ask) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(got), len(set(got)))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "1"]
