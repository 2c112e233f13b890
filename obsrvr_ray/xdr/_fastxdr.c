/* The compiled form of obsrvr_ray.xdr.pydecode: the same table-driven XDR decoder in C.
 *
 * The table (types, fields, arms) is built in Python from stellar-sdk's generated decoder
 * (obsrvr_ray/xdr/type_model.py) and handed to Decoder(); this file only walks bytes by it. It
 * accepts exactly what pydecode accepts and builds the same objects; differential tests keep
 * the two equal.
 */
#include "_fastxdr.h"

int fail(Decoder *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg) {
        PyErr_SetObject(d->error, msg);
        Py_DECREF(msg);
    }
    return -1;
}

static int read_type(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth, PyObject **out);


/* ---- walking without building: checks exactly what decoding checks ------------------------ */

/* A variable-length array's count, checked as the table walk checks it. */
int array_count(Decoder *d, const Input *in, Py_ssize_t *pos, uint32_t *n) {
    if (need(d, in, *pos, 4) < 0) return -1;
    *n = rd32(in->buf + *pos);
    *pos += 4;
    if (in->len - *pos < (Py_ssize_t)*n) {
        return fail(d, "array length %u exceeds remaining input length %zd", *n, in->len - *pos);
    }
    return 0;
}

int skip_field(Decoder *d, const Input *in, const FieldSpec *f, Py_ssize_t *pos, int depth) {
    Py_ssize_t p = *pos;
    if (f->skip_size >= 0 && depth >= f->skip_height) {
        if (need(d, in, p, f->skip_size) < 0) return -1;
        *pos = p + f->skip_size;
        return 0;
    }
    switch (f->kind) {
    case F_REF:
        return skip_type(d, in, f->type_id, pos, depth);
    case F_INT:
    case F_UINT:
    case F_BOOL:
        if (need(d, in, p, 4) < 0) return -1;
        if (f->kind == F_BOOL && rd32(in->buf + p) > 1) *in->noncanonical = 1;
        *pos = p + 4;
        return 0;
    case F_HYPER:
    case F_UHYPER:
        if (need(d, in, p, 8) < 0) return -1;
        *pos = p + 8;
        return 0;
    case F_OPAQUE:
    case F_STRING: {
        uint32_t n = f->size;
        if (!(f->kind == F_OPAQUE && f->fixed)) {
            if (need(d, in, p, 4) < 0) return -1;
            n = rd32(in->buf + p);
            p += 4;
            if (n > f->size) {
                return fail(d, "%s of %u bytes exceeds its maximum %u", f->kind == F_STRING ? "string" : "opaque",
                            n, f->size);
            }
        }
        Py_ssize_t padded = ((Py_ssize_t)n + 3) / 4 * 4;
        if (need(d, in, p, padded) < 0) return -1;
        for (Py_ssize_t i = n; i < padded; i++) {
            if (in->buf[p + i]) *in->noncanonical = 1;
        }
        *pos = p + padded;
        return 0;
    }
    case F_OPTIONAL: {
        if (need(d, in, p, 4) < 0) return -1;
        uint32_t flag = rd32(in->buf + p);
        *pos = p + 4;
        if (flag > 1) *in->noncanonical = 1;
        return flag ? skip_field(d, in, &d->fields[f->inner], pos, depth) : 0;
    }
    case F_ARRAY: {
        uint32_t n = f->size;
        if (n == NO_FIXED && array_count(d, in, &p, &n) < 0) return -1;
        *pos = p;
        const FieldSpec *item = &d->fields[f->inner];
        if (item->skip_size >= 0 && depth >= item->skip_height) {  /* items of one fixed size: one step */
            Py_ssize_t bytes = (Py_ssize_t)n * item->skip_size;
            if (need(d, in, p, bytes) < 0) return -1;
            *pos = p + bytes;
        } else {
            for (uint32_t i = 0; i < n; i++) {
                if (skip_field(d, in, item, pos, depth) < 0) return -1;
            }
        }
        if (n > f->max) return fail(d, "array of %u exceeds its maximum %u", n, f->max);
        return 0;
    }
    }
    return fail(d, "bad field kind %d", f->kind);
}

static int bad_enum(Decoder *d, const TypeSpec *t, long value) {
    PyObject *name = PyObject_GetAttrString(t->cls, "__name__");
    int rc = fail(d, "%ld is not a valid %S", value, name);
    Py_XDECREF(name);
    return rc;
}

static int enum_member(const TypeSpec *t, long value) {
    if (value >= 0 && value < SMALL) return (int)((t->small_values >> value) & 1);
    int lo = 0, hi = t->nvalues;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (t->values[mid] < value) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->nvalues && t->values[lo] == value;
}


int skip_type(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth) {
    const TypeSpec *t = &d->types[tid];
    if (t->kind == T_ENUM) {
        if (need(d, in, *pos, 4) < 0) return -1;
        long value = (long)(int32_t)rd32(in->buf + *pos);
        if (!enum_member(t, value)) return bad_enum(d, t, value);
        *pos += 4;
        return 0;
    }
    if (depth <= 0) return fail(d, "maximum decoding depth reached");
    if (t->skip_size >= 0 && depth >= t->skip_height) {
        if (need(d, in, *pos, t->skip_size) < 0) return -1;
        *pos += t->skip_size;
        return 0;
    }
    int first = t->first, count = t->count;
    if (t->kind == T_UNION) {
        if (need(d, in, *pos, 4) < 0) return -1;
        const Arm *arm = union_arm(d, in, t, *pos);
        if (arm == NULL) return -1;
        *pos += 4;
        first = arm->first;
        count = arm->count;
    }
    for (int i = first; i < first + count; i++) {
        const FieldSpec *f = &d->fields[d->member_fields[i]];
        if (f->skip_size >= 0 && depth - 1 >= f->skip_height) {  /* the common case, without a call */
            if (need(d, in, *pos, f->skip_size) < 0) return -1;
            *pos += f->skip_size;
        } else if (skip_field(d, in, f, pos, depth - 1) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- decoding: builds the stellar-sdk objects ----------------------------------------------- */

/* Decode one field at *pos. */
static int read_field(Decoder *d, const Input *in, int fid, Py_ssize_t *pos, int depth, PyObject **out) {
    const FieldSpec *f = &d->fields[fid];
    Py_ssize_t p = *pos;
    switch (f->kind) {
    case F_REF:
        return read_type(d, in, f->type_id, pos, depth, out);
    case F_INT:
    case F_UINT:
    case F_BOOL: {
        if (need(d, in, p, 4) < 0) return -1;
        uint32_t w = rd32(in->buf + p);
        *pos = p + 4;
        if (f->kind == F_BOOL && w > 1) *in->noncanonical = 1;
        if (f->kind == F_INT) *out = PyLong_FromLong((long)(int32_t)w);
        else if (f->kind == F_UINT) *out = PyLong_FromUnsignedLong(w);
        else *out = PyBool_FromLong(w != 0);
        return *out == NULL ? -1 : 0;
    }
    case F_HYPER:
    case F_UHYPER: {
        if (need(d, in, p, 8) < 0) return -1;
        uint64_t w = rd64(in->buf + p);
        *pos = p + 8;
        *out = f->kind == F_HYPER ? PyLong_FromLongLong((long long)(int64_t)w) : PyLong_FromUnsignedLongLong(w);
        return *out == NULL ? -1 : 0;
    }
    case F_OPAQUE:
    case F_STRING: {
        Py_ssize_t start = p;
        if (skip_field(d, in, f, pos, depth) < 0) return -1;
        uint32_t n = (f->kind == F_OPAQUE && f->fixed) ? f->size : rd32(in->buf + start);
        Py_ssize_t at = (f->kind == F_OPAQUE && f->fixed) ? start : start + 4;
        *out = PyBytes_FromStringAndSize((const char *)in->buf + at, n);
        return *out == NULL ? -1 : 0;
    }
    case F_OPTIONAL: {
        if (need(d, in, p, 4) < 0) return -1;
        uint32_t flag = rd32(in->buf + p);
        *pos = p + 4;
        if (flag > 1) *in->noncanonical = 1;
        if (flag) return read_field(d, in, f->inner, pos, depth, out);
        Py_INCREF(Py_None);
        *out = Py_None;
        return 0;
    }
    case F_ARRAY: {
        uint32_t n = f->size;
        if (n == NO_FIXED && array_count(d, in, &p, &n) < 0) return -1;
        *pos = p;
        PyObject *list = PyList_New(n);
        if (list == NULL) return -1;
        for (uint32_t i = 0; i < n; i++) {
            PyObject *item = NULL;
            if (read_field(d, in, f->inner, pos, depth, &item) < 0) {
                Py_DECREF(list);
                return -1;
            }
            PyList_SET_ITEM(list, i, item);
        }
        if (n > f->max) {
            Py_DECREF(list);
            return fail(d, "array of %u exceeds its maximum %u", n, f->max);
        }
        *out = list;
        return 0;
    }
    }
    return fail(d, "bad field kind %d", f->kind);
}

/* ---- contract events in compact form ---------------------------------------------------
 * The token-transfer path reads only the contract events of a TransactionMetaV4. Building
 * stellar-sdk objects for them dominates its cost, so they are also offered compactly:
 *   event  = (contract: C strkey | None, type: int, body_v: int, topics: [scval], data: scval)
 *   scval  = (type: int, value)   value: bool | int | bytes | str (string, symbol) | None
 *            | (scval, ...) (vec; topics too) | ((scval, scval), ...) (map) | strkey str (address)
 * built from bytes the generic walk has just checked (see scan_meta below). obsrvr_ray/ledger/compact_events.py builds
 * the same tuples from stellar-sdk objects (the reference path); tests keep them equal.
 */

static PyObject *int128(uint64_t hi, uint64_t lo, int is_signed) {
    /* most amounts fit in 64 bits: build those directly */
    if (hi == 0 && lo <= (uint64_t)INT64_MAX) return PyLong_FromLongLong((long long)lo);
    if (is_signed && hi == UINT64_MAX && lo > (uint64_t)INT64_MAX) return PyLong_FromLongLong((long long)(int64_t)lo);
    PyObject *h = is_signed ? PyLong_FromLongLong((long long)(int64_t)hi) : PyLong_FromUnsignedLongLong(hi);
    PyObject *l = PyLong_FromUnsignedLongLong(lo);
    PyObject *sixty4 = PyLong_FromLong(64);
    PyObject *shifted = (h && sixty4) ? PyNumber_Lshift(h, sixty4) : NULL;
    PyObject *out = (shifted && l) ? PyNumber_Or(shifted, l) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(sixty4);
    Py_XDECREF(shifted);
    return out;
}

/* SEP-23 strkey: version byte, payload, CRC16-XModem (little endian), in unpadded base32.
 * The same encoding as obsrvr_ray/strkey.py, which the tests hold it to. */

static uint16_t crc_table[256];

static void init_crc_table(void) {
    for (int i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);
        for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        crc_table[i] = crc;
    }
}

int strkey_text(unsigned char version, const unsigned char *payload, int n, char *text) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char raw[48];
    raw[0] = version;
    memcpy(raw + 1, payload, n);
    uint16_t crc = 0;
    for (int i = 0; i < n + 1; i++) crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ raw[i]) & 0xFF]);
    int len = n + 3;
    raw[n + 1] = crc & 0xFF;
    raw[n + 2] = crc >> 8;
    int out = 0, bits = 0;
    uint32_t acc = 0;
    for (int i = 0; i < len; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 5) {
            text[out++] = alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0) text[out++] = alphabet[(acc << (5 - bits)) & 31];
    return out;
}

static PyObject *strkey(unsigned char version, const unsigned char *payload, int n) {
    char text[80];
    return PyUnicode_FromStringAndSize(text, strkey_text(version, payload, n, text));
}

static PyObject *var_bytes(Decoder *d, const Input *in, Py_ssize_t *pos) {
    if (need(d, in, *pos, 4) < 0) return NULL;
    uint32_t n = rd32(in->buf + *pos);
    Py_ssize_t padded = ((Py_ssize_t)n + 3) / 4 * 4;
    if (need(d, in, *pos + 4, padded) < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize((const char *)in->buf + *pos + 4, n);
    *pos += 4 + padded;
    return out;
}

enum { CACHE_SCVAL = 1, CACHE_CONTRACT = 2 };

static uint32_t cache_slot(int kind, const unsigned char *key, Py_ssize_t len) {
    uint32_t h = 2166136261u ^ (uint32_t)kind;
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ key[i]) * 16777619u;
    return h & (CACHE_SLOTS - 1);
}

/* The cached value for these bytes (a new reference), or NULL with *slot set for cache_put. */
static PyObject *cache_get(Decoder *d, int kind, const unsigned char *key, Py_ssize_t len, uint32_t *slot) {
    *slot = cache_slot(kind, key, len);
    struct CacheEntry *e = &d->cache[*slot];
    if (e->value != NULL && e->kind == kind && e->len == len && memcmp(e->key, key, len) == 0) {
        Py_INCREF(e->value);
        return e->value;
    }
    return NULL;
}

static void cache_put(Decoder *d, uint32_t slot, int kind, const unsigned char *key, Py_ssize_t len,
                      PyObject *value) {
    struct CacheEntry *e = &d->cache[slot];
    Py_XDECREF(e->value);
    e->kind = kind;
    e->len = (int)len;
    memcpy(e->key, key, len);
    Py_INCREF(value);
    e->value = value;
}

/* Bytes of a symbol, string or address SCVal at `start` (type word included), or 0 for values
 * not worth caching. The bytes have been checked by the table walk. */
static Py_ssize_t cacheable_span(const Input *in, Py_ssize_t start) {
    int type = (int)(int32_t)rd32(in->buf + start);
    if (type == SCV_SYMBOL || type == SCV_STRING) {
        Py_ssize_t span = 8 + ((Py_ssize_t)rd32(in->buf + start + 4) + 3) / 4 * 4;
        return span <= CACHE_KEY ? span : 0;
    }
    if (type == SCV_ADDRESS) {
        static const Py_ssize_t sizes[] = {40, 36, 44, 40, 36};  /* SCAddress bytes by its type, type included */
        uint32_t kind = rd32(in->buf + start + 4);
        return kind < 5 ? 4 + sizes[kind] : 0;
    }
    return 0;
}

static PyObject *scan_scval(Decoder *d, const Input *in, Py_ssize_t *pos, int depth);

/* (tag, value), stealing the reference to value: built for every value of every event, so
 * without Py_BuildValue's format parsing. */
static PyObject *tagged(int tag, PyObject *value) {
    if (value == NULL) return NULL;
    PyObject *key = PyLong_FromLong(tag);
    PyObject *out = key ? PyTuple_New(2) : NULL;
    if (out == NULL) {
        Py_XDECREF(key);
        Py_DECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, key);
    PyTuple_SET_ITEM(out, 1, value);
    return out;
}

static PyObject *scan_scval_list(Decoder *d, const Input *in, Py_ssize_t *pos, int depth,
                                 int pairs) {
    if (need(d, in, *pos, 4) < 0) return NULL;
    uint32_t n = rd32(in->buf + *pos);
    *pos += 4;
    PyObject *list = PyTuple_New(n);
    if (list == NULL) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *item;
        if (pairs) {
            PyObject *k = scan_scval(d, in, pos, depth - 1);
            PyObject *v = k ? scan_scval(d, in, pos, depth - 1) : NULL;
            item = (k && v) ? PyTuple_Pack(2, k, v) : NULL;
            Py_XDECREF(k);
            Py_XDECREF(v);
        } else {
            item = scan_scval(d, in, pos, depth - 1);
        }
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(list, i, item);
    }
    return list;
}

/* An SCAddress as its strkey (G, C, M, B or L). */
static PyObject *scan_address(Decoder *d, const Input *in, Py_ssize_t *pos) {
    if (need(d, in, *pos, 4) < 0) return NULL;
    uint32_t kind = rd32(in->buf + *pos);
    const unsigned char *p = in->buf + *pos + 4;
    unsigned char muxed[40];
    switch (kind) {
    case 0: /* account: PublicKey (type, ed25519) */
        *pos += 40;
        return strkey(SK_ACCOUNT, p + 4, 32);
    case 1: /* contract: Hash */
        *pos += 36;
        return strkey(SK_CONTRACT, p, 32);
    case 2: /* muxed: id, ed25519 -> payload ed25519, id */
        memcpy(muxed, p + 8, 32);
        memcpy(muxed + 32, p, 8);
        *pos += 44;
        return strkey(SK_MUXED, muxed, 40);
    case 3: /* claimable balance: ClaimableBalanceID (type 0, hash): the type byte leads the payload */
        muxed[0] = 0;
        memcpy(muxed + 1, p + 4, 32);
        *pos += 40;
        return strkey(SK_BALANCE, muxed, 33);
    case 4: /* liquidity pool: Hash */
        *pos += 36;
        return strkey(SK_POOL, p, 32);
    }
    fail(d, "unknown SCAddress type %u", kind);
    return NULL;
}

static PyObject *scan_scval(Decoder *d, const Input *in, Py_ssize_t *pos, int depth) {
    if (depth <= 0) {
        fail(d, "maximum decoding depth reached");
        return NULL;
    }
    Py_ssize_t start = *pos;
    if (need(d, in, start, 4) < 0) return NULL;
    int type = (int)(int32_t)rd32(in->buf + start);
    Py_ssize_t span = cacheable_span(in, start);
    uint32_t slot = 0;
    if (span > 0) {
        PyObject *hit = cache_get(d, CACHE_SCVAL, in->buf + start, span, &slot);
        if (hit != NULL) {
            *pos = start + span;
            return hit;
        }
    }
    Py_ssize_t p = start + 4;
    PyObject *value = NULL;
    switch (type) {
    case SCV_BOOL:
        if (need(d, in, p, 4) < 0) return NULL;
        value = PyBool_FromLong(rd32(in->buf + p) != 0);
        p += 4;
        break;
    case SCV_VOID:
        Py_INCREF(Py_None);
        value = Py_None;
        break;
    case SCV_U32:
    case SCV_I32:
        if (need(d, in, p, 4) < 0) return NULL;
        value = type == SCV_U32 ? PyLong_FromUnsignedLong(rd32(in->buf + p))
                                : PyLong_FromLong((long)(int32_t)rd32(in->buf + p));
        p += 4;
        break;
    case SCV_U64:
    case SCV_TIMEPOINT:
    case SCV_DURATION:
    case SCV_I64:
        if (need(d, in, p, 8) < 0) return NULL;
        value = type == SCV_I64 ? PyLong_FromLongLong((long long)(int64_t)rd64(in->buf + p))
                                : PyLong_FromUnsignedLongLong(rd64(in->buf + p));
        p += 8;
        break;
    case SCV_U128:
    case SCV_I128:
        if (need(d, in, p, 16) < 0) return NULL;
        value = int128(rd64(in->buf + p), rd64(in->buf + p + 8), type == SCV_I128);
        p += 16;
        break;
    case SCV_BYTES:
        value = var_bytes(d, in, &p);
        break;
    case SCV_STRING:
    case SCV_SYMBOL: {
        uint32_t n = rd32(in->buf + p);
        value = PyUnicode_DecodeUTF8((const char *)in->buf + p + 4, n, "replace");
        p += 4 + ((Py_ssize_t)n + 3) / 4 * 4;
        break;
    }
    case SCV_VEC:
    case SCV_MAP:
        if (need(d, in, p, 4) < 0) return NULL;
        if (rd32(in->buf + p) == 0) {
            p += 4;
            Py_INCREF(Py_None);
            value = Py_None;
        } else {
            p += 4;
            value = scan_scval_list(d, in, &p, depth, type == SCV_MAP);
        }
        break;
    case SCV_ADDRESS:
        value = scan_address(d, in, &p);
        break;
    default: /* kept as a type only: walk it with the table */
        p = start;
        if (skip_type(d, in, d->scval, &p, depth) < 0) return NULL;
        Py_INCREF(Py_None);
        value = Py_None;
        break;
    }
    if (value == NULL) return NULL;
    *pos = p;
    PyObject *out = tagged(type, value);
    if (out != NULL && span > 0) cache_put(d, slot, CACHE_SCVAL, in->buf + start, span, out);
    return out;
}

static PyObject *scan_contract_event(Decoder *d, const Input *in, Py_ssize_t *pos, int depth) {
    /* the table walk checks the event (and flags a non-canonical encoding) exactly as skipping
     * it would; the compact form is then read from bytes known to be well formed */
    Py_ssize_t end = *pos;
    if (skip_type(d, in, d->contract_event, &end, depth) < 0) return NULL;
    if (skip_type(d, in, d->ext_point, pos, MAX_DEPTH) < 0) return NULL;
    PyObject *contract;
    if (rd32(in->buf + *pos)) {
        uint32_t slot;
        contract = cache_get(d, CACHE_CONTRACT, in->buf + *pos + 4, 32, &slot);
        if (contract == NULL) {
            contract = strkey(SK_CONTRACT, in->buf + *pos + 4, 32);
            if (contract != NULL) cache_put(d, slot, CACHE_CONTRACT, in->buf + *pos + 4, 32, contract);
        }
        *pos += 36;
    } else {
        Py_INCREF(Py_None);
        contract = Py_None;
        *pos += 4;
    }
    if (contract == NULL) return NULL;
    int type = (int)(int32_t)rd32(in->buf + *pos);
    int body_v = (int)(int32_t)rd32(in->buf + *pos + 4);
    *pos += 8;
    PyObject *topics = scan_scval_list(d, in, pos, MAX_DEPTH, 0);
    PyObject *data = topics ? scan_scval(d, in, pos, MAX_DEPTH) : NULL;
    if (data == NULL) {
        Py_DECREF(contract);
        Py_XDECREF(topics);
        return NULL;
    }
    *pos = end;
    return Py_BuildValue("(NiiNN)", contract, type, body_v, topics, data);
}

/* Walks a TransactionMeta at *pos like skipping it would (same checks, same errors, same depth)
 * and, for a v4 meta, also returns its contract events in compact form:
 *   ([(stage, event)], [[event] per operation])     None for other versions.
 * The decoder runs it where it leaves a meta encoded, so the token-transfer path reads the
 * events without a second walk over the meta's ledger-entry changes. */
static int scan_meta(Decoder *d, const Input *in, Py_ssize_t *pos, int depth, PyObject **out) {
    if (need(d, in, *pos, 4) < 0) return -1;
    if ((int32_t)rd32(in->buf + *pos) != 4 || depth <= 1) {
        if (skip_type(d, in, d->meta, pos, depth) < 0) return -1;
        Py_INCREF(Py_None);
        *out = Py_None;
        return 0;
    }
    int inner = depth - 2;  /* TransactionMeta (union) -> TransactionMetaV4 -> its members */
    Py_ssize_t p = *pos + 4;
    PyObject *ops = NULL, *tx_events = NULL;
    uint32_t n;
    if (skip_type(d, in, d->ext_point, &p, inner) < 0) return -1;
    if (skip_type(d, in, d->changes, &p, inner) < 0) return -1;
    if (array_count(d, in, &p, &n) < 0) return -1;
    if (inner <= 0 && n > 0) return fail(d, "maximum decoding depth reached");
    ops = PyList_New(n);
    if (ops == NULL) return -1;
    for (uint32_t i = 0; i < n; i++) {  /* OperationMetaV2: ext, changes, events */
        uint32_t nev;
        if (skip_type(d, in, d->ext_point, &p, inner - 1) < 0) goto error;
        if (skip_type(d, in, d->changes, &p, inner - 1) < 0) goto error;
        if (array_count(d, in, &p, &nev) < 0) goto error;
        PyObject *events = PyList_New(nev);
        if (events == NULL) goto error;
        PyList_SET_ITEM(ops, i, events);
        for (uint32_t j = 0; j < nev; j++) {
            PyObject *event = scan_contract_event(d, in, &p, inner - 1);
            if (event == NULL) goto error;
            PyList_SET_ITEM(events, j, event);
        }
    }
    if (skip_type(d, in, d->changes, &p, inner) < 0) goto error;
    if (need(d, in, p, 4) < 0) goto error;
    uint32_t present = rd32(in->buf + p);
    p += 4;
    if (present > 1) *in->noncanonical = 1;
    if (present && skip_type(d, in, d->soroban_meta_v2, &p, inner) < 0) goto error;
    if (array_count(d, in, &p, &n) < 0) goto error;
    if (inner <= 0 && n > 0) {
        fail(d, "maximum decoding depth reached");
        goto error;
    }
    tx_events = PyList_New(n);
    if (tx_events == NULL) goto error;
    for (uint32_t i = 0; i < n; i++) {  /* TransactionEvent: stage, event */
        Py_ssize_t at = p;
        if (skip_type(d, in, d->event_stage, &p, inner - 1) < 0) goto error;
        PyObject *event = scan_contract_event(d, in, &p, inner - 1);
        if (event == NULL) goto error;
        PyObject *item = tagged((int)(int32_t)rd32(in->buf + at), event);
        if (item == NULL) goto error;
        PyList_SET_ITEM(tx_events, i, item);
    }
    if (array_count(d, in, &p, &n) < 0) goto error;
    for (uint32_t i = 0; i < n; i++) {
        if (skip_type(d, in, d->diagnostic, &p, inner) < 0) goto error;
    }
    *out = Py_BuildValue("(NN)", tx_events, ops);
    if (*out == NULL) return -1;
    *pos = p;
    return 0;
error:
    Py_XDECREF(ops);
    Py_XDECREF(tx_events);
    return -1;
}

static int set_members(Decoder *d, const Input *in, PyObject *obj, int first, int count, Py_ssize_t *pos,
                       int depth) {
    for (int i = first; i < first + count; i++) {
        PyObject *value = NULL;
        if (read_field(d, in, d->member_fields[i], pos, depth, &value) < 0) return -1;
        int rc = PyObject_GenericSetAttr(obj, d->member_attrs[i], value);
        Py_DECREF(value);
        if (rc < 0) return -1;
    }
    return 0;
}

static PyObject *new_instance(PyObject *cls) {
    PyTypeObject *tp = (PyTypeObject *)cls;
    return tp->tp_alloc(tp, 0);
}

/* A lazy type's value: its bytes (checked by walking them) in a LazyXdr, with the contract
 * events of a v4 meta read on the way. */
static int read_lazy(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth, PyObject **out) {
    const TypeSpec *t = &d->types[tid];
    Py_ssize_t start = *pos;
    PyObject *events = NULL;
    if (tid == d->meta) {
        if (scan_meta(d, in, pos, depth, &events) < 0) return -1;
    } else {
        if (skip_type(d, in, tid, pos, depth) < 0) return -1;
        Py_INCREF(Py_None);
        events = Py_None;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)in->buf + start, *pos - start);
    PyObject *lazy = data ? new_instance(d->lazy_type) : NULL;
    if (lazy == NULL) {
        Py_XDECREF(data);
        Py_DECREF(events);
        return -1;
    }
    PyObject *values[5] = {t->cls, data, t->opener, Py_None, events};
    for (int i = 0; i < 5; i++) {
        PyObject **slot = (PyObject **)((char *)lazy + d->lazy_slots[i]);
        Py_INCREF(values[i]);
        *slot = values[i];
    }
    Py_DECREF(data);
    Py_DECREF(events);
    *out = lazy;
    return 0;
}

static int read_type(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth, PyObject **out) {
    const TypeSpec *t = &d->types[tid];
    if (t->kind == T_ENUM) {
        if (need(d, in, *pos, 4) < 0) return -1;
        long value = (long)(int32_t)rd32(in->buf + *pos);
        PyObject *key = PyLong_FromLong(value);
        if (key == NULL) return -1;
        PyObject *member = PyDict_GetItemWithError(t->members, key);
        Py_DECREF(key);
        if (member == NULL) {
            if (PyErr_Occurred()) return -1;
            return bad_enum(d, t, value);
        }
        *pos += 4;
        Py_INCREF(member);
        *out = member;
        return 0;
    }
    if (depth <= 0) return fail(d, "maximum decoding depth reached");
    if (t->lazy) return read_lazy(d, in, tid, pos, depth, out);
    PyObject *obj = new_instance(t->cls);
    if (obj == NULL) return -1;
    if (t->kind == T_STRUCT) {
        if (set_members(d, in, obj, t->first, t->count, pos, depth - 1) < 0) {
            Py_DECREF(obj);
            return -1;
        }
        *out = obj;
        return 0;
    }
    Py_ssize_t at = *pos;
    PyObject *disc = NULL;
    if (read_field(d, in, t->disc_field, pos, depth - 1, &disc) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    const Arm *arm = union_arm(d, in, t, at);
    int rc = arm == NULL ? -1 : PyObject_GenericSetAttr(obj, t->disc_attr, disc);
    Py_DECREF(disc);
    if (rc < 0 || set_members(d, in, obj, arm->first, arm->count, pos, depth - 1) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    *out = obj;
    return 0;
}

/* ---- the table's derived facts ------------------------------------------------------------ */

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

#define UNKNOWN (-2)

static void type_skip(Decoder *d, int tid);

/* A field's skip_size: fixed length with no value to check (-1 otherwise), and its height. */
static void field_skip(Decoder *d, FieldSpec *f) {
    if (f->skip_size != UNKNOWN) return;
    f->skip_size = -1;
    f->skip_height = 0;
    switch (f->kind) {
    case F_INT:
    case F_UINT:
        f->skip_size = 4;
        break;
    case F_HYPER:
    case F_UHYPER:
        f->skip_size = 8;
        break;
    case F_OPAQUE:
        if (f->fixed && f->size % 4 == 0) f->skip_size = (int)f->size;
        break;
    case F_ARRAY:
        if (f->size != NO_FIXED && f->size <= f->max) {
            FieldSpec *item = &d->fields[f->inner];
            field_skip(d, item);
            if (item->skip_size >= 0) {
                f->skip_size = (int)f->size * item->skip_size;
                f->skip_height = item->skip_height;
            }
        }
        break;
    case F_REF:
        type_skip(d, f->type_id);
        f->skip_size = d->types[f->type_id].skip_size;
        f->skip_height = d->types[f->type_id].skip_height;
        break;
    }
}

/* A struct all of whose members have a skip_size has one too (recursive types never do). */
static void type_skip(Decoder *d, int tid) {
    TypeSpec *t = &d->types[tid];
    if (t->skip_size != UNKNOWN) return;
    t->skip_size = -1;  /* also while its members are examined */
    t->skip_height = 0;
    if (t->kind != T_STRUCT) return;
    int size = 0, height = 0;
    for (int i = t->first; i < t->first + t->count; i++) {
        FieldSpec *f = &d->fields[d->member_fields[i]];
        field_skip(d, f);
        if (f->skip_size < 0) return;
        size += f->skip_size;
        if (f->skip_height > height) height = f->skip_height;
    }
    t->skip_size = size;
    t->skip_height = height + 1;
}

static int derive_facts(Decoder *d) {
    for (int i = 0; i < d->nfields; i++) d->fields[i].skip_size = UNKNOWN;
    for (int i = 0; i < d->ntypes; i++) {
        TypeSpec *t = &d->types[i];
        t->skip_size = UNKNOWN;
        for (int k = 0; k < SMALL; k++) t->small_arm[k] = -1;
        for (int j = t->narms - 1; j >= 0; j--) {  /* the first arm of a value wins, as in a scan */
            if (t->arms[j].value >= 0 && t->arms[j].value < SMALL) t->small_arm[t->arms[j].value] = j;
        }
        if (t->members != NULL) {
            Py_ssize_t n = PyDict_GET_SIZE(t->members), at = 0;
            PyObject *key, *member;
            t->values = PyMem_Calloc(n ? n : 1, sizeof(int64_t));
            if (t->values == NULL) return -1;
            while (PyDict_Next(t->members, &at, &key, &member)) {
                int64_t v = PyLong_AsLongLong(key);
                t->values[t->nvalues++] = v;
                if (v >= 0 && v < SMALL) t->small_values |= (uint64_t)1 << v;
            }
            if (PyErr_Occurred()) return -1;
            qsort(t->values, t->nvalues, sizeof(int64_t), cmp_int64);
        }
    }
    for (int i = 0; i < d->ntypes; i++) type_skip(d, i);
    for (int i = 0; i < d->nfields; i++) field_skip(d, &d->fields[i]);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

static void Decoder_dealloc(Decoder *d) {
    if (d->types) {
        for (int i = 0; i < d->ntypes; i++) {
            PyMem_Free(d->types[i].arms);
            PyMem_Free(d->types[i].values);
        }
    }
    if (d->cache) {
        for (int i = 0; i < CACHE_SLOTS; i++) Py_XDECREF(d->cache[i].value);
    }
    PyMem_Free(d->cache);
    PyMem_Free(d->types);
    PyMem_Free(d->fields);
    PyMem_Free(d->member_attrs);
    PyMem_Free(d->member_fields);
    Py_XDECREF(d->error);
    Py_XDECREF(d->lazy_type);
    Py_XDECREF(d->refs);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

/* Decoder(types, fields, members, error, lazy_type, scan=None)
 *   types:   [(kind, cls, opener_or_None, members_dict_or_None, first, count, disc_field, disc_attr,
 *             [(value, first, count)])]   (a type with an opener is left encoded, as a lazy_type value)
 *   fields:  [(kind, type_id, size, fixed, max, inner)]
 *   members: [(attr_name, field_id)]
 *   scan:    type ids (TransactionMeta, ExtensionPoint, LedgerEntryChanges, SorobanTransactionMetaV2,
 *             DiagnosticEvent, SCVal, ContractEvent, TransactionEventStage): pre-scan the events of
 *             lazy v4 metas into the LazyXdr's `_scanned`
 */
static int Decoder_init(Decoder *d, PyObject *args, PyObject *kw) {
    PyObject *types, *fields, *members, *error, *lazy_type, *scan = Py_None;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!|O", &PyList_Type, &types, &PyList_Type, &fields, &PyList_Type, &members,
                          &error, &PyType_Type, &lazy_type, &scan)) {
        return -1;
    }
    d->meta = -1;
    d->cache = PyMem_Calloc(CACHE_SLOTS, sizeof(struct CacheEntry));
    if (d->cache == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (scan != Py_None &&
        !PyArg_ParseTuple(scan, "iiiiiiii", &d->meta, &d->ext_point, &d->changes, &d->soroban_meta_v2, &d->diagnostic,
                          &d->scval, &d->contract_event, &d->event_stage)) {
        return -1;
    }
    d->refs = PyTuple_Pack(3, types, fields, members);
    Py_INCREF(error);
    d->error = error;
    Py_INCREF(lazy_type);
    d->lazy_type = lazy_type;
    static const char *slot_names[5] = {"_cls", "_data", "_decode", "_value", "_scanned"};
    for (int i = 0; i < 5; i++) {
        PyObject *descr = PyObject_GetAttrString(lazy_type, slot_names[i]);
        if (descr == NULL) return -1;
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "%R.%s is not an object slot", lazy_type, slot_names[i]);
            return -1;
        }
        d->lazy_slots[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
    }
    d->nfields = (int)PyList_GET_SIZE(fields);
    d->fields = PyMem_Calloc(d->nfields, sizeof(FieldSpec));
    for (int i = 0; i < d->nfields; i++) {
        FieldSpec *f = &d->fields[i];
        unsigned int size, max;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, i), "iiIiIi", &f->kind, &f->type_id, &size, &f->fixed, &max,
                              &f->inner)) {
            return -1;
        }
        f->size = size;
        f->max = max;
    }
    d->nmembers = (int)PyList_GET_SIZE(members);
    d->member_attrs = PyMem_Calloc(d->nmembers ? d->nmembers : 1, sizeof(PyObject *));
    d->member_fields = PyMem_Calloc(d->nmembers ? d->nmembers : 1, sizeof(int));
    for (int i = 0; i < d->nmembers; i++) {
        PyObject *attr;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(members, i), "Ui", &attr, &d->member_fields[i])) return -1;
        d->member_attrs[i] = attr; /* kept alive by refs */
    }
    d->ntypes = (int)PyList_GET_SIZE(types);
    d->types = PyMem_Calloc(d->ntypes, sizeof(TypeSpec));
    for (int i = 0; i < d->ntypes; i++) {
        TypeSpec *t = &d->types[i];
        PyObject *arms, *members_dict, *disc_attr, *opener;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(types, i), "iOOOiiiOO!", &t->kind, &t->cls, &opener, &members_dict,
                              &t->first, &t->count, &t->disc_field, &disc_attr, &PyList_Type, &arms)) {
            return -1;
        }
        t->lazy = opener != Py_None;
        t->opener = t->lazy ? opener : NULL;
        t->members = members_dict == Py_None ? NULL : members_dict;
        t->disc_attr = disc_attr == Py_None ? NULL : disc_attr;
        t->narms = (int)PyList_GET_SIZE(arms);
        t->arms = PyMem_Calloc(t->narms ? t->narms : 1, sizeof(Arm));
        for (int j = 0; j < t->narms; j++) {
            Arm *a = &t->arms[j];
            if (!PyArg_ParseTuple(PyList_GET_ITEM(arms, j), "Lii", &a->value, &a->first, &a->count)) return -1;
        }
    }
    return derive_facts(d);
}

static int get_input(PyObject *data, Input *in, int *noncanonical) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes");
        return -1;
    }
    in->buf = (const unsigned char *)PyBytes_AS_STRING(data);
    in->len = PyBytes_GET_SIZE(data);
    in->source = data;
    in->noncanonical = noncanonical;
    *noncanonical = 0;
    return 0;
}

/* decode(type_id, data, pos=0, whole=True) -> (value, end, canonical) */
static PyObject *Decoder_decode(Decoder *d, PyObject *args) {
    int tid, whole = 1;
    PyObject *data;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "iO|np", &tid, &data, &pos, &whole)) return NULL;
    Input in;
    int noncanonical;
    if (get_input(data, &in, &noncanonical) < 0) return NULL;
    if (tid < 0 || tid >= d->ntypes) return PyErr_Format(PyExc_IndexError, "no type %d", tid);
    PyObject *value = NULL;
    if (read_type(d, &in, tid, &pos, MAX_DEPTH, &value) < 0) return NULL;
    if (whole && pos != in.len) {
        Py_DECREF(value);
        fail(d, "%zd trailing bytes", in.len - pos);
        return NULL;
    }
    return Py_BuildValue("NnO", value, pos, noncanonical ? Py_False : Py_True);
}

/* skip(type_id, data, pos=0) -> end */
static PyObject *Decoder_skip(Decoder *d, PyObject *args) {
    int tid;
    PyObject *data;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "iO|n", &tid, &data, &pos)) return NULL;
    Input in;
    int noncanonical;
    if (get_input(data, &in, &noncanonical) < 0) return NULL;
    if (tid < 0 || tid >= d->ntypes) return PyErr_Format(PyExc_IndexError, "no type %d", tid);
    if (skip_type(d, &in, tid, &pos, MAX_DEPTH) < 0) return NULL;
    return PyLong_FromSsize_t(pos);
}

/* signed_hashes(envelopes, kinds, prefix, sha256) -> [digest]
 *   envelopes: [bytes] of XDR unions whose 4-byte tag picks a body type;
 *   kinds:     {tag: (body type id, header bytes)}
 * Each digest is sha256(prefix + header + body), the body being the bytes after the tag that
 * the body type spans (what a transaction signature and hash commit to: the rule itself lives
 * with the caller). One call per ledger instead of one Python round trip per transaction. */
static PyObject *Decoder_signed_hashes(Decoder *d, PyObject *args) {
    PyObject *envelopes, *kinds, *prefix, *sha256;
    if (!PyArg_ParseTuple(args, "O!O!SO", &PyList_Type, &envelopes, &PyDict_Type, &kinds, &prefix, &sha256)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(envelopes);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(envelopes, i);
        Input in;
        int noncanonical;
        if (get_input(raw, &in, &noncanonical) < 0 || need(d, &in, 0, 4) < 0) goto error;
        PyObject *tag = PyLong_FromLong((long)(int32_t)rd32(in.buf));
        if (tag == NULL) goto error;
        PyObject *kind = PyDict_GetItemWithError(kinds, tag);
        Py_DECREF(tag);
        int tid;
        PyObject *header;
        if (kind == NULL) {
            if (!PyErr_Occurred()) fail(d, "envelope type %d has no signature payload", (int)(int32_t)rd32(in.buf));
            goto error;
        }
        if (!PyArg_ParseTuple(kind, "iS", &tid, &header)) goto error;
        Py_ssize_t end = 4;
        if (skip_type(d, &in, tid, &end, MAX_DEPTH) < 0) goto error;
        Py_ssize_t np = PyBytes_GET_SIZE(prefix), nh = PyBytes_GET_SIZE(header), nb = end - 4;
        PyObject *payload = PyBytes_FromStringAndSize(NULL, np + nh + nb);
        if (payload == NULL) goto error;
        char *w = PyBytes_AS_STRING(payload);
        memcpy(w, PyBytes_AS_STRING(prefix), np);
        memcpy(w + np, PyBytes_AS_STRING(header), nh);
        memcpy(w + np + nh, in.buf + 4, nb);
        PyObject *hasher = PyObject_CallOneArg(sha256, payload);
        Py_DECREF(payload);
        if (hasher == NULL) goto error;
        PyObject *digest = PyObject_CallMethod(hasher, "digest", NULL);
        Py_DECREF(hasher);
        if (digest == NULL) goto error;
        PyList_SET_ITEM(out, i, digest);
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(type_id, data, pos=0, whole=True) -> (value, end, canonical)"},
    {"skip", (PyCFunction)Decoder_skip, METH_VARARGS, "skip(type_id, data, pos=0) -> end offset"},
    {"signed_hashes", (PyCFunction)Decoder_signed_hashes, METH_VARARGS,
     "signed_hashes(envelopes, kinds, prefix, sha256) -> [sha256(prefix + header + body)]"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "obsrvr_ray.xdr._fastxdr.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
    .tp_doc = "Table-driven XDR decoder (see obsrvr_ray/xdr/fast.py).",
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastxdr", "Compiled XDR decoder.", -1, NULL};

PyMODINIT_FUNC PyInit__fastxdr(void) {
    init_crc_table();
    if (PyType_Ready(&DecoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0 || add_transfer_columns(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
