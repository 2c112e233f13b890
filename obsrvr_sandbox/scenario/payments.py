"""Actions that move value directly: the bootstrap, new accounts and merges, trustlines opened
and closed, XLM and issued-asset payments (mints from issuers, burns back to them), path
payments that convert nothing, classic fee bumps, and the transactions that fail on purpose."""

from __future__ import annotations

from stellar_sdk import (
    AccountMerge,
    AuthorizationFlag,
    ChangeTrust,
    CreateAccount,
    Operation,
    PathPaymentStrictReceive,
    PathPaymentStrictSend,
    Payment,
    SetOptions,
)

from obsrvr_sandbox.keys import Actor
from obsrvr_sandbox.scenario.planner import CLAWBACK_ISSUERS, NATIVE, XLM, Intent, Planner

_CLAWBACK_FLAGS = AuthorizationFlag.AUTHORIZATION_REVOCABLE | AuthorizationFlag.AUTHORIZATION_CLAWBACK_ENABLED


def bootstrap(p: Planner) -> Intent:
    """The root funds the cast; the clawback issuers set their flags before anyone trusts them."""
    ops: list[Operation] = []
    for issuer in p.issuers:
        ops.append(CreateAccount(issuer.address, Operation.from_xdr_amount(1_000 * XLM)))
    for sponsor in p.sponsors:
        ops.append(CreateAccount(sponsor.address, Operation.from_xdr_amount(100_000 * XLM)))
    for _ in range(p.initial_users):
        user = p.new_user()
        ops.append(CreateAccount(user.address, Operation.from_xdr_amount(p.rng.randint(2_000, 20_000) * XLM)))
    cosigners = tuple(p.issuers[index] for index in CLAWBACK_ISSUERS)
    for issuer in cosigners:
        ops.append(SetOptions(set_flags=_CLAWBACK_FLAGS, source=issuer.address))
    for actor in [*p.issuers, *p.sponsors]:
        p.created_in[actor.address] = p.ledger.sequence
    return Intent(p.root, ops, cosigners=cosigners)


def create_account(p: Planner) -> Intent | None:
    room = p.max_users - len(p.users)
    if room <= 0:
        return None
    if p.can_send(p.root) and p.rng.random() < 0.5:
        count = min(room, p.rng.randint(1, 50 if p.growing() else 3))
        balances = [p.rng.randint(500, 5_000) * XLM for _ in range(count)]
        return Intent(p.root, [_create(p, balance) for balance in balances])
    funder = p.holder(NATIVE, 1_000 * XLM)
    if funder is None:
        return None
    count = min(room, p.rng.randint(1, 10) if p.growing() else 1)
    return Intent(funder, [_create(p, p.rng.randint(10, 50) * XLM) for _ in range(count)])


def _create(p: Planner, starting_balance: int) -> CreateAccount:
    return CreateAccount(p.new_user().address, Operation.from_xdr_amount(starting_balance))


def merge(p: Planner) -> Intent | None:
    """An XLM-only user with nothing else on its account merges into another user."""

    def bare(user: Actor) -> bool:
        account = p.view.account(user.address)
        return user.address in p.xlm_only and not account.num_sub_entries and not account.num_sponsoring

    leaver = p.pick(p.users, bare)
    heir = leaver and p.recipient(leaver, NATIVE)
    if heir is None:
        return None
    destination, memo, marks = p.tagging(heir)
    return Intent(leaver, [AccountMerge(destination)], memo, marks)


def change_trust(p: Planner) -> Intent | None:
    def missing(user: Actor) -> list:
        return [asset for asset in p.assets if p.balance(user, asset) is None]

    def able(user: Actor) -> bool:
        return user.address not in p.xlm_only and bool(missing(user)) and p.spendable(user) >= 5 * XLM

    user = p.pick(p.onboarding, able) or p.pick(p.users, able)
    if user is None:
        return None
    if user in p.onboarding:
        p.onboarding.remove(user)
    wanted = missing(user)
    assets = wanted if p.rng.random() < 0.6 else [p.rng.choice(wanted)]
    return Intent(user, [ChangeTrust(asset) for asset in assets])


def untrust(p: Planner) -> Intent | None:
    asset = p.rng.choice(p.assets)

    def idle(user: Actor) -> bool:
        line = p.view.trustline(user.address, asset)
        return not (line.balance or line.buying_liabilities or line.pool_use_count)

    user = p.pick(p.holdings.trusting[asset], idle)
    if user is None:
        return None
    return Intent(user, [ChangeTrust(asset, limit="0")])


def pay_xlm(p: Planner) -> Intent | None:
    poor = p.pick(p.users, lambda user: p.exists(user) and p.spendable(user) < 50 * XLM, senders=False)
    if poor is not None and p.can_send(p.root):
        return Intent(p.root, [Payment(poor.address, NATIVE, Operation.from_xdr_amount(1_000 * XLM))])
    sender = p.holder(NATIVE, 2 * XLM)
    recipient = sender and p.recipient(sender, NATIVE)
    if recipient is None:
        return None
    amount = p.amount(min(p.spendable(sender) // 3, 1_000 * XLM))
    destination, memo, marks = p.tagging(recipient)
    return Intent(sender, [Payment(destination, NATIVE, Operation.from_xdr_amount(amount))], memo, marks)


def mint(p: Planner) -> Intent | None:
    """An issuer pays one holder, or airdrops to up to five that hold none yet."""
    index = p.rng.randrange(len(p.assets))
    issuer, asset = p.issuers[index], p.assets[index]
    if not p.can_send(issuer):
        return None
    empty = [user for user in p.holdings.trusting[asset] if p.balance(user, asset) == 0 and p.authorized(user, asset)]
    if len(empty) > 1 and p.rng.random() < 0.5:
        payments = [
            Payment(user.address, asset, Operation.from_xdr_amount(p.amount(10_000 * XLM))) for user in empty[:5]
        ]
        return Intent(issuer, payments)
    holder = p.pick(p.holdings.trusting[asset], lambda user: p.authorized(user, asset), senders=False)
    if holder is None:
        return None
    destination, memo, marks = p.tagging(holder)
    amount = p.amount(10_000 * XLM)
    return Intent(issuer, [Payment(destination, asset, Operation.from_xdr_amount(amount))], memo, marks)


def pay_asset(p: Planner) -> Intent | None:
    asset = p.rng.choice(p.assets)
    sender = p.holder(asset)
    recipient = sender and p.recipient(sender, asset)
    if recipient is None:
        return None
    amount = p.amount(p.can_use(sender, asset) // 2)
    destination, memo, marks = p.tagging(recipient)
    return Intent(sender, [Payment(destination, asset, Operation.from_xdr_amount(amount))], memo, marks)


def burn(p: Planner) -> Intent | None:
    asset = p.rng.choice(p.assets)
    sender = p.holder(asset)
    if sender is None:
        return None
    amount = p.amount(p.can_use(sender, asset) // 4)
    return Intent(sender, [Payment(asset.issuer, asset, Operation.from_xdr_amount(amount))])


def _path_parties(p: Planner) -> tuple | None:
    asset = p.rng.choice([NATIVE, *p.assets])
    sender = p.holder(asset)
    recipient = sender and p.recipient(sender, asset)
    if recipient is None:
        return None
    available = p.spendable(sender) // 3 if asset.is_native() else p.can_use(sender, asset) // 2
    return asset, sender, recipient, p.amount(min(available, 1_000 * XLM))


def path_send(p: Planner) -> Intent | None:
    parties = _path_parties(p)
    if parties is None:
        return None
    asset, sender, recipient, amount = parties
    destination, memo, marks = p.tagging(recipient)
    send = Operation.from_xdr_amount(amount)
    return Intent(sender, [PathPaymentStrictSend(destination, asset, send, asset, send, [])], memo, marks)


def path_receive(p: Planner) -> Intent | None:
    parties = _path_parties(p)
    if parties is None:
        return None
    asset, sender, recipient, amount = parties
    destination, memo, marks = p.tagging(recipient)
    receive = Operation.from_xdr_amount(amount)
    send_max = Operation.from_xdr_amount(amount + p.rng.randrange(0, amount // 100 + 1))
    return Intent(sender, [PathPaymentStrictReceive(destination, asset, send_max, asset, receive, [])], memo, marks)


def fee_bump(p: Planner) -> Intent | None:
    """A sponsor pays the fee of another account's payment."""
    return _bumped(p, p.rng.choice((pay_xlm, pay_asset, path_send)))


def fee_bump_failed(p: Planner) -> Intent | None:
    return _bumped(p, p.rng.choice((fail_no_destination, fail_underfunded, fail_no_trust)))


def _bumped(p: Planner, make) -> Intent | None:
    sponsor = p.pick(p.sponsors, lambda _: True)
    intent = sponsor and make(p)
    if intent is None:
        return None
    intent.fee_sponsor = sponsor
    intent.bump_bid = p.rng.choice((200, 1000, 100_000))
    return intent


def fail_no_destination(p: Planner) -> Intent | None:
    """XLM to an account that does not exist: PAYMENT_NO_DESTINATION."""
    sender = p.holder(NATIVE)
    if sender is None:
        return None
    amount = Operation.from_xdr_amount(p.rng.randint(1, 100) * XLM)
    return Intent(sender, [Payment(p.ghost(), NATIVE, amount)])


def fail_underfunded(p: Planner) -> Intent | None:
    """More of an asset than the sender holds: PAYMENT_UNDERFUNDED."""
    asset = p.rng.choice(p.assets)
    sender = p.holder(asset)
    recipient = sender and p.recipient(sender, asset)
    if recipient is None:
        return None
    amount = p.balance(sender, asset) + p.rng.randint(1, 1_000) * XLM
    return Intent(sender, [Payment(recipient.address, asset, Operation.from_xdr_amount(amount))])


def fail_no_trust(p: Planner) -> Intent | None:
    """An asset to an account without a trustline for it: PAYMENT_NO_TRUST."""
    asset = p.rng.choice(p.assets)
    sender = p.holder(asset)
    if sender is None:
        return None
    outsider = p.pick(p.users, lambda user: p.exists(user) and p.balance(user, asset) is None, senders=False)
    if outsider is None:
        return None
    amount = Operation.from_xdr_amount(p.amount(p.can_use(sender, asset)))
    return Intent(sender, [Payment(outsider.address, asset, amount)])


def fail_path_send(p: Planner) -> Intent | None:
    """A 1:1 strict send asking for more than it sends: UNDER_DESTMIN."""
    parties = _path_parties(p)
    if parties is None:
        return None
    asset, sender, recipient, amount = parties
    send, dest_min = Operation.from_xdr_amount(amount), Operation.from_xdr_amount(amount + 1)
    return Intent(sender, [PathPaymentStrictSend(recipient.address, asset, send, asset, dest_min, [])])


def fail_path_receive(p: Planner) -> Intent | None:
    """A 1:1 strict receive allowing less than it delivers: OVER_SENDMAX."""
    parties = _path_parties(p)
    if parties is None:
        return None
    asset, sender, recipient, amount = parties
    amount = max(amount, 2)  # keeps the send maximum positive
    send_max, receive = Operation.from_xdr_amount(amount - 1), Operation.from_xdr_amount(amount)
    return Intent(sender, [PathPaymentStrictReceive(recipient.address, asset, send_max, asset, receive, [])])


def due(p: Planner) -> list[str]:
    """Accounts first (while too few to fill a ledger), then trustlines for the new ones."""
    return (["create_account"] if p.growing() else []) + (["change_trust"] if p.onboarding else [])


# kind -> (action, weight once every kind has been seen, fails on purpose)
ACTIONS = {
    "pay_xlm": (pay_xlm, 18, False),
    "pay_asset": (pay_asset, 14, False),
    "mint": (mint, 10, False),
    "burn": (burn, 4, False),
    "change_trust": (change_trust, 5, False),
    "untrust": (untrust, 1, False),
    "create_account": (create_account, 4, False),
    "merge": (merge, 1, False),
    "path_send": (path_send, 4, False),
    "path_receive": (path_receive, 4, False),
    "fee_bump": (fee_bump, 6, False),
    "fee_bump_failed": (fee_bump_failed, 2, True),
    "fail_no_destination": (fail_no_destination, 2, True),
    "fail_underfunded": (fail_underfunded, 2, True),
    "fail_no_trust": (fail_no_trust, 1, True),
    "fail_path_send": (fail_path_send, 1, True),
    "fail_path_receive": (fail_path_receive, 1, True),
}
