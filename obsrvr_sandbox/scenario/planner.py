"""The planner's world: the cast of accounts, a view of the ledger being planned, the questions
every action asks of it (who can send, who holds what), and how an intent becomes a signed
transaction.

The view is a write set over the committed state: each planned transaction is dry-run into it,
so the next choice sees its effects. `observe` keeps the few lists the actions draw from (who
trusts an asset, who holds pool shares or offers, which claimable balances exist, which
trustlines are revoked) in step with what really happened.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stellar_sdk import (
    Account,
    Asset,
    FeeBumpTransactionEnvelope,
    IdMemo,
    Memo,
    MuxedAccount,
    Operation,
    TextMemo,
    TransactionBuilder,
    TransactionEnvelope,
)
from stellar_sdk import xdr as X

from obsrvr_ray.ledger.hashing import transaction_hash
from obsrvr_sandbox.addresses import contract_address
from obsrvr_sandbox.close import BASE_FEE
from obsrvr_sandbox.entries import (
    AUTHORIZED_FLAG,
    ClaimableBalanceEntry,
    OfferEntry,
    PoolShareEntry,
    TrustlineEntry,
)
from obsrvr_sandbox.events import sac_contract_hash_of
from obsrvr_sandbox.keys import Actor, derived_actor, root_actor
from obsrvr_sandbox.ops.balances import available, spendable_xlm
from obsrvr_sandbox.state import ChangeType, EntryTxn, LedgerInfo, LedgerState
from obsrvr_sandbox.transactions import AppliedTx, SubmittedTx

XLM = 10_000_000  # stroops
NATIVE = Asset.native()
ISSUED_CODES = ("USD", "EUR", "SANDBOXGOLD")  # two alphanum4 codes and one alphanum12
CLAWBACK_ISSUERS = (0, 2)  # USD and SANDBOXGOLD are revocable and clawback-enabled; EUR is neither
XLM_VALUE = (5, 6, 40)  # what one unit of each issued asset is worth in XLM, for prices
SPONSORS = 4
TX_VALIDITY = 300  # seconds a transaction stays valid after the ledger it is built for
MAX_OPS_PER_TX = 100
MARKS = ("memo_text", "memo_id", "muxed")  # features some successful payment must show


@dataclass(slots=True)
class Intent:
    """What one transaction should do, before it is built and signed."""

    source: Actor
    operations: list[Operation]
    memo: Memo | None = None
    marks: tuple[str, ...] = ()
    soroban: X.SorobanTransactionData | None = None
    cosigners: tuple[Actor, ...] = ()  # sources of operations other than the transaction source
    fee_sponsor: Actor | None = None  # wraps the transaction in a fee bump paid by this account
    bump_bid: int = 0  # the fee bump's per-operation bid (raised to the inner one if lower)


@dataclass(slots=True)
class Holdings:
    """Lists the actions draw from, kept in step with the dry runs."""

    trusting: dict[Asset, list[Actor]]  # by trustline
    pool_holders: dict[bytes, list[Actor]] = field(default_factory=dict)  # by pool-share trustline
    offer_owners: list[Actor] = field(default_factory=list)
    claimable: dict[bytes, None] = field(default_factory=dict)  # claimable balance ids, oldest first
    revoked: list[tuple[Actor, Asset]] = field(default_factory=list)


class Planner:
    """The cast and the planning view; the same seed gives the same choices."""

    def __init__(self, *, seed: int, passphrase: str, txs_per_ledger: int) -> None:
        self.passphrase = passphrase
        self.seed = seed
        self.rng = random.Random(seed)
        self.txs_per_ledger = txs_per_ledger
        self.root = root_actor(passphrase)
        self.issuers = [derived_actor(seed, "issuer", i) for i in range(len(ISSUED_CODES))]
        self.assets = [Asset(code, issuer.address) for code, issuer in zip(ISSUED_CODES, self.issuers, strict=True)]
        self.sponsors = [derived_actor(seed, "sponsor", i) for i in range(SPONSORS)]
        # a contract (C) address that receives SAC transfers; no code runs there
        self.vault = contract_address(hashlib.sha256(f"obsrvr-ray sandbox/{seed}/vault".encode()).digest())
        self.users: list[Actor] = []
        self.by_address: dict[str, Actor] = {}
        self.onboarding: list[Actor] = []  # new users whose next transaction opens trustlines
        self.xlm_only: set[str] = set()  # users that never trust an asset (they may merge away)
        self.created_in: dict[str, int] = {}  # address -> ledger of its create_account
        self.holdings = Holdings({asset: [] for asset in self.assets})
        self.initial_users = min(
            MAX_OPS_PER_TX - len(self.issuers) - SPONSORS - len(CLAWBACK_ISSUERS), max(24, 2 * txs_per_ledger)
        )
        self.max_users = max(120, 10 * txs_per_ledger)
        self.unseen: list[str] = []  # action kinds and marks not covered yet (the scenario's list)
        self._users_made = 0
        self._ghosts = 0
        self.view: EntryTxn
        self.ledger: LedgerInfo
        self.busy: set[str] = set()

    def begin(self, state: LedgerState, ledger: LedgerInfo) -> None:
        self.view = EntryTxn(state, ledger.sequence)
        self.ledger = ledger
        self.busy = set()

    # --- the cast ------------------------------------------------------------------------

    def new_user(self) -> Actor:
        user = derived_actor(self.seed, "user", self._users_made)
        self._users_made += 1
        self.users.append(user)
        self.by_address[user.address] = user
        if self.rng.random() < 0.8:
            self.onboarding.append(user)
        else:
            self.xlm_only.add(user.address)
        self.created_in[user.address] = self.ledger.sequence
        return user

    def growing(self) -> bool:
        """Too few users to fill a ledger (one transaction per account): create more."""
        return len(self.users) < min(2 * self.txs_per_ledger, self.max_users)

    def ghost(self) -> str:
        """An address that never gets funded: paying it fails with NO_DESTINATION."""
        self._ghosts += 1
        return derived_actor(self.seed, "ghost", self._ghosts).address

    def issuer_of(self, asset: Asset) -> Actor:
        return self.issuers[self.assets.index(asset)]

    def sac(self, asset: Asset) -> bytes:
        return sac_contract_hash_of(asset, self.ledger.network_id)

    # --- who can act ---------------------------------------------------------------------

    def can_send(self, actor: Actor) -> bool:
        address = actor.address
        return (
            address not in self.busy
            and self.created_in.get(address, 0) < self.ledger.sequence
            and self.view.account(address) is not None
        )

    def pick(self, pool: list[Actor], accept: Callable[[Actor], bool], *, senders: bool = True) -> Actor | None:
        """A random member of `pool` that is accepted (and free to send, for senders)."""
        if not pool:
            return None
        for _ in range(24):
            actor = pool[self.rng.randrange(len(pool))]
            if (not senders or self.can_send(actor)) and accept(actor):
                return actor
        return None

    def spendable(self, actor: Actor) -> int:
        return spendable_xlm(self.view.account(actor.address), self.ledger.base_reserve)

    def balance(self, actor: Actor, asset: Asset) -> int | None:
        """Balance of an issued asset, None without a trustline."""
        line = self.view.trustline(actor.address, asset)
        return None if line is None else line.balance

    def can_use(self, actor: Actor, asset: Asset) -> int:
        """What `actor` can send of `asset` now: 0 without an authorized trustline."""
        if not asset.is_native():
            line = self.view.trustline(actor.address, asset)
            if line is None or not line.flags & AUTHORIZED_FLAG:
                return 0
        return available(self.view, actor.address, asset, self.ledger.base_reserve) or 0

    def authorized(self, actor: Actor, asset: Asset) -> bool:
        """Can receive `asset` (XLM: the account exists)."""
        if asset.is_native():
            return self.exists(actor)
        line = self.view.trustline(actor.address, asset)
        return line is not None and bool(line.flags & AUTHORIZED_FLAG)

    def exists(self, actor: Actor) -> bool:
        return self.view.account(actor.address) is not None

    def recipient(self, sender: Actor, asset: Asset) -> Actor | None:
        """Another existing user who can receive `asset`."""
        pool = self.users if asset.is_native() else self.holdings.trusting[asset]
        return self.pick(pool, lambda user: user is not sender and self.authorized(user, asset), senders=False)

    def holder(self, asset: Asset, minimum: int = 1) -> Actor | None:
        """A user free to send who can spend at least `minimum` of `asset` (2 XLM, for XLM)."""
        if asset.is_native():
            return self.pick(self.users, lambda user: self.spendable(user) >= max(minimum, 2 * XLM))
        return self.pick(self.holdings.trusting[asset], lambda user: self.can_use(user, asset) >= minimum)

    def amount(self, limit: int) -> int:
        """Up to `limit` stroops (at least 1): mostly whole XLM units, sometimes any amount."""
        if limit < XLM or self.rng.random() < 0.3:
            return self.rng.randint(1, max(1, limit))
        return self.rng.randint(1, limit // XLM) * XLM

    def tagging(self, destination: Actor) -> tuple[str | MuxedAccount, Memo | None, tuple[str, ...]]:
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

    # --- building ------------------------------------------------------------------------

    def fee_bid(self) -> int:
        """Most transactions bid the base fee; some bid more (and are still charged the base)."""
        return BASE_FEE if self.rng.random() < 0.8 else self.rng.choice((200, 500, 1000, 10_000))

    def submit(self, intent: Intent) -> SubmittedTx:
        """The signed transaction of `intent`, with the source's next sequence number."""
        account = self.view.account(intent.source.address)
        builder = TransactionBuilder(
            Account(intent.source.address, account.seq_num), self.passphrase, base_fee=self.fee_bid()
        )
        builder.add_time_bounds(0, self.ledger.close_time + TX_VALIDITY)
        if intent.memo is not None:
            builder.add_memo(intent.memo)
        for op in intent.operations:
            builder.append_operation(op)
        if intent.soroban is not None:
            builder.set_soroban_data(intent.soroban)
        envelope = builder.build()
        signers = (intent.source, *intent.cosigners)
        if intent.fee_sponsor is None:
            return self._signed(envelope, signers)
        for signer in signers:
            envelope.sign(signer.keypair)
        inner = envelope.transaction
        resource_fee = inner.soroban_data.resource_fee.int64 if inner.soroban_data else 0
        # the sdk wants the bump's per-operation bid at least the inner one
        inner_bid = -(-(inner.fee - resource_fee) // len(inner.operations))
        bump = TransactionBuilder.build_fee_bump_transaction(
            intent.fee_sponsor.address, max(intent.bump_bid, inner_bid), envelope, self.passphrase
        )
        return self._signed(bump, (intent.fee_sponsor,))

    def _signed(
        self, envelope: TransactionEnvelope | FeeBumpTransactionEnvelope, signers: tuple[Actor, ...]
    ) -> SubmittedTx:
        """Sign a built envelope, hashing it once (the sdk's sign() would hash it again)."""
        xdr_envelope = envelope.to_xdr_object()
        tx_hash = transaction_hash(xdr_envelope, self.passphrase)
        signed = xdr_envelope.fee_bump if xdr_envelope.fee_bump else xdr_envelope.v1
        for signer in signers:
            signed.signatures.append(signer.keypair.sign_decorated(tx_hash).to_xdr_object())
        return SubmittedTx.from_envelope(xdr_envelope, self.passphrase, tx_hash=tx_hash)

    # --- keeping track -------------------------------------------------------------------

    def observe(self, applied: AppliedTx) -> None:
        """Update the holdings lists from what a dry-run transaction changed."""
        held = self.holdings
        for change in (change for changes in applied.op_changes for change in changes):
            entry = change.entry
            created = change.type is ChangeType.CREATED
            if change.key[0] == "account" and change.type is ChangeType.REMOVED:
                self.users.remove(self.by_address[change.key[1]])
                self._forget_orphans(change.key[1])
            elif change.key[0] == "trustline" and change.type in (ChangeType.CREATED, ChangeType.REMOVED):
                if change.key[2].startswith("pool:"):
                    holders = held.pool_holders.setdefault(bytes.fromhex(change.key[2][5:]), [])
                else:
                    code, issuer = change.key[2].split(":")
                    holders = held.trusting[Asset(code, issuer)]
                user = self.by_address[change.key[1]]
                if created:
                    holders.append(user)
                else:
                    holders.remove(user)
            elif isinstance(entry, TrustlineEntry) and change.type is ChangeType.UPDATED:
                revoked = (self.by_address[entry.account_id], entry.asset)
                if entry.flags & AUTHORIZED_FLAG:
                    if revoked in held.revoked:
                        held.revoked.remove(revoked)
                elif revoked not in held.revoked:
                    held.revoked.append(revoked)
            elif created and isinstance(entry, OfferEntry):
                owner = self.by_address.get(entry.seller)
                if owner is not None and owner not in held.offer_owners:
                    held.offer_owners.append(owner)
            elif change.key[0] == "claimable_balance":
                balance_id = bytes.fromhex(change.key[1])
                if created:
                    held.claimable[balance_id] = None
                elif change.type is ChangeType.REMOVED:
                    del held.claimable[balance_id]

    def claimable(self) -> Iterator[ClaimableBalanceEntry]:
        """Live claimable balances a claimant may still claim, oldest first."""
        return (self.view.claimable_balance(balance_id) for balance_id in self.holdings.claimable)

    def _forget_orphans(self, merged: str) -> None:
        """Balances whose claimants are all merged away stay on the ledger (as abandoned ones
        do on pubnet); the planner stops offering them for claims."""
        gone = [
            balance_id
            for balance_id in self.holdings.claimable
            if all(
                claimant == merged or self.view.account(claimant) is None
                for claimant in self.view.claimable_balance(balance_id).claimants
            )
        ]
        for balance_id in gone:
            del self.holdings.claimable[balance_id]

    def pool_share(self, actor: Actor, pool_id: bytes) -> PoolShareEntry | None:
        return self.view.pool_share(actor.address, pool_id)
