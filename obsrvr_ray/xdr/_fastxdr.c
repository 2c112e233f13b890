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

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(type_id, data, pos=0, whole=True) -> (value, end, canonical)"},
    {"skip", (PyCFunction)Decoder_skip, METH_VARARGS, "skip(type_id, data, pos=0) -> end offset"},
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
