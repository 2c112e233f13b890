"""Ledger entries and keys as XDR, the only place the sandbox's entries become XDR.

Extensions follow what core writes: an account gets the v1/v2/v3 extensions once it has
liabilities, sponsors something or has sent a transaction; a trustline gets v1 (liabilities)
once an offer or a pool uses it; a claimable balance names its sponsor in the entry extension.
A Stellar Asset Contract keeps its metadata and admin in the instance storage and each contract
holder's balance as a map {amount, authorized, clawback}, as the real SAC does.
"""

from __future__ import annotations

from functools import lru_cache

from stellar_sdk import Asset, scval
from stellar_sdk import xdr as X

from obsrvr_sandbox.addresses import account_id_xdr, balance_id_xdr, contract_sc_address, sc_address
from obsrvr_sandbox.encoded import Encoded
from obsrvr_sandbox.entries import (
    PASSIVE_FLAG,
    POOL_FEE_BPS,
    AccountEntry,
    ClaimableBalanceEntry,
    ContractBalanceEntry,
    ContractInstanceEntry,
    Entry,
    Key,
    OfferEntry,
    PoolEntry,
    PoolShareEntry,
    TrustlineEntry,
    asset_string,
)
from obsrvr_sandbox.state import Change, ChangeType

_THRESHOLDS = X.Thresholds(bytes([1, 0, 0, 0]))  # master weight 1, all thresholds 0
_NO_EXT = X.ExtensionPoint(0)
_PERSISTENT = X.ContractDataDurability.PERSISTENT
_INSTANCE_KEY = X.SCVal(X.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE)
_UNCONDITIONAL = X.ClaimPredicate(X.ClaimPredicateType.CLAIM_PREDICATE_UNCONDITIONAL)
_LET = X.LedgerEntryType


@lru_cache(maxsize=1024)
def asset_xdr(asset: Asset) -> X.Asset:
    return asset.to_xdr_object()


@lru_cache(maxsize=1024)
def _trustline_asset_xdr(asset: Asset) -> X.TrustLineAsset:
    return asset.to_trust_line_asset_xdr_object()


def _pool_share_asset_xdr(pool_id: bytes) -> X.TrustLineAsset:
    return X.TrustLineAsset(X.AssetType.ASSET_TYPE_POOL_SHARE, liquidity_pool_id=X.PoolID(X.Hash(pool_id)))


def pool_parameters_xdr(asset_a: Asset, asset_b: Asset) -> X.LiquidityPoolParameters:
    return X.LiquidityPoolParameters(
        X.LiquidityPoolType.LIQUIDITY_POOL_CONSTANT_PRODUCT,
        constant_product=X.LiquidityPoolConstantProductParameters(
            asset_xdr(asset_a), asset_xdr(asset_b), X.Int32(POOL_FEE_BPS)
        ),
    )


def _liabilities(buying: int, selling: int) -> X.Liabilities:
    return X.Liabilities(buying=X.Int64(buying), selling=X.Int64(selling))


def _account_ext(entry: AccountEntry) -> X.AccountEntryExt:
    liabilities = entry.buying_liabilities or entry.selling_liabilities
    if entry.seq_ledger is None and not entry.num_sponsoring and not liabilities:
        return X.AccountEntryExt(0)
    v1_ext = X.AccountEntryExtensionV1Ext(0)
    if entry.seq_ledger is not None or entry.num_sponsoring:
        v2_ext = X.AccountEntryExtensionV2Ext(0)
        if entry.seq_ledger is not None:
            v3 = X.AccountEntryExtensionV3(
                ext=_NO_EXT, seq_ledger=X.Uint32(entry.seq_ledger), seq_time=X.TimePoint(X.Uint64(entry.seq_time))
            )
            v2_ext = X.AccountEntryExtensionV2Ext(3, v3=v3)
        v2 = X.AccountEntryExtensionV2(
            num_sponsored=X.Uint32(0),
            num_sponsoring=X.Uint32(entry.num_sponsoring),
            signer_sponsoring_i_ds=[],
            ext=v2_ext,
        )
        v1_ext = X.AccountEntryExtensionV1Ext(2, v2=v2)
    v1 = X.AccountEntryExtensionV1(
        liabilities=_liabilities(entry.buying_liabilities, entry.selling_liabilities), ext=v1_ext
    )
    return X.AccountEntryExt(1, v1=v1)


def _trustline_ext(entry: TrustlineEntry) -> X.TrustLineEntryExt:
    if not (entry.buying_liabilities or entry.selling_liabilities or entry.pool_use_count):
        return X.TrustLineEntryExt(0)
    v1_ext = X.TrustLineEntryV1Ext(0)
    if entry.pool_use_count:
        v2 = X.TrustLineEntryExtensionV2(X.Int32(entry.pool_use_count), X.TrustLineEntryExtensionV2Ext(0))
        v1_ext = X.TrustLineEntryV1Ext(2, v2=v2)
    v1 = X.TrustLineEntryV1(_liabilities(entry.buying_liabilities, entry.selling_liabilities), v1_ext)
    return X.TrustLineEntryExt(1, v1=v1)


def _symbol_map(items: list[tuple[str, X.SCVal]]) -> X.SCVal:
    """A map keyed by symbols, which must already be in ascending order."""
    entries = [X.SCMapEntry(key=scval.to_symbol(key), val=val) for key, val in items]
    return X.SCVal(X.SCValType.SCV_MAP, map=X.SCMap(entries))


def _instance_val(asset: Asset) -> X.SCVal:
    name = asset_string(asset)
    metadata = _symbol_map(
        [
            ("decimal", scval.to_uint32(7)),
            ("name", scval.to_string(name)),
            ("symbol", scval.to_string("native" if asset.is_native() else asset.code)),
        ]
    )
    storage = (
        [] if asset.is_native() else [("Admin", X.SCVal(X.SCValType.SCV_ADDRESS, address=sc_address(asset.issuer)))]
    )
    storage.append(("METADATA", metadata))
    instance = X.SCContractInstance(
        executable=X.ContractExecutable(X.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET),
        storage=_symbol_map(storage).map,
    )
    return X.SCVal(X.SCValType.SCV_CONTRACT_INSTANCE, instance=instance)


def _balance_key_val(holder: str) -> X.SCVal:
    address = X.SCVal(X.SCValType.SCV_ADDRESS, address=sc_address(holder))
    return X.SCVal(X.SCValType.SCV_VEC, vec=X.SCVec([scval.to_symbol("Balance"), address]))


def _balance_val(amount: int) -> X.SCVal:
    return _symbol_map(
        [("amount", scval.to_int128(amount)), ("authorized", scval.to_bool(True)), ("clawback", scval.to_bool(False))]
    )


def offer_xdr(entry: OfferEntry) -> X.OfferEntry:
    return X.OfferEntry(
        seller_id=account_id_xdr(entry.seller),
        offer_id=X.Int64(entry.offer_id),
        selling=asset_xdr(entry.selling),
        buying=asset_xdr(entry.buying),
        amount=X.Int64(entry.amount),
        price=X.Price(X.Int32(entry.price[0]), X.Int32(entry.price[1])),
        flags=X.Uint32(PASSIVE_FLAG if entry.passive else 0),
        ext=X.OfferEntryExt(0),
    )


def _data(entry: Entry) -> X.LedgerEntryData:
    if isinstance(entry, AccountEntry):
        return X.LedgerEntryData(
            _LET.ACCOUNT,
            account=X.AccountEntry(
                account_id=account_id_xdr(entry.account_id),
                balance=X.Int64(entry.balance),
                seq_num=X.SequenceNumber(X.Int64(entry.seq_num)),
                num_sub_entries=X.Uint32(entry.num_sub_entries),
                inflation_dest=None,
                flags=X.Uint32(entry.flags),
                home_domain=X.String32(b""),
                thresholds=_THRESHOLDS,
                signers=[],
                ext=_account_ext(entry),
            ),
        )
    if isinstance(entry, TrustlineEntry):
        return X.LedgerEntryData(
            _LET.TRUSTLINE,
            trust_line=X.TrustLineEntry(
                account_id=account_id_xdr(entry.account_id),
                asset=_trustline_asset_xdr(entry.asset),
                balance=X.Int64(entry.balance),
                limit=X.Int64(entry.limit),
                flags=X.Uint32(entry.flags),
                ext=_trustline_ext(entry),
            ),
        )
    if isinstance(entry, PoolShareEntry):
        return X.LedgerEntryData(
            _LET.TRUSTLINE,
            trust_line=X.TrustLineEntry(
                account_id=account_id_xdr(entry.account_id),
                asset=_pool_share_asset_xdr(entry.pool_id),
                balance=X.Int64(entry.balance),
                limit=X.Int64(entry.limit),
                flags=X.Uint32(entry.flags),
                ext=X.TrustLineEntryExt(0),
            ),
        )
    if isinstance(entry, OfferEntry):
        return X.LedgerEntryData(_LET.OFFER, offer=offer_xdr(entry))
    if isinstance(entry, PoolEntry):
        params = pool_parameters_xdr(entry.asset_a, entry.asset_b).constant_product
        product = X.LiquidityPoolEntryConstantProduct(
            params=params,
            reserve_a=X.Int64(entry.reserve_a),
            reserve_b=X.Int64(entry.reserve_b),
            total_pool_shares=X.Int64(entry.total_shares),
            pool_shares_trust_line_count=X.Int64(entry.share_trustlines),
        )
        body = X.LiquidityPoolEntryBody(X.LiquidityPoolType.LIQUIDITY_POOL_CONSTANT_PRODUCT, constant_product=product)
        return X.LedgerEntryData(
            _LET.LIQUIDITY_POOL,
            liquidity_pool=X.LiquidityPoolEntry(X.PoolID(X.Hash(entry.pool_id)), body),
        )
    if isinstance(entry, ClaimableBalanceEntry):
        claimants = [
            X.Claimant(X.ClaimantType.CLAIMANT_TYPE_V0, v0=X.ClaimantV0(account_id_xdr(claimant), _UNCONDITIONAL))
            for claimant in entry.claimants
        ]
        ext = X.ClaimableBalanceEntryExt(0)
        if entry.clawback:
            flags = X.ClaimableBalanceEntryExtensionV1(X.ClaimableBalanceEntryExtensionV1Ext(0), X.Uint32(1))
            ext = X.ClaimableBalanceEntryExt(1, v1=flags)
        return X.LedgerEntryData(
            _LET.CLAIMABLE_BALANCE,
            claimable_balance=X.ClaimableBalanceEntry(
                balance_id=balance_id_xdr(entry.balance_id),
                claimants=claimants,
                asset=asset_xdr(entry.asset),
                amount=X.Int64(entry.amount),
                ext=ext,
            ),
        )
    if isinstance(entry, ContractInstanceEntry):
        data = X.ContractDataEntry(
            _NO_EXT, contract_sc_address(entry.contract_id), _INSTANCE_KEY, _PERSISTENT, _instance_val(entry.asset)
        )
        return X.LedgerEntryData(_LET.CONTRACT_DATA, contract_data=data)
    if isinstance(entry, ContractBalanceEntry):
        data = X.ContractDataEntry(
            _NO_EXT,
            contract_sc_address(entry.contract_id),
            _balance_key_val(entry.holder),
            _PERSISTENT,
            _balance_val(entry.amount),
        )
        return X.LedgerEntryData(_LET.CONTRACT_DATA, contract_data=data)
    return X.LedgerEntryData(_LET.TTL, ttl=X.TTLEntry(X.Hash(entry.key_hash), X.Uint32(entry.live_until)))


def entry_xdr(entry: Entry) -> X.LedgerEntry:
    ext = X.LedgerEntryExt(0)
    if isinstance(entry, ClaimableBalanceEntry):
        sponsor = X.SponsorshipDescriptor(account_id_xdr(entry.sponsor))
        ext = X.LedgerEntryExt(1, v1=X.LedgerEntryExtensionV1(sponsor, X.LedgerEntryExtensionV1Ext(0)))
    return X.LedgerEntry(last_modified_ledger_seq=X.Uint32(entry.last_modified), data=_data(entry), ext=ext)


@lru_cache(maxsize=8192)  # a snapshot is usually recorded twice: UPDATED, then STATE
def encoded_entry(entry: Entry) -> Encoded:
    return Encoded.of(entry_xdr(entry))


def _trustline_asset_of(name: str) -> X.TrustLineAsset:
    if name.startswith("pool:"):
        return _pool_share_asset_xdr(bytes.fromhex(name[5:]))
    code, issuer = name.split(":")
    return _trustline_asset_xdr(Asset(code, issuer))


@lru_cache(maxsize=8192)
def key_xdr(key: Key) -> X.LedgerKey:
    kind = key[0]
    if kind == "account":
        return X.LedgerKey(_LET.ACCOUNT, account=X.LedgerKeyAccount(account_id_xdr(key[1])))
    if kind == "trustline":
        line = X.LedgerKeyTrustLine(account_id=account_id_xdr(key[1]), asset=_trustline_asset_of(key[2]))
        return X.LedgerKey(_LET.TRUSTLINE, trust_line=line)
    if kind == "offer":
        return X.LedgerKey(_LET.OFFER, offer=X.LedgerKeyOffer(account_id_xdr(key[1]), X.Int64(int(key[2]))))
    if kind == "pool":
        pool = X.LedgerKeyLiquidityPool(X.PoolID(X.Hash(bytes.fromhex(key[1]))))
        return X.LedgerKey(_LET.LIQUIDITY_POOL, liquidity_pool=pool)
    if kind == "claimable_balance":
        balance = X.LedgerKeyClaimableBalance(balance_id_xdr(bytes.fromhex(key[1])))
        return X.LedgerKey(_LET.CLAIMABLE_BALANCE, claimable_balance=balance)
    if kind == "contract_data":
        contract = contract_sc_address(bytes.fromhex(key[1]))
        data_key = _INSTANCE_KEY if key[2] == "instance" else _balance_key_val(key[2])
        return X.LedgerKey(_LET.CONTRACT_DATA, contract_data=X.LedgerKeyContractData(contract, data_key, _PERSISTENT))
    return X.LedgerKey(_LET.TTL, ttl=X.LedgerKeyTtl(X.Hash(bytes.fromhex(key[1]))))


_CHANGE_TYPES = {
    ChangeType.STATE: (X.LedgerEntryChangeType.LEDGER_ENTRY_STATE, "state"),
    ChangeType.UPDATED: (X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED, "updated"),
    ChangeType.CREATED: (X.LedgerEntryChangeType.LEDGER_ENTRY_CREATED, "created"),
}


def changes_xdr(changes: list[Change]) -> X.LedgerEntryChanges:
    out = []
    for change in changes:
        if change.type is ChangeType.REMOVED:
            out.append(X.LedgerEntryChange(X.LedgerEntryChangeType.LEDGER_ENTRY_REMOVED, removed=key_xdr(change.key)))
        else:
            xdr_type, arm = _CHANGE_TYPES[change.type]
            out.append(X.LedgerEntryChange(xdr_type, **{arm: encoded_entry(change.entry)}))
    return X.LedgerEntryChanges(out)
