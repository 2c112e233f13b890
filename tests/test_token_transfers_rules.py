"""Token-transfer rules one by one: every operation type against core's own events on real
ledgers, and the bad-input cases (malformed contract events, extreme amounts, contradictory
meta, unknown operations), which give a reason or an error, never a crash of the range."""

from __future__ import annotations

from collections import Counter

import pytest
from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger.compact_events import compact_event
from obsrvr_ray.ledger.results import successful
from obsrvr_ray.network import PUBNET
from obsrvr_ray.ttp.assets import NATIVE, Asset, sac_contract_strkey
from obsrvr_ray.ttp.contract_events import parse_token_event
from obsrvr_ray.ttp.core_events import core_ledger_events
from obsrvr_ray.ttp.derive import derived_ledger_events
from obsrvr_ray.ttp.events import MalformedEvent, MuxedInfo
from obsrvr_ray.ttp.filters import EventFilter
from obsrvr_ray.ttp.rows import event_rows
from obsrvr_ray.ttp.verify import verify_ledger
from tests.conftest import CONSECUTIVE

V4 = [51000294, 57500008, 60659332, *CONSECUTIVE]
OT = X.OperationType


@pytest.fixture(scope="module")
def per_op(decoded):
    """(op type) -> list of (derived events, core events) for every successful operation."""
    out: dict[str, list] = {}
    for seq in V4:
        ledger = decoded(seq)
        derived = derived_ledger_events(ledger, PUBNET)
        core = core_ledger_events(ledger, PUBNET)
        for tx, d, c in zip(ledger.transactions, derived.per_tx, core.per_tx, strict=True):
            if not successful(tx.result.result):
                continue
            for i, op in enumerate(E.operations(tx.envelope), start=1):
                pick = lambda events, i=i: Counter(e for e in events if e.op_index == i)  # noqa: E731
                out.setdefault(op.body.type.name, []).append((pick(d.ops), pick(c.ops)))
    return out


@pytest.mark.parametrize("op_type", [
    "CREATE_ACCOUNT", "PAYMENT", "PATH_PAYMENT_STRICT_SEND", "PATH_PAYMENT_STRICT_RECEIVE", "MANAGE_SELL_OFFER",
    "MANAGE_BUY_OFFER", "ACCOUNT_MERGE", "CREATE_CLAIMABLE_BALANCE", "CLAIM_CLAIMABLE_BALANCE", "CLAWBACK",
    "ALLOW_TRUST", "SET_TRUST_LINE_FLAGS", "INVOKE_HOST_FUNCTION", "CHANGE_TRUST", "SET_OPTIONS",
    "BEGIN_SPONSORING_FUTURE_RESERVES", "END_SPONSORING_FUTURE_RESERVES", "MANAGE_DATA",
])
def test_operation_type_matches_core_events(per_op, op_type):
    """Each operation type's derived events equal the events core emitted for that operation."""
    pairs = per_op[op_type]
    assert pairs
    for derived, core in pairs:
        assert derived == core
    moved = sum(sum(d.values()) for d, _ in pairs)
    if op_type in ("CHANGE_TRUST", "SET_OPTIONS", "BEGIN_SPONSORING_FUTURE_RESERVES",
                   "END_SPONSORING_FUTURE_RESERVES", "MANAGE_DATA", "ALLOW_TRUST", "SET_TRUST_LINE_FLAGS"):
        assert moved == 0  # these move no value (no pool shares were revoked here)
    else:
        assert moved > 0


SAC_USDC = Asset("USDC", "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN")


def _sc_addr(g: str) -> X.SCVal:
    key = strkey.decode(g)[1]
    return X.SCVal(X.SCValType.SCV_ADDRESS, address=X.SCAddress(
        X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT,
        account_id=X.AccountID(X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, X.Uint256(key)))))


def _sym(text: str) -> X.SCVal:
    return X.SCVal(X.SCValType.SCV_SYMBOL, sym=X.SCSymbol(text.encode()))


def _str(text: str) -> X.SCVal:
    return X.SCVal(X.SCValType.SCV_STRING, str=X.SCString(text.encode()))


def _i128(value: int) -> X.SCVal:
    return X.SCVal(X.SCValType.SCV_I128, i128=X.Int128Parts(X.Int64(value >> 64), X.Uint64(value & (2**64 - 1))))


def _event(contract: str, topics: list[X.SCVal], data: X.SCVal) -> X.ContractEvent:
    return X.ContractEvent(X.ExtensionPoint(0), X.ContractID(X.Hash(strkey.decode(contract)[1])),
                           X.ContractEventType.CONTRACT, X.ContractEventBody(0, v0=X.ContractEventV0(topics, data)))


ALICE = strkey.account(bytes(range(32)))
BOB = strkey.account(bytes(range(32, 64)))


def parse(event: X.ContractEvent, v4: bool = True):
    return parse_token_event(compact_event(event), v4_layout=v4, passphrase=PUBNET, tx_index=1, tx_hash="00" * 32,
                             op_index=1)


def test_sac_transfer_with_muxed_map_data():
    sac = sac_contract_strkey(SAC_USDC, PUBNET)
    data = X.SCVal(X.SCValType.SCV_MAP, map=X.SCMap([
        X.SCMapEntry(_sym("amount"), _i128(5)),
        X.SCMapEntry(_sym("to_muxed_id"), X.SCVal(X.SCValType.SCV_U64, u64=X.Uint64(42))),
    ]))
    event = parse(_event(sac, [_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB), _str(SAC_USDC.canonical)], data))
    assert (event.kind, event.from_, event.to, event.amount, event.asset) == ("transfer", ALICE, BOB, 5, SAC_USDC)
    assert event.to_muxed == MuxedInfo(id=42)
    row = event_rows([event], 1, None)[0]
    assert row["to_muxed_id"] == "42" and row["to_muxed"] == strkey.muxed(strkey.decode(BOB)[1], 42)


def test_asset_string_that_does_not_hash_to_the_contract_is_a_custom_token():
    other = sac_contract_strkey(NATIVE, PUBNET)  # the XLM SAC claiming to move USDC
    event = parse(_event(other, [_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB), _str(SAC_USDC.canonical)],
                         _i128(7)))
    assert event.asset is None and event.contract_id == other


@pytest.mark.parametrize(("topics", "data", "reason"), [
    ([_sym("transfer"), _sc_addr(ALICE)], _i128(1), "fewer than 3 topics"),
    ([_sym("transfer"), _sc_addr(ALICE), _str("x"), _str("native")], _i128(1), "expected an address"),
    ([_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB)], _str("lots"), "not an i128"),
    ([_sym("approve"), _sc_addr(ALICE), _sc_addr(BOB)], _i128(1), "not a token movement"),
    ([_str("transfer"), _sc_addr(ALICE), _sc_addr(BOB)], _i128(1), "first topic is not a symbol"),
    ([_sym("mint"), _sc_addr(ALICE)], X.SCVal(X.SCValType.SCV_MAP, map=X.SCMap([])), "no amount"),
    ([_sym("mint"), _sc_addr(ALICE)], X.SCVal(X.SCValType.SCV_MAP, map=X.SCMap([
        X.SCMapEntry(_sym("amount"), X.SCVal(X.SCValType.SCV_U64, u64=X.Uint64(1)))])), "not i128"),
])
def test_malformed_contract_event_is_skipped_with_reason(topics, data, reason):
    with pytest.raises(MalformedEvent, match=reason):
        parse(_event(sac_contract_strkey(NATIVE, PUBNET), topics, data))


@pytest.mark.parametrize("amount", [2**127 - 1, -(2**127), 2**64, 2**63])
def test_i128_amounts_beyond_int64_stay_exact(amount):
    contract = "CCA2ZJP5BVRXYTQH4FAGHCAUMRYCXVC4CRYC2NXHWMR7TIVX36U7F5HR"
    event = parse(_event(contract, [_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB)], _i128(amount)))
    row = event_rows([event], 1, None)[0]
    assert row["amount_raw"] == str(amount)
    assert row["amount"] == float(amount) * 1e-7
    assert row["asset"] == "" and row["asset_type"] == "" and row["contract_id"] == contract


def test_claim_without_a_removed_balance_is_a_named_error_not_a_crash(decoded, real_ledgers):
    """Contradictory meta (a claim whose claimable balance is not removed) fails that operation
    with its transaction named; every other event of the ledger is still produced."""
    from obsrvr_ray.ledger.decode import decode_ledger

    ledger = decode_ledger(real_ledgers[63092982], PUBNET)
    target = None
    for tx in ledger.transactions:
        for i, op in enumerate(E.operations(tx.envelope)):
            if op.body.type == OT.CLAIM_CLAIMABLE_BALANCE and successful(tx.result.result) and target is None:
                target = (tx, i)
    tx, i = target
    tx.meta.v4.operations[i].changes = X.LedgerEntryChanges([])
    events = derived_ledger_events(ledger, PUBNET)
    errors = [s for s in events.skipped if s.error]
    assert len(errors) == 1
    assert errors[0].tx_hash == tx.hash.hex() and errors[0].op_index == i + 1
    assert "expected one removed claimable balance, found 0" in errors[0].reason
    baseline = derived_ledger_events(decoded(63092982), PUBNET)
    assert len(events.ordered()) == len(baseline.ordered()) - 1
    findings = verify_ledger(ledger, PUBNET).findings
    assert {f.tx_hash for f in findings} == {tx.hash.hex()}


def test_tampered_core_event_is_reported_per_transaction(real_ledgers):
    from obsrvr_ray.ledger.decode import decode_ledger

    ledger = decode_ledger(real_ledgers[63092990], PUBNET)
    tx = next(t for t in ledger.transactions if successful(t.result.result) and any(
        op.events for op in t.meta.v4.operations))
    event = next(e for op in tx.meta.v4.operations for e in op.events)
    data = event.body.v0.data
    if data.type == X.SCValType.SCV_I128:
        event.body.v0.data = _i128(10**12)
    else:
        data.map.sc_map[0].val = _i128(10**12)
    findings = verify_ledger(ledger, PUBNET).findings
    assert findings and {f.tx_hash for f in findings} == {tx.hash.hex()}
    assert {f.check for f in findings} >= {"derived-vs-core", "balances(core)"}


def test_filters_by_type_asset_and_account(decoded):
    import pyarrow as pa

    from obsrvr_ray.schema import TOKEN_TRANSFERS
    from obsrvr_ray.ttp.extract import token_transfer_rows

    ledger = decoded(63092982)
    rows, _ = token_transfer_rows(ledger, PUBNET)
    table = pa.Table.from_pylist(rows, schema=TOKEN_TRANSFERS)
    mints = EventFilter.of(event_types=["mint"]).apply(table)
    assert set(mints["event_topic"].to_pylist()) == {"mint"} and mints.num_rows == 8
    native = EventFilter.of(assets=["native"]).apply(table)
    assert set(native["asset"].to_pylist()) == {"native"}
    account = rows[0]["from"]
    mine = EventFilter.of(accounts=[account]).apply(table)
    assert mine.num_rows == sum(1 for r in rows if account in (r["from"], r["to"]))
    code = next(r["asset_code"] for r in rows if r["asset_code"])
    by_code = EventFilter.of(assets=[code]).apply(table)
    assert by_code.num_rows == sum(1 for r in rows if r["asset_code"] == code)
    both = EventFilter.of(event_types=["fee"], assets=["native"]).apply(table)
    assert both.num_rows == sum(1 for r in rows if r["event_topic"] == "fee")


def test_unknown_operation_type_fails_its_ledger_only(real_ledgers, tmp_path, capsys):
    """An operation type this XDR does not know (a future protocol) is a decode error naming
    the ledger; the other ledgers of the range still produce their events."""
    import struct

    from obsrvr_ray.cli import main
    from obsrvr_ray.ledger.decode import decode_close_meta
    from tests.test_bad_input import build_lake

    seq = 63092990
    raw = real_ledgers[seq]
    lcm = decode_close_meta(raw)
    env = next(e for st in lcm.v2.tx_set.v1_tx_set.phases[0].v0_components
               for e in st.txs_maybe_discounted_fee.txs if e.type == X.EnvelopeType.ENVELOPE_TYPE_TX)
    op = env.v1.tx.operations[0]
    env_bytes, op_bytes = env.to_xdr_bytes(), op.to_xdr_bytes()
    assert raw.count(env_bytes) == 1
    type_at = raw.index(env_bytes) + env_bytes.index(op_bytes) + 4 + (0 if op.source_account is None else
                                                                       len(op.source_account.to_xdr_bytes()))
    assert struct.unpack_from(">i", raw, type_at)[0] == op.body.type.value
    bad = raw[:type_at] + struct.pack(">i", 99) + raw[type_at + 4:]
    ledgers = {s: real_ledgers[s] for s in (seq - 1, seq, seq + 1)}
    ledgers[seq] = bad
    build_lake(tmp_path / "lake", ledgers)
    rc = main(["export", "token-transfers", "--source", str(tmp_path / "lake"), "--start", str(seq - 1),
               "--end", str(seq + 1), "--out", str(tmp_path / "tt.parquet")])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"ledger {seq}" in out and "[decode]" in out and ("OperationType" in out or "OperationBody" in out)
    import pyarrow.parquet as pq

    assert set(pq.read_table(tmp_path / "tt.parquet")["ledger_sequence"].to_pylist()) == {seq - 1, seq + 1}
