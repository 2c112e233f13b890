/* Token-transfer rows straight from LedgerCloseMeta bytes into Arrow column buffers.
 *
 * One walk checks every byte as the decoder's skip does (same errors), notes where each
 * envelope, result and meta is, and, while every meta is TransactionMetaV4, reads core's
 * unified events (CAP-67) on the way: the compiled twin of
 *   fee events          obsrvr_ray/ttp/core_events.py
 *   SEP-41 events, SAC  obsrvr_ray/ttp/contract_events.py
 *   emission order      obsrvr_ray/ttp/events.py (LedgerEvents.ordered)
 *   the columns         obsrvr_ray/ttp/rows.py and schema.TOKEN_TRANSFERS
 * Then it hashes the header and each envelope (the network check of obsrvr_ray/ledger/decode.py)
 * with hashlib. A ledger with other metas, or any ledger in the operations' view, is read by
 * the operation rules (_derive.c). Those Python modules stay the specification;
 * tests/test_transfer_columns.py holds these files to them on every real ledger, on generated
 * ledgers and on damaged copies. What the compiled rules leave to the Python ones (and
 * non-canonical bytes) is answered "fallback".
 *
 * Nothing is built per event or per row: only bytes in the column buffers. A ledger is appended
 * whole or not at all.
 */
#include "_transfers.h"

int buf_grow(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* ---- columns ------------------------------------------------------------------------------ */

enum { COL_STR, COL_I64, COL_F64 };
/* The token_transfers columns in the order above; the Python side checks them against the schema. */
static const char *COL_NAMES[NCOLS] = {"transaction_hash", "transaction_id", "operation_id", "event_topic", "from",
                                       "to", "asset", "asset_type", "asset_code", "asset_issuer", "amount_raw",
                                       "amount", "contract_id", "ledger_sequence", "closed_at", "to_muxed",
                                       "to_muxed_id", "transaction_index", "operation_index", "event_index"};
static const int COL_KINDS[NCOLS] = {COL_STR, COL_I64, COL_I64, COL_STR, COL_STR, COL_STR, COL_STR, COL_STR, COL_STR,
                                     COL_STR, COL_STR, COL_F64, COL_STR, COL_I64, COL_I64, COL_STR, COL_STR, COL_I64,
                                     COL_I64, COL_I64};

static int put_str(Column *c, const char *s, Py_ssize_t n) {
    if (buf_put(&c->data, s, n) < 0) return -1;
    if (c->data.len > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a string column exceeds 2 GiB: take the columns more often");
        return -1;
    }
    int32_t end = (int32_t)c->data.len;
    char one = 1;
    return (buf_put(&c->offsets, &end, 4) < 0 || buf_put(&c->valid, &one, 1) < 0) ? -1 : 0;
}

static int put_i64(Column *c, int64_t v) {
    char one = 1;
    return (buf_put(&c->data, &v, 8) < 0 || buf_put(&c->valid, &one, 1) < 0) ? -1 : 0;
}

static int put_f64(Column *c, double v) {
    char one = 1;
    return (buf_put(&c->data, &v, 8) < 0 || buf_put(&c->valid, &one, 1) < 0) ? -1 : 0;
}

static int put_null(Column *c, int kind) {
    char zero = 0;
    if (kind == COL_STR) {
        int32_t end = (int32_t)c->data.len;
        if (buf_put(&c->offsets, &end, 4) < 0) return -1;
    } else {
        int64_t z = 0;
        if (buf_put(&c->data, &z, 8) < 0) return -1;
    }
    return buf_put(&c->valid, &zero, 1);
}

#define MAX_KEY 256

static const char *KIND_NAMES[] = {"transfer", "mint", "burn", "clawback", "fee"};

static const char HEX[] = "0123456789abcdef";

static void hex32(const unsigned char *h, char *out) {
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[h[i] >> 4];
        out[2 * i + 1] = HEX[h[i] & 15];
    }
}

/* Records data that breaks a rule: a failure naming the transaction (and operation). */
static int rule_error(TransferColumns *x, const unsigned char *tx_hash, int op, PyObject *reason) {
    if (reason == NULL) return -1;
    char hex[64];
    hex32(tx_hash, hex);
    PyObject *item = op ? Py_BuildValue("(s#iN)", hex, (Py_ssize_t)64, op, reason)
                        : Py_BuildValue("(s#ON)", hex, (Py_ssize_t)64, Py_None, reason);
    if (item == NULL) return -1;
    int rc = PyList_Append(x->errors, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *type_name(TransferColumns *x, int type) {
    PyObject *key = PyLong_FromLong(type);
    if (key == NULL) return NULL;
    PyObject *name = PyDict_GetItemWithError(x->type_names, key);
    Py_DECREF(key);
    if (name != NULL) return PyObject_Str(name);
    return PyErr_Occurred() ? NULL : PyUnicode_FromFormat("%d", type);
}

/* ---- reading values the walk has checked ---------------------------------------------------- */

static inline int is_symbol(const Val *v, const char *s) {
    size_t n = strlen(s);
    return v->type == SCV_SYMBOL && rd32(v->p) == n && memcmp(v->p + 4, s, n) == 0;
}

/* SCAddress bytes -> the strkey version byte and payload; returns the payload's length */
static int address_payload(const unsigned char *a, unsigned char *version, unsigned char *buf) {
    const unsigned char *p = a + 4;
    switch (rd32(a)) {
    case 0:
        *version = SK_ACCOUNT;
        memcpy(buf, p + 4, 32);
        return 32;
    case 1:
        *version = SK_CONTRACT;
        memcpy(buf, p, 32);
        return 32;
    case 2:
        *version = SK_MUXED;
        memcpy(buf, p + 8, 32);
        memcpy(buf + 32, p, 8);
        return 40;
    case 3:
        *version = SK_BALANCE;
        buf[0] = 0;
        memcpy(buf + 1, p + 4, 32);
        return 33;
    default:
        *version = SK_POOL;
        memcpy(buf, p, 32);
        return 32;
    }
}

/* The strkey text of (version, payload), from a direct-mapped cache: a ledger's rows repeat the
 * same few hundred accounts and contracts. */
static const TextEntry *strkey_cached(TransferColumns *x, unsigned char version, const unsigned char *payload, int n) {
    uint32_t h = 2166136261u ^ version;
    for (int i = 0; i < n; i++) h = (h ^ payload[i]) * 16777619u;
    TextEntry *e = &x->texts[h & (TEXT_SLOTS - 1)];
    if (e->tlen == 0 || e->version != version || e->klen != n || memcmp(e->key, payload, n) != 0) {
        e->version = version;
        e->klen = n;
        memcpy(e->key, payload, n);
        e->tlen = strkey_text(version, payload, n, e->text);
    }
    return e;
}

static const TextEntry *address_text(TransferColumns *x, const unsigned char *a) {
    unsigned char version, buf[40];
    int n = address_payload(a, &version, buf);
    return strkey_cached(x, version, buf, n);
}


/* ---- the rules ------------------------------------------------------------------------------ */

/* contract_events._data_v4: 1 with the amount and muxed info read, 0 when the data is not a
 * token movement's. */
static int data_v4(TransferColumns *x, const Input *in, const Val *data, Ev *ev) {
    if (data->type == SCV_I128) {
        ev->amount = read_i128(data->p);
        ev->mux = MUX_NONE;
        return 1;
    }
    if (data->type != SCV_MAP || rd32(data->p) == 0) return 0;
    uint32_t n = rd32(data->p + 4);
    Py_ssize_t pos = data->p + 8 - in->buf;
    int have_amount = 0;
    ev->mux = MUX_NONE;
    for (uint32_t i = 0; i < n; i++) {
        Val key = {(int)(int32_t)rd32(in->buf + pos), in->buf + pos + 4};
        if (skip_type(x->d, in, x->t_scval, &pos, MAX_DEPTH) < 0) return -1;
        Val val = {(int)(int32_t)rd32(in->buf + pos), in->buf + pos + 4};
        if (skip_type(x->d, in, x->t_scval, &pos, MAX_DEPTH) < 0) return -1;
        if (key.type != SCV_SYMBOL) return 0;
        if (is_symbol(&key, "amount")) {
            if (val.type != SCV_I128) return 0;
            ev->amount = read_i128(val.p);
            have_amount = 1;
        } else if (is_symbol(&key, "to_muxed_id")) {
            if (val.type == SCV_U64) {
                ev->mux = MUX_ID;
                ev->mux_id = rd64(val.p);
            } else if (val.type == SCV_BYTES || val.type == SCV_STRING) {
                ev->mux = MUX_OTHER;
            } else if (val.type == SCV_VOID) {
                ev->mux = MUX_NONE;
            } else {
                return 0;
            }
        }
    }
    return have_amount;
}

/* The length of the SCAddress encoding at `a`. */
static int address_len(const unsigned char *a) {
    switch (rd32(a)) {
    case 0: return 40;  /* account: PublicKey */
    case 2: return 44;  /* muxed account: id, key */
    case 3: return 40;  /* claimable balance: ClaimableBalanceID */
    default: return 36; /* contract, liquidity pool */
    }
}

static void set_from(Ev *ev, const unsigned char *a) {
    ev->from_len = address_len(a);
    memcpy(ev->from, a, ev->from_len);
}

static void set_to(Ev *ev, const unsigned char *a) {
    ev->to_len = address_len(a);
    memcpy(ev->to, a, ev->to_len);
}

/* contract_events.parse_token_event: 1 = a movement in *ev, 0 = not a token movement
 * (skipped), -1 = error. `v4_layout`: CAP-67's topics and data (TransactionMetaV4). */
int token_event(TransferColumns *x, const Input *in, const RawEvent *e, Ev *ev, int v4_layout) {
    if (e->type != 1 || e->contract == NULL || e->body_v != 0 || e->ntopics < 2) return 0;
    const Val *t = e->topics;
    if (t[0].type != SCV_SYMBOL) return 0;
    if (v4_layout) {
        int rc = data_v4(x, in, &e->data, ev);
        if (rc <= 0) return rc;
    } else {
        if (e->data.type != SCV_I128) return 0;
        ev->amount = read_i128(e->data.p);
        ev->mux = MUX_NONE;
    }
    int kind;
    if (is_symbol(&t[0], "transfer")) kind = K_TRANSFER;
    else if (is_symbol(&t[0], "mint")) kind = K_MINT;
    else if (is_symbol(&t[0], "burn")) kind = K_BURN;
    else if (is_symbol(&t[0], "clawback")) kind = K_CLAWBACK;
    else return 0;
    ev->from_len = ev->to_len = 0;
    if (kind == K_TRANSFER) {
        if (e->ntopics < 3 || t[1].type != SCV_ADDRESS || t[2].type != SCV_ADDRESS) return 0;
        set_from(ev, t[1].p);
        set_to(ev, t[2].p);
    } else if (kind == K_BURN) {
        if (t[1].type != SCV_ADDRESS) return 0;
        set_from(ev, t[1].p);
    } else {  /* contract_events._parties: CAP-67's [fn, party, asset], or [fn, admin, party, asset] */
        if (t[1].type != SCV_ADDRESS) return 0;
        if (v4_layout && e->ntopics >= 3 && t[2].type == SCV_ADDRESS) v4_layout = 0;  /* _admin_first */
        const Val *party = &t[1];
        if (!v4_layout) {
            if (e->ntopics < 3 || t[2].type != SCV_ADDRESS) return 0;
            party = &t[2];
        }
        if (kind == K_MINT) set_to(ev, party->p);
        else set_from(ev, party->p);
    }
    static const int topics_v4[] = {4, 3, 3, 3}, topics_v3[] = {4, 4, 3, 4};
    int expected = v4_layout ? topics_v4[kind] : topics_v3[kind];
    ev->kind = kind;
    ev->contract = e->contract;
    ev->asset = NULL;
    if (e->ntopics == expected && e->last.type == SCV_STRING) {
        AssetEntry *a = asset_lookup(x, &x->by_text, e->last.p + 4, rd32(e->last.p));
        if (a == NULL) return -1;
        if (a->is_asset && memcmp(a->sac, e->contract, 32) == 0) ev->asset = a;
    }
    return 1;
}

/* core_events._fee_event: 1 = a fee in *ev, 0 = not a fee event, 2 = recorded as a rule error,
 * -1 = error. */
static int fee_event(TransferColumns *x, const RawEvent *e, const unsigned char *tx_hash, Ev *ev) {
    const char *why = NULL;
    if (e->type != 1 || e->contract == NULL || e->body_v != 0) why = "transaction-level event is not a contract event";
    else if (e->ntopics == 0 || !is_symbol(&e->topics[0], "fee")) return 0;
    if (why == NULL && e->ntopics != 2) {
        return rule_error(x, tx_hash, 0, PyUnicode_FromFormat("fee event: fee event with %d topics", e->ntopics)) < 0
                   ? -1 : 2;
    }
    if (why == NULL && e->data.type != SCV_I128) why = "fee amount is not an i128";
    if (why == NULL && memcmp(e->contract, x->native_sac, 32) != 0) {
        why = "fee event not emitted by the native asset contract";
    }
    if (why != NULL) return rule_error(x, tx_hash, 0, PyUnicode_FromFormat("fee event: %s", why)) < 0 ? -1 : 2;
    if (e->topics[1].type != SCV_ADDRESS) {
        PyObject *name = type_name(x, e->topics[1].type);
        if (name == NULL) return -1;
        PyObject *reason = PyUnicode_FromFormat("fee event: expected an address, got %U", name);
        Py_DECREF(name);
        return rule_error(x, tx_hash, 0, reason) < 0 ? -1 : 2;
    }
    ev->kind = K_FEE;
    ev->amount = read_i128(e->data.p);
    ev->asset = &x->native;
    ev->contract = x->native_sac;
    set_from(ev, e->topics[1].p);
    ev->to_len = 0;
    ev->mux = MUX_NONE;
    return 1;
}

/* ---- walking ---------------------------------------------------------------------------------- */

Ev *new_event(TransferColumns *x) {
    if (x->nevs == x->evs_cap) {
        Py_ssize_t cap = x->evs_cap ? x->evs_cap * 2 : 256;
        Ev *p = PyMem_Realloc(x->evs, cap * sizeof(Ev));
        if (p == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        x->evs = p;
        x->evs_cap = cap;
    }
    Ev *ev = &x->evs[x->nevs];
    memset(ev, 0, sizeof(Ev));
    return ev;
}

/* A ContractEvent at *pos: checked as the decoder checks it, then read. */
int read_event(TransferColumns *x, const Input *in, Py_ssize_t *pos, int depth, RawEvent *e) {
    Py_ssize_t end = *pos;
    if (skip_type(x->d, in, x->t_event, &end, depth) < 0) return -1;
    Py_ssize_t p = *pos;
    if (skip_type(x->d, in, x->t_ext_point, &p, MAX_DEPTH) < 0) return -1;
    if (rd32(in->buf + p)) {
        e->contract = in->buf + p + 4;
        p += 36;
    } else {
        e->contract = NULL;
        p += 4;
    }
    e->type = (int)(int32_t)rd32(in->buf + p);
    e->body_v = (int)(int32_t)rd32(in->buf + p + 4);
    uint32_t n = rd32(in->buf + p + 8);
    p += 12;
    e->ntopics = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        Val v = {(int)(int32_t)rd32(in->buf + p), in->buf + p + 4};
        if (i < MAX_TOPICS) e->topics[i] = v;
        e->last = v;
        if (skip_type(x->d, in, x->t_scval, &p, MAX_DEPTH) < 0) return -1;
    }
    e->data.type = (int)(int32_t)rd32(in->buf + p);
    e->data.p = in->buf + p + 4;
    *pos = end;
    return 0;
}

/* A TransactionMeta at *pos (scan_meta's walk): while core's events can still be the
 * ledger's, a v4 meta's events are read on the way; any other meta is only checked. */
static int walk_meta(TransferColumns *x, const Input *in, Py_ssize_t *pos, int depth, int tx,
                     const unsigned char *tx_hash, int successful) {
    Decoder *d = x->d;
    if (need(d, in, *pos, 4) < 0) return -1;
    if ((int32_t)rd32(in->buf + *pos) != 4) {
        x->core_events = 0;
        if (x->view == VIEW_CORE) x->fallback = 1;  /* the rules record that core wrote no events */
    }
    if (!x->core_events) return skip_type(d, in, x->t_meta, pos, depth);
    int inner = depth - 2;
    Py_ssize_t p = *pos + 4;
    uint32_t n;
    if (skip_type(d, in, x->t_ext_point, &p, inner) < 0) return -1;
    if (skip_type(d, in, x->t_changes, &p, inner) < 0) return -1;
    if (array_count(d, in, &p, &n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {  /* OperationMetaV2: ext, changes, events */
        uint32_t nev;
        if (skip_type(d, in, x->t_ext_point, &p, inner - 1) < 0) return -1;
        if (skip_type(d, in, x->t_changes, &p, inner - 1) < 0) return -1;
        if (array_count(d, in, &p, &nev) < 0) return -1;
        for (uint32_t j = 0; j < nev; j++) {
            RawEvent e;
            if (read_event(x, in, &p, inner - 1, &e) < 0) return -1;
            if (!successful) continue;
            Ev *ev = new_event(x);
            if (ev == NULL) return -1;
            int rc = token_event(x, in, &e, ev, 1);
            if (rc < 0) return -1;
            if (rc == 0) {
                x->skipped++;
                continue;
            }
            ev->role = R_OP;
            ev->tx = tx;
            ev->op = (int)i + 1;
            ev->tx_hash = tx_hash;
            x->nevs++;
        }
    }
    if (skip_type(d, in, x->t_changes, &p, inner) < 0) return -1;
    if (need(d, in, p, 4) < 0) return -1;
    uint32_t present = rd32(in->buf + p);
    p += 4;
    if (present > 1) *in->noncanonical = 1;
    if (present && skip_type(d, in, x->t_soroban_v2, &p, inner) < 0) return -1;
    if (array_count(d, in, &p, &n) < 0) return -1;
    int fees = 0;
    for (uint32_t i = 0; i < n; i++) {  /* TransactionEvent: stage, event */
        RawEvent e;
        if (skip_type(d, in, x->t_stage, &p, inner - 1) < 0) return -1;
        if (read_event(x, in, &p, inner - 1, &e) < 0) return -1;
        Ev *ev = new_event(x);
        if (ev == NULL) return -1;
        int rc = fee_event(x, &e, tx_hash, ev);
        if (rc < 0) return -1;
        if (rc != 1) continue;
        ev->role = fees++ ? R_REFUND : R_CHARGED;
        ev->tx = tx;
        ev->op = 0;
        ev->tx_hash = tx_hash;
        x->nevs++;
    }
    if (fees != 1 && fees != 2) {
        if (rule_error(x, tx_hash, 0, PyUnicode_FromFormat("%d fee events (expected 1 or 2)", fees)) < 0) return -1;
    }
    if (array_count(d, in, &p, &n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (skip_type(d, in, x->t_diagnostic, &p, inner) < 0) return -1;
    }
    *pos = p;
    return 0;
}

/* SHA-256 of the parts, one after the other, through hashlib: they are copied once, into the
 * bytes object hashlib reads. */
int sha256_of(TransferColumns *x, const Part *parts, int nparts, unsigned char *out) {
    Py_ssize_t total = 0;
    for (int i = 0; i < nparts; i++) total += parts[i].n;
    PyObject *payload = PyBytes_FromStringAndSize(NULL, total);
    if (payload == NULL) return -1;
    char *w = PyBytes_AS_STRING(payload);
    for (int i = 0; i < nparts; i++) {
        memcpy(w, parts[i].p, parts[i].n);
        w += parts[i].n;
    }
    PyObject *hasher = PyObject_CallOneArg(x->hashlib_sha256, payload);
    Py_DECREF(payload);
    PyObject *digest = hasher ? PyObject_CallMethod(hasher, "digest", NULL) : NULL;
    Py_XDECREF(hasher);
    if (digest == NULL) return -1;
    memcpy(out, PyBytes_AS_STRING(digest), 32);
    Py_DECREF(digest);
    return 0;
}

static int cmp_hash(const void *a, const void *b) {
    return memcmp(a, b, 32);
}

/* A TransactionEnvelope at *pos: checked as skip_type checks it; its signed body's span is kept. */
static int walk_envelope(TransferColumns *x, const Input *in, Py_ssize_t *pos, int depth) {
    Decoder *d = x->d;
    const TypeSpec *t = &d->types[x->t_envelope];
    if (depth <= 0) return fail(d, "maximum decoding depth reached");
    if (need(d, in, *pos, 4) < 0) return -1;
    const Arm *arm = union_arm(d, in, t, *pos);
    if (arm == NULL) return -1;
    uint32_t tag = rd32(in->buf + *pos);
    Py_ssize_t p = *pos + 4, body_end = p;
    /* the arm is one struct (TransactionV1Envelope...): the signed body, then the signatures */
    const FieldSpec *arm_field = &d->fields[d->member_fields[arm->first]];
    if (arm->count != 1 || arm_field->kind != F_REF) return fail(d, "unexpected TransactionEnvelope layout");
    const TypeSpec *inner = &d->types[arm_field->type_id];
    if (depth - 1 <= 0) return fail(d, "maximum decoding depth reached");
    for (int i = inner->first; i < inner->first + inner->count; i++) {
        if (skip_field(d, in, &d->fields[d->member_fields[i]], &p, depth - 2) < 0) return -1;
        if (i == inner->first) body_end = p;
    }
    if (tag >= 8 || x->body_tid[tag] < 0) return fail(d, "envelope type %u has no signature payload", tag);
    Span span = {tag, *pos + 4, body_end};
    if (buf_put(&x->spans, &span, sizeof span) < 0) return -1;
    *pos = p;
    return 0;
}

/* Each envelope's hash under the network (ledger/hashing.SIGNED_BODIES: network id, a header,
 * the body), into x->hashes with its span, sorted by hash. */
static int hash_envelopes(TransferColumns *x, const Input *in) {
    Py_ssize_t n = x->spans.len / (Py_ssize_t)sizeof(Span);
    x->hashes.len = 0;
    if (buf_grow(&x->hashes, (Py_ssize_t)sizeof(HashAt) * n) < 0) return -1;
    HashAt *out = (HashAt *)x->hashes.p;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Span *span = &((const Span *)x->spans.p)[i];
        Part parts[] = {{x->network_id, 32}, {x->body_head[span->tag], x->body_head_len[span->tag]},
                        {in->buf + span->start, span->end - span->start}};
        if (sha256_of(x, parts, 3, out[i].hash) < 0) return -1;
        out[i].span = i;
    }
    x->hashes.len = (Py_ssize_t)sizeof(HashAt) * n;
    qsort(out, n, sizeof(HashAt), cmp_hash);
    return 0;
}

/* An array of TransactionEnvelope at *pos. */
static int walk_envelopes(TransferColumns *x, const Input *in, Py_ssize_t *pos, int depth) {
    uint32_t n;
    if (array_count(x->d, in, pos, &n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (walk_envelope(x, in, pos, depth) < 0) return -1;
    }
    return 0;
}

/* An optional int64 (a component's base fee). */
static int skip_base_fee(TransferColumns *x, const Input *in, Py_ssize_t *pos) {
    if (need(x->d, in, *pos, 4) < 0) return -1;
    uint32_t flag = rd32(in->buf + *pos);
    if (flag > 1) *in->noncanonical = 1;
    *pos += flag ? 12 : 4;
    return need(x->d, in, *pos, 0);
}

/* A GeneralizedTransactionSet (v1: phases of classic components or parallel stages). */
static int walk_gen_txset(TransferColumns *x, const Input *in, Py_ssize_t *pos, int depth) {
    Decoder *d = x->d;
    if (need(d, in, *pos, 4) < 0 || union_arm(d, in, &d->types[x->t_gen_txset], *pos) == NULL) return -1;
    Py_ssize_t p = *pos + 4 + 32;  /* TransactionSetV1: previousLedgerHash, phases */
    uint32_t nphases;
    if (need(d, in, p - 32, 32) < 0 || array_count(d, in, &p, &nphases) < 0) return -1;
    for (uint32_t i = 0; i < nphases; i++) {
        if (need(d, in, p, 4) < 0 || union_arm(d, in, &d->types[x->t_phase], p) == NULL) return -1;
        int32_t v = (int32_t)rd32(in->buf + p);
        p += 4;
        uint32_t n;
        if (v == 0) {  /* TxSetComponent<>: txsMaybeDiscountedFee { baseFee*, txs<> } */
            if (array_count(d, in, &p, &n) < 0) return -1;
            for (uint32_t j = 0; j < n; j++) {
                if (need(d, in, p, 4) < 0 || union_arm(d, in, &d->types[x->t_component], p) == NULL) return -1;
                p += 4;
                if (skip_base_fee(x, in, &p) < 0 || walk_envelopes(x, in, &p, depth - 5) < 0) return -1;
            }
        } else {  /* ParallelTxsComponent { baseFee*, executionStages: stages of clusters of envelopes } */
            uint32_t clusters;
            if (skip_base_fee(x, in, &p) < 0 || array_count(d, in, &p, &n) < 0) return -1;
            for (uint32_t s = 0; s < n; s++) {
                if (array_count(d, in, &p, &clusters) < 0) return -1;
                for (uint32_t c = 0; c < clusters; c++) {
                    if (walk_envelopes(x, in, &p, depth - 6) < 0) return -1;
                }
            }
        }
    }
    *pos = p;
    return 0;
}


/* The remaining members of the struct `tid` from member index `from` on. */
static int skip_members(Decoder *d, const Input *in, int tid, int from, Py_ssize_t *pos, int depth) {
    const TypeSpec *t = &d->types[tid];
    for (int i = t->first + from; i < t->first + t->count; i++) {
        if (skip_field(d, in, &d->fields[d->member_fields[i]], pos, depth) < 0) return -1;
    }
    return 0;
}


/* The whole LedgerCloseMeta: facts for validation, events into x->evs. */
static int walk_ledger(TransferColumns *x, const Input *in, Facts *f) {
    Decoder *d = x->d;
    Py_ssize_t p = 0;
    int depth = MAX_DEPTH;
    if (need(d, in, 0, 4) < 0 || union_arm(d, in, &d->types[x->t_lcm], 0) == NULL) return -1;
    int v = (int)(int32_t)rd32(in->buf);
    int body = x->t_lcm_body[v];
    int inner = depth - 2;
    p = 4;
    if (v >= 1 && skip_type(d, in, x->t_lcm_ext, &p, inner) < 0) return -1;
    /* LedgerHeaderHistoryEntry: hash, header, ext */
    if (need(d, in, p, 32) < 0) return -1;
    f->hash = in->buf + p;
    Py_ssize_t h = p + 32, he = h;
    if (skip_type(d, in, x->t_header, &he, inner - 1) < 0) return -1;
    Py_ssize_t sv = h + 36;
    if (skip_type(d, in, x->t_stellar_value, &sv, inner - 2) < 0) return -1;
    f->protocol = rd32(in->buf + h);
    f->prev = in->buf + h + 4;
    f->close_time = rd64(in->buf + h + 68);
    f->seq = rd32(in->buf + sv + 64);
    Part header = {in->buf + h, he - h};
    if (sha256_of(x, &header, 1, f->actual) < 0) return -1;
    p = he;
    if (skip_type(d, in, x->t_header_ext, &p, inner - 1) < 0) return -1;
    /* the transaction set */
    x->spans.len = 0;
    x->txs.len = 0;
    if (v == 0) {
        if (need(d, in, p, 32) < 0) return -1;
        p += 32;
        if (walk_envelopes(x, in, &p, inner - 2) < 0) return -1;
    } else if (walk_gen_txset(x, in, &p, inner - 1) < 0) {
        return -1;
    }
    f->n_env = (uint32_t)(x->spans.len / (Py_ssize_t)sizeof(Span));
    /* txProcessing: result pair, fee changes, meta (v2: ext first, post-apply fee changes last) */
    uint32_t n;
    if (array_count(d, in, &p, &n) < 0) return -1;
    f->n_proc = n;
    f->unmatched = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (v == 2 && skip_type(d, in, x->t_ext_point, &p, inner - 2) < 0) return -1;
        if (need(d, in, p, 44) < 0) return -1;
        TxAt at = {in->buf + p, p + 32, 0, 0, -1, 0, 0};
        int32_t code = (int32_t)rd32(in->buf + p + 40);
        at.successful = code == 0 || code == 1;
        p += 32;
        if (skip_type(d, in, x->t_result, &p, inner - 3) < 0) return -1;
        at.fee_changes = p;
        if (skip_type(d, in, x->t_changes, &p, inner - 2) < 0) return -1;
        at.meta = p;
        if (need(d, in, p, 4) < 0) return -1;
        at.meta_version = (int32_t)rd32(in->buf + p);
        if (walk_meta(x, in, &p, inner - 2, (int)i + 1, at.hash, at.successful) < 0) return -1;
        if (x->fallback) return 0;
        if (v == 2) {
            at.post_apply = p;
            if (skip_type(d, in, x->t_changes, &p, inner - 2) < 0) return -1;
        }
        if (buf_put(&x->txs, &at, sizeof at) < 0) return -1;
    }
    if (skip_members(d, in, body, v == 0 ? 3 : 4, &p, inner) < 0) return -1;
    if (p != in->len) return fail(d, "%zd trailing bytes", in->len - p);
    if (*in->noncanonical) return 0;
    if (hash_envelopes(x, in) < 0) return -1;
    const TxAt *txs = (const TxAt *)x->txs.p;
    for (uint32_t i = 0; i < n; i++) {
        if (f->n_env == 0 || bsearch(txs[i].hash, x->hashes.p, f->n_env, sizeof(HashAt), cmp_hash) == NULL) {
            f->unmatched++;
        }
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------------------------------ */

static int put_text(TransferColumns *x, int col, const char *s, Py_ssize_t n) {
    return put_str(&x->cols[col], s, n);
}

static int i128_text(__int128 v, char *out) {
    char tmp[48];
    int n = 0, neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    int len = 0;
    if (neg) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    return len;
}

static int u64_text(uint64_t v, char *out) {
    return i128_text((__int128)v, out);
}

static int emit(TransferColumns *x, const Ev *ev, const Facts *f, int64_t index) {
    Column *c = x->cols;
    char text[96];
    int64_t tx_id = ((int64_t)f->seq << 32) | ((int64_t)ev->tx << 12);
    hex32(ev->tx_hash, text);
    if (put_text(x, C_TX_HASH, text, 64) < 0 || put_i64(&c[C_TX_ID], tx_id) < 0) return -1;
    if ((ev->op ? put_i64(&c[C_OP_ID], tx_id | ev->op) : put_null(&c[C_OP_ID], COL_I64)) < 0) return -1;
    const char *kind = KIND_NAMES[ev->kind];
    if (put_text(x, C_TOPIC, kind, (Py_ssize_t)strlen(kind)) < 0) return -1;
    const TextEntry *t;
    if (ev->from_len) {
        t = address_text(x, ev->from);
        if (put_text(x, C_FROM, t->text, t->tlen) < 0) return -1;
    } else if (put_null(&c[C_FROM], COL_STR) < 0) {
        return -1;
    }
    if (ev->to_len) {
        t = address_text(x, ev->to);
        if (put_text(x, C_TO, t->text, t->tlen) < 0) return -1;
    } else if (put_null(&c[C_TO], COL_STR) < 0) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        const AssetEntry *a = ev->asset;
        int rc;
        if (a == NULL) rc = i < 2 ? put_text(x, C_ASSET + i, "", 0) : put_null(&c[C_ASSET + i], COL_STR);
        else if (a->present[i]) rc = put_text(x, C_ASSET + i, a->cols[i], a->lens[i]);
        else rc = put_null(&c[C_ASSET + i], COL_STR);
        if (rc < 0) return -1;
    }
    if (put_text(x, C_AMOUNT_RAW, text, i128_text(ev->amount, text)) < 0) return -1;
    if (put_f64(&c[C_AMOUNT], (double)ev->amount * 0.0000001) < 0) return -1;
    t = strkey_cached(x, SK_CONTRACT, ev->contract, 32);
    if (put_text(x, C_CONTRACT, t->text, t->tlen) < 0) return -1;
    if (put_i64(&c[C_LEDGER], f->seq) < 0 || put_i64(&c[C_CLOSED_AT], (int64_t)f->close_time * 1000000) < 0) {
        return -1;
    }
    if (ev->mux == MUX_NONE) {
        if (put_null(&c[C_TO_MUXED], COL_STR) < 0 || put_null(&c[C_TO_MUXED_ID], COL_STR) < 0) return -1;
    } else {
        uint64_t id = ev->mux == MUX_ID ? ev->mux_id : 0;
        int rc;
        if (ev->to_len && rd32(ev->to) == 0) {  /* an account: its M address with the id */
            unsigned char payload[40];
            memcpy(payload, ev->to + 8, 32);
            for (int i = 0; i < 8; i++) payload[32 + i] = (unsigned char)(id >> (56 - 8 * i));
            rc = put_text(x, C_TO_MUXED, text, strkey_text(SK_MUXED, payload, 40, text));
        } else {
            rc = put_text(x, C_TO_MUXED, "", 0);
        }
        if (rc < 0 || put_text(x, C_TO_MUXED_ID, text, u64_text(id, text)) < 0) return -1;
    }
    if (put_i64(&c[C_TX_INDEX], ev->tx) < 0) return -1;
    if ((ev->op ? put_i64(&c[C_OP_INDEX], ev->op) : put_null(&c[C_OP_INDEX], COL_I64)) < 0) return -1;
    return put_i64(&c[C_EVENT_INDEX], index);
}

/* LedgerEvents.ordered: fees charged, then operation events (a refund after its transaction's
 * before protocol 23), then, from protocol 23, every refund. */
static int emit_ledger(TransferColumns *x, const Facts *f) {
    int64_t index = 0;
    int late = f->protocol >= 23;
    for (Py_ssize_t i = 0; i < x->nevs; i++) {
        if (x->evs[i].role == R_CHARGED && emit(x, &x->evs[i], f, index++) < 0) return -1;
    }
    for (Py_ssize_t i = 0; i < x->nevs; i++) {
        int role = x->evs[i].role;
        if ((role == R_OP || (role == R_REFUND && !late)) && emit(x, &x->evs[i], f, index++) < 0) return -1;
    }
    if (late) {
        for (Py_ssize_t i = 0; i < x->nevs; i++) {
            if (x->evs[i].role == R_REFUND && emit(x, &x->evs[i], f, index++) < 0) return -1;
        }
    }
    return 0;
}

/* ---- the asset cache ------------------------------------------------------------------------ */

static uint64_t fnv(const unsigned char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ull;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void asset_free(AssetEntry *a) {
    if (a == NULL) return;
    for (int i = 0; i < 4; i++) PyMem_Free(a->cols[i]);
    PyMem_Free(a->key);
    PyMem_Free(a);
}

/* Fills `a` from the lookup's answer: None, or (sac bytes, asset, type, code, issuer, issuer's
 * key bytes | None). */
static int asset_fill(AssetEntry *a, PyObject *found) {
    if (found == Py_None) return 0;
    PyObject *sac, *issuer;
    PyObject *cols[4];
    if (!PyArg_ParseTuple(found, "SOOOOO", &sac, &cols[0], &cols[1], &cols[2], &cols[3], &issuer)) return -1;
    if (PyBytes_GET_SIZE(sac) != 32 || (issuer != Py_None && (!PyBytes_Check(issuer) || PyBytes_GET_SIZE(issuer) != 32))) {
        PyErr_SetString(PyExc_ValueError, "a SAC id and an issuer's key are 32 bytes");
        return -1;
    }
    a->is_asset = 1;
    memcpy(a->sac, PyBytes_AS_STRING(sac), 32);
    if (issuer != Py_None) {
        a->credit = 1;
        memcpy(a->issuer, PyBytes_AS_STRING(issuer), 32);
    }
    for (int i = 0; i < 4; i++) {
        if (cols[i] == Py_None) continue;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(cols[i], &n);
        if (s == NULL) return -1;
        a->cols[i] = PyMem_Malloc(n ? n : 1);
        if (a->cols[i] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(a->cols[i], s, n);
        a->lens[i] = n;
        a->present[i] = 1;
    }
    return 0;
}

/* A new entry for `key`, from the table's lookup. */
static AssetEntry *asset_new(AssetTable *table, const unsigned char *key, Py_ssize_t n) {
    AssetEntry *a = PyMem_Calloc(1, sizeof(AssetEntry));
    if (a == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *arg = table->by_text ? PyUnicode_DecodeUTF8((const char *)key, n, "replace")
                                   : PyBytes_FromStringAndSize((const char *)key, n);
    PyObject *found = arg ? PyObject_CallOneArg(table->lookup, arg) : NULL;
    Py_XDECREF(arg);
    if (found == NULL || asset_fill(a, found) < 0) {
        Py_XDECREF(found);
        asset_free(a);
        return NULL;
    }
    Py_DECREF(found);
    return a;
}

/* The entry of a key. A text longer than MAX_KEY names no asset (the longest asset text,
 * credit_alphanum12's CODE:ISSUER, is 69 bytes), so it is not looked up. */
AssetEntry *asset_lookup(TransferColumns *x, AssetTable *table, const unsigned char *key, Py_ssize_t n) {
    static AssetEntry not_an_asset;
    (void)x;
    if (n > MAX_KEY) return &not_an_asset;
    if (table->used * 2 >= table->cap) {
        Py_ssize_t cap = table->cap ? table->cap * 2 : 256;
        AssetEntry **slots = PyMem_Calloc(cap, sizeof(AssetEntry *));
        if (slots == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t i = 0; i < table->cap; i++) {
            AssetEntry *a = table->slots[i];
            if (a == NULL) continue;
            Py_ssize_t j = (Py_ssize_t)(fnv(a->key, a->klen) & (uint64_t)(cap - 1));
            while (slots[j] != NULL) j = (j + 1) & (cap - 1);
            slots[j] = a;
        }
        PyMem_Free(table->slots);
        table->slots = slots;
        table->cap = cap;
    }
    Py_ssize_t j = (Py_ssize_t)(fnv(key, n) & (uint64_t)(table->cap - 1));
    while (table->slots[j] != NULL) {
        AssetEntry *a = table->slots[j];
        if (a->klen == n && memcmp(a->key, key, n) == 0) return a;
        j = (j + 1) & (table->cap - 1);
    }
    AssetEntry *a = asset_new(table, key, n);
    if (a == NULL) return NULL;
    a->key = PyMem_Malloc(n ? n : 1);
    if (a->key == NULL) {
        asset_free(a);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(a->key, key, n);
    a->klen = n;
    table->slots[j] = a;
    table->used++;
    return a;
}

static void table_free(AssetTable *table) {
    for (Py_ssize_t i = 0; i < table->cap; i++) asset_free(table->slots[i]);
    PyMem_Free(table->slots);
    Py_XDECREF(table->lookup);
}

/* ---- the Python type -------------------------------------------------------------------------- */

static void TC_dealloc(TransferColumns *x) {
    for (int i = 0; i < NCOLS; i++) {
        PyMem_Free(x->cols[i].data.p);
        PyMem_Free(x->cols[i].offsets.p);
        PyMem_Free(x->cols[i].valid.p);
    }
    table_free(&x->by_text);
    table_free(&x->by_xdr);
    for (int i = 0; i < 4; i++) PyMem_Free(x->native.cols[i]);
    void *owned[] = {x->evs, x->texts, x->hashes.p, x->spans.p, x->txs.p, x->ops.p, x->pairs.p,
                     x->op_changes.p};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) PyMem_Free(owned[i]);
    PyObject *refs[] = {x->errors, x->hashlib_sha256, x->type_names, x->d_ref};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) Py_XDECREF(refs[i]);
    PyTypeObject *type = Py_TYPE(x);
    type->tp_free((PyObject *)x);
    Py_DECREF(type);  /* instances of a heap type hold a reference to it */
}

/* TransferColumns(decoder, type_ids, bodies, network_id, native, by_text, by_xdr, type_names, hashlib_sha256, view)
 *   type_ids: (LedgerCloseMeta, LedgerCloseMetaExt, LedgerHeader, StellarValue, LedgerHeaderHistoryEntryExt,
 *              GeneralizedTransactionSet, TransactionPhase, TxSetComponent, TransactionEnvelope, TransactionResult,
 *              LedgerEntryChanges, TransactionMeta, ExtensionPoint, SorobanTransactionMetaV2, DiagnosticEvent,
 *              SCVal, ContractEvent, TransactionEventStage, LedgerCloseMetaV0, LedgerCloseMetaV1, LedgerCloseMetaV2,
 *              Preconditions, Operation, OperationResult, LedgerEntryChange, LedgerKey, Claimant,
 *              SorobanTransactionMetaExt, SorobanTransactionMeta)
 *   bodies:   {envelope tag: (body type id, bytes before the body in the signed payload)}
 *   native:   the native asset's lookup answer (sac bytes, asset, type, code, issuer)
 *   by_text:  callable(text) -> None | (sac bytes, asset, type, code, issuer): what a SAC event's asset text names
 *   by_xdr:   callable(XDR Asset bytes) -> the same answer for an operation's asset
 *   view:     0 core's events when every meta is v4, else the operation rules; 1 core's only; 2 the rules only
 */
static int TC_init(TransferColumns *x, PyObject *args, PyObject *kw) {
    PyObject *decoder, *ids, *bodies, *native, *by_text, *by_xdr, *names, *hashlib_sha256;
    Py_buffer net;
    if (!PyArg_ParseTuple(args, "O!O!O!y*OOOO!Oi", &DecoderType, &decoder, &PyTuple_Type, &ids, &PyDict_Type,
                          &bodies, &net, &native, &by_text, &by_xdr, &PyDict_Type, &names, &hashlib_sha256,
                          &x->view)) {
        return -1;
    }
    if (net.len != 32) {
        PyBuffer_Release(&net);
        PyErr_SetString(PyExc_ValueError, "the network id is 32 bytes");
        return -1;
    }
    memcpy(x->network_id, net.buf, 32);
    PyBuffer_Release(&net);
    if (!PyArg_ParseTuple(ids, "iiiiiiiiiiiiiiiiiiiiiiiiiiiii", &x->t_lcm, &x->t_lcm_ext, &x->t_header,
                          &x->t_stellar_value, &x->t_header_ext, &x->t_gen_txset, &x->t_phase, &x->t_component,
                          &x->t_envelope, &x->t_result, &x->t_changes, &x->t_meta, &x->t_ext_point,
                          &x->t_soroban_v2, &x->t_diagnostic, &x->t_scval, &x->t_event, &x->t_stage,
                          &x->t_lcm_body[0], &x->t_lcm_body[1], &x->t_lcm_body[2], &x->t_preconditions,
                          &x->t_operation, &x->t_op_result, &x->t_change, &x->t_ledger_key, &x->t_claimant,
                          &x->t_soroban_v1_ext, &x->t_soroban_v1)) {
        return -1;
    }
    if (x->view < VIEW_AUTO || x->view > VIEW_OPERATIONS) {
        PyErr_SetString(PyExc_ValueError, "view: 0 (auto), 1 (core) or 2 (operations)");
        return -1;
    }
    Py_INCREF(decoder);
    x->d_ref = decoder;
    x->d = (Decoder *)decoder;
    for (int i = 0; i < 8; i++) x->body_tid[i] = -1;
    Py_ssize_t at = 0;
    PyObject *key, *value;
    while (PyDict_Next(bodies, &at, &key, &value)) {
        long tag = PyLong_AsLong(key);
        PyObject *head;
        int tid;
        if (PyErr_Occurred() || !PyArg_ParseTuple(value, "iS", &tid, &head)) return -1;
        if (tag < 0 || tag >= 8 || PyBytes_GET_SIZE(head) > 8) {
            PyErr_SetString(PyExc_ValueError, "unexpected envelope kind");
            return -1;
        }
        x->body_tid[tag] = tid;
        x->body_head_len[tag] = (int)PyBytes_GET_SIZE(head);
        memcpy(x->body_head[tag], PyBytes_AS_STRING(head), x->body_head_len[tag]);
    }
    if (asset_fill(&x->native, native) < 0) return -1;
    if (!x->native.is_asset) {
        PyErr_SetString(PyExc_ValueError, "the native asset's answer is required");
        return -1;
    }
    memcpy(x->native_sac, x->native.sac, 32);
    x->by_text.lookup = Py_NewRef(by_text);
    x->by_text.by_text = 1;
    x->by_xdr.lookup = Py_NewRef(by_xdr);
    Py_INCREF(names);
    x->type_names = names;
    Py_INCREF(hashlib_sha256);
    x->hashlib_sha256 = hashlib_sha256;
    x->texts = PyMem_Calloc(TEXT_SLOTS, sizeof(TextEntry));
    if (x->texts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    x->errors = PyList_New(0);
    return x->errors == NULL ? -1 : 0;
}

static void rollback(TransferColumns *x, const Py_ssize_t *lens) {
    for (int i = 0; i < NCOLS; i++) {
        x->cols[i].data.len = lens[3 * i];
        x->cols[i].offsets.len = lens[3 * i + 1];
        x->cols[i].valid.len = lens[3 * i + 2];
    }
}

/* add(data, expected=-1) -> (status, sequence, hash, previous hash, details, errors, skipped)
 *   status "ok": the ledger's rows were appended (details: how many);
 *   "fallback": for the Python rules (data that breaks a rule, non-canonical bytes, older metas in
 *               core's view): nothing appended;
 *   "header": the header does not hash to its recorded hash (details: the actual hash);
 *   "count": (envelopes, results) differ; "unmatched": (unmatched, results);
 *   "sequence": the bytes hold another ledger than `expected`.
 * Bytes that are not a LedgerCloseMeta raise the decoder's error. */
static PyObject *TC_add(TransferColumns *x, PyObject *args) {
    Input in;
    int noncanonical = 0;
    PyObject *arg;
    long long expected = -1;
    if (!PyArg_ParseTuple(args, "O!|L", &PyBytes_Type, &arg, &expected)) return NULL;
    in.buf = (const unsigned char *)PyBytes_AS_STRING(arg);
    in.len = PyBytes_GET_SIZE(arg);
    in.source = arg;
    in.noncanonical = &noncanonical;
    x->nevs = 0;
    x->skipped = 0;
    x->fallback = 0;
    x->core_events = x->view != VIEW_OPERATIONS;
    Py_SETREF(x->errors, PyList_New(0));
    if (x->errors == NULL) return NULL;
    Facts f;
    memset(&f, 0, sizeof f);
    if (walk_ledger(x, &in, &f) < 0) return NULL;
    PyObject *hash = PyBytes_FromStringAndSize((const char *)f.hash, 32);
    PyObject *prev = PyBytes_FromStringAndSize((const char *)f.prev, 32);
    if (hash == NULL || prev == NULL) {
        Py_XDECREF(hash);
        Py_XDECREF(prev);
        return NULL;
    }
    const char *status;
    PyObject *details;
    int rules = 0;
    if (x->fallback || noncanonical) {
        status = "fallback";
        details = Py_NewRef(Py_None);
    } else if (memcmp(f.actual, f.hash, 32) != 0) {
        status = "header";
        details = PyBytes_FromStringAndSize((const char *)f.actual, 32);
    } else if (f.n_env != f.n_proc) {
        status = "count";
        details = Py_BuildValue("(II)", f.n_env, f.n_proc);
    } else if (f.unmatched) {
        status = "unmatched";
        details = Py_BuildValue("(II)", f.unmatched, f.n_proc);
    } else if (expected >= 0 && (long long)f.seq != expected) {
        status = "sequence";
        details = Py_NewRef(Py_None);
    } else if (!x->core_events && f.n_proc && (rules = derive_ledger(x, &in, &f)) != 0) {
        if (rules < 0) {
            Py_DECREF(hash);
            Py_DECREF(prev);
            return NULL;
        }
        status = "fallback";  /* a case the compiled rules leave to the Python ones */
        details = Py_NewRef(Py_None);
    } else {
        Py_ssize_t lens[3 * NCOLS];
        for (int i = 0; i < NCOLS; i++) {
            lens[3 * i] = x->cols[i].data.len;
            lens[3 * i + 1] = x->cols[i].offsets.len;
            lens[3 * i + 2] = x->cols[i].valid.len;
        }
        Py_ssize_t before = x->cols[C_EVENT_INDEX].valid.len;
        if (emit_ledger(x, &f) < 0) {
            rollback(x, lens);
            Py_DECREF(hash);
            Py_DECREF(prev);
            return NULL;
        }
        Py_ssize_t added = x->cols[C_EVENT_INDEX].valid.len - before;
        x->rows += added;
        status = "ok";
        details = PyLong_FromSsize_t(added);
    }
    if (details == NULL) {
        Py_DECREF(hash);
        Py_DECREF(prev);
        return NULL;
    }
    return Py_BuildValue("(sINNNOn)", status, f.seq, hash, prev, details, x->errors, x->skipped);
}

/* take() -> (rows, [(validity bitmap | None, offsets | None, data)] per column): the columns'
 * buffers, for pyarrow.Array.from_buffers; the columns start empty again. */
static PyObject *TC_take(TransferColumns *x, PyObject *Py_UNUSED(ignored)) {
    Py_ssize_t rows = x->rows;
    PyObject *out = PyList_New(NCOLS);
    if (out == NULL) return NULL;
    for (int i = 0; i < NCOLS; i++) {
        Column *c = &x->cols[i];
        Py_ssize_t nulls = 0;
        for (Py_ssize_t r = 0; r < rows; r++) nulls += !c->valid.p[r];
        PyObject *bitmap;
        if (nulls == 0) {
            bitmap = Py_NewRef(Py_None);
        } else {
            bitmap = PyBytes_FromStringAndSize(NULL, (rows + 7) / 8);
            if (bitmap != NULL) {
                unsigned char *b = (unsigned char *)PyBytes_AS_STRING(bitmap);
                memset(b, 0, (rows + 7) / 8);
                for (Py_ssize_t r = 0; r < rows; r++) {
                    if (c->valid.p[r]) b[r >> 3] |= (unsigned char)(1 << (r & 7));
                }
            }
        }
        PyObject *offsets;
        if (COL_KINDS[i] == COL_STR) {
            offsets = PyBytes_FromStringAndSize(NULL, 4 * (rows + 1));
            if (offsets != NULL) {
                memset(PyBytes_AS_STRING(offsets), 0, 4);
                if (rows) memcpy(PyBytes_AS_STRING(offsets) + 4, c->offsets.p, 4 * rows);
            }
        } else {
            offsets = Py_NewRef(Py_None);
        }
        PyObject *data = PyBytes_FromStringAndSize(c->data.p ? c->data.p : "", c->data.len);
        PyObject *item = (bitmap && offsets && data) ? Py_BuildValue("(NNNn)", bitmap, offsets, data, nulls) : NULL;
        if (item == NULL) {
            Py_XDECREF(bitmap);
            Py_XDECREF(offsets);
            Py_XDECREF(data);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
        c->data.len = c->offsets.len = c->valid.len = 0;
    }
    x->rows = 0;
    return Py_BuildValue("(nN)", rows, out);
}

static PyObject *TC_rows(TransferColumns *x, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(x->rows);
}

static PyMethodDef TC_methods[] = {
    {"add", (PyCFunction)TC_add, METH_VARARGS, "add(ledger close meta bytes, expected=-1) -> (status, sequence, ...)"},
    {"take", (PyCFunction)TC_take, METH_NOARGS, "take() -> (rows, column buffers); the columns start empty again"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef TC_getset[] = {
    {"rows", (getter)TC_rows, NULL, "rows appended since the last take()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* A heap type (PyType_FromSpec): the module holds its only reference. */
static PyType_Slot TC_slots[] = {
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, TC_init},
    {Py_tp_dealloc, TC_dealloc},
    {Py_tp_methods, TC_methods},
    {Py_tp_getset, TC_getset},
    {Py_tp_doc, "Token-transfer columns from LedgerCloseMeta bytes (see obsrvr_ray/ttp/transfer_table.py)."},
    {0, NULL},
};

static PyType_Spec TC_spec = {"obsrvr_ray.xdr._fastxdr.TransferColumns", sizeof(TransferColumns), 0,
                              Py_TPFLAGS_DEFAULT, TC_slots};

int add_transfer_columns(PyObject *module) {
    PyObject *names = PyTuple_New(NCOLS);
    if (names == NULL) return -1;
    for (int i = 0; i < NCOLS; i++) {
        PyObject *name = PyUnicode_FromString(COL_NAMES[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return -1;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    if (PyModule_AddObject(module, "TRANSFER_COLUMNS", names) < 0) {
        Py_DECREF(names);
        return -1;
    }
    PyObject *type = PyType_FromSpec(&TC_spec);
    if (type == NULL) return -1;
    if (PyModule_AddObject(module, "TransferColumns", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
