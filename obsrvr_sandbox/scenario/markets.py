"""Market actions: offers that rest on the book or cross it, liquidity pools (share trustlines,
deposits, withdrawals), and path payments that convert through them.

The markets are laid out so every venue gets used: XLM/USD trades on the book and in a pool,
XLM/EUR and USD/EUR on the book only, EUR/SANDBOXGOLD in a pool only. Makers ask a little
above each asset's reference value in XLM (so makers never cross each other); takers accept a
little worse than the best offer, so they cross it (partly, or fully with the rest resting).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction

from stellar_sdk import (
    Asset,
    ChangeTrust,
    CreatePassiveSellOffer,
    LiquidityPoolAsset,
    LiquidityPoolDeposit,
    LiquidityPoolWithdraw,
    ManageBuyOffer,
    ManageSellOffer,
    Operation,
    PathPaymentStrictReceive,
    PathPaymentStrictSend,
    Price,
)

from obsrvr_sandbox.keys import Actor
from obsrvr_sandbox.ops.exchange import Shortfall, convert_receive, convert_send, cost, pool_of
from obsrvr_sandbox.scenario.planner import NATIVE, XLM, XLM_VALUE, Intent, Planner

RESTING_PER_BOOK = 12  # makers stop adding offers to a book this deep (crossing scans it)


def _usd(p: Planner) -> Asset:
    return p.assets[0]


def _eur(p: Planner) -> Asset:
    return p.assets[1]


def _gold(p: Planner) -> Asset:
    return p.assets[2]


def _books(p: Planner) -> list[tuple[Asset, Asset]]:
    """(selling, buying) of every book makers quote."""
    pairs = [(NATIVE, _usd(p)), (NATIVE, _eur(p)), (_usd(p), _eur(p))]
    return pairs + [(b, a) for a, b in pairs]


def _pools(p: Planner) -> list[tuple[Asset, Asset]]:
    return [(NATIVE, _usd(p)), (_eur(p), _gold(p))]


def _value(p: Planner, asset: Asset) -> int:
    return 1 if asset.is_native() else XLM_VALUE[p.assets.index(asset)]


def _price(ratio: Fraction) -> Price:
    ratio = ratio.limit_denominator(100_000)
    return Price(ratio.numerator, ratio.denominator)


def _fair(p: Planner, selling: Asset, buying: Asset) -> Fraction:
    """Units of `buying` one unit of `selling` is worth."""
    return Fraction(_value(p, selling), _value(p, buying))


def _worth(p: Planner, asset: Asset, xlm: int) -> int:
    """Stroops of `asset` worth `xlm` stroops of XLM."""
    return xlm // _value(p, asset)


def _amount(value: int) -> str:
    return Operation.from_xdr_amount(value)


def _can_trade(p: Planner, actor: Actor, selling: Asset, buying: Asset, amount: int) -> bool:
    return p.can_use(actor, selling) >= amount and p.authorized(actor, buying) and p.spendable(actor) >= 3 * XLM


# --- offers -----------------------------------------------------------------------------------


def offer_rest(p: Planner) -> Intent | None:
    """A maker asks 1-6 % above the reference value; the offer rests on the book."""
    selling, buying = p.rng.choice(_books(p))
    if len(p.view.offers(selling, buying)) >= RESTING_PER_BOOK:
        return None
    amount = _worth(p, selling, p.rng.randint(50, 500) * XLM)
    maker = p.pick(p.users, lambda user: _can_trade(p, user, selling, buying, amount))
    if maker is None:
        return None
    price = _price(_fair(p, selling, buying) * Fraction(100 + p.rng.randint(1, 6), 100))
    return Intent(maker, [ManageSellOffer(selling, buying, _amount(amount), price)])


def offer_passive(p: Planner) -> Intent | None:
    selling, buying = p.rng.choice(_books(p))
    if len(p.view.offers(selling, buying)) >= RESTING_PER_BOOK:
        return None
    amount = _worth(p, selling, p.rng.randint(50, 300) * XLM)
    maker = p.pick(p.users, lambda user: _can_trade(p, user, selling, buying, amount))
    if maker is None:
        return None
    price = _price(_fair(p, selling, buying) * Fraction(100 + p.rng.randint(2, 8), 100))
    return Intent(maker, [CreatePassiveSellOffer(selling, buying, _amount(amount), price)])


def _crossable(p: Planner) -> tuple[Asset, Asset, list] | None:
    """(wheat, sheep, offers) of a book that has offers: the taker buys wheat with sheep."""
    books = [(wheat, sheep) for wheat, sheep in _books(p) if p.view.offers(wheat, sheep)]
    if not books:
        return None
    wheat, sheep = p.rng.choice(books)
    return wheat, sheep, p.view.offers(wheat, sheep)


def offer_cross(p: Planner) -> Intent | None:
    """A taker sells into the best offers, accepting up to 3 % worse; a small order takes part
    of the best offer, a large one takes it all and rests the remainder."""
    found = _crossable(p)
    if found is None:
        return None
    wheat, sheep, offers = found
    best = offers[0]
    full = cost(best.amount, best.price)
    budget = p.rng.randint(1, max(1, full // 2)) if p.rng.random() < 0.5 else full + full // p.rng.randint(2, 5)
    sellers = {offer.seller for offer in offers}
    taker = p.pick(p.users, lambda user: user.address not in sellers and _can_trade(p, user, sheep, wheat, budget))
    if taker is None:
        return None
    limit = Fraction(*best.price) * Fraction(103, 100)  # sheep per wheat the taker accepts
    return Intent(taker, [ManageSellOffer(sheep, wheat, _amount(budget), _price(1 / limit))])


def offer_buy(p: Planner) -> Intent | None:
    """A taker buys part or all of the best offer (and some of the next) at up to 3 % worse."""
    found = _crossable(p)
    if found is None:
        return None
    wheat, sheep, offers = found
    best = offers[0]
    wanted = p.rng.randint(1, best.amount) if p.rng.random() < 0.5 else best.amount + best.amount // 3
    price = _price(Fraction(*best.price) * Fraction(103, 100))
    needed = cost(wanted, (price.n, price.d))
    sellers = {offer.seller for offer in offers}
    taker = p.pick(p.users, lambda user: user.address not in sellers and _can_trade(p, user, sheep, wheat, needed))
    if taker is None:
        return None
    return Intent(taker, [ManageBuyOffer(sheep, wheat, _amount(wanted), price)])


def _own_offer(p: Planner):
    def has_offers(user: Actor) -> bool:
        return bool(p.view.offers_of(user.address))

    owner = p.pick(p.holdings.offer_owners, has_offers)
    if owner is None:
        return None
    return owner, p.rng.choice(p.view.offers_of(owner.address))


def offer_update(p: Planner) -> Intent | None:
    """A maker re-prices one of its offers and changes its size."""
    found = _own_offer(p)
    if found is None:
        return None
    owner, offer = found
    spare = p.can_use(owner, offer.selling) + offer.amount
    amount = min(spare, offer.amount + p.rng.randint(-offer.amount // 2, offer.amount // 2))
    if amount <= 0 or not p.authorized(owner, offer.buying):
        return None
    price = _price(_fair(p, offer.selling, offer.buying) * Fraction(100 + p.rng.randint(1, 6), 100))
    op = ManageSellOffer(offer.selling, offer.buying, _amount(amount), price, offer_id=offer.offer_id)
    return Intent(owner, [op])


def offer_delete(p: Planner) -> Intent | None:
    found = _own_offer(p)
    if found is None:
        return None
    owner, offer = found
    return Intent(owner, [ManageSellOffer(offer.selling, offer.buying, "0", Price(*offer.price), offer.offer_id)])


# --- liquidity pools ----------------------------------------------------------------------------


def _pool_asset(a: Asset, b: Asset) -> LiquidityPoolAsset:
    first, second = pool_of(a, b)[1:]
    return LiquidityPoolAsset(first, second)


def _pool_first(p: Planner, behind: Callable[[bytes], bool]) -> tuple[Asset, Asset]:
    """A pool that is `behind` (so every pool gets going early), else any."""
    lagging = [pair for pair in _pools(p) if behind(pool_of(*pair)[0])]
    return p.rng.choice(lagging or _pools(p))


def pool_trust(p: Planner) -> Intent | None:
    """A user holding both pool assets opens a pool-share trustline (pools with fewer than
    three share holders first)."""
    a, b = _pool_first(p, lambda pool_id: len(p.holdings.pool_holders.get(pool_id, [])) < 3)
    pool_id = pool_of(a, b)[0]

    def able(user: Actor) -> bool:
        return (
            p.pool_share(user, pool_id) is None
            and p.can_use(user, a) > 0
            and p.can_use(user, b) > 0
            and p.spendable(user) >= 10 * XLM
        )

    user = p.pick(p.users, able)
    if user is None:
        return None
    return Intent(user, [ChangeTrust(_pool_asset(a, b))])


def pool_deposit(p: Planner) -> Intent | None:
    """A share holder deposits up to a third of what it holds (pools with fewer than two
    providers first, and holders without shares first): the first deposit prices the pool at
    the reference values, later ones follow the pool's price."""
    a, b = _pool_first(p, lambda pool_id: p.view.pool(pool_id) is not None and _providers(p, pool_id) < 2)
    pool_id, first, second = pool_of(a, b)
    pool = p.view.pool(pool_id)
    if pool is None:
        return None
    price = Fraction(pool.reserve_b, pool.reserve_a) if pool.total_shares else _fair(p, first, second)

    def amounts(user: Actor) -> tuple[int, int]:
        max_a = min(p.can_use(user, first), p.can_use(user, second) * price.denominator // price.numerator) // 3
        return max_a, int(max_a * price * Fraction(101, 100))

    holders = p.holdings.pool_holders.get(pool_id, [])
    newcomers = [user for user in holders if not p.pool_share(user, pool_id).balance]
    depositor = p.pick(newcomers, lambda user: min(amounts(user)) > XLM // 10) or p.pick(
        holders, lambda user: min(amounts(user)) > XLM // 10
    )
    if depositor is None:
        return None
    max_a, max_b = amounts(depositor)
    op = LiquidityPoolDeposit(
        _pool_asset(a, b).liquidity_pool_id, _amount(max_a), _amount(max_b), Price(1, 1_000_000), Price(1_000_000, 1)
    )
    return Intent(depositor, [op])


def pool_withdraw(p: Planner) -> Intent | None:
    """A share holder takes out 10-60 % of its shares (worth something of both assets)."""
    a, b = p.rng.choice(_pools(p))
    pool_id = pool_of(a, b)[0]
    pool = p.view.pool(pool_id)
    if pool is None or not pool.total_shares:
        return None
    fraction = p.rng.randint(10, 60)

    def shares(user: Actor) -> int:
        return p.pool_share(user, pool_id).balance * fraction // 100

    def worth_it(user: Actor) -> bool:
        return min(shares(user) * pool.reserve_a, shares(user) * pool.reserve_b) >= pool.total_shares

    owner = p.pick(p.holdings.pool_holders.get(pool_id, []), worth_it)
    if owner is None:
        return None
    op = LiquidityPoolWithdraw(_pool_asset(a, b).liquidity_pool_id, _amount(shares(owner)), "0", "0")
    return Intent(owner, [op])


# --- converting path payments -------------------------------------------------------------------


def _hops(send: Asset, path: list[Asset], dest: Asset) -> list[tuple[Asset, Asset]]:
    assets = [send, *path, dest]
    return [(a, b) for a, b in itertools.pairwise(assets) if a != b]


def quote_send(p: Planner, sender: Actor, send: Asset, path: list[Asset], dest: Asset, amount: int) -> int | None:
    """What sending exactly `amount` along the path would deliver now (None: it cannot), found
    by trying the conversion on a scratch copy of the view, as a wallet's path finder would."""
    scratch = p.view.child()
    for sheep, wheat in _hops(send, path, dest):
        converted = convert_send(scratch, sender.address, sheep, wheat, amount, p.ledger.base_reserve)
        if isinstance(converted, Shortfall):
            return None
        amount = converted.received
    return amount


def quote_receive(p: Planner, sender: Actor, send: Asset, path: list[Asset], dest: Asset, amount: int) -> int | None:
    """What delivering exactly `amount` along the path would cost now (None: it cannot)."""
    scratch = p.view.child()
    for sheep, wheat in reversed(_hops(send, path, dest)):
        converted = convert_receive(scratch, sender.address, sheep, wheat, amount, p.ledger.base_reserve)
        if isinstance(converted, Shortfall):
            return None
        amount = converted.sent
    return amount


def _convert(p: Planner, send: Asset, path: list[Asset], dest: Asset, *, strict_send: bool) -> Intent | None:
    """A path payment worth 5-100 XLM that the venues can carry now (halved until they can),
    with 1 % slack on the minimum received or the maximum sent."""
    sender = p.holder(send, _worth(p, send, 5 * XLM))
    recipient = sender and p.recipient(sender, dest)
    if recipient is None or p.spendable(sender) < 3 * XLM:
        return None
    worth = p.rng.randint(5, 100) * XLM
    for _ in range(4):
        if strict_send:
            amount = min(_worth(p, send, worth), p.can_use(sender, send))
            delivered = quote_send(p, sender, send, path, dest, amount)
            if delivered:
                destination, memo, marks = p.tagging(recipient)
                op = PathPaymentStrictSend(
                    destination, send, _amount(amount), dest, _amount(delivered * 99 // 100 or 1), path
                )
                return Intent(sender, [op], memo, marks)
        else:
            amount = _worth(p, dest, worth)
            needed = quote_receive(p, sender, send, path, dest, amount)
            if needed and needed * 101 // 100 <= p.can_use(sender, send):
                destination, memo, marks = p.tagging(recipient)
                op = PathPaymentStrictReceive(
                    destination, send, _amount(needed * 101 // 100), dest, _amount(amount), path
                )
                return Intent(sender, [op], memo, marks)
        worth //= 2
    return None


def _book_hop(p: Planner) -> tuple[Asset, Asset]:
    """Two assets only the order book converts."""
    return p.rng.choice([(NATIVE, _eur(p)), (_eur(p), NATIVE), (_usd(p), _eur(p)), (_eur(p), _usd(p))])


def _pool_hop(p: Planner) -> tuple[Asset, Asset]:
    """Two assets only a liquidity pool converts."""
    return p.rng.choice([(_eur(p), _gold(p)), (_gold(p), _eur(p))])


def path_send_book(p: Planner) -> Intent | None:
    send, dest = _book_hop(p)
    return _convert(p, send, [], dest, strict_send=True)


def path_receive_book(p: Planner) -> Intent | None:
    send, dest = _book_hop(p)
    return _convert(p, send, [], dest, strict_send=False)


def path_send_pool(p: Planner) -> Intent | None:
    send, dest = _pool_hop(p)
    return _convert(p, send, [], dest, strict_send=True)


def path_receive_pool(p: Planner) -> Intent | None:
    send, dest = _pool_hop(p)
    return _convert(p, send, [], dest, strict_send=False)


def path_multi(p: Planner) -> Intent | None:
    """Two hops (XLM -> EUR -> SANDBOXGOLD or back, or USD -> XLM -> EUR), through whichever
    venue is better at each hop."""
    send, path, dest = p.rng.choice(
        [(NATIVE, [_eur(p)], _gold(p)), (_gold(p), [_eur(p)], NATIVE), (_usd(p), [NATIVE], _eur(p))]
    )
    return _convert(p, send, path, dest, strict_send=p.rng.random() < 0.5)


def _providers(p: Planner, pool_id: bytes) -> int:
    """Share holders that hold shares."""
    return sum(1 for user in p.holdings.pool_holders.get(pool_id, []) if p.pool_share(user, pool_id).balance)


def due(p: Planner) -> list[str]:
    """Every pool needs share holders (three at least) and two of them providing liquidity."""
    kinds = []
    for pair in _pools(p):
        pool_id = pool_of(*pair)[0]
        if len(p.holdings.pool_holders.get(pool_id, [])) < 3:
            kinds.append("pool_trust")
        elif _providers(p, pool_id) < 2:
            kinds.append("pool_deposit")
    return kinds


ACTIONS = {
    "offer_rest": (offer_rest, 5, False),
    "offer_passive": (offer_passive, 2, False),
    "offer_cross": (offer_cross, 5, False),
    "offer_buy": (offer_buy, 3, False),
    "offer_update": (offer_update, 2, False),
    "offer_delete": (offer_delete, 1, False),
    "pool_trust": (pool_trust, 2, False),
    "pool_deposit": (pool_deposit, 3, False),
    "pool_withdraw": (pool_withdraw, 2, False),
    "path_send_book": (path_send_book, 3, False),
    "path_receive_book": (path_receive_book, 3, False),
    "path_send_pool": (path_send_pool, 3, False),
    "path_receive_pool": (path_receive_pool, 3, False),
    "path_multi": (path_multi, 3, False),
}
