"""Issuer powers and claimable balances: clawbacks (of trustlines and of claimable balances),
revoking and re-authorizing trustlines (a revoked holder of pool shares has them redeemed into
claimable balances), and claimable balances created and claimed."""

from __future__ import annotations

import warnings

from stellar_sdk import (
    AllowTrust,
    Asset,
    Claimant,
    ClaimClaimableBalance,
    Clawback,
    ClawbackClaimableBalance,
    CreateClaimableBalance,
    Operation,
    SetTrustLineFlags,
    TrustLineEntryFlag,
    TrustLineFlags,
)

from obsrvr_sandbox.entries import TRUSTLINE_CLAWBACK_ENABLED_FLAG, ClaimableBalanceEntry
from obsrvr_sandbox.keys import Actor
from obsrvr_sandbox.ops.exchange import pool_of
from obsrvr_sandbox.scenario.planner import CLAWBACK_ISSUERS, NATIVE, XLM, Intent, Planner


def _balance_id(entry: ClaimableBalanceEntry) -> str:
    """The sdk's form: the XDR ClaimableBalanceID (type 0, then the hash) in hex."""
    return "00000000" + entry.balance_id.hex()


def _clawback_issuer(p: Planner) -> tuple[Actor, Asset] | None:
    index = p.rng.choice(CLAWBACK_ISSUERS)
    issuer = p.issuers[index]
    return (issuer, p.assets[index]) if p.can_send(issuer) else None


def clawback(p: Planner) -> Intent | None:
    found = _clawback_issuer(p)
    if found is None:
        return None
    issuer, asset = found

    def clawable(user: Actor) -> bool:
        line = p.view.trustline(user.address, asset)
        return bool(line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG) and line.balance - line.selling_liabilities > 0

    holder = p.pick(p.holdings.trusting[asset], clawable, senders=False)
    if holder is None:
        return None
    line = p.view.trustline(holder.address, asset)
    amount = p.amount((line.balance - line.selling_liabilities) // 3)
    return Intent(issuer, [Clawback(asset, holder.address, Operation.from_xdr_amount(amount))])


def create_claimable(p: Planner) -> Intent | None:
    """A holder (or now and then an issuer) parks an amount for another user, sometimes
    claimable by itself too."""
    asset = p.rng.choice([NATIVE, *p.assets])
    if not asset.is_native() and p.rng.random() < 0.2:
        creator = p.issuer_of(asset)
        if not p.can_send(creator):
            return None
        amount = p.amount(1_000 * XLM)
    else:
        creator = p.holder(asset, 2 * XLM)
        if creator is None or p.spendable(creator) < 5 * XLM:
            return None
        amount = p.amount(min(p.can_use(creator, asset) // 3, 500 * XLM))
    recipient = p.recipient(creator, asset)
    if recipient is None:
        return None
    claimants = [Claimant(recipient.address)]
    if creator in p.users and p.rng.random() < 0.3:
        claimants.append(Claimant(creator.address))
    return Intent(creator, [CreateClaimableBalance(asset, Operation.from_xdr_amount(amount), claimants)])


def claim(p: Planner) -> Intent | None:
    """The oldest balances first: a claimant free to send that can receive the asset claims."""
    for entry in p.claimable():
        for claimant in entry.claimants:
            actor = p.by_address.get(claimant)
            if (
                actor is not None
                and p.can_send(actor)
                and (entry.asset.issuer == claimant or p.authorized(actor, entry.asset))
            ):
                return Intent(actor, [ClaimClaimableBalance(_balance_id(entry))])
    return None


def clawback_claimable(p: Planner) -> Intent | None:
    for entry in p.claimable():
        if entry.clawback:
            issuer = p.issuer_of(entry.asset)
            if p.can_send(issuer):
                return Intent(issuer, [ClawbackClaimableBalance(_balance_id(entry))])
    return None


def _redeemable(p: Planner, user: Actor, asset: Asset) -> bool:
    """Holds some, not all, of the shares of a pool with `asset`, worth something of both pool
    assets (the pool keeps trading after the redemption)."""
    for share in p.view.pool_shares_of(user.address):
        pool = p.view.pool(share.pool_id)
        if (
            asset in (pool.asset_a, pool.asset_b)
            and share.balance < pool.total_shares
            and min(
                share.balance * pool.reserve_a // pool.total_shares, share.balance * pool.reserve_b // pool.total_shares
            )
        ):
            return True
    return False


def revoke(p: Planner) -> Intent | None:
    """A revocable issuer revokes a holder, preferably one with pool shares (redeemed into
    claimable balances), with set trustline flags or allow trust. The first revocation waits
    for such a holder."""
    found = _clawback_issuer(p)
    if found is None:
        return None
    issuer, asset = found
    holders = p.holdings.trusting[asset]
    pool_id = pool_of(NATIVE, asset)[0] if asset == p.assets[0] else pool_of(p.assets[1], asset)[0]
    shareholders = [user for user in p.holdings.pool_holders.get(pool_id, []) if user in holders]
    holder = p.pick(shareholders, lambda user: _redeemable(p, user, asset), senders=False)
    marks: tuple[str, ...] = ("revoke_pool",)
    if holder is None:
        if "revoke_pool" in p.unseen:
            return None  # wait for a holder of pool shares: that revocation must come first
        holder = p.pick(holders, lambda user: p.authorized(user, asset), senders=False)
        marks = ()
    if holder is None:
        return None
    if p.rng.random() < 0.5:
        op = SetTrustLineFlags(holder.address, asset, clear_flags=TrustLineFlags.AUTHORIZED_FLAG)
    else:
        op = _allow_trust(holder, asset, authorize=False)
    return Intent(issuer, [op], marks=marks)


def _allow_trust(holder: Actor, asset: Asset, *, authorize: bool) -> AllowTrust:
    """The protocol still has allow trust (pubnet ledgers carry it); the sdk deprecates it in
    favour of set trustline flags, which the sandbox uses too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return AllowTrust(holder.address, asset.code, TrustLineEntryFlag.AUTHORIZED_FLAG if authorize else False)


def reauthorize(p: Planner) -> Intent | None:
    for holder, asset in p.holdings.revoked:
        issuer = p.issuer_of(asset)
        if p.can_send(issuer):
            if p.rng.random() < 0.5:
                op = _allow_trust(holder, asset, authorize=True)
            else:
                op = SetTrustLineFlags(holder.address, asset, set_flags=TrustLineFlags.AUTHORIZED_FLAG)
            return Intent(issuer, [op])
    return None


def due(p: Planner) -> list[str]:
    """A revoked trustline is soon authorized again."""
    return ["reauthorize"] if p.holdings.revoked else []


ACTIONS = {
    "clawback": (clawback, 2, False),
    "create_claimable": (create_claimable, 4, False),
    "claim": (claim, 4, False),
    "clawback_claimable": (clawback_claimable, 1, False),
    "revoke": (revoke, 1, False),
    "reauthorize": (reauthorize, 2, False),
}
