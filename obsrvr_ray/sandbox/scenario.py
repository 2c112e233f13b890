"""Which transactions each sandbox ledger carries: a seeded, repeatable mix of real traffic.

The first ledger funds the cast from the root account: asset issuers, fee sponsors and an
initial set of users. From then on every ledger draws actions: XLM and issued-asset payments
(mints from issuers, burns back to them, transfers between holders), path payments of both
kinds, trustlines opened and closed, new accounts, fee bumps, and transactions that fail on
purpose. Until every action kind (and a text memo, an id memo and a muxed destination) has
appeared once, the kinds not seen yet are tried first, so a short run already covers them.

Each planned transaction is dry-run against a scratch write set over the committed state, so
the next choice sees its effects (balances, new accounts and trustlines, sequence numbers) and
an action counts as covered only if its transaction really succeeded (or, for the failing
kinds, really failed). An account sends, or pays a fee for, at most one transaction per ledger,
as core's transaction queue allows, and an account created in a ledger sends nothing before
the next: fees are charged before any transaction applies.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from stellar_sdk import (
    Account,
    Asset,
    ChangeTrust,
    CreateAccount,
    FeeBumpTransactionEnvelope,
    IdMemo,
    Memo,
    MuxedAccount,
    Operation,
    PathPaymentStrictReceive,
    PathPaymentStrictSend,
    Payment,
    TextMemo,
    TransactionBuilder,
    TransactionEnvelope,
)

from obsrvr_ray.ledger.hashing import transaction_hash
from obsrvr_ray.sandbox.close import BASE_FEE, MAX_TX_SET_SIZE
from obsrvr_ray.sandbox.keys import Actor, derived_actor, root_actor
from obsrvr_ray.sandbox.ops.balances import spendable_xlm
from obsrvr_ray.sandbox.state import ChangeType, EntryTxn, LedgerInfo, LedgerState
from obsrvr_ray.sandbox.transactions import SubmittedTx, apply_transaction, charge_fee

XLM = 10_000_000  # stroops
NATIVE = Asset.native()
ISSUED_CODES = ("USD", "EUR", "SANDBOXGOLD")  # two alphanum4 codes and one alphanum12
SPONSORS = 4
TX_VALIDITY = 300  # seconds a transaction stays valid after the ledger it is built for
MAX_OPS_PER_TX = 100

# Relative frequency of each action once every kind has been seen.
WEIGHTS: dict[str, int] = {
    "pay_xlm": 18,
    "pay_asset": 14,
    "mint": 10,
    "burn": 4,
    "change_trust": 5,
    "untrust": 1,
    "create_account": 4,
    "path_send": 8,
    "path_receive": 8,
    "fee_bump": 6,
    "fee_bump_failed": 2,
    "fail_no_destination": 2,
    "fail_underfunded": 2,
    "fail_no_trust": 1,
    "fail_path_send": 1,
    "fail_path_receive": 1,
}
FAILING_KINDS = frozenset(
    {
        "fee_bump_failed",
        "fail_no_destination",
        "fail_underfunded",
        "fail_no_trust",
        "fail_path_send",
        "fail_path_receive",
    }
)
MARKS = ("memo_text", "memo_id", "muxed")  # features some successful payment must show


@dataclass(slots=True)
class Intent:
    """What one transaction should do, before it is built and signed."""

    source: Actor
    operations: list[Operation]
    memo: Memo | None = None
    marks: tuple[str, ...] = ()


class Scenario:
    """Plans the transactions of each ledger; the same seed gives the same plan."""

    def __init__(self, *, seed: int, passphrase: str, txs_per_ledger: int) -> None:
        self.passphrase = passphrase
        self.txs_per_ledger = txs_per_ledger
        self.rng = random.Random(seed)
        self.seed = seed
        self.root = root_actor(passphrase)
        self.issuers = [derived_actor(seed, "issuer", i) for i in range(len(ISSUED_CODES))]
        self.assets = [Asset(code, issuer.address) for code, issuer in zip(ISSUED_CODES, self.issuers, strict=True)]
        self.sponsors = [derived_actor(seed, "sponsor", i) for i in range(SPONSORS)]
        self.users: list[Actor] = []
        self.trusting: dict[Asset, list[Actor]] = {asset: [] for asset in self.assets}  # by trustline
        self._by_address: dict[str, Actor] = {}
        self._onboarding: list[Actor] = []  # new users whose next transaction opens trustlines
        self.created_in: dict[str, int] = {}  # address -> ledger of its create_account
        self.initial_users = min(MAX_OPS_PER_TX - len(self.issuers) - SPONSORS, max(24, 2 * txs_per_ledger))
        self.max_users = max(120, 10 * txs_per_ledger)
        self.unseen = list(WEIGHTS) + list(MARKS)
        self._ghosts = 0
        self._actions: dict[str, Callable[[], Intent | None]] = {
            "pay_xlm": self._pay_xlm,
            "pay_asset": self._pay_asset,
            "mint": self._mint,
            "burn": self._burn,
            "change_trust": self._change_trust,
            "untrust": self._untrust,
            "create_account": self._create_account,
            "path_send": self._path_send,
            "path_receive": self._path_receive,
            "fail_no_destination": self._fail_no_destination,
            "fail_underfunded": self._fail_underfunded,
            "fail_no_trust": self._fail_no_trust,
            "fail_path_send": self._fail_path_send,
            "fail_path_receive": self._fail_path_receive,
        }
        # Planning state of the ledger being planned.
        self._view: EntryTxn
        self._ledger: LedgerInfo
        self._busy: set[str] = set()

    # --- planning ------------------------------------------------------------------------

    def plan(self, state: LedgerState, ledger: LedgerInfo) -> list[SubmittedTx]:
        """The transactions of the next ledger, in apply order."""
        self._view = EntryTxn(state, ledger.sequence)
        self._ledger = ledger
        self._busy = set()
        if self._view.account(self.issuers[0].address) is None:
            intent = self._bootstrap()
            tx = self._submit(self._envelope(intent), intent.source)
            self._dry_run(tx)
            return [tx]
        txs: list[SubmittedTx] = []
        operations = 0
        for _ in range(4 * self.txs_per_ledger):
            if len(txs) >= self.txs_per_ledger:
                break
            kind = self._next_kind()
            built = self._build(kind)
            if built is None:
                continue
            tx, marks = built
            if operations + tx.operation_count + 1 > MAX_TX_SET_SIZE:
                break
            operations += tx.operation_count + 1
            txs.append(tx)
            if self._dry_run(tx) == (kind not in FAILING_KINDS):
                self.unseen = [item for item in self.unseen if item != kind and item not in marks]
        return txs

    def _next_kind(self) -> str:
        if self._growing() and self.rng.random() < 0.3:
            return "create_account"
        if self._onboarding and self.rng.random() < 0.4:
            return "change_trust"
        pending = [kind for kind in self.unseen if kind in WEIGHTS]
        if pending and self.rng.random() < 0.7:
            return self.rng.choice(pending)
        return self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]

    def _build(self, kind: str) -> tuple[SubmittedTx, tuple[str, ...]] | None:
        if kind in ("fee_bump", "fee_bump_failed"):
            return self._fee_bump(failing=kind == "fee_bump_failed")
        intent = self._actions[kind]()
        if intent is None:
            return None
        return self._submit(self._envelope(intent), intent.source), intent.marks

    def _dry_run(self, tx: SubmittedTx) -> bool:
        """Apply `tx` to the planning view; True if it succeeded."""
        scratch = self._view.child()
        fee = charge_fee(scratch, tx, self._ledger)
        applied = apply_transaction(scratch, tx, fee, self._ledger)
        scratch.commit()
        self._busy.update((tx.source, tx.fee_source))
        for change in (change for changes in applied.op_changes for change in changes):
            if change.key[0] == "trustline" and change.type in (ChangeType.CREATED, ChangeType.REMOVED):
                code, issuer = change.key[2].split(":")
                holders = self.trusting[Asset(code, issuer)]
                user = self._by_address[change.key[1]]
                if change.type is ChangeType.CREATED:
                    holders.append(user)
                else:
                    holders.remove(user)
        return applied.success

    def _submit(self, envelope: TransactionEnvelope | FeeBumpTransactionEnvelope, signer: Actor) -> SubmittedTx:
        """Sign a built envelope, hashing it once (the sdk's sign() would hash it again)."""
        xdr_envelope = envelope.to_xdr_object()
        tx_hash = transaction_hash(xdr_envelope, self.passphrase)
        signed = xdr_envelope.fee_bump if xdr_envelope.fee_bump else xdr_envelope.v1
        signed.signatures.append(signer.keypair.sign_decorated(tx_hash).to_xdr_object())
        return SubmittedTx.from_envelope(xdr_envelope, self.passphrase, tx_hash=tx_hash)

    def _envelope(self, intent: Intent) -> TransactionEnvelope:
        """The unsigned envelope of `intent`, with the source's next sequence number."""
        account = self._view.account(intent.source.address)
        builder = TransactionBuilder(
            Account(intent.source.address, account.seq_num), self.passphrase, base_fee=self._fee_bid()
        )
        builder.add_time_bounds(0, self._ledger.close_time + TX_VALIDITY)
        if intent.memo is not None:
            builder.add_memo(intent.memo)
        for op in intent.operations:
            builder.append_operation(op)
        return builder.build()

    def _fee_bid(self) -> int:
        """Most transactions bid the base fee; some bid more (and are still charged the base)."""
        return BASE_FEE if self.rng.random() < 0.8 else self.rng.choice((200, 500, 1000, 10_000))

    def _fee_bump(self, *, failing: bool) -> tuple[SubmittedTx, tuple[str, ...]] | None:
        """A sponsor pays the fee of another account's transaction."""
        sponsor = self._pick(self.sponsors, lambda _: True)
        if sponsor is None:
            return None
        if failing:
            make = self.rng.choice((self._fail_no_destination, self._fail_underfunded, self._fail_no_trust))
        else:
            make = self.rng.choice((self._pay_xlm, self._pay_asset, self._path_send))
        intent = make()
        if intent is None:
            return None
        inner = self._envelope(intent)
        inner.sign(intent.source.keypair)
        # The sdk wants the bump's per-operation bid at least the inner one.
        inner_bid = inner.transaction.fee // len(inner.transaction.operations)
        bid = max(inner_bid, self.rng.choice((200, 1000, 100_000)))
        bump = TransactionBuilder.build_fee_bump_transaction(sponsor.address, bid, inner, self.passphrase)
        return self._submit(bump, sponsor), intent.marks

    # --- who can act ---------------------------------------------------------------------

    def _can_send(self, actor: Actor) -> bool:
        address = actor.address
        return (
            address not in self._busy
            and self.created_in.get(address, 0) < self._ledger.sequence
            and self._view.account(address) is not None
        )

    def _pick(self, pool: list[Actor], accept: Callable[[Actor], bool], *, senders: bool = True) -> Actor | None:
        """A random member of `pool` that is accepted (and free to send, for senders)."""
        if not pool:
            return None
        for _ in range(24):
            actor = pool[self.rng.randrange(len(pool))]
            if (not senders or self._can_send(actor)) and accept(actor):
                return actor
        return None

    def _spendable(self, actor: Actor) -> int:
        return spendable_xlm(self._view.account(actor.address), self._ledger.base_reserve)

    def _balance(self, actor: Actor, asset: Asset) -> int | None:
        """Balance of an issued asset, None without a trustline."""
        line = self._view.trustline(actor.address, asset)
        return None if line is None else line.balance

    def _exists(self, actor: Actor) -> bool:
        return self._view.account(actor.address) is not None

    def _recipient(self, sender: Actor, asset: Asset) -> Actor | None:
        """Another existing user who can receive `asset`."""
        pool = self.users if asset.is_native() else self.trusting[asset]
        return self._pick(pool, lambda user: user is not sender and self._exists(user), senders=False)

    def _holder(self, asset: Asset, minimum: int = 1) -> Actor | None:
        """A user free to send who holds at least `minimum` of `asset` (spendable, for XLM)."""
        if asset.is_native():
            return self._pick(self.users, lambda user: self._spendable(user) >= max(minimum, 2 * XLM))
        return self._pick(self.trusting[asset], lambda user: (self._balance(user, asset) or 0) >= minimum)

    def _amount(self, limit: int) -> int:
        return (
            self.rng.randint(1, max(1, limit))
            if self.rng.random() < 0.3
            else self.rng.randint(1, max(1, limit // XLM)) * XLM
        )

    # --- memos and destinations ----------------------------------------------------------

    def _tagging(self, destination: Actor) -> tuple[str | MuxedAccount, Memo | None, tuple[str, ...]]:
        """The destination (sometimes muxed) and memo of a payment, with the marks they show."""
        roll = self.rng.random()
        wanted = [mark for mark in MARKS if mark in self.unseen]
        choice = wanted[0] if wanted else None
        if choice == "muxed" or (choice is None and roll < 0.1):
            muxed = MuxedAccount(destination.address, self.rng.randrange(1, 2**40))
            return muxed, None, ("muxed",)
        if choice == "memo_text" or (choice is None and roll < 0.3):
            return destination.address, TextMemo(f"invoice {self.rng.randrange(10**6)}"), ("memo_text",)
        if choice == "memo_id" or (choice is None and roll < 0.45):
            return destination.address, IdMemo(self.rng.randrange(2**64)), ("memo_id",)
        return destination.address, None, ()

    def _ghost(self) -> str:
        """An address that never gets funded: paying it fails with NO_DESTINATION."""
        self._ghosts += 1
        return derived_actor(self.seed, "ghost", self._ghosts).address

    # --- actions -------------------------------------------------------------------------

    def _bootstrap(self) -> Intent:
        ops: list[Operation] = []
        for issuer in self.issuers:
            ops.append(CreateAccount(issuer.address, Operation.from_xdr_amount(1_000 * XLM)))
        for sponsor in self.sponsors:
            ops.append(CreateAccount(sponsor.address, Operation.from_xdr_amount(100_000 * XLM)))
        for _ in range(self.initial_users):
            user = self._new_user()
            ops.append(CreateAccount(user.address, Operation.from_xdr_amount(self.rng.randint(2_000, 20_000) * XLM)))
        for actor in [*self.issuers, *self.sponsors]:
            self.created_in[actor.address] = self._ledger.sequence
        return Intent(self.root, ops)

    def _new_user(self) -> Actor:
        user = derived_actor(self.seed, "user", len(self.users))
        self.users.append(user)
        self._by_address[user.address] = user
        if self.rng.random() < 0.8:  # the others stay XLM-only
            self._onboarding.append(user)
        self.created_in[user.address] = self._ledger.sequence
        return user

    def _growing(self) -> bool:
        """Too few users to fill a ledger (one transaction per account): create more."""
        return len(self.users) < min(2 * self.txs_per_ledger, self.max_users)

    def _create_account(self) -> Intent | None:
        room = self.max_users - len(self.users)
        if room <= 0:
            return None
        if self._can_send(self.root) and self.rng.random() < 0.5:
            count = min(room, self.rng.randint(1, 50 if self._growing() else 3))
            balances = [self.rng.randint(500, 5_000) * XLM for _ in range(count)]
            return Intent(self.root, [self._create(balance) for balance in balances])
        funder = self._holder(NATIVE, 1_000 * XLM)
        if funder is None:
            return None
        count = min(room, self.rng.randint(1, 10) if self._growing() else 1)
        return Intent(funder, [self._create(self.rng.randint(10, 50) * XLM) for _ in range(count)])

    def _create(self, starting_balance: int) -> CreateAccount:
        return CreateAccount(self._new_user().address, Operation.from_xdr_amount(starting_balance))

    def _change_trust(self) -> Intent | None:
        def missing(user: Actor) -> list[Asset]:
            return [asset for asset in self.assets if self._balance(user, asset) is None]

        def able(user: Actor) -> bool:
            return bool(missing(user)) and self._spendable(user) >= 5 * XLM

        user = self._pick(self._onboarding, able) or self._pick(self.users, able)
        if user is None:
            return None
        if user in self._onboarding:
            self._onboarding.remove(user)
        wanted = missing(user)
        assets = wanted if self.rng.random() < 0.6 else [self.rng.choice(wanted)]
        return Intent(user, [ChangeTrust(asset) for asset in assets])

    def _untrust(self) -> Intent | None:
        asset = self.rng.choice(self.assets)
        user = self._pick(self.trusting[asset], lambda user: self._balance(user, asset) == 0)
        if user is None:
            return None
        return Intent(user, [ChangeTrust(asset, limit="0")])

    def _pay_xlm(self) -> Intent | None:
        poor = self._pick(
            self.users, lambda user: self._exists(user) and self._spendable(user) < 50 * XLM, senders=False
        )
        if poor is not None and self._can_send(self.root):
            return Intent(self.root, [Payment(poor.address, NATIVE, Operation.from_xdr_amount(1_000 * XLM))])
        sender = self._holder(NATIVE, 2 * XLM)
        recipient = sender and self._recipient(sender, NATIVE)
        if recipient is None:
            return None
        amount = self._amount(min(self._spendable(sender) // 3, 1_000 * XLM))
        destination, memo, marks = self._tagging(recipient)
        return Intent(sender, [Payment(destination, NATIVE, Operation.from_xdr_amount(amount))], memo, marks)

    def _mint(self) -> Intent | None:
        index = self.rng.randrange(len(self.assets))
        issuer, asset = self.issuers[index], self.assets[index]
        if not self._can_send(issuer):
            return None
        holder = self._pick(self.trusting[asset], lambda _: True, senders=False)
        if holder is None:
            return None
        destination, memo, marks = self._tagging(holder)
        amount = self._amount(10_000 * XLM)
        return Intent(issuer, [Payment(destination, asset, Operation.from_xdr_amount(amount))], memo, marks)

    def _pay_asset(self) -> Intent | None:
        asset = self.rng.choice(self.assets)
        sender = self._holder(asset)
        recipient = sender and self._recipient(sender, asset)
        if recipient is None:
            return None
        amount = self._amount(self._balance(sender, asset) // 2)
        destination, memo, marks = self._tagging(recipient)
        return Intent(sender, [Payment(destination, asset, Operation.from_xdr_amount(amount))], memo, marks)

    def _burn(self) -> Intent | None:
        index = self.rng.randrange(len(self.assets))
        asset = self.assets[index]
        sender = self._holder(asset)
        if sender is None:
            return None
        amount = self._amount(self._balance(sender, asset) // 4)
        return Intent(sender, [Payment(asset.issuer, asset, Operation.from_xdr_amount(amount))])

    def _path_parties(self) -> tuple[Asset, Actor, Actor, int] | None:
        asset = self.rng.choice([NATIVE, *self.assets])
        sender = self._holder(asset)
        recipient = sender and self._recipient(sender, asset)
        if recipient is None:
            return None
        available = self._spendable(sender) // 3 if asset.is_native() else self._balance(sender, asset) // 2
        return asset, sender, recipient, self._amount(min(available, 1_000 * XLM))

    def _path_send(self) -> Intent | None:
        parties = self._path_parties()
        if parties is None:
            return None
        asset, sender, recipient, amount = parties
        destination, memo, marks = self._tagging(recipient)
        send = Operation.from_xdr_amount(amount)
        return Intent(sender, [PathPaymentStrictSend(destination, asset, send, asset, send, [])], memo, marks)

    def _path_receive(self) -> Intent | None:
        parties = self._path_parties()
        if parties is None:
            return None
        asset, sender, recipient, amount = parties
        destination, memo, marks = self._tagging(recipient)
        receive = Operation.from_xdr_amount(amount)
        send_max = Operation.from_xdr_amount(amount + self.rng.randrange(0, amount // 100 + 1))
        return Intent(sender, [PathPaymentStrictReceive(destination, asset, send_max, asset, receive, [])], memo, marks)

    def _fail_no_destination(self) -> Intent | None:
        """XLM to an account that does not exist: PAYMENT_NO_DESTINATION."""
        sender = self._holder(NATIVE)
        if sender is None:
            return None
        amount = Operation.from_xdr_amount(self.rng.randint(1, 100) * XLM)
        return Intent(sender, [Payment(self._ghost(), NATIVE, amount)])

    def _fail_underfunded(self) -> Intent | None:
        """More of an asset than the sender holds: PAYMENT_UNDERFUNDED."""
        asset = self.rng.choice(self.assets)
        sender = self._holder(asset)
        recipient = sender and self._recipient(sender, asset)
        if recipient is None:
            return None
        amount = self._balance(sender, asset) + self.rng.randint(1, 1_000) * XLM
        return Intent(sender, [Payment(recipient.address, asset, Operation.from_xdr_amount(amount))])

    def _fail_no_trust(self) -> Intent | None:
        """An asset to an account without a trustline for it: PAYMENT_NO_TRUST."""
        asset = self.rng.choice(self.assets)
        sender = self._holder(asset)
        if sender is None:
            return None
        outsider = self._pick(
            self.users, lambda user: self._exists(user) and self._balance(user, asset) is None, senders=False
        )
        if outsider is None:
            return None
        amount = Operation.from_xdr_amount(self._amount(self._balance(sender, asset)))
        return Intent(sender, [Payment(outsider.address, asset, amount)])

    def _fail_path_send(self) -> Intent | None:
        """A 1:1 strict send asking for more than it sends: UNDER_DESTMIN."""
        parties = self._path_parties()
        if parties is None:
            return None
        asset, sender, recipient, amount = parties
        send, dest_min = Operation.from_xdr_amount(amount), Operation.from_xdr_amount(amount + 1)
        return Intent(sender, [PathPaymentStrictSend(recipient.address, asset, send, asset, dest_min, [])])

    def _fail_path_receive(self) -> Intent | None:
        """A 1:1 strict receive allowing less than it delivers: OVER_SENDMAX."""
        parties = self._path_parties()
        if parties is None:
            return None
        asset, sender, recipient, amount = parties
        amount = max(amount, 2)  # keeps the send maximum positive
        send_max, receive = Operation.from_xdr_amount(amount - 1), Operation.from_xdr_amount(amount)
        return Intent(sender, [PathPaymentStrictReceive(recipient.address, asset, send_max, asset, receive, [])])
