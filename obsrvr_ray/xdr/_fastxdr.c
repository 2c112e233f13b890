/* The compiled form of obsrvr_ray.xdr.pydecode: the same table-driven XDR decoder in C.
 *
 * The table (types, fields, arms) is built in Python from stellar-sdk's generated decoder
 * (obsrvr_ray/xdr/schema.py) and handed to Decoder(); this file only walks bytes by it. It
 * accepts exactly what pydecode accepts and builds the same objects; differential tests keep
 * the two equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { F_REF = 0, F_INT, F_UINT, F_HYPER, F_UHYPER, F_BOOL, F_OPAQUE, F_STRING, F_OPTIONAL, F_ARRAY };
enum { T_ENUM = 0, T_STRUCT, T_UNION };
#define NO_FIXED 0xFFFFFFFFu
#define MAX_DEPTH 512

typedef struct {
    int kind;
    int type_id;     /* F_REF */
    uint32_t size;   /* F_OPAQUE / F_STRING max or fixed size; F_ARRAY fixed count or NO_FIXED */
    int fixed;       /* F_OPAQUE */
    uint32_t max;    /* F_ARRAY */
    int inner;       /* F_OPTIONAL / F_ARRAY: index of the element field */
} FieldSpec;

typedef struct {
    int64_t value;
    int first;       /* index into the member table (attr, field) */
    int count;
} Arm;

typedef struct {
    int kind;
    int lazy;
    PyObject *opener;    /* lazy types: callable(bytes) -> value, stored in the LazyXdr */
    PyObject *cls;
    PyObject *members;   /* T_ENUM: dict int -> member */
    int first, count;    /* T_STRUCT: members */
    int disc_field;      /* T_UNION */
    PyObject *disc_attr;
    Arm *arms;
    int narms;
} TypeSpec;

typedef struct {
    PyObject_HEAD
    TypeSpec *types;
    int ntypes;
    FieldSpec *fields;
    int nfields;
    PyObject **member_attrs;
    int *member_fields;
    int nmembers;
    PyObject *error;      /* exception class */
    PyObject *lazy_type;  /* LazyXdr: built with tp_alloc, slots set directly */
    PyObject *s_cls, *s_data, *s_decode, *s_value;
    PyObject *refs;       /* keeps table objects alive */
} Decoder;

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    PyObject *source;     /* the bytes object, for slices */
    int *noncanonical;    /* set when an accepted encoding is not the canonical one */
} Input;

static int fail(Decoder *d, const char *fmt, ...) {
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

static inline int need(Decoder *d, const Input *in, Py_ssize_t pos, Py_ssize_t n) {
    if (pos + n > in->len) {
        return fail(d, "unexpected end of data at byte %zd (need %zd, have %zd)", pos, n, in->len - pos);
    }
    return 0;
}

static inline uint32_t rd32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t rd64(const unsigned char *p) {
    return ((uint64_t)rd32(p) << 32) | rd32(p + 4);
}

static int read_type(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth, int build, PyObject **out);

/* Decode one field at *pos; with build == 0 only walk it (out untouched). */
static int read_field(Decoder *d, const Input *in, int fid, Py_ssize_t *pos, int depth, int build, PyObject **out) {
    const FieldSpec *f = &d->fields[fid];
    Py_ssize_t p = *pos;
    switch (f->kind) {
    case F_REF:
        return read_type(d, in, f->type_id, pos, depth, build, out);
    case F_INT:
    case F_UINT:
    case F_BOOL: {
        if (need(d, in, p, 4) < 0) return -1;
        uint32_t w = rd32(in->buf + p);
        *pos = p + 4;
        if (f->kind == F_BOOL && w > 1) *in->noncanonical = 1;
        if (build) {
            if (f->kind == F_INT) *out = PyLong_FromLong((long)(int32_t)w);
            else if (f->kind == F_UINT) *out = PyLong_FromUnsignedLong(w);
            else *out = PyBool_FromLong(w != 0);
            if (*out == NULL) return -1;
        }
        return 0;
    }
    case F_HYPER:
    case F_UHYPER: {
        if (need(d, in, p, 8) < 0) return -1;
        uint64_t w = rd64(in->buf + p);
        *pos = p + 8;
        if (build) {
            *out = f->kind == F_HYPER ? PyLong_FromLongLong((long long)(int64_t)w) : PyLong_FromUnsignedLongLong(w);
            if (*out == NULL) return -1;
        }
        return 0;
    }
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
        if (build) {
            *out = PyBytes_FromStringAndSize((const char *)in->buf + p, n);
            if (*out == NULL) return -1;
        }
        *pos = p + padded;
        return 0;
    }
    case F_OPTIONAL: {
        if (need(d, in, p, 4) < 0) return -1;
        uint32_t flag = rd32(in->buf + p);
        *pos = p + 4;
        if (flag > 1) *in->noncanonical = 1;
        if (flag) return read_field(d, in, f->inner, pos, depth, build, out);
        if (build) {
            Py_INCREF(Py_None);
            *out = Py_None;
        }
        return 0;
    }
    case F_ARRAY: {
        uint32_t n = f->size;
        if (n == NO_FIXED) {
            if (need(d, in, p, 4) < 0) return -1;
            n = rd32(in->buf + p);
            p += 4;
            if (in->len - p < (Py_ssize_t)n) {
                return fail(d, "array length %u exceeds remaining input length %zd", n, in->len - p);
            }
        }
        *pos = p;
        PyObject *list = NULL;
        if (build) {
            list = PyList_New(n);
            if (list == NULL) return -1;
        }
        for (uint32_t i = 0; i < n; i++) {
            PyObject *item = NULL;
            if (read_field(d, in, f->inner, pos, depth, build, build ? &item : NULL) < 0) {
                Py_XDECREF(list);
                return -1;
            }
            if (build) PyList_SET_ITEM(list, i, item);
        }
        if (n > f->max) {
            Py_XDECREF(list);
            return fail(d, "array of %u exceeds its maximum %u", n, f->max);
        }
        if (build) *out = list;
        return 0;
    }
    }
    return fail(d, "bad field kind %d", f->kind);
}

static int set_members(Decoder *d, const Input *in, PyObject *obj, int first, int count, Py_ssize_t *pos,
                       int depth, int build) {
    for (int i = first; i < first + count; i++) {
        PyObject *value = NULL;
        if (read_field(d, in, d->member_fields[i], pos, depth, build, build ? &value : NULL) < 0) return -1;
        if (build) {
            int rc = PyObject_GenericSetAttr(obj, d->member_attrs[i], value);
            Py_DECREF(value);
            if (rc < 0) return -1;
        }
    }
    return 0;
}

static PyObject *new_instance(PyObject *cls) {
    PyTypeObject *tp = (PyTypeObject *)cls;
    return tp->tp_alloc(tp, 0);
}

static int read_type(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth, int build, PyObject **out) {
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
            PyObject *name = PyObject_GetAttrString(t->cls, "__name__");
            int rc = fail(d, "%ld is not a valid %S", value, name);
            Py_XDECREF(name);
            return rc;
        }
        *pos += 4;
        if (build) {
            Py_INCREF(member);
            *out = member;
        }
        return 0;
    }
    if (depth <= 0) return fail(d, "maximum decoding depth reached");
    if (build && t->lazy) {
        Py_ssize_t start = *pos;
        if (read_type(d, in, tid, pos, depth, 0, NULL) < 0) return -1;
        PyObject *data = PyBytes_FromStringAndSize((const char *)in->buf + start, *pos - start);
        if (data == NULL) return -1;
        PyObject *lazy = new_instance(d->lazy_type);
        if (lazy == NULL || PyObject_SetAttr(lazy, d->s_cls, t->cls) < 0 || PyObject_SetAttr(lazy, d->s_data, data) < 0 ||
            PyObject_SetAttr(lazy, d->s_decode, t->opener) < 0 || PyObject_SetAttr(lazy, d->s_value, Py_None) < 0) {
            Py_XDECREF(lazy);
            Py_DECREF(data);
            return -1;
        }
        Py_DECREF(data);
        *out = lazy;
        return 0;
    }
    PyObject *obj = NULL;
    if (build) {
        obj = new_instance(t->cls);
        if (obj == NULL) return -1;
    }
    if (t->kind == T_STRUCT) {
        if (set_members(d, in, obj, t->first, t->count, pos, depth - 1, build) < 0) {
            Py_XDECREF(obj);
            return -1;
        }
    } else {
        PyObject *disc = NULL;
        Py_ssize_t at = *pos;
        if (build) {
            if (read_field(d, in, t->disc_field, pos, depth - 1, 1, &disc) < 0) {
                Py_XDECREF(obj);
                return -1;
            }
        } else {
            if (need(d, in, at, 4) < 0) return -1;
            *pos = at + 4;
        }
        /* the discriminant as an integer (an enum's value or a plain int): its four bytes */
        long long key = d->fields[t->disc_field].kind == F_UINT ? (long long)rd32(in->buf + at)
                                                                 : (long long)(int32_t)rd32(in->buf + at);
        const Arm *arm = NULL;
        for (int i = 0; i < t->narms; i++) {
            if (t->arms[i].value == key) {
                arm = &t->arms[i];
                break;
            }
        }
        if (arm == NULL) {
            PyObject *name = PyObject_GetAttrString(t->cls, "__name__");
            fail(d, "invalid %S discriminant %lld", name, key);
            Py_XDECREF(name);
            Py_XDECREF(disc);
            Py_XDECREF(obj);
            return -1;
        }
        if (build) {
            int rc = PyObject_GenericSetAttr(obj, t->disc_attr, disc);
            Py_DECREF(disc);
            if (rc < 0) {
                Py_DECREF(obj);
                return -1;
            }
        }
        if (set_members(d, in, obj, arm->first, arm->count, pos, depth - 1, build) < 0) {
            Py_XDECREF(obj);
            return -1;
        }
    }
    if (build) *out = obj;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

static void Decoder_dealloc(Decoder *d) {
    if (d->types) {
        for (int i = 0; i < d->ntypes; i++) PyMem_Free(d->types[i].arms);
    }
    PyMem_Free(d->types);
    PyMem_Free(d->fields);
    PyMem_Free(d->member_attrs);
    PyMem_Free(d->member_fields);
    Py_XDECREF(d->error);
    Py_XDECREF(d->lazy_type);
    Py_XDECREF(d->s_cls);
    Py_XDECREF(d->s_data);
    Py_XDECREF(d->s_decode);
    Py_XDECREF(d->s_value);
    Py_XDECREF(d->refs);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

/* Decoder(types, fields, members, error, lazy_type)
 *   types:   [(kind, cls, opener_or_None, members_dict_or_None, first, count, disc_field, disc_attr,
 *             [(value, first, count)])]   (a type with an opener is left encoded, as a lazy_type value)
 *   fields:  [(kind, type_id, size, fixed, max, inner)]
 *   members: [(attr_name, field_id)]
 */
static int Decoder_init(Decoder *d, PyObject *args, PyObject *kw) {
    PyObject *types, *fields, *members, *error, *lazy_type;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!", &PyList_Type, &types, &PyList_Type, &fields, &PyList_Type, &members,
                          &error, &PyType_Type, &lazy_type)) {
        return -1;
    }
    d->refs = PyTuple_Pack(3, types, fields, members);
    Py_INCREF(error);
    d->error = error;
    Py_INCREF(lazy_type);
    d->lazy_type = lazy_type;
    d->s_cls = PyUnicode_InternFromString("_cls");
    d->s_data = PyUnicode_InternFromString("_data");
    d->s_decode = PyUnicode_InternFromString("_decode");
    d->s_value = PyUnicode_InternFromString("_value");
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
    return 0;
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
    if (read_type(d, &in, tid, &pos, MAX_DEPTH, 1, &value) < 0) return NULL;
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
    if (read_type(d, &in, tid, &pos, MAX_DEPTH, 0, NULL) < 0) return NULL;
    return PyLong_FromSsize_t(pos);
}

/* ---- contract events in compact form ---------------------------------------------------
 * The token-transfer path reads only the contract events of a TransactionMetaV4. Building
 * stellar-sdk objects for them dominates its cost, so they are also offered compactly:
 *   event  = (contract_id: bytes | None, type: int, body_v: int, topics: [scval], data: scval)
 *   scval  = (type: int, value)   value: bool | int | bytes | None | [scval] | [(scval, scval)]
 *            | (address_type, key bytes, mux id or None) for SCV_ADDRESS
 * built from bytes the generic walk has already checked. obsrvr_ray/ledger/events.py builds
 * the same tuples from stellar-sdk objects (the reference path); tests keep them equal.
 */
enum { SCV_BOOL = 0, SCV_VOID = 1, SCV_U32 = 3, SCV_I32 = 4, SCV_U64 = 5, SCV_I64 = 6, SCV_TIMEPOINT = 7,
       SCV_DURATION = 8, SCV_U128 = 9, SCV_I128 = 10, SCV_BYTES = 13, SCV_STRING = 14, SCV_SYMBOL = 15,
       SCV_VEC = 16, SCV_MAP = 17, SCV_ADDRESS = 18 };

typedef struct {
    int ext_point, changes, soroban_meta_v2, diagnostic, scval;
} ScanTypes;

static PyObject *int128(uint64_t hi, uint64_t lo, int is_signed) {
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

static PyObject *var_bytes(Decoder *d, const Input *in, Py_ssize_t *pos) {
    if (need(d, in, *pos, 4) < 0) return NULL;
    uint32_t n = rd32(in->buf + *pos);
    Py_ssize_t padded = ((Py_ssize_t)n + 3) / 4 * 4;
    if (need(d, in, *pos + 4, padded) < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize((const char *)in->buf + *pos + 4, n);
    *pos += 4 + padded;
    return out;
}

static PyObject *scan_scval(Decoder *d, const Input *in, const ScanTypes *ts, Py_ssize_t *pos, int depth);

static PyObject *scan_scval_list(Decoder *d, const Input *in, const ScanTypes *ts, Py_ssize_t *pos, int depth,
                                 int pairs) {
    if (need(d, in, *pos, 4) < 0) return NULL;
    uint32_t n = rd32(in->buf + *pos);
    *pos += 4;
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *item;
        if (pairs) {
            PyObject *k = scan_scval(d, in, ts, pos, depth - 1);
            PyObject *v = k ? scan_scval(d, in, ts, pos, depth - 1) : NULL;
            item = (k && v) ? PyTuple_Pack(2, k, v) : NULL;
            Py_XDECREF(k);
            Py_XDECREF(v);
        } else {
            item = scan_scval(d, in, ts, pos, depth - 1);
        }
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *scan_address(Decoder *d, const Input *in, Py_ssize_t *pos) {
    if (need(d, in, *pos, 4) < 0) return NULL;
    uint32_t kind = rd32(in->buf + *pos);
    Py_ssize_t p = *pos + 4;
    PyObject *mux = NULL;
    Py_ssize_t key_at;
    switch (kind) {
    case 0: /* account: PublicKey (type, ed25519) */
    case 3: /* claimable balance: ClaimableBalanceID (type, hash) */
        key_at = p + 4;
        break;
    case 1: /* contract: Hash */
    case 4: /* liquidity pool: Hash */
        key_at = p;
        break;
    case 2: /* muxed: id, ed25519 */
        if (need(d, in, p, 8) < 0) return NULL;
        mux = PyLong_FromUnsignedLongLong(rd64(in->buf + p));
        key_at = p + 8;
        break;
    default:
        fail(d, "unknown SCAddress type %u", kind);
        return NULL;
    }
    if (need(d, in, key_at, 32) < 0) {
        Py_XDECREF(mux);
        return NULL;
    }
    *pos = key_at + 32;
    if (mux == NULL) {
        Py_INCREF(Py_None);
        mux = Py_None;
    }
    return Py_BuildValue("(Iy#N)", kind, (const char *)in->buf + key_at, (Py_ssize_t)32, mux);
}

static PyObject *scan_scval(Decoder *d, const Input *in, const ScanTypes *ts, Py_ssize_t *pos, int depth) {
    if (depth <= 0) {
        fail(d, "maximum decoding depth reached");
        return NULL;
    }
    Py_ssize_t start = *pos;
    if (need(d, in, start, 4) < 0) return NULL;
    int type = (int)(int32_t)rd32(in->buf + start);
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
        if (need(d, in, p, 4) < 0) return NULL;
        value = PyLong_FromUnsignedLong(rd32(in->buf + p));
        p += 4;
        break;
    case SCV_I32:
        if (need(d, in, p, 4) < 0) return NULL;
        value = PyLong_FromLong((long)(int32_t)rd32(in->buf + p));
        p += 4;
        break;
    case SCV_U64:
    case SCV_TIMEPOINT:
    case SCV_DURATION:
        if (need(d, in, p, 8) < 0) return NULL;
        value = PyLong_FromUnsignedLongLong(rd64(in->buf + p));
        p += 8;
        break;
    case SCV_I64:
        if (need(d, in, p, 8) < 0) return NULL;
        value = PyLong_FromLongLong((long long)(int64_t)rd64(in->buf + p));
        p += 8;
        break;
    case SCV_U128:
    case SCV_I128:
        if (need(d, in, p, 16) < 0) return NULL;
        value = int128(rd64(in->buf + p), rd64(in->buf + p + 8), type == SCV_I128);
        p += 16;
        break;
    case SCV_BYTES:
    case SCV_STRING:
    case SCV_SYMBOL:
        value = var_bytes(d, in, &p);
        break;
    case SCV_VEC:
    case SCV_MAP:
        if (need(d, in, p, 4) < 0) return NULL;
        if (rd32(in->buf + p) == 0) {
            p += 4;
            Py_INCREF(Py_None);
            value = Py_None;
        } else {
            p += 4;
            value = scan_scval_list(d, in, ts, &p, depth, type == SCV_MAP);
        }
        break;
    case SCV_ADDRESS:
        value = scan_address(d, in, &p);
        break;
    default: /* kept as a type only: walk it with the table */
        p = start;
        if (read_type(d, in, ts->scval, &p, depth, 0, NULL) < 0) return NULL;
        Py_INCREF(Py_None);
        value = Py_None;
        break;
    }
    if (value == NULL) return NULL;
    *pos = p;
    return Py_BuildValue("(iN)", type, value);
}

static PyObject *scan_contract_event(Decoder *d, const Input *in, const ScanTypes *ts, Py_ssize_t *pos) {
    if (read_type(d, in, ts->ext_point, pos, MAX_DEPTH, 0, NULL) < 0) return NULL;
    if (need(d, in, *pos, 4) < 0) return NULL;
    PyObject *contract;
    if (rd32(in->buf + *pos)) {
        if (need(d, in, *pos + 4, 32) < 0) return NULL;
        contract = PyBytes_FromStringAndSize((const char *)in->buf + *pos + 4, 32);
        *pos += 36;
    } else {
        Py_INCREF(Py_None);
        contract = Py_None;
        *pos += 4;
    }
    if (need(d, in, *pos, 8) < 0) {
        Py_DECREF(contract);
        return NULL;
    }
    int type = (int)(int32_t)rd32(in->buf + *pos);
    int body_v = (int)(int32_t)rd32(in->buf + *pos + 4);
    *pos += 8;
    PyObject *topics = scan_scval_list(d, in, ts, pos, MAX_DEPTH, 0);
    PyObject *data = topics ? scan_scval(d, in, ts, pos, MAX_DEPTH) : NULL;
    if (data == NULL) {
        Py_DECREF(contract);
        Py_XDECREF(topics);
        return NULL;
    }
    return Py_BuildValue("(NiiNN)", contract, type, body_v, topics, data);
}

/* scan_meta_events(meta_bytes, (ext_point, changes, soroban_meta_v2, diagnostic, scval type ids))
 *   -> (4, [(stage, event)], [[event] per operation])   for TransactionMeta v4
 *   -> (v, None, None)                                   for other versions */
static PyObject *Decoder_scan_meta_events(Decoder *d, PyObject *args) {
    PyObject *data;
    ScanTypes ts;
    if (!PyArg_ParseTuple(args, "O(iiiii)", &data, &ts.ext_point, &ts.changes, &ts.soroban_meta_v2, &ts.diagnostic,
                          &ts.scval)) {
        return NULL;
    }
    Input in;
    int noncanonical;
    if (get_input(data, &in, &noncanonical) < 0) return NULL;
    Py_ssize_t pos = 0;
    if (need(d, &in, 0, 4) < 0) return NULL;
    int version = (int)(int32_t)rd32(in.buf);
    if (version != 4) return Py_BuildValue("(iOO)", version, Py_None, Py_None);
    pos = 4;
    PyObject *ops = NULL, *tx_events = NULL;
    if (read_type(d, &in, ts.ext_point, &pos, MAX_DEPTH, 0, NULL) < 0) return NULL;
    if (read_type(d, &in, ts.changes, &pos, MAX_DEPTH, 0, NULL) < 0) return NULL;
    if (need(d, &in, pos, 4) < 0) return NULL;
    uint32_t nops = rd32(in.buf + pos);
    pos += 4;
    ops = PyList_New(nops);
    if (ops == NULL) return NULL;
    for (uint32_t i = 0; i < nops; i++) {
        if (read_type(d, &in, ts.ext_point, &pos, MAX_DEPTH, 0, NULL) < 0) goto error;
        if (read_type(d, &in, ts.changes, &pos, MAX_DEPTH, 0, NULL) < 0) goto error;
        if (need(d, &in, pos, 4) < 0) goto error;
        uint32_t nev = rd32(in.buf + pos);
        pos += 4;
        PyObject *events = PyList_New(nev);
        if (events == NULL) goto error;
        PyList_SET_ITEM(ops, i, events);
        for (uint32_t j = 0; j < nev; j++) {
            PyObject *event = scan_contract_event(d, &in, &ts, &pos);
            if (event == NULL) goto error;
            PyList_SET_ITEM(events, j, event);
        }
    }
    if (read_type(d, &in, ts.changes, &pos, MAX_DEPTH, 0, NULL) < 0) goto error;
    if (need(d, &in, pos, 4) < 0) goto error;
    if (rd32(in.buf + pos)) {
        pos += 4;
        if (read_type(d, &in, ts.soroban_meta_v2, &pos, MAX_DEPTH, 0, NULL) < 0) goto error;
    } else {
        pos += 4;
    }
    if (need(d, &in, pos, 4) < 0) goto error;
    uint32_t ntx = rd32(in.buf + pos);
    pos += 4;
    tx_events = PyList_New(ntx);
    if (tx_events == NULL) goto error;
    for (uint32_t i = 0; i < ntx; i++) {
        if (need(d, &in, pos, 4) < 0) goto error;
        int stage = (int)(int32_t)rd32(in.buf + pos);
        pos += 4;
        PyObject *event = scan_contract_event(d, &in, &ts, &pos);
        if (event == NULL) goto error;
        PyObject *item = Py_BuildValue("(iN)", stage, event);
        if (item == NULL) goto error;
        PyList_SET_ITEM(tx_events, i, item);
    }
    return Py_BuildValue("(iNN)", 4, tx_events, ops);
error:
    Py_XDECREF(ops);
    Py_XDECREF(tx_events);
    return NULL;
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(type_id, data, pos=0, whole=True) -> (value, end, canonical)"},
    {"skip", (PyCFunction)Decoder_skip, METH_VARARGS, "skip(type_id, data, pos=0) -> end offset"},
    {"scan_meta_events", (PyCFunction)Decoder_scan_meta_events, METH_VARARGS,
     "scan_meta_events(meta_bytes, type_ids) -> (version, tx_events, op_events) in compact form"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
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
    if (PyType_Ready(&DecoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
