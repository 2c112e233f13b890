"""Decoding and validating every real pubnet ledger in ../shared/data/ledgers, in place."""

from __future__ import annotations

import pytest

from obsrvr_ray.ledger.validate import chain_breaks
from tests.conftest import CONSECUTIVE, readme_facts

FACTS = readme_facts()


@pytest.mark.parametrize("seq", sorted(FACTS))
def test_transaction_count_and_protocol_match_readme(decoded, seq):
    ledger = decoded(seq)
    facts = FACTS[seq]
    assert len(ledger.transactions) == int(facts["txs"])
    assert ledger.protocol_version == int(facts["protocol"])
    assert f"v{ledger.close_meta_version}" == facts["LCM"]
    assert [tx.index for tx in ledger.transactions] == list(range(1, len(ledger.transactions) + 1))


def test_every_readme_ledger_is_present(real_ledgers):
    assert set(FACTS) == set(real_ledgers)


def test_consecutive_ledgers_form_an_unbroken_chain(decoded):
    assert chain_breaks([decoded(s) for s in CONSECUTIVE]) == []


def test_dropping_a_ledger_is_a_chain_break_naming_both_neighbours(decoded):
    ledgers = [decoded(s) for s in CONSECUTIVE if s != 63092990]
    breaks = chain_breaks(ledgers)
    assert [(b.previous, b.current) for b in breaks] == [(63092989, 63092991)]
    assert "between ledger 63092989 and ledger 63092991" in breaks[0].describe()


def test_swapping_two_ledgers_breaks_the_chain_at_each_misplaced_link(decoded):
    order = list(CONSECUTIVE)
    i = order.index(63092995)
    order[i], order[i + 1] = order[i + 1], order[i]
    breaks = chain_breaks([decoded(s) for s in order])
    assert [(b.previous, b.current) for b in breaks] == [
        (63092994, 63092996),
        (63092996, 63092995),
        (63092995, 63092997),
    ]


def test_parallel_transaction_sets_are_flattened_in_apply_order(decoded):
    """Protocol 23+ ledgers put Soroban transactions in stages and clusters; every envelope of
    the set is paired with exactly one result."""
    ledger = decoded(63092982)
    phases = ledger.close_meta.v2.tx_set.v1_tx_set.phases
    assert any(p.v == 1 for p in phases)
    assert ledger.tx_set_size == len(ledger.transactions)
    assert len({tx.hash for tx in ledger.transactions}) == len(ledger.transactions)


@pytest.mark.parametrize("seq", sorted(FACTS))
def test_apply_order_rule_reproduces_recorded_order(decoded, seq):
    """The order recomputed from the envelopes alone equals txProcessing's order (the order
    that gives stellar-etl's ids), on every protocol we have."""
    from obsrvr_ray.ledger.apply_order import apply_order

    ledger = decoded(seq)
    txs = sorted(ledger.transactions, key=lambda t: t.hash)  # any order in, apply order out
    order = apply_order([t.envelope for t in txs], [t.envelope_xdr for t in txs],
                        ledger.header.scp_value.tx_set_hash.hash)
    assert [txs[i].index for i in order] == list(range(1, len(txs) + 1))
