"""The sandbox generator produces ledgers our own decoder accepts, that chain, repeat exactly,
cover every modelled operation and token-transfer kind early, and whose ledger-entry changes,
results, fees and events agree with each other and with the project's token-transfer rules."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter, defaultdict
from fractions import Fraction
from functools import cache

import pytest
from stellar_sdk import Asset, Keypair, StrKey
from stellar_sdk import xdr as X

from obsrvr_ray.errors import ValidationError
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.ledger.hashing import header_hash
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction
from obsrvr_ray.ledger.validate import chain_breaks
from obsrvr_ray.network import PUBNET, SANDBOX, network_id
from obsrvr_ray.pipeline import ExtractOptions, RunReport, build_rows
from obsrvr_ray.ttp import assets as ttp_assets
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.core_events import core_ledger_events
from obsrvr_ray.ttp.derive import derived_ledger_events
from obsrvr_ray.ttp.revocation import revoke_balance_id
from obsrvr_ray.ttp.verify import verify_ledger
from obsrvr_sandbox import DEFAULT_CLOSE_TIME, LEDGER_INTERVAL, SandboxNetwork, generate_ledgers
from obsrvr_sandbox.close import BASE_FEE, BASE_RESERVE, PROTOCOL_VERSION, TOTAL_COINS

COUNT = 50  # ledgers most checks read
LONG = 300  # a long run, as benchmarks generate thousands
COVERED_BY = 15  # every kind shows up within this many ledgers of the default scenario
OT = X.OperationType
_FEE_BUMP = X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP
_STATE = X.LedgerEntryChangeType.LEDGER_ENTRY_STATE
_UPDATED = X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED
_CREATED = X.LedgerEntryChangeType.LEDGER_ENTRY_CREATED
_REMOVED = X.LedgerEntryChangeType.LEDGER_ENTRY_REMOVED
_LET = X.LedgerEntryType
_BEFORE_ALL = X.TransactionEventStage.TRANSACTION_EVENT_STAGE_BEFORE_ALL_TXS
_AFTER_ALL = X.TransactionEventStage.TRANSACTION_EVENT_STAGE_AFTER_ALL_TXS
VALUE_MOVING = [
    "CREATE_ACCOUNT",
    "PAYMENT",
    "PATH_PAYMENT_STRICT_SEND",
    "PATH_PAYMENT_STRICT_RECEIVE",
    "MANAGE_SELL_OFFER",
    "MANAGE_BUY_OFFER",
    "CREATE_PASSIVE_SELL_OFFER",
    "ACCOUNT_MERGE",
    "CREATE_CLAIMABLE_BALANCE",
    "CLAIM_CLAIMABLE_BALANCE",
    "CLAWBACK",
    "CLAWBACK_CLAIMABLE_BALANCE",
    "ALLOW_TRUST",
    "SET_TRUST_LINE_FLAGS",
    "LIQUIDITY_POOL_DEPOSIT",
    "LIQUIDITY_POOL_WITHDRAW",
    "INVOKE_HOST_FUNCTION",
]
OPERATION_TYPES = [*VALUE_MOVING, "CHANGE_TRUST", "SET_OPTIONS"]


@cache
def _raw_long() -> tuple[tuple[int, bytes], ...]:
    return tuple(generate_ledgers(LONG))


def _raw() -> tuple[tuple[int, bytes], ...]:
    return _raw_long()[:COUNT]


@cache
def _long() -> tuple[Ledger, ...]:
    return tuple(decode_ledger(data, SANDBOX, sequence=seq) for seq, data in _raw_long())


def _ledgers() -> tuple[Ledger, ...]:
    return _long()[:COUNT]


def _tx(t: LedgerTransaction) -> X.Transaction:
    env = t.envelope
    return env.fee_bump.tx.inner_tx.v1.tx if env.type == _FEE_BUMP else env.v1.tx


def _op_results(t: LedgerTransaction) -> list[X.OperationResult]:
    result = t.result.result.result
    if result.inner_result_pair is not None:
        return result.inner_result_pair.result.result.results
    return result.results


def _succeeded(t: LedgerTransaction) -> bool:
    return t.result.result.result.code in (
        X.TransactionResultCode.txSUCCESS,
        X.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS,
    )


def _address(raw: bytes) -> str:
    return StrKey.encode_ed25519_public_key(raw)


def _account(muxed: X.MuxedAccount) -> str:
    if muxed.type == X.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        return _address(muxed.med25519.ed25519.uint256)
    return _address(muxed.ed25519.uint256)


def _entry(change: X.LedgerEntryChange) -> X.LedgerEntry | None:
    return change.state or change.updated or change.created


def _key(entry: X.LedgerEntry) -> bytes:
    data = entry.data
    kind = data.type
    if kind == _LET.ACCOUNT:
        key = X.LedgerKey(kind, account=X.LedgerKeyAccount(data.account.account_id))
    elif kind == _LET.TRUSTLINE:
        line = data.trust_line
        key = X.LedgerKey(kind, trust_line=X.LedgerKeyTrustLine(line.account_id, line.asset))
    elif kind == _LET.OFFER:
        key = X.LedgerKey(kind, offer=X.LedgerKeyOffer(data.offer.seller_id, data.offer.offer_id))
    elif kind == _LET.CLAIMABLE_BALANCE:
        key = X.LedgerKey(kind, claimable_balance=X.LedgerKeyClaimableBalance(data.claimable_balance.balance_id))
    elif kind == _LET.LIQUIDITY_POOL:
        pool = X.LedgerKeyLiquidityPool(data.liquidity_pool.liquidity_pool_id)
        key = X.LedgerKey(kind, liquidity_pool=pool)
    elif kind == _LET.CONTRACT_DATA:
        cd = data.contract_data
        key = X.LedgerKey(kind, contract_data=X.LedgerKeyContractData(cd.contract, cd.key, cd.durability))
    else:
        key = X.LedgerKey(kind, ttl=X.LedgerKeyTtl(data.ttl.key_hash))
    return key.to_xdr_bytes()


def _xlm(entry: X.LedgerEntry | None) -> int:
    if entry is None or entry.data.type != _LET.ACCOUNT:
        return 0
    return entry.data.account.balance.int64


def _native(entry: X.LedgerEntry | None) -> int:
    return sum(amount for _, asset, amount in _holdings(entry) if asset == "native")


def _change_groups(t: LedgerTransaction) -> list[X.LedgerEntryChanges]:
    meta = t.meta.v4
    return [meta.tx_changes_before, *(op.changes for op in meta.operations), meta.tx_changes_after]


def _inner(result: X.OperationResult):
    """The operation-specific result (PaymentResult, ManageSellOfferResult, ...)."""
    return next(value for name, value in vars(result.tr).items() if name != "type" and value is not None)


def _sc_address(value: X.SCVal) -> str:
    addr = value.address
    kind = addr.type
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT:
        return _address(addr.account_id.account_id.ed25519.uint256)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return StrKey.encode_contract(addr.contract_id.contract_id.hash)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_LIQUIDITY_POOL:
        return StrKey.encode_liquidity_pool(addr.liquidity_pool_id.pool_id.hash)
    return StrKey.encode_claimable_balance(b"\0" + addr.claimable_balance_id.v0.hash)


def _i128(value: X.SCVal) -> int:
    return (value.i128.hi.int64 << 64) | value.i128.lo.uint64


def _asset_name(asset: X.Asset) -> str:
    if asset.type == X.AssetType.ASSET_TYPE_NATIVE:
        return "native"
    parsed = Asset.from_xdr_object(asset)
    return f"{parsed.code}:{parsed.issuer}"


def _line_asset(line: X.TrustLineEntry) -> str | None:
    """CODE:ISSUER of a trustline, None for pool shares."""
    asset = line.asset
    if asset.type == X.AssetType.ASSET_TYPE_POOL_SHARE:
        return None
    return _asset_name(X.Asset(asset.type, alpha_num4=asset.alpha_num4, alpha_num12=asset.alpha_num12))


@cache
def _sac_assets() -> dict[bytes, str]:
    """SAC contract id -> asset name, for every asset the sandbox issues."""
    names = {"native"}
    for ledger in _ledgers():
        for t in ledger.transactions:
            for op in _tx(t).operations:
                if op.body.payment_op is not None:
                    names.add(_asset_name(op.body.payment_op.asset))
    out = {}
    for name in names:
        asset = ttp_assets.NATIVE if name == "native" else ttp_assets.Asset(*name.split(":"))
        out[StrKey.decode_contract(ttp_assets.sac_contract_strkey(asset, SANDBOX))] = name
    return out


def _holdings(entry: X.LedgerEntry | None) -> list[tuple[str, str, int]]:
    """(holder, asset, amount) an entry holds: accounts, trustlines, claimable balances, pool
    reserves and SAC balances of contracts."""
    if entry is None:
        return []
    data = entry.data
    kind = data.type
    if kind == _LET.ACCOUNT:
        return [(_address(data.account.account_id.account_id.ed25519.uint256), "native", data.account.balance.int64)]
    if kind == _LET.TRUSTLINE:
        name = _line_asset(data.trust_line)
        holder = _address(data.trust_line.account_id.account_id.ed25519.uint256)
        return [] if name is None else [(holder, name, data.trust_line.balance.int64)]
    if kind == _LET.CLAIMABLE_BALANCE:
        cb = data.claimable_balance
        holder = StrKey.encode_claimable_balance(b"\0" + cb.balance_id.v0.hash)
        return [(holder, _asset_name(cb.asset), cb.amount.int64)]
    if kind == _LET.LIQUIDITY_POOL:
        pool = data.liquidity_pool
        cp = pool.body.constant_product
        holder = StrKey.encode_liquidity_pool(pool.liquidity_pool_id.pool_id.hash)
        return [
            (holder, _asset_name(cp.params.asset_a), cp.reserve_a.int64),
            (holder, _asset_name(cp.params.asset_b), cp.reserve_b.int64),
        ]
    if kind == _LET.CONTRACT_DATA and data.contract_data.key.type == X.SCValType.SCV_VEC:
        cd = data.contract_data
        amount = next(item.val for item in cd.val.map.sc_map if item.key.sym.sc_symbol == b"amount")
        asset = _sac_assets()[cd.contract.contract_id.contract_id.hash]
        return [(_sc_address(cd.key.vec.sc_vec[1]), asset, _i128(amount))]
    return []


# --- decoding, chain, determinism ------------------------------------------------------------


def test_every_ledger_decodes_with_the_sandbox_passphrase_only():
    assert [ledger.sequence for ledger in _ledgers()] == list(range(2, 2 + COUNT))
    for ledger, (_, data) in zip(_ledgers(), _raw(), strict=True):
        assert ledger.close_meta.to_xdr_bytes() == data  # canonical XDR: re-encodes to the same bytes
        assert ledger.close_meta_version == 2
        assert ledger.protocol_version == PROTOCOL_VERSION
        assert ledger.transactions
    for seq, data in _raw()[:10]:
        with pytest.raises(ValidationError, match="do not match any envelope"):
            decode_ledger(data, PUBNET, sequence=seq)


def test_ledgers_chain_from_a_genesis_header():
    assert chain_breaks(_long()) == []
    network = SandboxNetwork()
    assert network.sequence == 1
    assert network.hash == header_hash(network.header) == _ledgers()[0].previous_hash
    network.next_ledger()
    assert (network.sequence, network.hash) == (2, _ledgers()[0].hash)


def test_the_root_account_is_keyed_by_the_network_id():
    root = Keypair.from_raw_ed25519_seed(network_id(SANDBOX)).public_key
    (bootstrap,) = _ledgers()[0].transactions
    assert _account(_tx(bootstrap).source_account) == root
    state = bootstrap.fee_changes.ledger_entry_changes[0].state
    assert state.data.account.balance.int64 == TOTAL_COINS
    assert state.last_modified_ledger_seq.uint32 == 1


def test_bad_arguments_are_refused():
    for start in (1, 2**31):
        with pytest.raises(ValueError, match="start"):
            SandboxNetwork(start=start)
    with pytest.raises(ValueError, match="txs_per_ledger"):
        SandboxNetwork(txs_per_ledger=0)


def test_same_arguments_give_the_same_bytes():
    assert tuple(generate_ledgers(COUNT)) == _raw()
    network = SandboxNetwork()
    assert tuple(network.next_ledger() for _ in range(5)) == _raw()[:5]
    assert list(generate_ledgers(5, seed=2)) != list(_raw()[:5])


def test_bytes_do_not_depend_on_the_hash_seed():
    """Another process, with another string-hash seed, generates the same ledgers."""
    script = (
        "import hashlib, sys; from obsrvr_sandbox import generate_ledgers; "
        "sys.stdout.write(hashlib.sha256(b''.join(d for _, d in generate_ledgers(20))).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert child.stdout == hashlib.sha256(b"".join(data for _, data in _raw()[:20])).hexdigest()


def test_start_passphrase_and_close_time_are_honoured():
    (seq, data), *_ = generate_ledgers(3, start=1_000, passphrase=PUBNET, close_time=1_700_000_000)
    ledger = decode_ledger(data, PUBNET)
    assert seq == ledger.sequence == 1_000
    assert ledger.close_time == 1_700_000_000
    with pytest.raises(ValidationError):
        decode_ledger(data, SANDBOX)


def test_a_live_caller_can_stamp_close_times():
    network = SandboxNetwork()
    _, first = network.next_ledger(close_time=DEFAULT_CLOSE_TIME + 60)
    _, second = network.next_ledger(close_time=DEFAULT_CLOSE_TIME)  # clock went backwards
    times = [decode_ledger(data, SANDBOX).close_time for data in (first, second)]
    assert times == [DEFAULT_CLOSE_TIME + 60, DEFAULT_CLOSE_TIME + 61]


# --- header and transaction set --------------------------------------------------------------


def test_headers_commit_to_the_transaction_set_and_results():
    fee_pool = 0
    for i, ledger in enumerate(_ledgers()):
        body = ledger.close_meta.v2
        header = ledger.header
        assert ledger.close_time == DEFAULT_CLOSE_TIME + i * LEDGER_INTERVAL
        assert header.base_fee.uint32 == BASE_FEE and header.base_reserve.uint32 == BASE_RESERVE
        assert header.total_coins.int64 == TOTAL_COINS
        assert header.scp_value.tx_set_hash.hash == hashlib.sha256(body.tx_set.to_xdr_bytes()).digest()
        results = X.TransactionResultSet([item.result for item in body.tx_processing])
        assert header.tx_set_result_hash.hash == hashlib.sha256(results.to_xdr_bytes()).digest()
        fee_pool += sum(t.result.result.fee_charged.int64 for t in ledger.transactions)
        assert header.fee_pool.int64 == fee_pool
        assert header.scp_value.ext.lc_value_signature is not None

        phases = body.tx_set.v1_tx_set.phases
        assert [phase.v for phase in phases] == [0, 1]
        envelopes = phases[0].v0_components[0].txs_maybe_discounted_fee.txs
        keys = [hashlib.sha256(env.to_xdr_bytes()).digest() for env in envelopes]
        assert keys == sorted(keys)
        assert all(E.soroban_data(env) is None for env in envelopes)
        assert body.tx_set.v1_tx_set.previous_ledger_hash.hash == ledger.previous_hash


def test_soroban_transactions_form_the_parallel_phase():
    """Soroban transactions sit in the parallel phase, one stage of clusters; transactions that
    write a common entry share a cluster; they apply after every classic one."""
    staged = 0
    for ledger in _ledgers()[1:]:
        parallel = ledger.close_meta.v2.tx_set.v1_tx_set.phases[1].parallel_txs_component
        assert parallel.base_fee.int64 == BASE_FEE
        writers: dict[bytes, int] = {}
        for stage in parallel.execution_stages:
            for number, cluster in enumerate(stage.parallel_tx_execution_stage):
                for env in cluster.dependent_tx_cluster:
                    staged += 1
                    assert E.soroban_data(env) is not None
                    for key in E.soroban_data(env).resources.footprint.read_write:
                        assert writers.setdefault(key.to_xdr_bytes(), number) == number
        kinds = [E.soroban_data(t.envelope) is not None for t in ledger.transactions]
        assert kinds == sorted(kinds)  # classic first
        assert sum(kinds) == sum(
            len(c.dependent_tx_cluster) for s in parallel.execution_stages for c in s.parallel_tx_execution_stage
        )
    assert staged


# --- coverage --------------------------------------------------------------------------------


def _features(ledgers) -> Counter:
    seen: Counter = Counter()
    for ledger in ledgers:
        for t in ledger.transactions:
            tx = _tx(t)
            code = t.result.result.result.code
            soroban = E.soroban_data(t.envelope) is not None
            seen[code.name] += 1
            seen[f"memo:{tx.memo.type.name}"] += 1
            if soroban:
                seen["soroban fee bump" if t.envelope.type == _FEE_BUMP else "soroban"] += 1
                stages = [event.stage for event in t.meta.v4.events]
                if stages == [_BEFORE_ALL, _AFTER_ALL]:
                    seen["soroban refund"] += 1
            if not _succeeded(t):
                seen.update(_inner(r).code.name for r in _op_results(t) if r.tr is not None)
                if soroban:
                    seen["soroban failed"] += 1
                continue
            for op, result, op_meta in zip(tx.operations, _op_results(t), t.meta.v4.operations, strict=True):
                body = op.body
                seen[body.type.name] += 1
                sent = body.payment_op or body.path_payment_strict_send_op or body.path_payment_strict_receive_op
                if sent is not None and sent.destination.type == X.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
                    seen["muxed destination"] += 1
                if body.payment_op is not None:
                    payment = body.payment_op
                    if payment.asset.type == X.AssetType.ASSET_TYPE_NATIVE:
                        seen["payment:xlm"] += 1
                    else:
                        asset = Asset.from_xdr_object(payment.asset)
                        source = _account(op.source_account or tx.source_account)
                        if source == asset.issuer:
                            seen["payment:mint"] += 1
                        elif _account(payment.destination) == asset.issuer:
                            seen["payment:burn"] += 1
                        else:
                            seen["payment:transfer"] += 1
                success = getattr(_inner(result), "success", None)
                atoms = getattr(success, "offers", None) or getattr(success, "offers_claimed", None) or []
                for atom in atoms:
                    seen[f"{body.type.name}:{atom.type.name}"] += 1
                if body.invoke_host_function_op is not None:
                    function = body.invoke_host_function_op.host_function
                    if function.invoke_contract is None:
                        seen["sac:deploy"] += 1
                    else:
                        name = function.invoke_contract.function_name.sc_symbol.decode()
                        seen[f"sac:{name}"] += 1
                        if name == "transfer" and function.invoke_contract.args[1].address.contract_id is not None:
                            seen["sac:transfer to contract"] += 1
                for change in op_meta.changes.ledger_entry_changes:
                    entry = change.created if change.type == _CREATED else None
                    kind = change.removed.type if change.type == _REMOVED else _entry(change).data.type
                    if change.type in (_CREATED, _REMOVED, _UPDATED):
                        seen[f"{kind.name} {change.type.name.removeprefix('LEDGER_ENTRY_').lower()}"] += 1
                    pool_share = X.AssetType.ASSET_TYPE_POOL_SHARE
                    if entry is not None and kind == _LET.TRUSTLINE and entry.data.trust_line.asset.type == pool_share:
                        seen["pool-share trustline created"] += 1
                    if (
                        entry is not None
                        and kind == _LET.CLAIMABLE_BALANCE
                        and body.type in (OT.ALLOW_TRUST, OT.SET_TRUST_LINE_FLAGS)
                    ):
                        seen["pool shares redeemed on revocation"] += 1
    return seen


EXPECTED_EARLY = [
    *OPERATION_TYPES,
    "TRUSTLINE created",
    "TRUSTLINE removed",
    "ACCOUNT removed",
    "payment:xlm",
    "payment:mint",
    "payment:burn",
    "payment:transfer",
    "OFFER created",
    "OFFER updated",
    "OFFER removed",
    "MANAGE_SELL_OFFER:CLAIM_ATOM_TYPE_ORDER_BOOK",
    "MANAGE_BUY_OFFER:CLAIM_ATOM_TYPE_ORDER_BOOK",
    "PATH_PAYMENT_STRICT_SEND:CLAIM_ATOM_TYPE_ORDER_BOOK",
    "PATH_PAYMENT_STRICT_SEND:CLAIM_ATOM_TYPE_LIQUIDITY_POOL",
    "PATH_PAYMENT_STRICT_RECEIVE:CLAIM_ATOM_TYPE_ORDER_BOOK",
    "PATH_PAYMENT_STRICT_RECEIVE:CLAIM_ATOM_TYPE_LIQUIDITY_POOL",
    "pool-share trustline created",
    "LIQUIDITY_POOL created",
    "LIQUIDITY_POOL updated",
    "CLAIMABLE_BALANCE created",
    "CLAIMABLE_BALANCE removed",
    "pool shares redeemed on revocation",
    "sac:deploy",
    "sac:transfer",
    "sac:mint",
    "sac:burn",
    "sac:transfer to contract",
    "CONTRACT_DATA created",
    "TTL created",
    "soroban",
    "soroban fee bump",
    "soroban refund",
    "soroban failed",
    "txSUCCESS",
    "txFAILED",
    "txFEE_BUMP_INNER_SUCCESS",
    "txFEE_BUMP_INNER_FAILED",
    "PAYMENT_NO_DESTINATION",
    "PAYMENT_UNDERFUNDED",
    "PAYMENT_NO_TRUST",
    "PATH_PAYMENT_STRICT_SEND_UNDER_DESTMIN",
    "PATH_PAYMENT_STRICT_RECEIVE_OVER_SENDMAX",
    "INVOKE_HOST_FUNCTION_TRAPPED",
    "memo:MEMO_TEXT",
    "memo:MEMO_ID",
    "muxed destination",
]


def test_every_kind_appears_within_the_first_fifteen_ledgers():
    seen = _features(_ledgers()[:COVERED_BY])
    assert [name for name in EXPECTED_EARLY if not seen[name]] == []


def test_long_runs_keep_every_kind_coming():
    """The last 100 ledgers of a long run still carry every operation type and trade kind (but
    the one-time setup: issuer flags, contracts, pools and contract balances created)."""
    seen = _features(_long()[-100:])
    setup = ("SET_OPTIONS", "sac:deploy", "LIQUIDITY_POOL created", "CONTRACT_DATA created", "TTL created")
    expected = [name for name in EXPECTED_EARLY if name not in setup]
    assert [name for name in expected if not seen[name]] == []


def test_other_seeds_cover_the_kinds_too():
    for seed in (2, 3):
        ledgers = [decode_ledger(data, SANDBOX) for _, data in generate_ledgers(12, seed=seed)]
        seen = _features(ledgers)
        assert seen["txFEE_BUMP_INNER_FAILED"] and seen["payment:burn"] and seen["TRUSTLINE removed"]
        assert seen["sac:transfer"] and seen["OFFER created"] and seen["CLAIMABLE_BALANCE created"]


# --- results, fees, events -------------------------------------------------------------------


def _fee_event(event: X.TransactionEvent) -> tuple[X.TransactionEventStage, str, int]:
    v0 = event.event.body.v0
    assert v0.topics[0].sym.sc_symbol == b"fee"
    return event.stage, _sc_address(v0.topics[1]), _i128(v0.data)


def test_fees_follow_the_protocol():
    """Classic: min(bid, base fee × operations), one more operation for a fee bump. Soroban:
    the resource fee plus that inclusion fee up front, the unused part refunded after all
    transactions (post-apply changes, a negative fee event); the result keeps the net fee."""
    for ledger in _long()[:150]:
        for t in ledger.transactions:
            tx = _tx(t)
            fee = t.result.result.fee_charged.int64
            ops = len(tx.operations)
            data = E.soroban_data(t.envelope)
            resource_fee = data.resource_fee.int64 if data is not None else 0
            if t.envelope.type == _FEE_BUMP:
                bump = t.envelope.fee_bump.tx
                charged = resource_fee + min(bump.fee.int64 - resource_fee, BASE_FEE * (ops + 1))
                assert t.result.result.result.inner_result_pair.result.fee_charged.int64 == 0
                fee_source = _account(bump.fee_source)
            else:
                charged = resource_fee + min(tx.fee.uint32 - resource_fee, BASE_FEE * ops)
                fee_source = _account(tx.source_account)
            changes = t.fee_changes.ledger_entry_changes
            assert [c.type for c in changes] == [_STATE, _UPDATED]
            assert _address(changes[0].state.data.account.account_id.account_id.ed25519.uint256) == fee_source
            assert _xlm(changes[0].state) - _xlm(changes[1].updated) == charged
            events = [_fee_event(event) for event in t.meta.v4.events]
            assert events[0] == (_BEFORE_ALL, fee_source, charged)
            post = t.post_apply_fee_changes.ledger_entry_changes
            if data is None:
                assert fee == charged and len(events) == 1 and post == [] and t.meta.v4.soroban_meta is None
                continue
            refund = charged - fee
            assert refund > 0
            assert events[1] == (_AFTER_ALL, fee_source, -refund)
            assert [c.type for c in post] == [_STATE, _UPDATED]
            assert _xlm(post[1].updated) - _xlm(post[0].state) == refund
            used = t.meta.v4.soroban_meta.ext.v1
            spent = (
                used.total_non_refundable_resource_fee_charged.int64 + used.total_refundable_resource_fee_charged.int64
            )
            assert resource_fee - spent == refund
            if not _succeeded(t):
                assert used.total_refundable_resource_fee_charged.int64 == 0


def test_failed_transactions_consume_fee_and_sequence_only():
    failed = 0
    for ledger in _ledgers():
        for t in ledger.transactions:
            meta = t.meta.v4
            before = meta.tx_changes_before.ledger_entry_changes
            source = _account(_tx(t).source_account)
            bumped = [c.updated.data.account for c in before if c.type == _UPDATED]
            bumped = [a for a in bumped if _address(a.account_id.account_id.ed25519.uint256) == source]
            assert bumped[0].seq_num.sequence_number.int64 == _tx(t).seq_num.sequence_number.int64
            results = _op_results(t)
            assert len(results) == len(_tx(t).operations)
            if _succeeded(t):
                assert len(meta.operations) == len(results)
                continue
            failed += 1
            assert meta.operations == []
            assert any(r.code == X.OperationResultCode.opINNER and _inner(r).code.value < 0 for r in results)
    assert failed


def _event_deltas(events: list[X.ContractEvent]) -> Counter:
    expected: Counter = Counter()
    for event in events:
        v0 = event.body.v0
        kind = v0.topics[0].sym.sc_symbol.decode()
        asset = v0.topics[-1].str.sc_string.decode()
        data = v0.data
        amount = _i128(data if data.map is None else data.map.sc_map[0].val)
        parties = [_sc_address(topic) for topic in v0.topics[1:-1]]
        if kind in ("transfer", "burn", "clawback"):
            expected[(parties[0], asset)] -= amount
        if kind == "transfer":
            expected[(parties[1], asset)] += amount
        if kind == "mint":
            expected[(parties[0], asset)] += amount
    return expected


def test_operation_events_match_balance_changes():
    """Each operation's CAP-67 events move what its entry changes say moved, for every kind of
    holder: accounts, trustlines, claimable balances, pool reserves and contract balances."""
    for ledger in _ledgers():
        for t in ledger.transactions:
            for op_meta in t.meta.v4.operations:
                deltas: Counter = Counter()
                for change in op_meta.changes.ledger_entry_changes:
                    sign = -1 if change.type == _STATE else 1
                    for holder, asset, amount in _holdings(_entry(change)):
                        deltas[(holder, asset)] += sign * amount
                expected = _event_deltas(op_meta.events)
                assert +deltas == +expected and -deltas == -expected


def test_memo_and_muxed_destination_reach_the_events():
    found = Counter()
    for ledger in _ledgers():
        for t in ledger.transactions:
            if not _succeeded(t):
                continue
            tx = _tx(t)
            for op, op_meta in zip(tx.operations, t.meta.v4.operations, strict=True):
                payment = op.body.payment_op or op.body.path_payment_strict_send_op
                payment = payment or op.body.path_payment_strict_receive_op
                if payment is None or not op_meta.events:
                    continue
                *trades, event = op_meta.events  # a path payment's trades come before the delivery
                assert all(trade.body.v0.data.i128 is not None for trade in trades)
                v0 = event.body.v0
                kind = v0.topics[0].sym.sc_symbol
                muxed = payment.destination.type == X.CryptoKeyType.KEY_TYPE_MUXED_ED25519
                if kind == b"burn" or (not muxed and tx.memo.type == X.MemoType.MEMO_NONE):
                    assert v0.data.i128 is not None
                    continue
                entries = {item.key.sym.sc_symbol: item.val for item in v0.data.map.sc_map}
                muxed_id = entries[b"to_muxed_id"]
                if muxed:
                    assert muxed_id.u64.uint64 == payment.destination.med25519.id.uint64
                    found["muxed"] += 1
                elif tx.memo.type == X.MemoType.MEMO_ID:
                    assert muxed_id.u64.uint64 == tx.memo.id.uint64
                    found["id"] += 1
                else:
                    assert muxed_id.str.sc_string == tx.memo.text
                    found["text"] += 1
    assert found["muxed"] and found["id"] and found["text"]


def test_claimable_balance_ids_are_derived_as_core_does():
    """A created balance's id is SHA-256(HashIDPreimage OPERATION_ID: transaction source,
    sequence number, operation index); one created by a revocation is the CAP-38 id the
    token-transfer rules compute, for the trustor, who sponsors it."""
    created = redeemed = 0
    for ledger in _ledgers():
        for t in ledger.transactions:
            if not _succeeded(t):
                continue
            tx = _tx(t)
            for index, (op, result, op_meta) in enumerate(
                zip(tx.operations, _op_results(t), t.meta.v4.operations, strict=True)
            ):
                balances = [
                    c.created.data.claimable_balance
                    for c in op_meta.changes.ledger_entry_changes
                    if c.type == _CREATED and c.created.data.type == _LET.CLAIMABLE_BALANCE
                ]
                if op.body.type == OT.CREATE_CLAIMABLE_BALANCE:
                    preimage = X.HashIDPreimage(
                        X.EnvelopeType.ENVELOPE_TYPE_OP_ID,
                        operation_id=X.HashIDPreimageOperationID(
                            X.AccountID(
                                X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, tx.source_account.ed25519)
                            ),
                            tx.seq_num,
                            X.Uint32(index),
                        ),
                    )
                    balance_id = hashlib.sha256(preimage.to_xdr_bytes()).digest()
                    assert _inner(result).balance_id.v0.hash == balance_id
                    assert [cb.balance_id.v0.hash for cb in balances] == [balance_id]
                    created += 1
                elif balances:
                    pools = [
                        _entry(c).data.liquidity_pool
                        for c in op_meta.changes.ledger_entry_changes
                        if c.type == _STATE and c.state.data.type == _LET.LIQUIDITY_POOL
                    ]
                    ctx = TxContext(ledger, t, SANDBOX)
                    expected = {
                        revoke_balance_id(ctx, index + 1, pool.liquidity_pool_id.pool_id.hash, asset)
                        for pool in pools
                        for asset in (
                            ttp_assets.from_xdr(pool.body.constant_product.params.asset_a),
                            ttp_assets.from_xdr(pool.body.constant_product.params.asset_b),
                        )
                    }
                    trustor = op.body.set_trust_line_flags_op or op.body.allow_trust_op
                    for cb in balances:
                        assert cb.balance_id.v0.hash in expected
                        assert [c.v0.destination for c in cb.claimants] == [trustor.trustor]
                    redeemed += 1
    assert created and redeemed


def test_sac_events_name_the_asset_contract():
    """Every CAP-67 event is published by the SAC of the asset it names: SHA-256 of the
    contract-id preimage from the asset under the sandbox network id."""
    for ledger in _ledgers():
        for t in ledger.transactions:
            events = [e.event for e in t.meta.v4.events] + [e for op in t.meta.v4.operations for e in op.events]
            for event in events:
                topics = event.body.v0.topics
                name = "native" if topics[0].sym.sc_symbol == b"fee" else topics[-1].str.sc_string.decode()
                assert _sac_assets()[event.contract_id.contract_id.hash] == name


# --- ledger entries --------------------------------------------------------------------------


class _Replay:
    """The last known value of every entry, fed with changes in the order core made them."""

    def __init__(self, genesis: int) -> None:
        self.genesis = genesis
        self.last: dict[bytes, bytes] = {}

    def apply(self, changes: X.LedgerEntryChanges, seq: int) -> int:
        """Check one change list against what came before; returns its net change of XLM held
        (by accounts, claimable balances, pools and contracts)."""
        xlm_delta = 0
        pending_state: X.LedgerEntry | None = None
        for change in changes.ledger_entry_changes:
            if change.type == _REMOVED:
                key = change.removed.to_xdr_bytes()
                assert pending_state is not None and _key(pending_state) == key
                xlm_delta -= _native(pending_state)
                del self.last[key]
                pending_state = None
                continue
            entry = _entry(change)
            key = _key(entry)
            assert all(amount >= 0 for _, _, amount in _holdings(entry))
            if change.type == _STATE:
                assert pending_state is None
                if key in self.last:
                    assert self.last[key] == entry.to_xdr_bytes()
                else:  # only the root account exists before the first ledger
                    assert entry.last_modified_ledger_seq.uint32 == self.genesis
                    assert entry.data.account.balance.int64 == TOTAL_COINS
                self.last[key] = entry.to_xdr_bytes()
                pending_state = entry
                continue
            assert entry.last_modified_ledger_seq.uint32 == seq
            if change.type == _CREATED:
                assert key not in self.last and pending_state is None
                xlm_delta += _native(entry)
            else:
                assert pending_state is not None and _key(pending_state) == key
                xlm_delta += _native(entry) - _native(pending_state)
                pending_state = None
            self.last[key] = entry.to_xdr_bytes()
        assert pending_state is None
        return xlm_delta


def _check_books(entries: list[X.LedgerEntry]) -> None:
    """What the entries must say about each other: sub-entries, liabilities, sponsorships, pool
    shares and pool uses add up, and no two offers on the book cross."""
    by_type = defaultdict(list)
    for entry in entries:
        by_type[entry.data.type].append(entry.data)
    sub_entries: Counter = Counter()
    sponsoring: Counter = Counter()
    liabilities: Counter = Counter()  # (holder, asset, "buying"/"selling") -> amount
    pool_uses: Counter = Counter()
    shares: Counter = Counter()
    share_lines: Counter = Counter()
    best: dict[tuple[str, str], Fraction] = {}
    for data in by_type[_LET.OFFER]:
        offer = data.offer
        seller = _address(offer.seller_id.account_id.ed25519.uint256)
        sub_entries[seller] += 1
        selling, buying = _asset_name(offer.selling), _asset_name(offer.buying)
        price = Fraction(offer.price.n.int32, offer.price.d.int32)
        liabilities[(seller, selling, "selling")] += offer.amount.int64
        liabilities[(seller, buying, "buying")] += -(-offer.amount.int64 * price.numerator // price.denominator)
        best[(selling, buying)] = min(best.get((selling, buying), price), price)
    for (selling, buying), price in best.items():
        if (buying, selling) in best:
            assert price * best[(buying, selling)] >= 1, "the order book is crossed"
    pools = {
        data.liquidity_pool.liquidity_pool_id.pool_id.hash: data.liquidity_pool for data in by_type[_LET.LIQUIDITY_POOL]
    }
    lines = []
    for data in by_type[_LET.TRUSTLINE]:
        line = data.trust_line
        holder = _address(line.account_id.account_id.ed25519.uint256)
        name = _line_asset(line)
        if name is not None:
            sub_entries[holder] += 1
            lines.append((holder, name, line))
            continue
        sub_entries[holder] += 2
        pool_id = line.asset.liquidity_pool_id.pool_id.hash
        shares[pool_id] += line.balance.int64
        share_lines[pool_id] += 1
        params = pools[pool_id].body.constant_product.params
        for asset in (params.asset_a, params.asset_b):
            pool_uses[(holder, _asset_name(asset))] += 1
    for holder, name, line in lines:
        v1 = line.ext.v1
        v2 = v1.ext.v2 if v1 else None
        assert (v1.liabilities.buying.int64 if v1 else 0) == liabilities[(holder, name, "buying")]
        assert (v1.liabilities.selling.int64 if v1 else 0) == liabilities[(holder, name, "selling")]
        assert line.balance.int64 >= (v1.liabilities.selling.int64 if v1 else 0)
        assert (v2.liquidity_pool_use_count.int32 if v2 else 0) == pool_uses[(holder, name)]
    for data in by_type[_LET.CLAIMABLE_BALANCE]:
        cb = data.claimable_balance
        assert cb.amount.int64 > 0
    for entry in entries:
        if entry.data.type == _LET.CLAIMABLE_BALANCE:
            sponsor = _address(entry.ext.v1.sponsoring_id.sponsorship_descriptor.account_id.ed25519.uint256)
            sponsoring[sponsor] += len(entry.data.claimable_balance.claimants)
    for pool_id, pool in pools.items():
        product = pool.body.constant_product
        assert product.total_pool_shares.int64 == shares[pool_id]
        assert product.pool_shares_trust_line_count.int64 == share_lines[pool_id]
        assert (product.reserve_a.int64 > 0) == (product.reserve_b.int64 > 0) == (shares[pool_id] > 0)
    for data in by_type[_LET.ACCOUNT]:
        account = data.account
        holder = _address(account.account_id.account_id.ed25519.uint256)
        v1 = account.ext.v1
        v2 = v1.ext.v2 if v1 else None
        assert account.num_sub_entries.uint32 == sub_entries[holder]
        assert (v2.num_sponsoring.uint32 if v2 else 0) == sponsoring[holder]
        assert (v1.liabilities.buying.int64 if v1 else 0) == liabilities[(holder, "native", "buying")]
        assert (v1.liabilities.selling.int64 if v1 else 0) == liabilities[(holder, "native", "selling")]
        reserve = (2 + account.num_sub_entries.uint32 + sponsoring[holder]) * BASE_RESERVE
        assert account.balance.int64 >= reserve + (v1.liabilities.selling.int64 if v1 else 0)


def test_entry_changes_replay_consistently():
    """Replaying every change in order (all fees first, then each transaction's meta, then
    the post-apply refunds): each STATE equals the last value of that entry, amounts stay
    non-negative, the entries agree with each other (see _check_books), no XLM appears or
    vanishes but in fees, every issued asset's supply is what was minted less what was burnt
    or clawed back, and nothing but the genesis root predates the first ledger."""
    replay = _Replay(genesis=_ledgers()[0].sequence - 1)
    supply: Counter = Counter()
    for ledger in _ledgers():
        seq = ledger.sequence
        fee_deltas = [replay.apply(t.fee_changes, seq) for t in ledger.transactions]
        meta_deltas = [sum(replay.apply(changes, seq) for changes in _change_groups(t)) for t in ledger.transactions]
        refunds = [replay.apply(t.post_apply_fee_changes, seq) for t in ledger.transactions]
        for t, fee_delta, meta_delta, refund in zip(ledger.transactions, fee_deltas, meta_deltas, refunds, strict=True):
            assert fee_delta + meta_delta + refund == -t.result.result.fee_charged.int64
            for op_meta in t.meta.v4.operations:
                for event in op_meta.events:
                    v0 = event.body.v0
                    kind, asset = v0.topics[0].sym.sc_symbol, v0.topics[-1].str.sc_string.decode()
                    amount = _i128(v0.data if v0.data.map is None else v0.data.map.sc_map[0].val)
                    supply[asset] += {b"mint": amount, b"burn": -amount, b"clawback": -amount}.get(kind, 0)

        if seq % 10 and ledger is not _ledgers()[-1]:
            continue  # decoding every entry is slow: check every tenth ledger and the last
        entries = [X.LedgerEntry.from_xdr_bytes(data) for data in replay.last.values()]
        _check_books(entries)
        held: Counter = Counter()
        for entry in entries:
            for _, asset, amount in _holdings(entry):
                held[asset] += amount
        assert held.pop("native") + ledger.header.fee_pool.int64 == TOTAL_COINS
        assert +held == +supply
    assert len(+supply) == 3  # the three issued assets


def test_accounts_look_like_protocol_23_accounts():
    """New accounts start at sequence ledger << 32 without extension; their first
    transaction records seqLedger/seqTime (extension v3)."""
    created = 0
    extended: dict[str, int] = defaultdict(int)
    for ledger in _ledgers():
        for t in ledger.transactions:
            for changes in _change_groups(t):
                for change in changes.ledger_entry_changes:
                    entry = change.created or change.updated
                    if entry is None or entry.data.account is None:
                        continue
                    account = entry.data.account
                    if change.created is not None:
                        created += 1
                        assert account.seq_num.sequence_number.int64 == ledger.sequence << 32
                        assert account.ext.v == 0
                    elif account.ext.v == 1:
                        v3 = account.ext.v1.ext.v2.ext.v3
                        assert v3.seq_ledger.uint32 <= ledger.sequence
                        extended[_address(account.account_id.account_id.ed25519.uint256)] += 1
    assert created and extended


# --- the three views agree ---------------------------------------------------------------------


def test_derived_events_core_events_and_balances_agree():
    """The project's three-way check finds nothing to report on a long run of sandbox ledgers."""
    for ledger in _long():
        verification = verify_ledger(ledger, SANDBOX)
        assert verification.with_core_events
        assert [finding.describe() for finding in verification.findings] == []


@cache
def _per_op() -> dict[str, list[tuple[Counter, Counter]]]:
    """(op type) -> (derived events, core events) of every successful operation of the long run."""
    out: dict[str, list] = defaultdict(list)
    for ledger in _long():
        derived = derived_ledger_events(ledger, SANDBOX)
        core = core_ledger_events(ledger, SANDBOX)
        assert derived.skipped == core.skipped == []
        for t, d, c in zip(ledger.transactions, derived.per_tx, core.per_tx, strict=True):
            assert d.fees == c.fees
            if not _succeeded(t):
                continue
            for i, op in enumerate(E.operations(t.envelope), start=1):
                pick = lambda events, i=i: Counter(e for e in events if e.op_index == i)  # noqa: E731
                out[op.body.type.name].append((pick(d.ops), pick(c.ops)))
    return out


@pytest.mark.parametrize("op_type", OPERATION_TYPES)
def test_operation_type_matches_core_events(op_type):
    """Each operation type's derived events equal the events the generator wrote as core would."""
    pairs = _per_op()[op_type]
    assert pairs
    for derived, core in pairs:
        assert derived == core
    moved = sum(sum(d.values()) for d, _ in pairs)
    assert (moved > 0) == (op_type in VALUE_MOVING)


def test_every_event_kind_appears_in_both_views():
    kinds = {"derived": Counter(), "core": Counter()}
    for ledger in _long()[:COUNT]:
        for view, events in (
            ("derived", derived_ledger_events(ledger, SANDBOX)),
            ("core", core_ledger_events(ledger, SANDBOX)),
        ):
            for tx in events.per_tx:
                for event in tx.all():
                    kinds[view][event.kind + (" refund" if event.amount < 0 else "")] += 1
                    holders = {(event.from_ or " ")[0], (event.to or " ")[0]}
                    kinds[view].update(f"holder {h}" for h in holders if h != " ")
    expected = {
        "transfer",
        "mint",
        "burn",
        "clawback",
        "fee",
        "fee refund",
        "holder G",
        "holder L",
        "holder B",
        "holder C",
    }
    assert expected <= set(kinds["derived"]) and expected <= set(kinds["core"])
    assert kinds["derived"] == kinds["core"]


@pytest.mark.parametrize("form", ["compiled", "python"])
def test_fast_and_reference_decoders_give_equal_rows(form, monkeypatch):
    """Our decoder (compiled, and its pure-Python form) and stellar-sdk's give the same rows of
    every table on ledgers holding every kind of operation, entry and event."""
    monkeypatch.setenv("OBSRVR_PURE_XDR", "1" if form == "python" else "0")
    for seq, data in _raw()[: COVERED_BY + 5]:
        rows = {}
        for decoder in ("fast", "reference"):
            ledger = decode_ledger(data, SANDBOX, sequence=seq, decoder=decoder)
            report = RunReport("test", seq, seq)
            rows[decoder] = {
                kind: build_rows(kind, ledger, ExtractOptions(SANDBOX, decoder=decoder), report)
                for kind in ("ledgers", "transactions", "token_transfers")
            }
            rows[decoder]["derived"] = build_rows(
                "token_transfers", ledger, ExtractOptions(SANDBOX, events_from="operations", decoder=decoder), report
            )
            assert report.failures == []
        assert rows["fast"] == rows["reference"]
        assert rows["fast"]["token_transfers"]


def test_bigger_ledgers_fill_up_once_enough_accounts_exist():
    sizes = [len(decode_ledger(data, SANDBOX).transactions) for _, data in generate_ledgers(6, txs_per_ledger=80)]
    assert sizes[0] == 1  # the root funds everyone in one transaction
    assert sizes[-1] == 80
