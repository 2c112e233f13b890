"""Token-transfer rules the other tests leave open: the claim-atom order rule between derived and
core events (pinned in order, not as multisets), inflation, the pre-protocol-23 SAC topic layout,
a malformed contract event inside a real ledger, and amounts beyond int64 from the ledger's bytes
to Parquet and the analytics tables."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

import pyarrow.parquet as pq
import pytest
from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial, merge
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction
from obsrvr_ray.ledger.results import operation_results, successful
from obsrvr_ray.network import PUBNET
from obsrvr_ray.pipeline import rows_to_table
from obsrvr_ray.ttp.assets import NATIVE, sac_contract_strkey
from obsrvr_ray.ttp.core_events import core_ledger_events
from obsrvr_ray.ttp.derive import derived_ledger_events
from obsrvr_ray.ttp.events import BURN, CLAWBACK, MINT, TRANSFER, Event, MalformedEvent, Skipped
from obsrvr_ray.ttp.extract import token_transfer_rows
from obsrvr_ray.ttp.rows import event_rows
from obsrvr_ray.ttp.verify import compare_views, verify_ledger
from tests.conftest import CONSECUTIVE
from tests.test_token_transfers_rules import ALICE, BOB, SAC_USDC, _event, _i128, _sc_addr, _str, _sym, parse

V4 = [51000294, 57500008, 60659332, *CONSECUTIVE]
OT = X.OperationType
DECODERS = ["fast", "reference"]


# --- 1. the claim-atom order rule, pinned in order ----------------------------------------------


def _claim_atoms(op: X.Operation, result: X.OperationResult) -> int:
    """How many offers or pool trades an operation crossed (0 for operations that do not trade)."""
    tr = result.tr
    crossed = {
        OT.MANAGE_SELL_OFFER: lambda: tr.manage_sell_offer_result.success.offers_claimed,
        OT.MANAGE_BUY_OFFER: lambda: tr.manage_buy_offer_result.success.offers_claimed,
        OT.CREATE_PASSIVE_SELL_OFFER: lambda: tr.create_passive_sell_offer_result.success.offers_claimed,
        OT.PATH_PAYMENT_STRICT_SEND: lambda: tr.path_payment_strict_send_result.success.offers,
        OT.PATH_PAYMENT_STRICT_RECEIVE: lambda: tr.path_payment_strict_receive_result.success.offers,
    }.get(op.body.type)
    return len(crossed()) if crossed else 0


def _swap_claim_pairs(tx: LedgerTransaction, ops: list[Event]) -> tuple[list[Event], int]:
    """The documented rule applied by hand: each claim atom's two events swapped. A trade's
    atoms lead its operation's events (offers: only atoms; path payments: atoms, then delivery).
    Also returns how many swaps changed anything."""
    if not successful(tx.result.result):
        return ops, 0
    atoms = {i: _claim_atoms(op, r) for i, (op, r) in
             enumerate(zip(E.operations(tx.envelope), operation_results(tx.result.result), strict=True), start=1)}
    out: list[Event] = []
    changed = 0
    for op_index, group in groupby(ops, key=lambda e: e.op_index):
        events = list(group)
        for k in range(atoms[op_index]):
            a, b = events[2 * k], events[2 * k + 1]
            events[2 * k], events[2 * k + 1] = b, a
            changed += a != b
        out.extend(events)
    return out, changed


@pytest.fixture(scope="module")
def v4_ledgers(real_ledgers) -> list[Ledger]:
    """Every real ledger with V4 meta, through the fast decoder: proven equal to the reference
    decoder elsewhere, and several times quicker over 23 ledgers."""
    return [decode_ledger(real_ledgers[s], PUBNET, sequence=s, decoder="fast") for s in V4]


def test_claim_atom_pair_order_is_the_only_difference_from_core_events(v4_ledgers):
    """stellar/go's order with each claim-atom pair swapped equals core's events event for event,
    in order, in every transaction of every V4 ledger; the check's own core-order derivation
    agrees; and the swap is needed (it is a rule, not a no-op: counts pinned)."""
    needed_in = changed = 0
    for ledger in v4_ledgers:
        go_order = derived_ledger_events(ledger, PUBNET)
        core_order = derived_ledger_events(ledger, PUBNET, core_claim_order=True)
        core = core_ledger_events(ledger, PUBNET)
        assert not [s for s in (*go_order.skipped, *core_order.skipped, *core.skipped) if s.error]
        for tx, go, ours, theirs in zip(ledger.transactions, go_order.per_tx, core_order.per_tx, core.per_tx,
                                        strict=True):
            swapped, n = _swap_claim_pairs(tx, go.ops)
            assert go.fees == theirs.fees, tx.hash.hex()
            assert swapped == theirs.ops, tx.hash.hex()
            assert ours.all() == theirs.all(), tx.hash.hex()
            assert compare_views(ours, theirs) is None
            changed += n
            needed_in += go.ops != theirs.ops
    assert (needed_in, changed) == (333, 1802)  # transactions whose order differs, claim atoms swapped


def test_an_order_only_difference_is_a_finding(real_ledgers):
    """Two of core's events swapped inside one classic operation (whose derived events come from
    the operation, not from these events): same multiset, same balances, so only an in-order
    comparison sees it; the check names that transaction and nothing else."""
    ledger = decode_ledger(real_ledgers[63092990], PUBNET)
    tx, meta_op = next((t, meta) for t in ledger.transactions if successful(t.result.result)
                       for op, meta in zip(E.operations(t.envelope), t.meta.v4.operations, strict=True)
                       if op.body.type != OT.INVOKE_HOST_FUNCTION and len(meta.events) >= 2
                       and meta.events[0].to_xdr_bytes() != meta.events[1].to_xdr_bytes())
    meta_op.events[0], meta_op.events[1] = meta_op.events[1], meta_op.events[0]
    findings = verify_ledger(ledger, PUBNET).findings
    assert [(f.tx_hash, f.check) for f in findings] == [(tx.hash.hex(), "derived-vs-core")]


# --- 2. inflation ------------------------------------------------------------------------------


def _account_id(g: str) -> X.AccountID:
    return X.AccountID(X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, X.Uint256(strkey.decode(g)[1])))


def _account_change(g: str, balance: int, kind: X.LedgerEntryChangeType) -> X.LedgerEntryChange:
    entry = X.LedgerEntry(X.Uint32(1), X.LedgerEntryData(X.LedgerEntryType.ACCOUNT, account=X.AccountEntry(
        _account_id(g), X.Int64(balance), X.SequenceNumber(X.Int64(1)), X.Uint32(0), None, X.Uint32(0),
        X.String32(b""), X.Thresholds(b"\x01\x00\x00\x00"), [], X.AccountEntryExt(0))), X.LedgerEntryExt(0))
    if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE:
        return X.LedgerEntryChange(kind, state=entry)
    return X.LedgerEntryChange(kind, updated=entry)


def test_inflation_mints_each_payout_to_its_destination(real_ledgers):
    """A protocol-11 transaction turned into an inflation operation paying out to two accounts:
    one mint of XLM per payout, from nobody, to the payout's destination, named by the XLM SAC
    (stellar/go's inflationEvents); the mints reconcile with the accounts' balance changes."""
    ledger = decode_ledger(real_ledgers[26154623], PUBNET)
    assert ledger.protocol_version == 11
    tx = next(t for t in ledger.transactions if successful(t.result.result))
    payouts = [(ALICE, 10_000_000, 50_000_000), (BOB, 123, 7)]  # (destination, payout, balance before)
    E.operations(tx.envelope)[:] = [X.Operation(None, X.OperationBody(OT.INFLATION))]
    tx.result.result.result.results[:] = [X.OperationResult(
        X.OperationResultCode.opINNER, tr=X.OperationResultTr(OT.INFLATION, inflation_result=X.InflationResult(
            X.InflationResultCode.INFLATION_SUCCESS,
            [X.InflationPayout(_account_id(g), X.Int64(amount)) for g, amount, _ in payouts])))]
    change = X.LedgerEntryChangeType
    tx.meta.v2.operations[:] = [X.OperationMeta(X.LedgerEntryChanges([
        c for g, amount, before in payouts for c in (_account_change(g, before, change.LEDGER_ENTRY_STATE),
                                                     _account_change(g, before + amount, change.LEDGER_ENTRY_UPDATED))
    ]))]
    derived = derived_ledger_events(ledger, PUBNET)
    common = dict(asset=NATIVE, contract_id=sac_contract_strkey(NATIVE, PUBNET), tx_index=tx.index,
                  tx_hash=tx.hash.hex(), op_index=1)
    assert derived.per_tx[tx.index - 1].ops == [Event(MINT, amount=a, to=g, **common) for g, a, _ in payouts]
    rows = event_rows(derived.per_tx[tx.index - 1].ops, ledger.sequence, ledger.closed_at)
    assert [(r["event_topic"], r["from"], r["to"], r["asset"], r["amount_raw"]) for r in rows] == [
        ("mint", None, ALICE, "native", "10000000"), ("mint", None, BOB, "native", "123")]
    assert {r["operation_id"] for r in rows} == {(ledger.sequence << 32) | (tx.index << 12) | 1}
    assert verify_ledger(ledger, PUBNET).findings == []


# --- 3. the pre-protocol-23 SAC topic layout ----------------------------------------------------

ADMIN = SAC_USDC.issuer
CUSTOM = "CCA2ZJP5BVRXYTQH4FAGHCAUMRYCXVC4CRYC2NXHWMR7TIVX36U7F5HR"  # no classic asset hashes to it
USDC = _str(SAC_USDC.canonical)


@pytest.mark.parametrize(("topics", "kind", "from_", "to"), [
    ([_sym("mint"), _sc_addr(ADMIN), _sc_addr(BOB), USDC], MINT, None, BOB),
    ([_sym("clawback"), _sc_addr(ADMIN), _sc_addr(ALICE), USDC], CLAWBACK, ALICE, None),
    ([_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB), USDC], TRANSFER, ALICE, BOB),
    ([_sym("burn"), _sc_addr(ALICE), USDC], BURN, ALICE, None),
], ids=["mint", "clawback", "transfer", "burn"])
def test_pre_protocol_23_sac_layout(topics, kind, from_, to):
    """TransactionMetaV3 SAC events: mint and clawback name the admin first, which is not a party
    to the movement; the data is a bare i128; the asset string makes it a SAC event."""
    sac = sac_contract_strkey(SAC_USDC, PUBNET)
    event = parse(_event(sac, topics, _i128(5)), v4=False)
    assert event == Event(kind, 5, SAC_USDC, sac, 1, "00" * 32, 1, from_, to, None)


@pytest.mark.parametrize(("topics", "kind", "from_", "to"), [
    ([_sym("mint"), _sc_addr(ADMIN), _sc_addr(BOB)], MINT, None, BOB),
    ([_sym("clawback"), _sc_addr(ADMIN), _sc_addr(ALICE)], CLAWBACK, ALICE, None),
    ([_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB)], TRANSFER, ALICE, BOB),
    ([_sym("burn"), _sc_addr(ALICE)], BURN, ALICE, None),
    ([_sym("mint"), _sc_addr(ADMIN), _sc_addr(BOB), USDC], MINT, None, BOB),  # claims USDC, is not its SAC
], ids=["mint", "clawback", "transfer", "burn", "foreign-asset-string"])
def test_pre_protocol_23_custom_token(topics, kind, from_, to):
    """A non-SAC token in the old layout: the same parties, no asset, named by its contract."""
    event = parse(_event(CUSTOM, topics, _i128(9)), v4=False)
    assert event == Event(kind, 9, None, CUSTOM, 1, "00" * 32, 1, from_, to, None)


@pytest.mark.parametrize(("topics", "data", "reason"), [
    ([_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB), USDC],
     X.SCVal(X.SCValType.SCV_MAP, map=X.SCMap([X.SCMapEntry(_sym("amount"), _i128(1))])), "SCV_MAP, not an i128"),
    ([_sym("mint"), _sc_addr(ADMIN)], _i128(1), "mint with fewer than 3 topics"),
    ([_sym("clawback"), _sc_addr(ADMIN)], _i128(1), "clawback with fewer than 3 topics"),
    ([_sym("mint"), _str("admin"), _sc_addr(BOB), USDC], _i128(1), "expected an address, got SCV_STRING"),
    ([_sym("mint"), _sc_addr(BOB), USDC], _i128(1), "expected an address, got SCV_STRING"),  # CAP-67 layout
    ([_sym("burn"), _sym("ALICE"), USDC], _i128(1), "expected an address, got SCV_SYMBOL"),
    ([_sym("transfer"), _sc_addr(ALICE), _sc_addr(BOB), USDC], _sym("5"), "SCV_SYMBOL, not an i128"),
], ids=["map-data", "mint-short", "clawback-short", "admin-not-address", "cap67-mint", "burn-symbol", "symbol-data"])
def test_pre_protocol_23_malformed_event_is_skipped_with_reason(topics, data, reason):
    with pytest.raises(MalformedEvent, match=reason):
        parse(_event(sac_contract_strkey(SAC_USDC, PUBNET), topics, data), v4=False)


# --- 4 and 5. a real ledger's contract events rewritten in its bytes -----------------------------

TAMPERED = 63092996


def _sep41_targets(ledger: Ledger, count: int) -> list[tuple[str, int, int, Event]]:
    """(tx hash, operation, event position, parsed event) of `count` `transfer` events with a bare
    i128 amount in invoke-host-function operations, each the only one of its operation with its
    parties and token (so its row can be told apart whatever its amount, and the largest-transfer
    analytics rank it)."""
    found = []
    for tx in ledger.transactions:
        if not successful(tx.result.result):
            continue
        for i, op in enumerate(E.operations(tx.envelope)):
            if op.body.type != OT.INVOKE_HOST_FUNCTION:
                continue
            for k, raw in enumerate(tx.meta.v4.operations[i].events):
                try:
                    event = parse(raw)
                except MalformedEvent:
                    continue
                if event.kind == TRANSFER and raw.body.v0.data.type == X.SCValType.SCV_I128:
                    found.append((tx.hash.hex(), i, k, event._replace(tx_index=tx.index, tx_hash=tx.hash.hex(),
                                                                     op_index=i + 1)))
    keys = Counter((h, i, e.from_, e.to, e.contract_id) for h, i, _, e in found)
    unique = [t for t in found if keys[(t[0], t[1], t[3].from_, t[3].to, t[3].contract_id)] == 1]
    assert len(unique) >= count
    return unique[:count]


def _rewrite(raw: bytes, changes: list[tuple[str, int, int, X.SCVal]]) -> bytes:
    """The LedgerCloseMeta with those events' data replaced. The meta is not covered by the
    header's hashes, so the ledger still validates."""
    lcm = X.LedgerCloseMeta.from_xdr_bytes(raw)
    by_hash = {t.result.transaction_hash.hash.hex(): t for t in lcm.v2.tx_processing}
    for tx_hash, op, k, data in changes:
        by_hash[tx_hash].tx_apply_processing.v4.operations[op].events[k].body.v0.data = data
    return lcm.to_xdr_bytes()


def _rows_of(rows: list[dict], target: tuple[str, int, int, Event]) -> list[dict]:
    tx_hash, op, _k, event = target
    return [r for r in rows if (r["transaction_hash"], r["operation_index"], r["from"], r["to"], r["contract_id"])
            == (tx_hash, op + 1, event.from_, event.to, event.contract_id)]


def _without_index(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "event_index"} for r in rows]


def _u128(value: int) -> X.SCVal:
    return X.SCVal(X.SCValType.SCV_U128, u128=X.UInt128Parts(X.Uint64(value >> 64), X.Uint64(value & (2**64 - 1))))


# (hi, lo, the i128 they make): the largest and smallest i128, and two u128-looking bit patterns
# that a decoder reading a half with the wrong sign would turn into other numbers
EXTREMES = [
    (2**63 - 1, 2**64 - 1, 2**127 - 1),
    (-(2**63), 0, -(2**127)),
    (0, 2**64 - 1, 2**64 - 1),  # low half all ones: positive, beyond int64
    (-1, 2**64 - 1, -1),  # all 128 bits set: 2**128 - 1 as a u128, -1 as an i128
]


def _i128_parts(hi: int, lo: int) -> X.SCVal:
    return X.SCVal(X.SCValType.SCV_I128, i128=X.Int128Parts(X.Int64(hi), X.Uint64(lo)))


@pytest.fixture(scope="module")
def tampered(real_ledgers):
    """One real ledger as it is, with one SEP-41 event's amount made a u128 (not a token
    amount), and with four amounts set to the EXTREMES; plus which events were changed."""
    raw = real_ledgers[TAMPERED]
    bad, *others = _sep41_targets(decode_ledger(raw, PUBNET), 1 + len(EXTREMES))
    extremes = list(zip(others, EXTREMES, strict=True))
    return {
        "raw": raw,
        "bad": bad,
        "malformed": _rewrite(raw, [(*bad[:3], _u128(2**128 - 1))]),
        "extremes": extremes,
        "extreme": _rewrite(raw, [(*target[:3], _i128_parts(hi, lo)) for target, (hi, lo, _) in extremes]),
    }


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("events_from", ["auto", "operations"])
def test_malformed_contract_event_in_a_real_ledger_skips_only_that_event(tampered, decoder, events_from):
    """A SEP-41 event whose data is a u128, not an i128, inside a real V4 ledger: the ledger
    decodes and validates, every other event comes out unchanged and in order, and the bad one is
    a skipped record naming its transaction, operation and reason (core's view and the derived
    view read the same invoke-host-function events)."""
    bad = tampered["bad"]
    tx_hash, op, _k, original = bad
    baseline, before = token_transfer_rows(decode_ledger(tampered["raw"], PUBNET, decoder=decoder), PUBNET,
                                           events_from)
    ledger = decode_ledger(tampered["malformed"], PUBNET, sequence=TAMPERED, decoder=decoder)
    rows, after = token_transfer_rows(ledger, PUBNET, events_from)
    gone = _rows_of(baseline, bad)
    assert [r["amount_raw"] for r in gone] == [str(original.amount)]
    assert _without_index(rows) == _without_index([r for r in baseline if r is not gone[0]])
    assert [s for s in after.skipped if s not in before.skipped] == [
        Skipped(TAMPERED, tx_hash, op + 1, "data is SCV_U128, not an i128 amount")]


@pytest.mark.parametrize("decoder", DECODERS)
def test_amounts_beyond_int64_reach_parquet_and_analytics_exactly(tampered, decoder, tmp_path):
    """i128 extremes and u128-looking bit patterns written into real events: both decoders read
    them as signed i128; the rows, the Arrow table, the Parquet file read back and the exact sums
    of the analytics tables keep every digit; nothing raises."""
    ledger = decode_ledger(tampered["extreme"], PUBNET, sequence=TAMPERED, decoder=decoder)
    rows, _ = token_transfer_rows(ledger, PUBNET)
    for target, (_hi, _lo, value) in tampered["extremes"]:
        mine = _rows_of(rows, target)
        assert [r["amount_raw"] for r in mine] == [str(value)]
        assert mine[0]["amount"] == float(value) * 1e-7

    table = rows_to_table("token_transfers", rows)
    pq.write_table(table, tmp_path / "tt.parquet")
    back = pq.read_table(tmp_path / "tt.parquet")
    assert back.equals(table)
    assert back["amount_raw"].to_pylist() == [r["amount_raw"] for r in rows]

    out = merge(hourly_partial(back), largest_partial(back, 3), 3)
    expected: dict[tuple, int] = {}
    for r in rows:
        key = (r["contract_id"], r["event_topic"])
        expected[key] = expected.get(key, 0) + int(r["amount_raw"])
    daily = out["asset_volume_daily"].to_pylist()
    assert {(d["contract_id"], d["event_topic"]): int(d["volume_raw"]) for d in daily} == expected
    assert str(2**127 - 1) in out["largest_transfers"]["amount_raw"].to_pylist()
