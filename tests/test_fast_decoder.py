"""Our decoder against the reference (stellar-sdk), in both forms (compiled and pure Python):
equal objects, equal rows of every table, and the same outcome on damaged bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsrvr_ray.errors import LedgerError
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.network import PUBNET
from obsrvr_ray.pipeline import ExtractOptions, RunReport, build_rows
from obsrvr_ray.xdr.fast import Codec, compiled_available
from tests.conftest import readme_facts

FACTS = readme_facts()
FORMS = ["compiled", "python"] if compiled_available() else ["python"]


@pytest.fixture(params=FORMS)
def form(request, monkeypatch):
    """Runs a test with the compiled decoder, then with its pure-Python form."""
    monkeypatch.setenv("OBSRVR_PURE_XDR", "1" if request.param == "python" else "0")
    return request.param


def test_compiled_form_is_built_by_the_install():
    """`make test` installs with a compiler, so the compiled form must be there."""
    assert compiled_available()


def all_rows(data: bytes, decoder: str, seq: int | None = None) -> dict[str, list[dict]]:
    ledger = decode_ledger(data, PUBNET, sequence=seq, decoder=decoder)
    out = {}
    for kind in ("ledgers", "transactions", "token_transfers"):
        report = RunReport("test", 0, 0)
        out[kind] = build_rows(kind, ledger, ExtractOptions(PUBNET, decoder=decoder), report)
        if kind == "token_transfers":
            out["derived"] = build_rows(kind, ledger, ExtractOptions(PUBNET, events_from="operations"), report)
    return out


@pytest.mark.parametrize("seq", sorted(FACTS))
def test_rows_equal_reference_on_every_real_ledger(real_ledgers, seq, form):
    fast = all_rows(real_ledgers[seq], "fast", seq)
    ref = all_rows(real_ledgers[seq], "reference", seq)
    for table in ref:
        assert len(fast[table]) == len(ref[table])
        for ours, theirs in zip(fast[table], ref[table], strict=True):
            assert ours == theirs, table


@pytest.mark.parametrize("seq", [16154623, 26154623, 53312000, 57500008, 63092990])
def test_full_decode_equals_stellar_sdk_objects(real_ledgers, seq, form):
    from stellar_sdk import xdr as X

    codec = Codec(compiled=form == "compiled")
    ours, end, canonical = codec.decode("LedgerCloseMeta", real_ledgers[seq])
    assert canonical
    assert end == len(real_ledgers[seq])
    assert ours == X.LedgerCloseMeta.from_xdr_bytes(real_ledgers[seq])
    assert codec.skip("LedgerCloseMeta", real_ledgers[seq]) == end


def outcome(data: bytes, decoder: str):
    """('rows', rows of every table) or ('error', error class) for possibly damaged bytes."""
    try:
        return "rows", all_rows(data, decoder)
    except LedgerError as exc:
        return "error", type(exc).__name__


def check_same_outcome(data: bytes) -> None:
    ref_kind, ref_value = outcome(data, "reference")
    fast_kind, fast_value = outcome(data, "fast")
    assert fast_kind == ref_kind
    assert fast_value == ref_value


SMALL = [16154623, 26154623]  # damaged copies of these decode in milliseconds with either decoder


def mutations(data: bytes):
    n = len(data)
    truncate = st.integers(0, n - 1).map(lambda i: data[:i])
    flip = st.tuples(st.integers(0, n - 1), st.integers(0, 7)).map(
        lambda p: data[: p[0]] + bytes([data[p[0]] ^ (1 << p[1])]) + data[p[0] + 1:])
    splice = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(1, 64)).map(
        lambda p: data[: p[0]] + data[p[1]: p[1] + p[2]] + data[p[0] + p[2]:])
    word = st.tuples(st.integers(0, n // 4 - 1), st.sampled_from([0, 1, 2, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000])).map(
        lambda p: data[: 4 * p[0]] + p[1].to_bytes(4, "big") + data[4 * p[0] + 4:])
    return st.one_of(truncate, flip, splice, word)


@pytest.mark.parametrize("seq", SMALL)
def test_damaged_bytes_same_outcome_as_reference(real_ledgers, seq, form):
    """Truncated, bit-flipped, spliced or overwritten ledgers: the fast path raises the same
    error class as the reference or returns the same rows; it never hangs or crashes."""

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutations(real_ledgers[seq]))
    def run(data):
        check_same_outcome(data)

    run()


def test_damaged_protocol_26_ledger_same_outcome(real_ledgers, form):
    """The same on a protocol-26 ledger (V4 meta, parallel Soroban phase): fewer examples, as the
    reference decoder takes most of a second per copy."""
    data = real_ledgers[63092990]

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutations(data))
    def run(damaged):
        check_same_outcome(damaged)

    run()
