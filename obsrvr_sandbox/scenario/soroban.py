"""Soroban actions, planned after the classic ones (they apply in the Soroban phase): deploying
each asset's Stellar Asset Contract, then SAC transfers (between accounts, and to a contract
address), mints by the issuer, burns, fee bumps around them, and transfers that trap.

Each transaction declares its footprint (the SAC instance read, the balances written) and a
resource fee that covers what it will use plus a margin, which comes back as the refund.
"""

from __future__ import annotations

from stellar_sdk import Asset, InvokeHostFunction, scval
from stellar_sdk import xdr as X

from obsrvr_sandbox.addresses import contract_sc_address
from obsrvr_sandbox.entries import Key, account_key, contract_balance_key, contract_instance_key, trustline_key
from obsrvr_sandbox.entry_xdr import asset_xdr, key_xdr
from obsrvr_sandbox.keys import Actor
from obsrvr_sandbox.scenario.planner import NATIVE, XLM, Intent, Planner
from obsrvr_sandbox.soroban_fees import non_refundable_fee, refundable_fee

_SOURCE_ACCOUNT = X.SorobanCredentials(X.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT)


def deployed(p: Planner) -> list[Asset]:
    return [asset for asset in (NATIVE, *p.assets) if p.view.contract_instance(p.sac(asset)) is not None]


def _balance_key(p: Planner, holder: str, asset: Asset) -> Key:
    if holder.startswith("C"):
        return contract_balance_key(p.sac(asset), holder)
    return account_key(holder) if asset.is_native() else trustline_key(holder, asset)


def _soroban_data(
    p: Planner, read_only: list[Key], read_write: list[Key], events: int, created: int
) -> X.SorobanTransactionData:
    resources = X.SorobanResources(
        footprint=X.LedgerFootprint([key_xdr(key) for key in read_only], [key_xdr(key) for key in read_write]),
        instructions=X.Uint32(p.rng.randint(200_000, 2_000_000)),
        disk_read_bytes=X.Uint32(p.rng.randint(100, 600)),
        write_bytes=X.Uint32(p.rng.randint(200, 800)),
    )
    margin = p.rng.randint(1_000, 50_000)
    fee = non_refundable_fee(resources) + refundable_fee(events, created) + margin
    return X.SorobanTransactionData(X.SorobanTransactionDataExt(0), resources, X.Int64(fee))


def deploy(p: Planner) -> Intent | None:
    """A sponsor deploys the SAC of an asset that has none yet."""
    missing = [asset for asset in (NATIVE, *p.assets) if asset not in deployed(p)]
    sponsor = missing and p.pick(p.sponsors, lambda _: True)
    if not sponsor:
        return None
    asset = missing[0]
    args = X.CreateContractArgs(
        contract_id_preimage=X.ContractIDPreimage(
            X.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ASSET, from_asset=asset_xdr(asset)
        ),
        executable=X.ContractExecutable(X.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET),
    )
    function = X.HostFunction(X.HostFunctionType.HOST_FUNCTION_TYPE_CREATE_CONTRACT, create_contract=args)
    instance = contract_instance_key(p.sac(asset))
    data = _soroban_data(p, [], [instance], events=0, created=1)
    return Intent(sponsor, [InvokeHostFunction(function, auth=[])], soroban=data)


def _call(p: Planner, source: Actor, asset: Asset, name: str, args: list[X.SCVal], writes: list[Key]) -> Intent:
    """A SAC call authorized by the transaction source."""
    invocation = X.InvokeContractArgs(
        contract_address=contract_sc_address(p.sac(asset)),
        function_name=X.SCSymbol(name.encode()),
        args=args,
    )
    function = X.HostFunction(X.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT, invoke_contract=invocation)
    auth = X.SorobanAuthorizationEntry(
        credentials=_SOURCE_ACCOUNT,
        root_invocation=X.SorobanAuthorizedInvocation(
            function=X.SorobanAuthorizedFunction(
                X.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN, contract_fn=invocation
            ),
            sub_invocations=[],
        ),
    )
    created = sum(1 for key in writes if key[0] == "contract_data" and p.view.get(key) is None)
    data = _soroban_data(p, [contract_instance_key(p.sac(asset))], writes, events=1, created=created)
    return Intent(source, [InvokeHostFunction(function, auth=[auth])], soroban=data)


def _address(holder: str) -> X.SCVal:
    return scval.to_address(holder)


def _transfer(p: Planner, *, to_contract: bool, overdraw: bool = False) -> Intent | None:
    assets = deployed(p)
    if not assets:
        return None
    asset = p.rng.choice(assets)
    sender = p.holder(asset, 2 * XLM)
    if sender is None or p.spendable(sender) < 2 * XLM:
        return None
    if to_contract:
        receiver = p.vault
    else:
        recipient = p.recipient(sender, asset)
        if recipient is None:
            return None
        receiver = recipient.address
    usable = p.can_use(sender, asset)
    amount = usable + p.rng.randint(1, 100) * XLM if overdraw else p.amount(min(usable // 3, 1_000 * XLM))
    args = [_address(sender.address), _address(receiver), scval.to_int128(amount)]
    writes = [_balance_key(p, sender.address, asset), _balance_key(p, receiver, asset)]
    return _call(p, sender, asset, "transfer", args, writes)


def transfer(p: Planner) -> Intent | None:
    return _transfer(p, to_contract=False)


def transfer_to_contract(p: Planner) -> Intent | None:
    return _transfer(p, to_contract=True)


def fail_transfer(p: Planner) -> Intent | None:
    """More than the sender has: the SAC traps and the transaction fails (fees only)."""
    return _transfer(p, to_contract=False, overdraw=True)


def mint(p: Planner) -> Intent | None:
    assets = [asset for asset in deployed(p) if not asset.is_native()]
    if not assets:
        return None
    asset = p.rng.choice(assets)
    issuer = p.issuer_of(asset)
    holder = p.pick(p.holdings.trusting[asset], lambda user: p.authorized(user, asset), senders=False)
    if holder is None or not p.can_send(issuer):
        return None
    args = [_address(holder.address), scval.to_int128(p.amount(5_000 * XLM))]
    return _call(p, issuer, asset, "mint", args, [_balance_key(p, holder.address, asset)])


def burn(p: Planner) -> Intent | None:
    assets = [asset for asset in deployed(p) if not asset.is_native()]
    if not assets:
        return None
    asset = p.rng.choice(assets)
    holder = p.holder(asset)
    if holder is None:
        return None
    args = [_address(holder.address), scval.to_int128(p.amount(p.can_use(holder, asset) // 4))]
    return _call(p, holder, asset, "burn", args, [_balance_key(p, holder.address, asset)])


def fee_bump(p: Planner) -> Intent | None:
    """A sponsor pays for someone's SAC transfer."""
    sponsor = p.pick(p.sponsors, lambda _: True)
    intent = sponsor and transfer(p)
    if intent is None:
        return None
    intent.fee_sponsor = sponsor
    intent.bump_bid = p.rng.choice((200, 1000, 10_000))
    return intent


def due(p: Planner) -> list[str]:
    """Every asset's contract is deployed before anything else."""
    return ["sac_deploy"] if len(deployed(p)) <= len(p.assets) else []


ACTIONS = {
    "sac_deploy": (deploy, 0, False),
    "sac_transfer": (transfer, 6, False),
    "sac_transfer_contract": (transfer_to_contract, 2, False),
    "sac_mint": (mint, 3, False),
    "sac_burn": (burn, 2, False),
    "soroban_fee_bump": (fee_bump, 2, False),
    "fail_soroban": (fail_transfer, 1, True),
}
