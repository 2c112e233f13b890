"""Exchanging one asset for another against the order book and liquidity pools.

Naming as core does: the taker acquires *wheat* and pays with *sheep*; a resting offer sells
wheat for sheep at price n/d (sheep per wheat). Each crossed offer or pool is a claim atom, seen
from the seller: it sold `amount_sold` wheat and bought `amount_bought` sheep. Rounding always
favours the resting side: a taker pays ceil(wheat × n / d); a taker that must spend an exact
amount (strict send) hands the last offer all it has left and gets the rounded-down wheat.

Manage-offer operations cross the book only; path payments take, for each hop, whichever of the
book or the pool of the two assets gives the better result for the whole hop (CAP-38).

A constant-product pool with fee f (in basis points) pays out
floor(R_out × y × (1 - f) / (R_in + y × (1 - f))) for y in, and asks
ceil(R_in × x / ((R_out - x) × (1 - f))) for x out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from functools import lru_cache

from stellar_sdk import Asset, LiquidityPoolAsset
from stellar_sdk import xdr as X

from obsrvr_sandbox.addresses import account_id_xdr
from obsrvr_sandbox.entries import INT64_MAX, POOL_FEE_BPS, OfferEntry, PoolEntry
from obsrvr_sandbox.entry_xdr import asset_xdr
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import adjust_liabilities, credit, debit, min_balance
from obsrvr_sandbox.state import EntryTxn

_BPS = 10_000


class Shortfall(enum.Enum):
    TOO_FEW_OFFERS = "too few offers"
    CROSS_SELF = "crosses an offer of its own"


@dataclass(slots=True)
class Conversion:
    atoms: list[X.ClaimAtom] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    sent: int = 0  # sheep paid
    received: int = 0  # wheat obtained
    filled: bool = False  # the taker got all it could: it stopped inside an offer

    def extend(self, other: Conversion) -> None:
        self.atoms.extend(other.atoms)
        self.moves.extend(other.moves)


def cost(amount: int, price: tuple[int, int]) -> int:
    """Sheep for `amount` wheat at `price`, rounded up (in the seller's favour)."""
    n, d = price
    return -(-amount * n // d)


def offer_liabilities(offer: OfferEntry) -> tuple[int, int]:
    """(buying, selling) an offer reserves on its seller's entries."""
    return cost(offer.amount, offer.price), offer.amount


def reserve_offer(txn: EntryTxn, offer: OfferEntry, sign: int = 1) -> None:
    """Reserve (sign 1) or release (sign -1) an offer's liabilities."""
    buying, selling = offer_liabilities(offer)
    adjust_liabilities(txn, offer.seller, offer.selling, selling=sign * selling)
    adjust_liabilities(txn, offer.seller, offer.buying, buying=sign * buying)


def remove_offer(txn: EntryTxn, offer: OfferEntry) -> None:
    """Delete a resting offer: its liabilities and its sub-entry go with it."""
    reserve_offer(txn, offer, -1)
    txn.remove(offer.key)
    account = txn.account(offer.seller)
    txn.put(replace(account, num_sub_entries=account.num_sub_entries - 1))


def _beats(price: tuple[int, int], limit: tuple[int, int], *, strictly: bool) -> bool:
    """True if `price` (sheep per wheat) is within the taker's `limit`."""
    left, right = price[0] * limit[1], limit[0] * price[1]
    return left < right if strictly else left <= right


def _take(txn: EntryTxn, offer: OfferEntry, taker: str, wheat: int, sheep: int, base_reserve: int) -> Conversion:
    """The seller of `offer` gives `wheat` and gets `sheep`; the offer shrinks or goes."""
    reserve_offer(txn, offer, -1)
    if debit(txn, offer.seller, offer.selling, wheat, base_reserve) or credit(txn, offer.seller, offer.buying, sheep):
        raise AssertionError(f"offer {offer.offer_id} could not be filled although its liabilities were reserved")
    left = offer.amount - wheat
    if left:
        reserve_offer(txn, txn.put(replace(offer, amount=left)))
    else:
        txn.remove(offer.key)
        account = txn.account(offer.seller)
        txn.put(replace(account, num_sub_entries=account.num_sub_entries - 1))
    atom = X.ClaimAtom(
        X.ClaimAtomType.CLAIM_ATOM_TYPE_ORDER_BOOK,
        order_book=X.ClaimOfferAtom(
            seller_id=account_id_xdr(offer.seller),
            offer_id=X.Int64(offer.offer_id),
            asset_sold=asset_xdr(offer.selling),
            amount_sold=X.Int64(wheat),
            asset_bought=asset_xdr(offer.buying),
            amount_bought=X.Int64(sheep),
        ),
    )
    # core reports each trade as the taker paying, then the seller delivering
    moves = [
        Move(offer.buying, taker, offer.seller, sheep, False),
        Move(offer.selling, offer.seller, taker, wheat, False),
    ]
    return Conversion([atom], moves, sheep, wheat)


def _fillable(txn: EntryTxn, offer: OfferEntry, base_reserve: int) -> int:
    """How much of an offer its seller can still deliver: fees may have eaten into an XLM
    balance since the offer was placed, and core shrinks the offer to that when crossing it."""
    if offer.seller == offer.selling.issuer:
        return offer.amount
    if offer.selling.is_native():
        account = txn.account(offer.seller)
        capacity = account.balance - min_balance(account, base_reserve) - account.selling_liabilities
    else:
        line = txn.trustline(offer.seller, offer.selling)
        capacity = line.balance - line.selling_liabilities
    return min(offer.amount, max(0, capacity + offer.amount))


def cross_book(
    txn: EntryTxn,
    taker: str,
    wheat: Asset,
    sheep: Asset,
    base_reserve: int,
    *,
    wheat_wanted: int | None = None,
    sheep_budget: int | None = None,
    limit: tuple[int, int] | None = None,
    passive: bool = False,
    exact_budget: bool = False,
) -> Conversion | Shortfall:
    """Cross offers selling `wheat` for `sheep`, best first, until the taker has `wheat_wanted`,
    has spent `sheep_budget`, or the next price is beyond `limit` (a passive taker also stops
    at an equal price). `exact_budget`: the last offer gets whatever budget is left."""
    done = Conversion()
    for offer in txn.offers(wheat, sheep):
        if (wheat_wanted is not None and done.received >= wheat_wanted) or (
            sheep_budget is not None and done.sent >= sheep_budget
        ):
            done.filled = True
            break
        if limit is not None and not _beats(offer.price, limit, strictly=passive):
            break
        if offer.seller == taker:
            return Shortfall.CROSS_SELF
        fillable = _fillable(txn, offer, base_reserve)
        if fillable < offer.amount:
            offer = _shrink(txn, offer, fillable)
            if offer is None:
                continue
        amount = offer.amount if wheat_wanted is None else min(offer.amount, wheat_wanted - done.received)
        pay = cost(amount, offer.price)
        if sheep_budget is not None and pay > sheep_budget - done.sent:
            budget = sheep_budget - done.sent
            amount = budget * offer.price[1] // offer.price[0]
            if amount == 0:
                done.filled = True
                break
            pay = budget if exact_budget else cost(amount, offer.price)
        done_here = _take(txn, offer, taker, amount, pay, base_reserve)
        done.extend(done_here)
        done.sent += pay
        done.received += amount
        if amount < offer.amount:
            done.filled = True
            break
    return done


def _shrink(txn: EntryTxn, offer: OfferEntry, fillable: int) -> OfferEntry | None:
    """Cut an offer down to what its seller can deliver; an offer that can deliver nothing goes."""
    if fillable <= 0:
        remove_offer(txn, offer)
        return None
    reserve_offer(txn, offer, -1)
    smaller = txn.put(replace(offer, amount=fillable))
    reserve_offer(txn, smaller)
    return smaller


# --- liquidity pools ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def pool_of(first: Asset, second: Asset) -> tuple[bytes, Asset, Asset]:
    """(pool id, asset A, asset B) of the constant-product pool of two assets, in the
    protocol's asset order."""
    a, b = (first, second) if LiquidityPoolAsset.is_valid_lexicographic_order(first, second) else (second, first)
    return bytes.fromhex(LiquidityPoolAsset(a, b).liquidity_pool_id), a, b


def _reserves(pool: PoolEntry, wheat: Asset) -> tuple[int, int]:
    """(wheat reserve, sheep reserve)."""
    return (pool.reserve_a, pool.reserve_b) if pool.asset_a == wheat else (pool.reserve_b, pool.reserve_a)


def pool_out(pool: PoolEntry, wheat: Asset, sheep_in: int) -> int:
    r_wheat, r_sheep = _reserves(pool, wheat)
    kept = _BPS - POOL_FEE_BPS
    return r_wheat * sheep_in * kept // (r_sheep * _BPS + sheep_in * kept)


def pool_in(pool: PoolEntry, wheat: Asset, wheat_out: int) -> int | None:
    r_wheat, r_sheep = _reserves(pool, wheat)
    if wheat_out >= r_wheat:
        return None
    return -(-r_sheep * wheat_out * _BPS // ((r_wheat - wheat_out) * (_BPS - POOL_FEE_BPS)))


def _swap(
    txn: EntryTxn, pool: PoolEntry, taker: str, wheat: Asset, sheep: Asset, wheat_out: int, sheep_in: int
) -> Conversion | Shortfall:
    r_wheat, r_sheep = _reserves(pool, wheat)
    if wheat_out <= 0 or sheep_in <= 0 or r_sheep > INT64_MAX - sheep_in:
        return Shortfall.TOO_FEW_OFFERS
    if pool.asset_a == wheat:
        txn.put(replace(pool, reserve_a=r_wheat - wheat_out, reserve_b=r_sheep + sheep_in))
    else:
        txn.put(replace(pool, reserve_a=r_sheep + sheep_in, reserve_b=r_wheat - wheat_out))
    atom = X.ClaimAtom(
        X.ClaimAtomType.CLAIM_ATOM_TYPE_LIQUIDITY_POOL,
        liquidity_pool=X.ClaimLiquidityAtom(
            liquidity_pool_id=X.PoolID(X.Hash(pool.pool_id)),
            asset_sold=asset_xdr(wheat),
            amount_sold=X.Int64(wheat_out),
            asset_bought=asset_xdr(sheep),
            amount_bought=X.Int64(sheep_in),
        ),
    )
    moves = [Move(sheep, taker, pool.address, sheep_in, False), Move(wheat, pool.address, taker, wheat_out, False)]
    return Conversion([atom], moves, sheep_in, wheat_out)


def _live_pool(txn: EntryTxn, wheat: Asset, sheep: Asset) -> PoolEntry | None:
    pool = txn.pool(pool_of(wheat, sheep)[0])
    return pool if pool is not None and pool.total_shares > 0 else None


def convert_send(
    txn: EntryTxn, taker: str, sheep: Asset, wheat: Asset, sheep_in: int, base_reserve: int
) -> Conversion | Shortfall:
    """Spend exactly `sheep_in` for as much wheat as the better venue gives."""
    book_txn = txn.child()
    book = cross_book(book_txn, taker, wheat, sheep, base_reserve, sheep_budget=sheep_in, exact_budget=True)
    if isinstance(book, Conversion) and book.sent < sheep_in:
        book = Shortfall.TOO_FEW_OFFERS
    pool = _live_pool(txn, wheat, sheep)
    pool_gets = pool_out(pool, wheat, sheep_in) if pool is not None else 0
    if pool is not None and pool_gets > 0 and (isinstance(book, Shortfall) or pool_gets > book.received):
        return _swap(txn, pool, taker, wheat, sheep, pool_gets, sheep_in)
    if isinstance(book, Conversion):
        book_txn.commit()
    return book


def convert_receive(
    txn: EntryTxn, taker: str, sheep: Asset, wheat: Asset, wheat_out: int, base_reserve: int
) -> Conversion | Shortfall:
    """Obtain exactly `wheat_out` for as little sheep as the better venue asks."""
    book_txn = txn.child()
    book = cross_book(book_txn, taker, wheat, sheep, base_reserve, wheat_wanted=wheat_out)
    if isinstance(book, Conversion) and book.received < wheat_out:
        book = Shortfall.TOO_FEW_OFFERS
    pool = _live_pool(txn, wheat, sheep)
    pool_asks = pool_in(pool, wheat, wheat_out) if pool is not None else None
    if pool_asks is not None and (isinstance(book, Shortfall) or pool_asks < book.sent):
        return _swap(txn, pool, taker, wheat, sheep, wheat_out, pool_asks)
    if isinstance(book, Conversion):
        book_txn.commit()
    return book
