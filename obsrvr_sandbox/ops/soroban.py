"""Invoke host function, for the one contract the sandbox runs: the Stellar Asset Contract.

Deploying a SAC (create contract from an asset) writes its instance and that entry's TTL.
Its functions `transfer(from, to, amount)`, `mint(to, amount)` (by the admin, the issuer) and
`burn(from, amount)` move the classic balance of G holders (their account or trustline, with
the same reserve and authorization rules as classic payments) and keep a contract holder's
balance in the SAC's own storage. Authorization is by the transaction source (source-account
credentials): it must be `from`, or the issuer for a mint. Each call emits the one CAP-67
event of its function; a call that cannot complete traps, which fails the transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from stellar_sdk import StrKey, scval
from stellar_sdk import xdr as X

from obsrvr_sandbox.addresses import contract_address
from obsrvr_sandbox.entries import ContractBalanceEntry, ContractInstanceEntry, Key, TtlEntry
from obsrvr_sandbox.entry_xdr import key_xdr
from obsrvr_sandbox.events import move_event, sac_contract_hash_of
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import credit, debit
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, UnsupportedOperation, asset_from_xdr, inner_result
from obsrvr_sandbox.state import EntryTxn

PERSISTENT_TTL = 518_400  # ledgers a new persistent entry lives (30 days of 5-second ledgers)
_CODES = X.InvokeHostFunctionResultCode
_VOID = X.SCVal(X.SCValType.SCV_VOID)


def _outcome(
    code: X.InvokeHostFunctionResultCode,
    ctx: OpContext | None = None,
    moves: list[Move] | None = None,
    return_value: X.SCVal = _VOID,
) -> OpOutcome:
    if code != _CODES.INVOKE_HOST_FUNCTION_SUCCESS:
        result = X.InvokeHostFunctionResult(code)
        return OpOutcome(inner_result(X.OperationType.INVOKE_HOST_FUNCTION, invoke_host_function_result=result), False)
    events = [move_event(move, ctx.ledger.network_id) for move in moves]
    digest = hashlib.sha256(X.InvokeHostFunctionSuccessPreImage(return_value, events).to_xdr_bytes()).digest()
    result = X.InvokeHostFunctionResult(code, success=X.Hash(digest))
    return OpOutcome(
        inner_result(X.OperationType.INVOKE_HOST_FUNCTION, invoke_host_function_result=result),
        True,
        moves,
        return_value,
    )


def ttl_key_hash(key: Key) -> bytes:
    return hashlib.sha256(key_xdr(key).to_xdr_bytes()).digest()


def _create_persistent(txn: EntryTxn, entry: ContractInstanceEntry | ContractBalanceEntry, ledger_seq: int) -> None:
    txn.put(entry)
    txn.put(TtlEntry(ttl_key_hash(entry.key), ledger_seq + PERSISTENT_TTL))


def invoke_host_function(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    function = body.invoke_host_function_op.host_function
    if function.type == X.HostFunctionType.HOST_FUNCTION_TYPE_CREATE_CONTRACT:
        return _deploy(ctx, function.create_contract)
    if function.type == X.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT:
        return _call(ctx, function.invoke_contract)
    raise UnsupportedOperation(f"the sandbox does not run {function.type.name}")


def _deploy(ctx: OpContext, args: X.CreateContractArgs) -> OpOutcome:
    preimage = args.contract_id_preimage
    if (
        preimage.type != X.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ASSET
        or args.executable.type != X.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET
    ):
        raise UnsupportedOperation("the sandbox only deploys Stellar Asset Contracts")
    asset = asset_from_xdr(preimage.from_asset)
    contract_id = sac_contract_hash_of(asset, ctx.ledger.network_id)
    if ctx.txn.contract_instance(contract_id) is not None:
        return _outcome(_CODES.INVOKE_HOST_FUNCTION_TRAPPED)
    _create_persistent(ctx.txn, ContractInstanceEntry(contract_id, asset), ctx.ledger.sequence)
    address = scval.to_address(contract_address(contract_id))
    return _outcome(_CODES.INVOKE_HOST_FUNCTION_SUCCESS, ctx, [], address)


def _holder(value: X.SCVal) -> str:
    address = value.address
    if address.type == X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT:
        return StrKey.encode_ed25519_public_key(address.account_id.account_id.ed25519.uint256)
    if address.type == X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return StrKey.encode_contract(address.contract_id.contract_id.hash)
    raise UnsupportedOperation(f"the sandbox's SAC does not hold balances for {address.type.name}")


def _amount(value: X.SCVal) -> int:
    return (value.i128.hi.int64 << 64) | value.i128.lo.uint64


def _take(ctx: OpContext, instance: ContractInstanceEntry, holder: str, amount: int) -> bool:
    if holder.startswith("C"):
        entry = ctx.txn.contract_balance(instance.contract_id, holder)
        if entry is None or entry.amount < amount:
            return False
        ctx.txn.put(replace(entry, amount=entry.amount - amount))
        return True
    return debit(ctx.txn, holder, instance.asset, amount, ctx.ledger.base_reserve) is None


def _give(ctx: OpContext, instance: ContractInstanceEntry, holder: str, amount: int) -> bool:
    if holder.startswith("C"):
        entry = ctx.txn.contract_balance(instance.contract_id, holder)
        if entry is None:
            _create_persistent(ctx.txn, ContractBalanceEntry(instance.contract_id, holder, amount), ctx.ledger.sequence)
        else:
            ctx.txn.put(replace(entry, amount=entry.amount + amount))
        return True
    return credit(ctx.txn, holder, instance.asset, amount) is None


def _call(ctx: OpContext, args: X.InvokeContractArgs) -> OpOutcome:
    trapped = _outcome(_CODES.INVOKE_HOST_FUNCTION_TRAPPED)
    if args.contract_address.type != X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return trapped
    instance = ctx.txn.contract_instance(args.contract_address.contract_id.contract_id.hash)
    if instance is None:
        return trapped
    asset = instance.asset
    name = args.function_name.sc_symbol.decode()
    values = args.args
    if name == "transfer":
        sender, receiver, amount = _holder(values[0]), _holder(values[1]), _amount(values[2])
        authorized = ctx.tx_source == sender
    elif name == "mint":
        sender, receiver, amount = asset.issuer, _holder(values[0]), _amount(values[1])
        authorized = not asset.is_native() and ctx.tx_source == asset.issuer
    elif name == "burn":
        sender, receiver, amount = _holder(values[0]), asset.issuer, _amount(values[1])
        authorized = not asset.is_native() and ctx.tx_source == sender
    else:
        raise UnsupportedOperation(f"the sandbox's SAC has no function {name!r}")
    if not authorized or amount <= 0:
        return trapped
    if name != "mint" and not _take(ctx, instance, sender, amount):
        return trapped
    if name != "burn" and not _give(ctx, instance, receiver, amount):
        return trapped
    return _outcome(_CODES.INVOKE_HOST_FUNCTION_SUCCESS, ctx, [Move(asset, sender, receiver, amount, False)])
