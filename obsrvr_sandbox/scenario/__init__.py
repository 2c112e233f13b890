"""Which transactions each sandbox ledger carries: a seeded, repeatable mix of real traffic.

The first ledger funds the cast from the root account: asset issuers (two of them revocable
and clawback-enabled), fee sponsors and an initial set of users. From then on every ledger
draws actions, one module per concern: payments (`payments`: XLM and issued assets, mints,
burns, trustlines, new and merged accounts, classic fee bumps, failures on purpose), markets
(`markets`: offers resting and crossing, liquidity pools, converting path payments), issuer
powers and claimable balances (`issuers`), and Stellar Asset Contract calls (`soroban`). Until
every action kind (and a text memo, an id memo, a muxed destination and a revocation that
redeems pool shares) has appeared once, the kinds not seen yet are tried first, so a short run
already covers them.

Each planned transaction is dry-run against the planner's view of the ledger (see planner.py),
so the next choice sees its effects, and an action counts as covered only if its transaction
really succeeded (or, for the failing kinds, really failed). Classic transactions are planned
first and Soroban ones after them, the order they apply in. An account sends, or pays a fee
for, at most one transaction per ledger, as core's transaction queue allows, and an account
created in a ledger sends nothing before the next: fees are charged before any transaction
applies.
"""

from __future__ import annotations

from collections.abc import Callable

from obsrvr_sandbox.close import MAX_TX_SET_SIZE
from obsrvr_sandbox.scenario import issuers, markets, payments, soroban
from obsrvr_sandbox.scenario.planner import MARKS, Intent, Planner
from obsrvr_sandbox.state import LedgerInfo, LedgerState
from obsrvr_sandbox.transactions import AppliedTx, SubmittedTx, apply_transaction, charge_fee, refund_fee

Action = tuple[Callable[[Planner], Intent | None], int, bool]  # action, weight, fails on purpose
CLASSIC: dict[str, Action] = {**payments.ACTIONS, **markets.ACTIONS, **issuers.ACTIONS}
SOROBAN: dict[str, Action] = soroban.ACTIONS
FEATURES = (*MARKS, "revoke_pool")  # what some successful transaction must also show


class Scenario:
    """Plans the transactions of each ledger; the same seed gives the same plan."""

    def __init__(self, *, seed: int, passphrase: str, txs_per_ledger: int) -> None:
        self.planner = Planner(seed=seed, passphrase=passphrase, txs_per_ledger=txs_per_ledger)
        self.txs_per_ledger = txs_per_ledger
        self.soroban_slots = max(1, txs_per_ledger // 4)
        self.planner.unseen = [*CLASSIC, *SOROBAN, *FEATURES]
        self._operations = 0

    def plan(self, state: LedgerState, ledger: LedgerInfo) -> list[SubmittedTx]:
        """The transactions of the next ledger, in apply order."""
        p = self.planner
        p.begin(state, ledger)
        if p.view.account(p.issuers[0].address) is None:
            tx = p.submit(payments.bootstrap(p))
            self._dry_run(tx)
            return [tx]
        self._operations = 0
        classic: list[SubmittedTx] = []
        contracts: list[SubmittedTx] = []
        self._fill(classic, CLASSIC, self.txs_per_ledger - self.soroban_slots)
        self._fill(contracts, SOROBAN, min(self.soroban_slots, self.txs_per_ledger - len(classic)))
        # Soroban actions need deployed contracts and funded holders: early on, classic ones
        # fill the ledger instead (they involve none of the accounts already busy).
        self._fill(classic, CLASSIC, self.txs_per_ledger - len(contracts))
        return classic + contracts

    def _fill(self, txs: list[SubmittedTx], kinds: dict[str, Action], target: int) -> None:
        p = self.planner
        for _ in range(4 * target + 8):
            if len(txs) >= target:
                return
            kind = self._next_kind(kinds)
            action, _, failing = kinds[kind]
            intent = action(p)
            if intent is None:
                continue
            tx = p.submit(intent)
            if self._operations + tx.operation_count + 1 > MAX_TX_SET_SIZE:
                return
            self._operations += tx.operation_count + 1
            txs.append(tx)
            if self._dry_run(tx).success == (not failing):
                p.unseen = [item for item in p.unseen if item != kind and item not in intent.marks]

    def _next_kind(self, kinds: dict[str, Action]) -> str:
        p = self.planner
        rng = p.rng
        due = [*payments.due(p), *markets.due(p), *issuers.due(p)] if kinds is CLASSIC else soroban.due(p)
        if due and rng.random() < 0.4:
            return rng.choice(due)
        pending = [kind for kind in p.unseen if kind in kinds]
        if pending and rng.random() < 0.7:
            return rng.choice(pending)
        return rng.choices(list(kinds), weights=[weight for _, weight, _ in kinds.values()])[0]

    def _dry_run(self, tx: SubmittedTx) -> AppliedTx:
        """Apply `tx` to the planning view (fee, operations, refund)."""
        p = self.planner
        scratch = p.view.child()
        fee = charge_fee(scratch, tx, p.ledger)
        applied = apply_transaction(scratch, tx, fee, p.ledger)
        refund_fee(scratch, applied)
        scratch.commit()
        p.busy.update((tx.source, tx.fee_source))
        p.observe(applied)
        return applied
