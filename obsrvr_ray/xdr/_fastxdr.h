/* Shared by the compiled decoder (_fastxdr.c) and the token-transfer columns (_transfers.c):
 * the decoder's tables and the walking primitives both use. */
#ifndef OBSRVR_FASTXDR_H
#define OBSRVR_FASTXDR_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { F_REF = 0, F_INT, F_UINT, F_HYPER, F_UHYPER, F_BOOL, F_OPAQUE, F_STRING, F_OPTIONAL, F_ARRAY };
enum { T_ENUM = 0, T_STRUCT, T_UNION };
#define NO_FIXED 0xFFFFFFFFu
#define MAX_DEPTH 512
#define SMALL 64         /* enum values and union discriminants below this are looked up directly */

typedef struct {
    int kind;
    int type_id;     /* F_REF */
    uint32_t size;   /* F_OPAQUE / F_STRING max or fixed size; F_ARRAY fixed count or NO_FIXED */
    int fixed;       /* F_OPAQUE */
    uint32_t max;    /* F_ARRAY */
    int inner;       /* F_OPTIONAL / F_ARRAY: index of the element field */
    int skip_size;   /* bytes of an encoding with nothing to check (ints, fixed opaque, structs of them), else -1 */
    int skip_height; /* the depth a skip_size shortcut needs: struct levels inside */
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
    int64_t *values;     /* T_ENUM: the valid values, sorted (checked without Python when only walking) */
    int nvalues;
    int first, count;    /* T_STRUCT: members */
    int disc_field;      /* T_UNION */
    PyObject *disc_attr;
    Arm *arms;
    int narms;
    int small_arm[SMALL];  /* T_UNION: index into arms of discriminants 0..SMALL-1, or -1 */
    uint64_t small_values; /* T_ENUM: bit v set when 0 <= v < SMALL is a member */
    int skip_size, skip_height;
} TypeSpec;

/* A direct-mapped cache of compact values by their encoding: a ledger's events repeat the same
 * symbols, asset strings, addresses and contract ids hundreds of times, and a hit costs no
 * allocation (the values are immutable, so they are shared). */
#define CACHE_SLOTS 1024
#define CACHE_KEY 72
struct CacheEntry {
    int kind;
    int len;
    unsigned char key[CACHE_KEY];
    PyObject *value;
};

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
    /* where LazyXdr keeps its __slots__ (_cls, _data, _decode, _value, _scanned): written
     * directly, as a slot descriptor would, for the thousands of values a ledger leaves encoded */
    Py_ssize_t lazy_slots[5];
    PyObject *refs;       /* keeps table objects alive */
    struct CacheEntry *cache;  /* compact values the meta scan made, by their bytes (see cached()) */
    /* type ids the meta pre-scan walks by; meta < 0: no pre-scan */
    int meta, ext_point, changes, soroban_meta_v2, diagnostic, scval, contract_event, event_stage;
} Decoder;

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    PyObject *source;     /* the bytes object, for slices */
    int *noncanonical;    /* set when an accepted encoding is not the canonical one */
} Input;

int fail(Decoder *d, const char *fmt, ...);

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


int skip_type(Decoder *d, const Input *in, int tid, Py_ssize_t *pos, int depth);
int skip_field(Decoder *d, const Input *in, const FieldSpec *f, Py_ssize_t *pos, int depth);
int array_count(Decoder *d, const Input *in, Py_ssize_t *pos, uint32_t *n);

/* The arm of a union for the discriminant at `at`, or NULL with the error set. */
static inline const Arm *union_arm(Decoder *d, const Input *in, const TypeSpec *t, Py_ssize_t at) {
    long long key = d->fields[t->disc_field].kind == F_UINT ? (long long)rd32(in->buf + at)
                                                             : (long long)(int32_t)rd32(in->buf + at);
    if (key >= 0 && key < SMALL) {
        int i = t->small_arm[key];
        if (i >= 0) return &t->arms[i];
    } else {
        for (int i = 0; i < t->narms; i++) {
            if (t->arms[i].value == key) return &t->arms[i];
        }
    }
    PyObject *name = PyObject_GetAttrString(t->cls, "__name__");
    fail(d, "invalid %S discriminant %lld", name, key);
    Py_XDECREF(name);
    return NULL;
}
/* SEP-23 strkey text of version + payload into out (at least 80 bytes); returns its length */
int strkey_text(unsigned char version, const unsigned char *payload, int n, char *out);
enum { SK_ACCOUNT = 6 << 3, SK_CONTRACT = 2 << 3, SK_MUXED = 12 << 3, SK_BALANCE = 1 << 3, SK_POOL = 11 << 3 };
enum { SCV_BOOL = 0, SCV_VOID = 1, SCV_U32 = 3, SCV_I32 = 4, SCV_U64 = 5, SCV_I64 = 6, SCV_TIMEPOINT = 7,
       SCV_DURATION = 8, SCV_U128 = 9, SCV_I128 = 10, SCV_BYTES = 13, SCV_STRING = 14, SCV_SYMBOL = 15,
       SCV_VEC = 16, SCV_MAP = 17, SCV_ADDRESS = 18 };
extern PyTypeObject DecoderType;
int add_transfer_columns(PyObject *module);

#endif
