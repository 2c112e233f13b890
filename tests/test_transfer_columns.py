"""The compiled token-transfer walker (xdr/_transfers.c: core's unified events; xdr/_derive.c: the
operation rules; behind ttp/transfer_table.TransferTable) held to the Python rules, the
specification: equal rows, equal failures and equal errors, on every real ledger in both views,
on generated ledgers that hold every kind of movement, and on damaged copies."""

from __future__ import annotations

import hashlib
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import Keypair
from stellar_sdk import xdr as X

from obsrvr_ray.errors import BugError, LedgerError
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.ledger.hashing import transaction_hash
from obsrvr_ray.network import PUBNET, SANDBOX, resolve_passphrase
from obsrvr_ray.schema import TOKEN_TRANSFERS, TRANSFERS_TABLE, rows_to_table
from obsrvr_ray.sinks.lake_writer import read_ledger_file
from obsrvr_ray.ttp.core_events import has_unified_events
from obsrvr_ray.ttp.extract import token_transfer_rows
from obsrvr_ray.ttp.transfer_table import TransferTable
from obsrvr_ray.xdr.fast import compiled_available
from obsrvr_sandbox import generate_ledgers
from tests import conftest
from tests.conftest import CONSECUTIVE
from tests.test_fast_decoder import mutations

pytestmark = pytest.mark.skipif(not compiled_available(), reason="the compiled extension was not built")


VIEWS = ("auto", "operations")  # ttp.extract's choice, and the operation rules on every ledger


def python_rules(data: bytes, passphrase: str, *, decoder: str = "reference", sequence: int | None = None,
                 view: str = "auto"):
    """The specification's answer: (table, errors, skipped count)."""
    ledger = decode_ledger(data, passphrase, sequence=sequence, decoder=decoder)
    rows, events = token_transfer_rows(ledger, passphrase, view)
    errors = [(s.tx_hash, s.op_index, s.reason) for s in events.skipped if s.error]
    return rows_to_table(TRANSFERS_TABLE, rows), errors, sum(1 for s in events.skipped if not s.error), ledger


def compiled(data: bytes, passphrase: str, *, sequence: int | None = None, view: str = "auto"):
    table = TransferTable(passphrase, events_from=view)
    found = table.add(data, sequence=sequence)
    return table.take(), [(s.tx_hash, s.op_index, s.reason) for s in found.errors], found.skipped, found


def assert_same_table(got: pa.Table, expected: pa.Table) -> None:
    assert got.schema == TOKEN_TRANSFERS
    if not got.equals(expected):  # name the first differing cell
        for name in expected.column_names:
            a, b = got[name].to_pylist(), expected[name].to_pylist()
            assert len(a) == len(b), name
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                assert x == y, f"row {i} column {name}: {x!r} != {y!r}"
        raise AssertionError("tables differ in their types or chunks")


@pytest.mark.parametrize("view", VIEWS)
def test_every_real_pubnet_ledger_gives_the_python_rules_rows(real_ledgers, view):
    """Every pubnet ledger, protocols 2 to 26, goes through the compiled walker: core's events
    where every meta is v4 (23 ledgers), the operation rules elsewhere (protocols 9-21: v2 and
    v3 metas) and for all of them in the operations' view; each equals the rules on
    stellar-sdk's objects."""
    by_events = derived = custom = 0
    for seq, data in sorted(real_ledgers.items()):
        expected, errors, skipped, ledger = python_rules(data, PUBNET, view=view)
        got, got_errors, got_skipped, found = compiled(data, PUBNET, sequence=seq, view=view)
        assert_same_table(got, expected)
        assert (got_errors, got_skipped) == (errors, skipped), seq
        assert (found.sequence, found.hash, found.previous_hash) == (seq, ledger.hash, ledger.previous_hash)
        assert found.compiled, seq
        if ledger.transactions:
            unified = view == "auto" and has_unified_events(ledger)
            by_events += unified
            derived += not unified
        custom += got.filter(pc.equal(got["asset"], "")).num_rows
    assert (by_events, derived) == ((23, 5) if view == "auto" else (0, 28))
    assert custom > 0  # custom tokens (the DeFindex vault share in 63092982): no asset, named by contract


def test_the_320_testnet_ledgers_give_the_python_rules_rows():
    """Protocol 19 (TransactionMeta v2): the compiled operation rules, ledgers in one table."""
    testnet = resolve_passphrase("testnet")
    table = TransferTable(testnet)
    expected = []
    for path in conftest.testnet_ledger_files():
        for seq, data in read_ledger_file(path):
            found = table.add(data, sequence=seq)
            rows = python_rules(data, testnet, decoder="fast")[0]
            assert found.compiled
            expected.append(rows)
    assert_same_table(table.take(), pa.concat_tables(expected))


def test_many_ledgers_in_one_table_keep_their_order(real_ledgers):
    """Ledgers read by the walker and by the rules interleave in one table, in the order added."""
    order = [*CONSECUTIVE[:5], 53312000, *CONSECUTIVE[5:8], 26154623, *CONSECUTIVE[8:10]]
    table = TransferTable(PUBNET)
    for seq in order:
        table.add(real_ledgers[seq], sequence=seq)
    expected = pa.concat_tables([python_rules(real_ledgers[s], PUBNET, decoder="fast")[0] for s in order])
    assert_same_table(table.take(), expected)
    assert table.take().num_rows == 0


@cache
def _generated() -> tuple[tuple[int, bytes], ...]:
    return tuple(generate_ledgers(40))


@pytest.mark.parametrize("view", VIEWS)
def test_generated_ledgers_with_every_kind_of_movement(view):
    """The sandbox's ledgers hold every operation kind (trustline revocations that redeem pool
    shares among them), fee refunds, muxed destinations and SAC events of every function: the
    walker gives the rules' rows for each, from core's events and from the operations."""
    kinds = set()
    for seq, data in _generated():
        expected, errors, skipped, _ = python_rules(data, SANDBOX, decoder="fast", view=view)
        got, got_errors, got_skipped, found = compiled(data, SANDBOX, sequence=seq, view=view)
        assert found.compiled
        assert_same_table(got, expected)
        assert (got_errors, got_skipped) == (errors, skipped)
        kinds |= set(got["event_topic"].to_pylist())
        kinds |= {"muxed"} if got["to_muxed_id"].null_count < got.num_rows else set()
    assert kinds >= {"transfer", "mint", "burn", "clawback", "fee", "muxed"}


def outcome(data: bytes, passphrase: str, read) -> tuple[str, object]:
    try:
        table, errors, skipped, _ = read(data, passphrase)
    except LedgerError as exc:
        return "error", (type(exc).__name__, exc.sequence)
    return "rows", (table.to_pylist(), errors, skipped)


def check_same_outcome(data: bytes, passphrase: str, view: str = "auto") -> None:
    expected = outcome(data, passphrase, lambda d, p: python_rules(d, p, decoder="fast", view=view))
    assert outcome(data, passphrase, lambda d, p: compiled(d, p, view=view)) == expected


def test_damaged_copies_of_a_protocol_26_ledger(real_ledgers):
    """Truncated, bit-flipped, spliced or overwritten: the same error class and ledger as the
    rules' path, or the same rows; never a crash."""

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutations(real_ledgers[63092990]))
    def run(damaged):
        check_same_outcome(damaged, PUBNET)

    run()


@pytest.mark.parametrize("view", VIEWS)
def test_damaged_copies_of_generated_ledgers(view):
    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(_generated()[1:12]).flatmap(lambda item: mutations(item[1])))
    def run(damaged):
        check_same_outcome(damaged, SANDBOX, view)

    run()


def test_damaged_copies_of_testnet_ledgers():
    """Older metas (v2), read by the compiled operation rules: the same outcome as the rules."""
    testnet = resolve_passphrase("testnet")
    busiest = sorted((data for path in conftest.testnet_ledger_files() for _, data in read_ledger_file(path)),
                     key=len)[-8:]

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(busiest).flatmap(mutations))
    def run(damaged):
        check_same_outcome(damaged, testnet)

    run()


def _rewritten(data: bytes, change) -> bytes:
    """The ledger with `change` applied to its decoded form, the header's hash taken again."""
    meta = X.LedgerCloseMeta.from_xdr_bytes(data)
    body = {0: meta.v0, 1: meta.v1, 2: meta.v2}[meta.v]
    change(body)
    entry = body.ledger_header
    entry.hash = X.Hash(hashlib.sha256(entry.header.to_xdr_bytes()).digest())
    return meta.to_xdr_bytes()


def _operation_names(data: bytes) -> set[str]:
    ledger = decode_ledger(data, SANDBOX, decoder="fast")
    return {op.body.type.name for tx in ledger.transactions for op in E.operations(tx.envelope)}


def test_a_rule_the_data_breaks_is_left_to_the_python_rules():
    """A claim whose balance the changes do not remove: the Python rules read the ledger and
    record the error in their words; the rows are theirs."""
    def drop_removed_balance(body) -> None:
        for processing in body.tx_processing:
            for op_meta in processing.tx_apply_processing.v4.operations:
                changes = op_meta.changes.ledger_entry_changes
                kept = [c for c in changes if c.type != X.LedgerEntryChangeType.LEDGER_ENTRY_REMOVED
                        or c.removed.type != X.LedgerEntryType.CLAIMABLE_BALANCE]
                changes[:] = kept

    claim = next(data for _, data in _generated() if "CLAIM_CLAIMABLE_BALANCE" in _operation_names(data))
    broken = _rewritten(claim, drop_removed_balance)
    expected, errors, _, _ = python_rules(broken, SANDBOX, decoder="fast", view="operations")
    got, got_errors, _, found = compiled(broken, SANDBOX, view="operations")
    assert any("CLAIM_CLAIMABLE_BALANCE: TransferError: expected one removed claimable balance" in e[2] for e in errors)
    assert (got_errors, found.compiled) == (errors, False)
    assert_same_table(got, expected)

def _source_balance_moved(body, by: int) -> None:
    """The first successful transaction's first operation leaves its source `by` stroops richer
    than its events explain (what core could do before protocol 8)."""
    body.ledger_header.header.ledger_version = X.Uint32(7)
    for processing in body.tx_processing:
        if processing.result.result.result.code != X.TransactionResultCode.txSUCCESS:
            continue
        for change in processing.tx_apply_processing.v2.operations[0].changes.ledger_entry_changes:
            if change.type == X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED and change.updated.data.account:
                change.updated.data.account.balance = X.Int64(change.updated.data.account.balance.int64 + by)
                return
    raise AssertionError("no account change to move")


@pytest.mark.parametrize("by", [0, 5_000, -7_000])
def test_protocols_before_8_correct_xlm_by_the_changes(by):
    """Before protocol 8, XLM the source gained or lost beyond its operation's events is a mint
    put first or a burn put last (derive._legacy_xlm_correction): built on a real testnet
    ledger set to protocol 7, as no ledger in the shared data before protocol 8 has transactions."""
    testnet = resolve_passphrase("testnet")
    _, data = max((item for path in conftest.testnet_ledger_files() for item in read_ledger_file(path)),
                  key=lambda item: len(item[1]))
    old = _rewritten(data, lambda body: _source_balance_moved(body, by))
    expected = python_rules(old, testnet, decoder="fast")[0]
    got, _, _, found = compiled(old, testnet)
    assert found.compiled
    assert_same_table(got, expected)
    corrections = got.filter(pc.and_(pc.is_in(got["event_topic"], pa.array(["mint", "burn"])),
                                     pc.equal(got["asset"], "native")))["amount_raw"].to_pylist()
    assert corrections == ([] if by == 0 else [str(abs(by))])


def test_bad_ledgers_raise_what_the_decoder_raises(real_ledgers):
    """A wrong network, another ledger than asked for, a broken header: the same error and
    message as obsrvr_ray.ledger.decode; the table keeps only the ledgers that passed."""
    data = real_ledgers[63092990]
    table = TransferTable(PUBNET)
    table.add(real_ledgers[63092989])
    cases = [
        (resolve_passphrase("testnet"), data, None),
        (PUBNET, data, 63092991),
        (PUBNET, data[:200] + bytes([data[200] ^ 1]) + data[201:], None),  # inside the header
    ]
    for passphrase, damaged, sequence in cases:
        with pytest.raises(LedgerError) as expected:
            decode_ledger(damaged, passphrase, sequence=sequence, decoder="fast")
        walker = table if passphrase == PUBNET else TransferTable(passphrase)
        with pytest.raises(LedgerError) as got:
            walker.add(damaged, sequence=sequence)
        assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))
    assert_same_table(table.take(), python_rules(real_ledgers[63092989], PUBNET, decoder="fast")[0])


def test_the_pure_python_form_reads_every_ledger_with_the_rules(real_ledgers, monkeypatch):
    monkeypatch.setenv("OBSRVR_PURE_XDR", "1")
    table = TransferTable(PUBNET)
    assert not table.compiled
    found = table.add(real_ledgers[63092990])
    assert not found.compiled
    assert_same_table(table.take(), python_rules(real_ledgers[63092990], PUBNET, decoder="fast")[0])


def _first_payment_replaced(data: bytes, passphrase: str, body: X.OperationBody, result: X.OperationResultTr) -> bytes:
    """A testnet ledger whose first successful one-operation transaction does something else:
    the operation and its result replaced, the result pair naming the new hash."""
    meta = X.LedgerCloseMeta.from_xdr_bytes(data)
    envelopes = {transaction_hash(env, passphrase): env for env in meta.v0.tx_set.txs}
    for processing in meta.v0.tx_processing:
        pair = processing.result
        env = envelopes[pair.transaction_hash.hash]
        if (env.type != X.EnvelopeType.ENVELOPE_TYPE_TX or len(env.v1.tx.operations) != 1
                or pair.result.result.code != X.TransactionResultCode.txSUCCESS):
            continue
        env.v1.tx.operations[0].body = body
        pair.result.result.results[0] = X.OperationResult(X.OperationResultCode.opINNER, tr=result)
        pair.transaction_hash = X.Hash(transaction_hash(env, passphrase))
        return meta.to_xdr_bytes()
    raise AssertionError("no successful one-operation transaction")


@pytest.mark.parametrize("code", [X.InflationResultCode.INFLATION_SUCCESS, X.InflationResultCode.INFLATION_NOT_TIME])
def test_inflation_which_no_real_ledger_here_holds(code):
    """Inflation payouts are mints of XLM (none when it was not time): built on a real testnet
    ledger, as no ledger in the shared data runs inflation."""
    testnet = resolve_passphrase("testnet")
    _, data = max((item for path in conftest.testnet_ledger_files() for item in read_ledger_file(path)),
                  key=lambda item: len(item[1]))
    winners = [Keypair.from_raw_ed25519_seed(bytes([i]) * 32).xdr_account_id() for i in (1, 2)]
    payouts = [X.InflationPayout(w, X.Int64(amount)) for w, amount in zip(winners, (1_000, 2_500), strict=True)]
    paid = code == X.InflationResultCode.INFLATION_SUCCESS
    result = X.InflationResult(code, payouts=payouts if paid else None)
    ledger = _first_payment_replaced(data, testnet, X.OperationBody(X.OperationType.INFLATION),
                                     X.OperationResultTr(X.OperationType.INFLATION, inflation_result=result))
    expected = python_rules(ledger, testnet, decoder="fast")[0]
    got, _, _, found = compiled(ledger, testnet)
    assert found.compiled
    assert_same_table(got, expected)
    mints = got.filter(pc.equal(got["event_topic"], "mint"))
    assert mints["amount_raw"].to_pylist() == (["1000", "2500"] if paid else [])


def _first_claim_atom(body) -> X.ClaimAtom:
    for processing in body.tx_processing:
        for result in processing.result.result.result.results or []:
            paid = result.tr and (result.tr.path_payment_strict_send_result
                                  or result.tr.path_payment_strict_receive_result)
            if paid and paid.success and any(atom.order_book for atom in paid.success.offers):
                return next(atom for atom in paid.success.offers if atom.order_book)
    raise AssertionError("no path payment crossed an offer")


def _sold_asset_written(code: bytes):
    """The first crossed offer's sold asset, its code bytes replaced (an issuer kept)."""
    def change(body) -> None:
        atom = _first_claim_atom(body)
        offer = atom.order_book
        issuer = X.AccountID(X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, X.Uint256(bytes(range(32)))))
        if len(code) == 4:
            offer.asset_sold = X.Asset(X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
                                       alpha_num4=X.AlphaNum4(X.AssetCode4(code), issuer))
        else:
            offer.asset_sold = X.Asset(X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12,
                                       alpha_num12=X.AlphaNum12(X.AssetCode12(code), issuer))
    return change


def _with_path_payment() -> bytes:
    for _, data in _generated():
        try:
            _first_claim_atom(X.LedgerCloseMeta.from_xdr_bytes(data).v2)
        except AssertionError:
            continue
        return data
    raise AssertionError("no generated ledger with a path payment that crossed an offer")


@pytest.mark.parametrize("code", [b"AB\xff\x00", b"ABC" + bytes(9), b"\xff" * 5 + bytes(7)])
def test_an_asset_code_the_rules_write_otherwise_leaves_the_ledger_to_them(code):
    """The rules name an asset by its code as text and re-encode it for its contract id: a byte
    outside ASCII, or a short code in an alphanum12, names another contract (or none: the rules
    then raise). The compiled rules leave such a ledger to them, whatever they answer."""
    odd = _rewritten(_with_path_payment(), _sold_asset_written(code))
    try:
        expected = ("rows", python_rules(odd, SANDBOX, decoder="fast", view="operations")[0].to_pylist())
    except BugError as exc:
        expected = ("bug", str(exc))
    try:
        got, _, _, found = compiled(odd, SANDBOX, view="operations")
        assert not found.compiled
        answer = ("rows", got.to_pylist())
    except BugError as exc:
        answer = ("bug", str(exc))
    assert answer == expected
    assert expected[0] == ("bug" if code.startswith(b"\xff" * 5) else "rows")


def test_a_pool_change_whose_state_is_another_entry_is_left_to_the_rules():
    """A pool's UPDATED entry paired with a STATE of another kind: the rules cannot read its
    reserves and raise; the compiled rules leave the ledger to them rather than read one."""
    def account_as_pool_state(body) -> None:
        account = next(c.state for p in body.tx_processing for c in p.fee_processing.ledger_entry_changes
                       if c.type == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE)
        for processing in body.tx_processing:
            for op_meta in processing.tx_apply_processing.v4.operations:
                for change in op_meta.changes.ledger_entry_changes:
                    if (change.type == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE
                            and change.state.data.type == X.LedgerEntryType.LIQUIDITY_POOL):
                        change.state = account
                        return
        raise AssertionError("no pool change")

    deposit = next(data for _, data in _generated() if "LIQUIDITY_POOL_DEPOSIT" in _operation_names(data))
    odd = _rewritten(deposit, account_as_pool_state)
    with pytest.raises(BugError) as expected:
        python_rules(odd, SANDBOX, decoder="fast", view="operations")
    with pytest.raises(BugError) as got:
        compiled(odd, SANDBOX, view="operations")
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("version", [0, 1])
def test_the_oldest_meta_versions(version):
    """TransactionMeta v0 (operations' changes only) and v1 (changes before, then the operations'),
    which no shared ledger carries: a real testnet ledger's v2 metas written in those forms, at
    protocol 7 with a source's balance moved, so that an operation's changes are read (the XLM
    correction) through the older layouts."""
    def older(body) -> None:
        for processing in body.tx_processing:
            v2 = processing.tx_apply_processing.v2
            if version == 0:
                processing.tx_apply_processing = X.TransactionMeta(0, operations=v2.operations)
            else:
                processing.tx_apply_processing = X.TransactionMeta(
                    1, v1=X.TransactionMetaV1(v2.tx_changes_before, v2.operations))

    testnet = resolve_passphrase("testnet")
    _, data = max((item for path in conftest.testnet_ledger_files() for item in read_ledger_file(path)),
                  key=lambda item: len(item[1]))
    old = _rewritten(data, lambda body: (_source_balance_moved(body, 5_000), older(body)))
    expected, errors, skipped, ledger = python_rules(old, testnet, decoder="fast")
    got, got_errors, got_skipped, found = compiled(old, testnet)
    assert found.compiled and {tx.meta.v for tx in ledger.transactions} == {version}
    assert_same_table(got, expected)
    assert (got_errors, got_skipped) == (errors, skipped)
    assert "5000" in got.filter(pc.equal(got["event_topic"], "mint"))["amount_raw"].to_pylist()
