/* Token transfers derived from operations, their results and ledger-entry changes, straight
 * from the bytes: the compiled twin of obsrvr_ray/ttp/derive.py and its rule modules
 *   fees                        ttp/fees.py
 *   payments, path payments     ttp/payments.py, ttp/offers.py (claim atoms)
 *   claimable balances          ttp/claimable_balances.py, ttp/ledger_entries.py
 *   clawback, pools             ttp/clawback.py, ttp/liquidity_pools.py
 *   pool-share revocations      ttp/revocation.py
 *   protocol < 8 XLM            derive._legacy_xlm_correction
 *   the issuer rule, muxed info ttp/issuer.py, ttp/muxed.py
 *   contract calls              derive.invoke_host_function
 * for ledgers whose metas carry no unified events (every ledger before protocol 23 as core
 * wrote it) and whenever the operations' view is asked for. Those modules stay the
 * specification; tests/test_transfer_columns.py holds this file to them.
 *
 * Whatever the Python rules record as an error or raise as a bug makes the ledger "fallback":
 * the Python rules read it, so their messages and exceptions stay the only ones.
 * The walk (_transfers.c) has checked every byte before this file reads any. */
#include "_transfers.h"

enum { FALLBACK = 1 };
enum { P_ACCOUNT, P_BALANCE, P_POOL };

/* Who an event names: an account (as written: muxed or not), a claimable balance or a pool. */
typedef struct {
    int kind;
    const unsigned char *key;  /* the account key, balance hash or pool id */
    int muxed;
    uint64_t id;
} Party;

typedef struct {
    TransferColumns *x;
    const Input *in;
    const Facts *f;
    const TxAt *at;
    int index;                 /* 1-based, apply order */
    Party source;              /* the (inner) transaction's source */
    Party fee_payer;
    const unsigned char *seq;  /* the (inner) transaction's sequence number */
    Py_ssize_t memo;           /* the (inner) transaction's memo */
    Buf *ops;                  /* positions of its operations (Py_ssize_t) */
    int soroban;               /* the transaction carries SorobanTransactionData */
} Tx;

static inline const unsigned char *at(const Tx *t, Py_ssize_t pos) {
    return t->in->buf + pos;
}

static inline int64_t rd_i64(const unsigned char *p) {
    return (int64_t)rd64(p);
}

/* A MuxedAccount at pos: the party, and its encoding's length. */
static Py_ssize_t read_muxed(const unsigned char *p, Party *party) {
    party->kind = P_ACCOUNT;
    if (rd32(p) == 0x100) {  /* KEY_TYPE_MUXED_ED25519: id, key */
        party->muxed = 1;
        party->id = rd64(p + 4);
        party->key = p + 12;
        return 44;
    }
    party->muxed = 0;
    party->key = p + 4;
    return 36;
}

static Party account_party(const unsigned char *key) {
    Party party = {P_ACCOUNT, key, 0, 0};
    return party;
}

static Py_ssize_t asset_size(const unsigned char *p) {
    switch (rd32(p)) {
    case 0: return 4;
    case 1: return 44;
    default: return 52;
    }
}

static Py_ssize_t memo_size(const unsigned char *p) {
    switch (rd32(p)) {
    case 0: return 4;
    case 1: return 8 + ((rd32(p + 4) + 3) & ~3u);
    case 2: return 12;
    default: return 36;
    }
}

/* The entry of the XDR Asset at p. One the Python rules would name otherwise (a code that is
 * not its canonical encoding: they re-encode the asset) makes the ledger theirs. */
static const AssetEntry *asset_at(const Tx *t, const unsigned char *p) {
    const AssetEntry *a = asset_lookup(t->x, &t->x->by_xdr, p, asset_size(p));
    if (a != NULL && !a->is_asset) t->x->fallback = 1;
    return a;
}

/* A party as the SCAddress encoding events keep (an account's muxed form is not kept: the
 * rules name the account, and put the muxed id in the muxed columns). */
static int put_party(unsigned char *dst, const Party *party) {
    memset(dst, 0, 8);
    switch (party->kind) {
    case P_ACCOUNT:
        memcpy(dst + 8, party->key, 32);
        return 40;
    case P_BALANCE:
        dst[3] = 3;
        memcpy(dst + 8, party->key, 32);
        return 40;
    default:
        dst[3] = 4;
        memcpy(dst + 4, party->key, 32);
        return 36;
    }
}

/* muxed.destination_info: the M address's id, else the memo, for account destinations. */
static void destination_info(const Tx *t, const Party *to, Ev *ev) {
    ev->mux = MUX_NONE;
    if (to->kind != P_ACCOUNT || (t->soroban && t->f->protocol < 23)) return;
    if (to->muxed) {
        ev->mux = MUX_ID;
        ev->mux_id = to->id;
        return;
    }
    const unsigned char *memo = at(t, t->memo);
    switch (rd32(memo)) {
    case 0:
        return;
    case 2:
        ev->mux = MUX_ID;
        ev->mux_id = rd64(memo + 4);
        return;
    default:  /* text, hash, return hash: no id (stellar-etl writes 0) */
        ev->mux = MUX_OTHER;
        ev->mux_id = 0;
    }
}

static Ev *op_event(const Tx *t, int op, int kind, const AssetEntry *asset, __int128 amount) {
    Ev *ev = new_event(t->x);
    if (ev == NULL) return NULL;
    ev->kind = kind;
    ev->role = R_OP;
    ev->tx = t->index;
    ev->op = op;
    ev->tx_hash = t->at->hash;
    ev->asset = asset;
    ev->contract = asset->sac;
    ev->amount = amount;
    ev->mux = MUX_NONE;
    return ev;
}

/* issuer.classic_event on an event whose from and to are set (SCAddress encodings, accounts
 * already their base account): value leaving the asset's issuer is minted (no from), value
 * reaching it is burnt (no to), between two issuers or neither it is a transfer. */
static void issuer_rule(Ev *ev) {
    const AssetEntry *a = ev->asset;
    int from_issuer = a->credit && rd32(ev->from) == 0 && memcmp(ev->from + 8, a->issuer, 32) == 0;
    int to_issuer = a->credit && rd32(ev->to) == 0 && memcmp(ev->to + 8, a->issuer, 32) == 0;
    if (from_issuer && !to_issuer) {
        ev->kind = K_MINT;
        ev->from_len = 0;
    } else if (to_issuer && !from_issuer) {
        ev->kind = K_BURN;
        ev->to_len = 0;
    }
}

/* classic.movement: a transfer by the issuer rule, with the destination's muxed info on
 * transfers and mints when `with_muxed`. */
static int movement(const Tx *t, int op, const AssetEntry *asset, const Party *from, const Party *to,
                    __int128 amount, int with_muxed) {
    if (asset == NULL) return -1;
    Ev *ev = op_event(t, op, K_TRANSFER, asset, amount);
    if (ev == NULL) return -1;
    t->x->nevs++;
    ev->from_len = put_party(ev->from, from);
    ev->to_len = put_party(ev->to, to);
    issuer_rule(ev);
    if (with_muxed && ev->kind != K_BURN) destination_info(t, to, ev);
    return 0;
}

/* ---- ledger-entry changes --------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t pre, post;  /* the LedgerEntry of each side, -1 when absent */
} Pair;

/* meta.paired_changes over the LedgerEntryChanges at pos, appended to *out. */
static int paired_changes(const Tx *t, Py_ssize_t pos, Buf *out) {
    uint32_t n = rd32(at(t, pos));
    Py_ssize_t p = pos + 4, pending = -1;
    for (uint32_t i = 0; i < n; i++) {
        int32_t kind = (int32_t)rd32(at(t, p));
        Pair pair = {-1, -1};
        int paired = 1;
        if (kind == 3) {  /* STATE: the pre of what follows */
            pending = p + 4;
            paired = 0;
        } else if (kind == 1) {  /* UPDATED */
            pair.pre = pending;
            pair.post = p + 4;
        } else if (kind == 2) {  /* REMOVED */
            pair.pre = pending;
        } else {  /* CREATED, RESTORED */
            pair.post = p + 4;
        }
        if (paired) {
            pending = -1;
            if (buf_put(out, &pair, sizeof pair) < 0) return -1;
        }
        if (skip_type(t->x->d, t->in, t->x->t_change, &p, MAX_DEPTH) < 0) return -1;
    }
    return 0;
}

enum { E_ACCOUNT = 0, E_CLAIMABLE_BALANCE = 4, E_LIQUIDITY_POOL = 5 };

static inline int entry_type(const Tx *t, Py_ssize_t entry) {
    return (int)(int32_t)rd32(at(t, entry + 4));
}

/* The balance of an AccountEntry holding `key` (the LedgerEntry at `entry`), in *balance; 0 when
 * the entry is not that account's. */
static int account_entry(const Tx *t, Py_ssize_t entry, const unsigned char *key, int64_t *balance) {
    if (entry_type(t, entry) != E_ACCOUNT || memcmp(at(t, entry + 12), key, 32) != 0) return 0;
    *balance = rd_i64(at(t, entry + 44));
    return 1;
}

/* A ClaimableBalanceEntry's asset and amount (after its claimants). */
static int balance_entry(const Tx *t, Py_ssize_t entry, const unsigned char **asset, int64_t *amount) {
    Py_ssize_t p = entry + 8 + 36;
    uint32_t n = rd32(at(t, p));
    p += 4;
    for (uint32_t i = 0; i < n; i++) {
        if (skip_type(t->x->d, t->in, t->x->t_claimant, &p, MAX_DEPTH) < 0) return -1;
    }
    *asset = at(t, p);
    *amount = rd_i64(at(t, p + asset_size(at(t, p))));
    return 0;
}

/* A liquidity pool's id, assets and reserves (zeros for an absent side). */
typedef struct {
    const unsigned char *id, *asset_a, *asset_b;
    int64_t reserve_a, reserve_b;
} Pool;

static void pool_entry(const Tx *t, Py_ssize_t entry, Pool *pool) {
    const unsigned char *p = at(t, entry + 8);
    pool->id = p;
    pool->asset_a = p + 36;  /* body: type, then the constant product's params */
    pool->asset_b = pool->asset_a + asset_size(pool->asset_a);
    const unsigned char *reserves = pool->asset_b + asset_size(pool->asset_b) + 4;
    pool->reserve_a = rd_i64(reserves);
    pool->reserve_b = rd_i64(reserves + 8);
}

/* ---- a transaction's meta ----------------------------------------------------------------------- */

/* The first OperationMeta of the meta, their count, and the meta's version. */
static int meta_operations(const Tx *t, Py_ssize_t *pos, uint32_t *n) {
    TransferColumns *x = t->x;
    Py_ssize_t p = t->at->meta;
    int v = t->at->meta_version;
    p += 4;
    if (v >= 3 && skip_type(x->d, t->in, x->t_ext_point, &p, MAX_DEPTH) < 0) return -1;
    if (v >= 1 && skip_type(x->d, t->in, x->t_changes, &p, MAX_DEPTH) < 0) return -1;
    *n = rd32(at(t, p));
    *pos = p + 4;
    return 0;
}

/* Past one OperationMeta (v4: OperationMetaV2 with its ext and events); *changes: where its
 * LedgerEntryChanges are. */
static int next_operation(const Tx *t, Py_ssize_t *pos, Py_ssize_t *changes) {
    TransferColumns *x = t->x;
    if (t->at->meta_version == 4 && skip_type(x->d, t->in, x->t_ext_point, pos, MAX_DEPTH) < 0) return -1;
    *changes = *pos;
    if (skip_type(x->d, t->in, x->t_changes, pos, MAX_DEPTH) < 0) return -1;
    if (t->at->meta_version == 4) {
        uint32_t n = rd32(at(t, *pos));
        *pos += 4;
        for (uint32_t i = 0; i < n; i++) {
            if (skip_type(x->d, t->in, x->t_event, pos, MAX_DEPTH) < 0) return -1;
        }
    }
    return 0;
}

/* Where each OperationMeta's LedgerEntryChanges are (x->op_changes) and where the changes after
 * the operations are (x->after_ops; -1 in v0 and v1 metas): read once per transaction, when a
 * rule first needs them. */
static int meta_layout(const Tx *t) {
    TransferColumns *x = t->x;
    if (x->layout_of == t->at) return 0;
    Py_ssize_t p, changes;
    uint32_t n;
    x->op_changes.len = 0;
    if (meta_operations(t, &p, &n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (next_operation(t, &p, &changes) < 0 || buf_put(&x->op_changes, &changes, sizeof changes) < 0) return -1;
    }
    x->after_ops = t->at->meta_version >= 2 ? p : -1;
    x->layout_of = t->at;
    return 0;
}

/* Where operation `index`'s changes are (meta.operation_changes), or -1 past the metas. */
static int op_changes(const Tx *t, uint32_t index, Py_ssize_t *pos) {
    if (meta_layout(t) < 0) return -1;
    Py_ssize_t n = t->x->op_changes.len / (Py_ssize_t)sizeof(Py_ssize_t);
    *pos = (Py_ssize_t)index < n ? ((const Py_ssize_t *)t->x->op_changes.p)[index] : -1;
    return 0;
}

/* Operation `index`'s changes paired (none past the metas). */
static int op_pairs(const Tx *t, uint32_t index, Buf *out) {
    Py_ssize_t changes;
    out->len = 0;
    if (op_changes(t, index, &changes) < 0) return -1;
    return changes < 0 ? 0 : paired_changes(t, changes, out);
}

/* Where the changes after the operations are (meta.changes_after), or -1 (v0, v1). */
static int changes_after(const Tx *t, Py_ssize_t *pos) {
    if (meta_layout(t) < 0) return -1;
    *pos = t->x->after_ops;
    return 0;
}

/* meta.account_balances over changes at `pos` (-1: none): the payer's balance in its last
 * STATE and in its last UPDATED, carried over from earlier lists. */
static int account_balances(const Tx *t, Py_ssize_t pos, const unsigned char *key, int64_t *start, int64_t *end) {
    if (pos < 0) return 0;
    uint32_t n = rd32(at(t, pos));
    Py_ssize_t p = pos + 4;
    for (uint32_t i = 0; i < n; i++) {
        int32_t kind = (int32_t)rd32(at(t, p));
        int64_t balance;
        if ((kind == 3 || kind == 1) && account_entry(t, p + 4, key, &balance)) *(kind == 3 ? start : end) = balance;
        if (skip_type(t->x->d, t->in, t->x->t_change, &p, MAX_DEPTH) < 0) return -1;
    }
    return 0;
}

/* ---- the rules ------------------------------------------------------------------------------ */

/* The one claimable balance the operation removed, or FALLBACK (TransferError). */
static int removed_balance(const Tx *t, int op, const unsigned char **asset, int64_t *amount) {
    if (op_pairs(t, (uint32_t)op - 1, &t->x->pairs) < 0) return -1;
    const Pair *p = (const Pair *)t->x->pairs.p;
    Py_ssize_t n = t->x->pairs.len / (Py_ssize_t)sizeof(Pair), found = -1, count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i].post < 0 && p[i].pre >= 0 && entry_type(t, p[i].pre) == E_CLAIMABLE_BALANCE) {
            found = p[i].pre;
            count++;
        }
    }
    if (count != 1) return FALLBACK;
    return balance_entry(t, found, asset, amount);
}

/* ledger_entries.pool_deltas for one pair: *is_pool set with the pool (its latest entry) and
 * its reserves' post - pre when the pair is a pool's; FALLBACK where the rules find no reserves
 * to read (a pool's entry paired with another kind). */
static int pool_change(const Tx *t, const Pair *pair, int *is_pool, Pool *pool, __int128 delta[2]) {
    Py_ssize_t entry = pair->post >= 0 ? pair->post : pair->pre;
    *is_pool = entry >= 0 && entry_type(t, entry) == E_LIQUIDITY_POOL;
    if (!*is_pool) return 0;
    if (pair->pre >= 0 && entry_type(t, pair->pre) != E_LIQUIDITY_POOL) return FALLBACK;
    Pool pre = {0}, post = {0};
    if (pair->pre >= 0) pool_entry(t, pair->pre, &pre);
    if (pair->post >= 0) pool_entry(t, pair->post, &post);
    pool_entry(t, entry, pool);
    delta[0] = (__int128)post.reserve_a - pre.reserve_a;
    delta[1] = (__int128)post.reserve_b - pre.reserve_b;
    return 0;
}

/* The pool deltas of the operation's changes: how many, and the first one's. */
static int pool_delta(const Tx *t, int op, Pool *pool, __int128 delta[2], int *count) {
    if (op_pairs(t, (uint32_t)op - 1, &t->x->pairs) < 0) return -1;
    const Pair *p = (const Pair *)t->x->pairs.p;
    Py_ssize_t n = t->x->pairs.len / (Py_ssize_t)sizeof(Pair);
    *count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Pool found;
        __int128 found_delta[2];
        int is_pool, rc = pool_change(t, &p[i], &is_pool, &found, found_delta);
        if (rc != 0) return rc;
        if (!is_pool || (*count)++) continue;
        *pool = found;
        delta[0] = found_delta[0];
        delta[1] = found_delta[1];
    }
    return 0;
}

/* The claimable balance created with `hash` among the pairs (the last one, as a dict keeps it). */
static Py_ssize_t created_balance(const Tx *t, const unsigned char *hash) {
    const Pair *p = (const Pair *)t->x->pairs.p;
    for (Py_ssize_t i = t->x->pairs.len / (Py_ssize_t)sizeof(Pair) - 1; i >= 0; i--) {
        if (p[i].pre < 0 && p[i].post >= 0 && entry_type(t, p[i].post) == E_CLAIMABLE_BALANCE &&
            memcmp(at(t, p[i].post + 12), hash, 32) == 0) {
            return p[i].post;
        }
    }
    return -1;
}

/* revocation.revoke: a revoked trustline's pool shares are redeemed; each side goes into a
 * claimable balance whose id is the POOL_REVOKE_OP_ID hash of (the transaction's source and
 * sequence, the operation's number, the pool, the asset), or is burnt when the trustor issued it. */
static int revocation(const Tx *t, int op) {
    if (op_pairs(t, (uint32_t)op - 1, &t->x->pairs) < 0) return -1;
    const Pair *p = (const Pair *)t->x->pairs.p;
    Py_ssize_t n = t->x->pairs.len / (Py_ssize_t)sizeof(Pair), any_created = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        any_created |= p[i].pre < 0 && p[i].post >= 0 && entry_type(t, p[i].post) == E_CLAIMABLE_BALANCE;
    }
    if (!any_created) return 0;
    static const unsigned char head[8] = {0, 0, 0, 7, 0, 0, 0, 0};  /* ENVELOPE_TYPE_POOL_REVOKE_OP_ID, KEY_TYPE_ED25519 */
    unsigned char op_number[4] = {0, 0, (unsigned char)((op - 1) >> 8), (unsigned char)(op - 1)};
    for (Py_ssize_t i = 0; i < n; i++) {
        Pool pool;
        __int128 deltas[2];
        int is_pool, rc = pool_change(t, &p[i], &is_pool, &pool, deltas);
        if (rc != 0) return rc;
        if (!is_pool) continue;
        const unsigned char *assets[2] = {pool.asset_a, pool.asset_b};
        if (asset_at(t, assets[0]) == NULL || asset_at(t, assets[1]) == NULL) return -1;  /* hashed as written */
        Py_ssize_t balances[2];
        int matched = 0;
        Party lp = {P_POOL, pool.id, 0, 0};
        for (int side = 0; side < 2; side++) {
            unsigned char hash[32];
            Part parts[] = {{head, 8}, {t->source.key, 32}, {t->seq, 8}, {op_number, 4}, {pool.id, 32},
                            {assets[side], asset_size(assets[side])}};
            if (sha256_of(t->x, parts, 6, hash) < 0) return -1;
            balances[side] = created_balance(t, hash);
            matched += balances[side] >= 0;
        }
        for (int side = 0; side < 2; side++) {
            if (balances[side] < 0) continue;
            const unsigned char *asset;
            int64_t amount;
            if (balance_entry(t, balances[side], &asset, &amount) < 0) return -1;
            Party balance = {P_BALANCE, at(t, balances[side] + 12), 0, 0};
            if (movement(t, op, asset_at(t, asset), &lp, &balance, amount, 0) < 0) return -1;
        }
        if (matched == 1) {  /* the other side is burnt */
            int side = balances[0] < 0 ? 0 : 1;
            const AssetEntry *a = asset_at(t, assets[side]);
            Ev *ev = a ? op_event(t, op, K_BURN, a, deltas[side] < 0 ? -deltas[side] : deltas[side]) : NULL;
            if (ev == NULL) return -1;
            ev->from_len = put_party(ev->from, &lp);
            t->x->nevs++;
        }
    }
    return 0;
}

/* Each claim atom: the sold asset from the seller to the taker, then the bought one back
 * (stellar/go's order). Returns the position after the atoms. */
static int claim_atoms(const Tx *t, int op, Py_ssize_t pos, const Party *taker, Py_ssize_t *end) {
    uint32_t n = rd32(at(t, pos));
    const unsigned char *p = at(t, pos + 4);
    for (uint32_t i = 0; i < n; i++) {
        Party seller;
        const unsigned char *sold;
        switch (rd32(p)) {
        case 0:  /* CLAIM_ATOM_TYPE_V0: sellerEd25519, offerID */
            seller = account_party(p + 4);
            sold = p + 44;
            break;
        case 1:  /* ORDER_BOOK: sellerID, offerID */
            seller = account_party(p + 8);
            sold = p + 48;
            break;
        default:  /* LIQUIDITY_POOL: poolID */
            seller = (Party){P_POOL, p + 4, 0, 0};
            sold = p + 36;
        }
        const unsigned char *sold_amount = sold + asset_size(sold), *bought = sold_amount + 8;
        const unsigned char *bought_amount = bought + asset_size(bought);
        if (movement(t, op, asset_at(t, sold), &seller, taker, rd_i64(sold_amount), 0) < 0) return -1;
        if (movement(t, op, asset_at(t, bought), taker, &seller, rd_i64(bought_amount), 0) < 0) return -1;
        p = bought_amount + 8;
    }
    *end = p - t->in->buf;
    return 0;
}

/* issuer.account_of: the account behind a muxed address (an SCAddress encoding). */
static void as_account(unsigned char *address, int *len) {
    if (rd32(address) != 2) return;
    unsigned char key[32];
    memcpy(key, address + 12, 32);
    memset(address, 0, 8);
    memcpy(address + 8, key, 32);
    *len = 40;
}

/* derive.invoke_host_function: the SEP-41 events of the call, read as core wrote them; before
 * CAP-67 (v3 meta) a SAC transfer involving the asset's issuer is a mint or a burn. */
static int contract_call(const Tx *t, int op) {
    TransferColumns *x = t->x;
    Py_ssize_t p;
    uint32_t nev;
    int v = t->at->meta_version;
    if (v != 3 && v != 4) return 0;
    if (op_changes(t, (uint32_t)op - 1, &p) < 0) return -1;
    if (p < 0) return 0;  /* no meta for the operation */
    if (v == 4) {  /* the operation's own events, after its changes */
        if (skip_type(x->d, t->in, x->t_changes, &p, MAX_DEPTH) < 0) return -1;
    } else {  /* the Soroban meta's events, after the changes after the operations: the first operation's */
        if (op != 1) return 0;
        p = x->after_ops;
        if (skip_type(x->d, t->in, x->t_changes, &p, MAX_DEPTH) < 0) return -1;
        if (rd32(at(t, p)) == 0) return 0;
        p += 4;
        if (skip_type(x->d, t->in, x->t_soroban_v1_ext, &p, MAX_DEPTH) < 0) return -1;
    }
    nev = rd32(at(t, p));
    p += 4;
    for (uint32_t j = 0; j < nev; j++) {
        RawEvent e;
        if (read_event(x, t->in, &p, MAX_DEPTH, &e) < 0) return -1;
        Ev *ev = new_event(x);
        if (ev == NULL) return -1;
        int rc = token_event(x, t->in, &e, ev, v == 4);
        if (rc < 0) return -1;
        if (rc == 0) {
            x->skipped++;
            continue;
        }
        ev->role = R_OP;
        ev->tx = t->index;
        ev->op = op;
        ev->tx_hash = t->at->hash;
        if (v == 3 && ev->kind == K_TRANSFER && ev->asset != NULL) {  /* issuer.classic_event */
            as_account(ev->from, &ev->from_len);
            as_account(ev->to, &ev->to_len);
            issuer_rule(ev);
        }
        x->nevs++;
    }
    return 0;
}

/* The events of operation `op` (1-based) at pos, with its result at rpos: 0, FALLBACK or -1. */
static int operation(const Tx *t, int op, Py_ssize_t pos, Py_ssize_t rpos) {
    Party source = t->source;
    const unsigned char *p = at(t, pos);
    if (rd32(p)) p += 4 + read_muxed(p + 4, &source);
    else p += 4;
    int32_t type = (int32_t)rd32(p);
    const unsigned char *b = p + 4, *r = at(t, rpos);
    if (rd32(r) != 0 || (int32_t)rd32(r + 4) != type) return FALLBACK;  /* not opINNER, or another op's result */
    int32_t code = (int32_t)rd32(r + 8);
    Py_ssize_t success = rpos + 12, end;
    Party taker = account_party(source.key), to, balance;
    const unsigned char *asset;
    int64_t amount;
    int rc;
    switch (type) {
    case 0:  /* CREATE_ACCOUNT: destination, starting balance */
        to = account_party(b + 4);
        return movement(t, op, &t->x->native, &source, &to, rd_i64(b + 36), 1);
    case 1:  /* PAYMENT: destination, asset, amount */
        asset = b + read_muxed(b, &to);
        return movement(t, op, asset_at(t, asset), &source, &to, rd_i64(asset + asset_size(asset)), 1);
    case 2:    /* PATH_PAYMENT_STRICT_RECEIVE: sendAsset, sendMax, destination, destAsset, destAmount */
    case 13: { /* PATH_PAYMENT_STRICT_SEND: sendAsset, sendAmount, destination, destAsset, destMin */
        if (code != 0) return FALLBACK;
        const unsigned char *dest = b + asset_size(b) + 8;
        asset = dest + read_muxed(dest, &to);
        if (claim_atoms(t, op, success, &taker, &end) < 0) return -1;
        if (type == 2) amount = rd_i64(asset + asset_size(asset));
        else amount = rd_i64(at(t, end + 36) + asset_size(at(t, end + 36)));  /* last: destination, asset, amount */
        return movement(t, op, asset_at(t, asset), &source, &to, amount, 1);
    }
    case 3: case 4: case 12:  /* offers: the trades they crossed */
        if (code != 0) return FALLBACK;
        return claim_atoms(t, op, success, &taker, &end);
    case 8:  /* ACCOUNT_MERGE: the merged balance (old results do not record it) */
        if (code != 0) return 0;
        read_muxed(b, &to);
        return movement(t, op, &t->x->native, &source, &to, rd_i64(r + 12), 1);
    case 9: {  /* INFLATION: payouts minted */
        if (code != 0) return 0;
        uint32_t n = rd32(r + 12);
        for (uint32_t i = 0; i < n; i++) {
            const unsigned char *payout = r + 16 + 44 * i;  /* destination, amount */
            Ev *ev = op_event(t, op, K_MINT, &t->x->native, rd_i64(payout + 36));
            if (ev == NULL) return -1;
            Party dest = account_party(payout + 4);
            ev->to_len = put_party(ev->to, &dest);
            t->x->nevs++;
        }
        return 0;
    }
    case 14:  /* CREATE_CLAIMABLE_BALANCE: asset, amount into the balance the result names */
        if (code != 0) return FALLBACK;
        balance = (Party){P_BALANCE, r + 16, 0, 0};
        return movement(t, op, asset_at(t, b), &source, &balance, rd_i64(b + asset_size(b)), 0);
    case 15:  /* CLAIM_CLAIMABLE_BALANCE: the removed entry's asset and amount */
        rc = removed_balance(t, op, &asset, &amount);
        if (rc != 0) return rc;
        balance = (Party){P_BALANCE, b + 4, 0, 0};
        return movement(t, op, asset_at(t, asset), &balance, &source, amount, 1);
    case 20: {  /* CLAWBACK_CLAIMABLE_BALANCE */
        rc = removed_balance(t, op, &asset, &amount);
        if (rc != 0) return rc;
        const AssetEntry *a = asset_at(t, asset);
        Ev *ev = a ? op_event(t, op, K_CLAWBACK, a, amount) : NULL;
        if (ev == NULL) return -1;
        balance = (Party){P_BALANCE, b + 4, 0, 0};
        ev->from_len = put_party(ev->from, &balance);
        t->x->nevs++;
        return 0;
    }
    case 19: {  /* CLAWBACK: asset, from, amount */
        const unsigned char *from = b + asset_size(b);
        Party holder;
        const unsigned char *amount_at = from + read_muxed(from, &holder);
        const AssetEntry *a = asset_at(t, b);
        Ev *ev = a ? op_event(t, op, K_CLAWBACK, a, rd_i64(amount_at)) : NULL;
        if (ev == NULL) return -1;
        ev->from_len = put_party(ev->from, &holder);
        t->x->nevs++;
        return 0;
    }
    case 7: case 21:  /* ALLOW_TRUST, SET_TRUST_LINE_FLAGS */
        return revocation(t, op);
    case 22: case 23: {  /* LIQUIDITY_POOL_DEPOSIT / WITHDRAW: the pool's reserve changes */
        Pool pool = {0};
        __int128 delta[2] = {0, 0};
        int pools;
        rc = pool_delta(t, op, &pool, delta, &pools);
        if (rc != 0) return rc;
        if (pools != 1) return FALLBACK;
        __int128 da = delta[0], db = delta[1];
        Party lp = {P_POOL, pool.id, 0, 0};
        if (type == 22) {
            da = da < 0 ? -da : da;
            db = db < 0 ? -db : db;
            if (da <= 0 || db <= 0) return FALLBACK;
            if (movement(t, op, asset_at(t, pool.asset_a), &source, &lp, da, 0) < 0) return -1;
            return movement(t, op, asset_at(t, pool.asset_b), &source, &lp, db, 0);
        }
        if (-da < 0 || -db < 0) return FALLBACK;
        if (movement(t, op, asset_at(t, pool.asset_a), &lp, &source, -da, 1) < 0) return -1;
        return movement(t, op, asset_at(t, pool.asset_b), &lp, &source, -db, 1);
    }
    case 24:
        return contract_call(t, op);
    case 5: case 6: case 10: case 11: case 16: case 17: case 18: case 25: case 26:
        return 0;  /* operations that move no value */
    default:
        return FALLBACK;  /* no rule: the Python rules record it */
    }
}

/* The account an SCAddress encoding names (a muxed one's base), or NULL. */
static const unsigned char *account_key(const unsigned char *address, int len) {
    if (len == 0) return NULL;
    switch (rd32(address)) {
    case 0: return address + 8;
    case 2: return address + 12;
    default: return NULL;
    }
}

/* derive._legacy_xlm_correction: before protocol 8 core could create or destroy XLM in some
 * operations. What the operation's changes did to its source's XLM, less what its events
 * (x->evs from `first` on) explain, is a mint put first or a burn put last. */
static int legacy_correction(const Tx *t, int op, Py_ssize_t op_pos, Py_ssize_t first) {
    TransferColumns *x = t->x;
    Party source = t->source;
    const unsigned char *p = at(t, op_pos);
    if (rd32(p)) read_muxed(p + 4, &source);
    __int128 diff = 0;
    if (op_pairs(t, (uint32_t)op - 1, &x->pairs) < 0) return -1;
    const Pair *pr = (const Pair *)x->pairs.p;
    for (Py_ssize_t i = 0; i < x->pairs.len / (Py_ssize_t)sizeof(Pair); i++) {
        Py_ssize_t sides[2] = {pr[i].post, pr[i].pre};
        for (int side = 0; side < 2; side++) {
            int64_t balance;
            if (sides[side] < 0 || !account_entry(t, sides[side], source.key, &balance)) continue;
            diff += side == 0 ? balance : -(__int128)balance;
        }
    }
    for (Py_ssize_t i = first; i < x->nevs; i++) {  /* reconcile.event_deltas, for the source's XLM */
        const Ev *ev = &x->evs[i];
        if (ev->asset == NULL || ev->asset->credit) continue;
        const unsigned char *from = account_key(ev->from, ev->from_len), *to = account_key(ev->to, ev->to_len);
        if (from != NULL && ev->kind != K_MINT && memcmp(from, source.key, 32) == 0) diff += ev->amount;
        if (to != NULL && (ev->kind == K_TRANSFER || ev->kind == K_MINT) && memcmp(to, source.key, 32) == 0) {
            diff -= ev->amount;
        }
    }
    if (diff == 0) return 0;
    Ev *ev = op_event(t, op, diff > 0 ? K_MINT : K_BURN, &x->native, diff > 0 ? diff : -diff);
    if (ev == NULL) return -1;
    Party account = account_party(source.key);
    if (diff < 0) {
        ev->from_len = put_party(ev->from, &account);
        x->nevs++;
        return 0;
    }
    ev->to_len = put_party(ev->to, &account);
    Ev mint = *ev;
    memmove(&x->evs[first + 1], &x->evs[first], (size_t)(x->nevs - first) * sizeof(Ev));
    x->evs[first] = mint;
    x->nevs++;
    return 0;
}

/* ---- a transaction ------------------------------------------------------------------------------- */

/* The (inner) transaction of the envelope whose signed body is `span`: its source, fee payer,
 * memo, operations and whether it carries Soroban data. */
static int read_envelope(Tx *t, const Span *span) {
    TransferColumns *x = t->x;
    Py_ssize_t p = span->start;
    if (span->tag == 5) {  /* FeeBumpTransaction: feeSource, fee, innerTx (type, TransactionV1Envelope) */
        p += read_muxed(at(t, p), &t->fee_payer);
        p += 8 + 4;
    }
    int v0 = span->tag == 0;
    if (v0) {  /* TransactionV0: sourceAccountEd25519, fee, seqNum, timeBounds* */
        t->source = account_party(at(t, p));
        t->seq = at(t, p + 36);
        p += 32 + 4 + 8;
        p += rd32(at(t, p)) ? 20 : 4;
    } else {  /* Transaction: sourceAccount, fee, seqNum, cond */
        p += read_muxed(at(t, p), &t->source);
        t->seq = at(t, p + 4);
        p += 4 + 8;
        if (skip_type(x->d, t->in, x->t_preconditions, &p, MAX_DEPTH) < 0) return -1;
    }
    if (span->tag != 5) t->fee_payer = t->source;
    t->memo = p;
    p += memo_size(at(t, p));
    uint32_t n = rd32(at(t, p));
    p += 4;
    t->ops->len = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (buf_put(t->ops, &p, sizeof p) < 0) return -1;
        if (skip_type(x->d, t->in, x->t_operation, &p, MAX_DEPTH) < 0) return -1;
    }
    t->soroban = !v0 && (int32_t)rd32(at(t, p)) == 1;
    return 0;
}

static int fee_event(const Tx *t, int role, __int128 amount) {
    TransferColumns *x = t->x;
    Ev *ev = new_event(x);
    if (ev == NULL) return -1;
    ev->kind = K_FEE;
    ev->role = role;
    ev->tx = t->index;
    ev->tx_hash = t->at->hash;
    ev->asset = &x->native;
    ev->contract = x->native_sac;
    ev->amount = amount;
    ev->mux = MUX_NONE;
    Party payer = account_party(t->fee_payer.key);
    ev->from_len = put_party(ev->from, &payer);
    x->nevs++;
    return 0;
}

/* fees.fee_events: the fee charged (a Soroban transaction's from the payer's balance), and the
 * refund, which follows the transaction's other events. */
static int fees(const Tx *t, __int128 *refund) {
    *refund = 0;
    if (!t->soroban) return fee_event(t, R_CHARGED, rd_i64(at(t, t->at->result)));
    const unsigned char *payer = t->fee_payer.key;
    int64_t start = 0, end = 0, before = 0, after = 0;
    Py_ssize_t later;
    if (account_balances(t, t->at->fee_changes, payer, &start, &end) < 0) return -1;
    if (fee_event(t, R_CHARGED, (__int128)start - end) < 0 || changes_after(t, &later) < 0) return -1;
    if (account_balances(t, later, payer, &before, &after) < 0) return -1;
    if (account_balances(t, t->at->post_apply, payer, &before, &after) < 0) return -1;
    *refund = (__int128)after - before;
    return 0;
}

/* derive.derive_tx_events: fees, then one rule per operation of a successful transaction. */
static int derive_tx(Tx *t) {
    __int128 refund;
    if (fees(t, &refund) < 0) return -1;
    if (t->at->successful) {
        Py_ssize_t r = t->at->result, results = -1;
        int32_t code = (int32_t)rd32(at(t, r + 8));
        if (code == 1 || code == -13) {  /* InnerTransactionResultPair: hash, feeCharged, code, results */
            int32_t inner = (int32_t)rd32(at(t, r + 52));
            if (inner == 0 || inner == -1) results = r + 56;
        } else {
            results = r + 12;
        }
        uint32_t n = results < 0 ? 0 : rd32(at(t, results));
        Py_ssize_t nops = t->ops->len / (Py_ssize_t)sizeof(Py_ssize_t);
        if ((Py_ssize_t)n != nops) return FALLBACK;  /* results that do not match the operations */
        Py_ssize_t rp = results + 4;
        const Py_ssize_t *ops = (const Py_ssize_t *)t->ops->p;
        for (Py_ssize_t i = 0; i < nops; i++) {
            Py_ssize_t first = t->x->nevs;
            int rc = operation(t, (int)i + 1, ops[i], rp);
            if (rc != 0) return rc;
            if (t->f->protocol < 8 && legacy_correction(t, (int)i + 1, ops[i], first) < 0) return -1;
            if (skip_type(t->x->d, t->in, t->x->t_op_result, &rp, MAX_DEPTH) < 0) return -1;
        }
    }
    return refund > 0 ? fee_event(t, R_REFUND, -refund) : 0;
}

static int by_hash(const void *key, const void *entry) {
    return memcmp(key, ((const HashAt *)entry)->hash, 32);
}

int derive_ledger(TransferColumns *x, const Input *in, const Facts *f) {
    x->nevs = 0;
    x->skipped = 0;
    x->layout_of = NULL;  /* the TxAt entries are this ledger's now */
    if (PyList_GET_SIZE(x->errors) && PyList_SetSlice(x->errors, 0, PY_SSIZE_T_MAX, NULL) < 0) return -1;
    const TxAt *txs = (const TxAt *)x->txs.p;
    for (uint32_t i = 0; i < f->n_proc; i++) {
        const HashAt *h = bsearch(txs[i].hash, x->hashes.p, f->n_env, sizeof(HashAt), by_hash);
        if (h == NULL) return FALLBACK;  /* checked before: every result has its envelope */
        Tx t = {x, in, f, &txs[i], (int)i + 1, {0}, {0}, NULL, 0, &x->ops, 0};
        if (read_envelope(&t, &((const Span *)x->spans.p)[h->span]) < 0) return -1;
        int rc = derive_tx(&t);
        if (rc != 0) return rc;
    }
    return x->fallback ? FALLBACK : 0;  /* set by asset_at */
}
