"""What a Soroban transaction's resources cost, in the sandbox's own (simplified) fee schedule.

A Soroban transaction declares a resource fee on top of its inclusion fee and is charged all of
it up front. After it applies, it keeps only what it used: the non-refundable part (CPU and
ledger I/O, from the declared resources) and the refundable part (each emitted event, and rent
for each persistent entry it created); the rest is refunded. A failed transaction uses nothing
refundable. The schedule is the sandbox's, not the network's: only its structure matters here.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import xdr as X

EVENT_FEE = 1_200  # stroops per contract event
RENT_FEE = 6_000  # stroops per new persistent entry


def non_refundable_fee(resources: X.SorobanResources) -> int:
    io_bytes = resources.disk_read_bytes.uint32 + resources.write_bytes.uint32
    return 4_000 + resources.instructions.uint32 // 50 + 10 * io_bytes


def refundable_fee(events: int, created: int) -> int:
    return EVENT_FEE * events + RENT_FEE * created


@dataclass(frozen=True, slots=True)
class SorobanCharge:
    declared: int  # the transaction's resource fee
    non_refundable: int
    refundable: int  # events and rent actually used
    rent: int

    @property
    def refund(self) -> int:
        return self.declared - self.non_refundable - self.refundable


def soroban_charge(data: X.SorobanTransactionData, events: int, created: int) -> SorobanCharge:
    """What was used; the caller fails the transaction if the refundable part does not fit."""
    return SorobanCharge(
        declared=data.resource_fee.int64,
        non_refundable=non_refundable_fee(data.resources),
        refundable=refundable_fee(events, created),
        rent=RENT_FEE * created,
    )
