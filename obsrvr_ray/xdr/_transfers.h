/* Shared by the token-transfer walker (_transfers.c: the walk, core's unified events, the
 * columns) and the operation rules (_derive.c): one ledger's events before they become rows. */
#ifndef OBSRVR_TRANSFERS_H
#define OBSRVR_TRANSFERS_H
#include "_fastxdr.h"

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

int buf_grow(Buf *b, Py_ssize_t extra);

static inline int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    if (buf_grow(b, n) < 0) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

enum { C_TX_HASH, C_TX_ID, C_OP_ID, C_TOPIC, C_FROM, C_TO, C_ASSET, C_ASSET_TYPE, C_ASSET_CODE, C_ASSET_ISSUER,
       C_AMOUNT_RAW, C_AMOUNT, C_CONTRACT, C_LEDGER, C_CLOSED_AT, C_TO_MUXED, C_TO_MUXED_ID, C_TX_INDEX,
       C_OP_INDEX, C_EVENT_INDEX, NCOLS };

typedef struct {
    Buf data;
    Buf offsets;  /* strings: int32 end offsets (the leading 0 is added when the buffers are taken) */
    Buf valid;    /* one byte a row; packed into Arrow's bitmap when taken */
} Column;

/* What an asset's name (a SAC event's text, or an XDR Asset) answers, cached by its bytes. */
typedef struct {
    unsigned char *key;
    Py_ssize_t klen;
    int is_asset;          /* the key names an asset */
    unsigned char sac[32]; /* that asset's contract id */
    char *cols[4];         /* asset, asset_type, asset_code, asset_issuer */
    Py_ssize_t lens[4];
    int present[4];
    int credit;            /* not XLM: issuer[] holds the issuer's key */
    unsigned char issuer[32];
} AssetEntry;

typedef struct {
    AssetEntry **slots;
    Py_ssize_t cap, used;
    PyObject *lookup;      /* callable(key as str or bytes) -> None | (sac, asset, type, code, issuer, issuer key) */
    int by_text;           /* keys are UTF-8 texts (else XDR bytes) */
} AssetTable;

enum { K_TRANSFER, K_MINT, K_BURN, K_CLAWBACK, K_FEE };
enum { R_OP, R_CHARGED, R_REFUND };
enum { MUX_NONE, MUX_ID, MUX_OTHER };
#define ADDRESS_MAX 44  /* the longest SCAddress encoding (a muxed account) */

/* One event. Addresses are kept as SCAddress encodings (type word first), whichever rule made
 * them; from_len / to_len 0: absent. */
typedef struct {
    int kind, role, tx, op;
    const unsigned char *tx_hash, *contract;
    const AssetEntry *asset;  /* NULL: a custom token */
    __int128 amount;
    int mux;
    uint64_t mux_id;
    int from_len, to_len;
    unsigned char from[ADDRESS_MAX], to[ADDRESS_MAX];
} Ev;

typedef struct {
    int type;
    const unsigned char *p; /* the value, after its type word */
} Val;

#define MAX_TOPICS 8
#define TEXT_SLOTS 1024

typedef struct {
    unsigned char version;
    int klen, tlen;
    unsigned char key[40];
    char text[72];
} TextEntry;

typedef struct {
    const unsigned char *contract; /* NULL when absent */
    int type, body_v, ntopics;
    Val topics[MAX_TOPICS]; /* the first ones */
    Val last;               /* the last topic */
    Val data;
} RawEvent;

/* Where an envelope's signed body is: hashed once the walk knows the ledger is the walker's. */
typedef struct {
    uint32_t tag;
    Py_ssize_t start, end;
} Span;

/* An envelope's hash and its span's index (sorted by hash: how a result finds its envelope). */
typedef struct {
    unsigned char hash[32];
    Py_ssize_t span;
} HashAt;

/* Where one transaction's processing entry is, in apply order. */
typedef struct {
    const unsigned char *hash;
    Py_ssize_t result, fee_changes, meta, post_apply;  /* post_apply: -1 when the ledger has none */
    int meta_version;
    int successful;
} TxAt;

typedef struct {
    uint32_t seq, protocol, n_env, n_proc, unmatched;
    uint64_t close_time;
    const unsigned char *hash, *prev;
    unsigned char actual[32];
} Facts;

enum { VIEW_AUTO, VIEW_CORE, VIEW_OPERATIONS };

typedef struct {
    PyObject_HEAD
    Decoder *d;
    int t_lcm, t_lcm_ext, t_header, t_stellar_value, t_header_ext, t_txset, t_gen_txset, t_phase, t_component,
        t_envelope, t_result, t_changes, t_meta, t_ext_point, t_soroban_v2, t_diagnostic, t_scval, t_event,
        t_stage, t_lcm_body[3];
    /* what the operation rules walk by */
    int t_preconditions, t_operation, t_op_result, t_change, t_ledger_key, t_claimant, t_soroban_v1_ext,
        t_soroban_v1;
    int view;                        /* VIEW_*: which events the ledgers' rows come from */
    int body_tid[8];                 /* by envelope tag: the signed body's type, or -1 */
    unsigned char body_head[8][8];   /* ...and what precedes it in the signed payload */
    int body_head_len[8];
    unsigned char network_id[32];
    unsigned char native_sac[32];
    AssetEntry native;
    PyObject *hashlib_sha256;        /* SHA-256 of the envelopes and the header: OpenSSL's, through hashlib */
    PyObject *type_names;            /* SCValType value -> name, for messages */
    PyObject *d_ref;
    AssetTable by_text;              /* SAC events' asset texts */
    AssetTable by_xdr;               /* operations' XDR Assets */
    Column cols[NCOLS];
    Py_ssize_t rows;
    TextEntry *texts;                /* strkey texts by payload (see strkey_cached) */
    /* per ledger */
    Ev *evs;
    Py_ssize_t nevs, evs_cap;
    Buf spans;                       /* the envelopes' signed bodies (Span) */
    Buf txs;                         /* the processing entries (TxAt) */
    Buf hashes;                      /* the envelopes' hashes (HashAt), sorted */
    Buf ops;                         /* the operation rules' scratch: a transaction's operations */
    Buf pairs;                       /* ...one operation's paired changes */
    Buf op_changes;                  /* ...where each operation's changes are in the meta of */
    const TxAt *layout_of;           /*    this transaction (NULL: none yet) */
    Py_ssize_t after_ops;            /*    and where its changes after the operations are */
    PyObject *errors;                /* [(tx hash hex, op index | None, reason)] of the ledger */
    Py_ssize_t skipped;              /* contract events that are not token movements */
    int fallback;                    /* the Python rules read this ledger */
    int core_events;                 /* every meta so far is v4 and the view allows core's events */
} TransferColumns;

static inline __int128 read_i128(const unsigned char *p) {
    return (__int128)(((unsigned __int128)rd64(p) << 64) | rd64(p + 8));
}

typedef struct {
    const void *p;
    Py_ssize_t n;
} Part;

/* SHA-256 of the parts, one after the other. */
int sha256_of(TransferColumns *x, const Part *parts, int nparts, unsigned char *out);
Ev *new_event(TransferColumns *x);
int read_event(TransferColumns *x, const Input *in, Py_ssize_t *pos, int depth, RawEvent *e);
int token_event(TransferColumns *x, const Input *in, const RawEvent *e, Ev *ev, int v4_layout);
AssetEntry *asset_lookup(TransferColumns *x, AssetTable *table, const unsigned char *key, Py_ssize_t n);
/* The operation rules over every transaction: 0 = events in x->evs, 1 = the Python rules must
 * read this ledger, -1 = error. */
int derive_ledger(TransferColumns *x, const Input *in, const Facts *f);

#endif
