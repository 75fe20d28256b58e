/*
 * tinyswap_fw.c: see tinyswap_fw.h for what it does, the record layout and the memory it needs.
 *
 * Stack: no recursion (the JSON scanner keeps its container stack in a 64-bit mask, so a
 * hostile package cannot deepen the C stack); the deepest chain (install -> verify -> parse) uses
 * 520 bytes on Cortex-M4 and 784 on x86-64 (see tinyswap_fw.h, "Memory").
 */
#include "tinyswap_fw.h"

#include <string.h>

#define PKG_HEAD 10u   /* magic 4, version 2, metadata length 4 */
#define PKG_TRAILER 128u /* digest 32, key id 32, signature 64 */
#define MAX_METADATA_BYTES (1ul << 20)
#define MAX_PAYLOAD_BYTES (64ull << 20)
#define MAX_SEQUENCE 0x7fffffffffffffffull
#define JSON_MAX_DEPTH 64
#define JSON_MAX_INT_DIGITS 64
#define REC_HEAD 20u
#define SLOT_ENTRY 144u
#define NAME_ENTRY 40u

/* ------------------------------------------------------------------ small helpers */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr64(uint8_t *p, uint64_t v) {
    unsigned i;
    for (i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

const char *tinyswap_fw_status_name(tsfw_status_t status) {
    switch (status) {
    case TSFW_OK: return "TSFW_OK";
    case TSFW_E_FORMAT: return "TSFW_E_FORMAT";
    case TSFW_E_DIGEST: return "TSFW_E_DIGEST";
    case TSFW_E_UNKNOWN_KEY: return "TSFW_E_UNKNOWN_KEY";
    case TSFW_E_SIGNATURE: return "TSFW_E_SIGNATURE";
    case TSFW_E_WRONG_BASE: return "TSFW_E_WRONG_BASE";
    case TSFW_E_SLOT_LAYOUT: return "TSFW_E_SLOT_LAYOUT";
    case TSFW_E_UNKNOWN_LAYER: return "TSFW_E_UNKNOWN_LAYER";
    case TSFW_E_MISSING_TENSORS: return "TSFW_E_MISSING_TENSORS";
    case TSFW_E_SHAPE: return "TSFW_E_SHAPE";
    case TSFW_E_ROLLBACK: return "TSFW_E_ROLLBACK";
    case TSFW_E_UNSUPPORTED_VERSION: return "TSFW_E_UNSUPPORTED_VERSION";
    case TSFW_E_FLASH: return "TSFW_E_FLASH";
    case TSFW_E_VERIFY: return "TSFW_E_VERIFY";
    case TSFW_E_NO_SLOT: return "TSFW_E_NO_SLOT";
    case TSFW_E_NAMES_FULL: return "TSFW_E_NAMES_FULL";
    case TSFW_E_ARGUMENT: return "TSFW_E_ARGUMENT";
    case TSFW_E_WORKSPACE: return "TSFW_E_WORKSPACE";
    case TSFW_E_GEOMETRY: return "TSFW_E_GEOMETRY";
    case TSFW_E_CRYPTO: return "TSFW_E_CRYPTO";
    case TSFW_E_STATE: return "TSFW_E_STATE";
    case TSFW_E_NOT_FOUND: return "TSFW_E_NOT_FOUND";
    }
    return "TSFW_E_UNKNOWN_STATUS";
}

size_t tinyswap_fw_context_bytes(void) { return sizeof(tsfw_t); }

size_t tinyswap_fw_record_bytes(const tsfw_layout_t *layout) {
    size_t state = (size_t)SLOT_ENTRY * layout->num_slots + (size_t)NAME_ENTRY * TSFW_MAX_NAMES;
    return REC_HEAD + 2 * state + 32;
}

size_t tinyswap_fw_workspace_bytes(const tsfw_layout_t *layout) {
    /* The record padded to the program unit (<= 256) and a read-back chunk; or three chunks
     * (compose, read back, tensor mask) for slot writes and checks. */
    size_t rec = tinyswap_fw_record_bytes(layout) + 2 * TSFW_CHUNK_BYTES;
    return rec > 3 * TSFW_CHUNK_BYTES ? rec : 3 * TSFW_CHUNK_BYTES;
}

static tsfw_status_t hash(const tsfw_t *fw, const void *data, size_t len, uint8_t out[32]) {
    const tsfw_port_t *p = fw->port;
    if (p->sha256_begin(p->ctx) || p->sha256_update(p->ctx, data, len) || p->sha256_finish(p->ctx, out))
        return TSFW_E_CRYPTO;
    return TSFW_OK;
}

/* ------------------------------------------------------------------ init */
static int pow2(uint32_t v) { return v && !(v & (v - 1)); }

static int area_ok(const tsfw_flash_area_t *a) {
    return a->read && a->erase && a->program && a->sector_size && a->size % a->sector_size == 0 &&
           pow2(a->program_unit) && a->program_unit <= TSFW_CHUNK_BYTES && (a->erase_value == 0 || a->erase_value == 0xFF);
}

tsfw_status_t tinyswap_fw_init(tsfw_t *fw, const tsfw_port_t *port, const tsfw_layout_t *layout,
                               const uint8_t (*keys)[32], size_t num_keys, uint8_t *workspace, size_t workspace_len) {
    uint32_t s, t;
    size_t area;
    if (!fw || !port || !layout || (!keys && num_keys) || !workspace || !port->sha256_begin || !port->sha256_update ||
        !port->sha256_finish || !port->ed25519_verify || !layout->slots || !layout->base_digest_hex)
        return TSFW_E_ARGUMENT;
    memset(fw, 0, sizeof *fw);
    if (layout->num_slots == 0 || layout->num_slots > TSFW_MAX_SLOTS || layout->num_slots > 32) return TSFW_E_GEOMETRY;
    if (!area_ok(&port->model) || !area_ok(&port->record)) return TSFW_E_GEOMETRY;
    if (layout->model_bytes > port->model.size) return TSFW_E_GEOMETRY;
    for (s = 0; s < layout->num_slots; s++) {
        const tsfw_slot_t *sl = &layout->slots[s];
        /* An erase clears whole sectors: a range sharing a sector with base bytes would erase them. */
        if (sl->offset % port->model.sector_size || sl->length % port->model.sector_size || !sl->length ||
            sl->offset + sl->length > layout->model_bytes || sl->num_tensors != layout->slots[0].num_tensors ||
            sl->num_tensors == 0 || sl->num_tensors > TSFW_MAX_PACKAGE_TENSORS)
            return TSFW_E_GEOMETRY;
        for (t = 0; t < sl->num_tensors; t++) {
            const tsfw_tensor_t *tn = &sl->tensors[t];
            if (tn->offset < sl->offset || tn->offset + tn->length > sl->offset + sl->length ||
                tn->rank > TSFW_MAX_RANK)
                return TSFW_E_GEOMETRY;
        }
    }
    area = port->record.size / TSFW_RECORD_AREAS;
    if (port->record.size % TSFW_RECORD_AREAS || area % port->record.sector_size ||
        area < tinyswap_fw_record_bytes(layout) + port->record.program_unit)
        return TSFW_E_GEOMETRY;
    if (workspace_len < tinyswap_fw_workspace_bytes(layout)) return TSFW_E_WORKSPACE;
    fw->port = port;
    fw->layout = layout;
    fw->keys = keys;
    fw->num_keys = num_keys;
    fw->ws = workspace;
    fw->ws_len = workspace_len;
    fw->area = -1;
    fw->erased_area = -1;
    fw->next_sequence = 1;
    return TSFW_OK;
}

/* ------------------------------------------------------------------ UTF-8 and the JSON scanner */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp, min;
        unsigned k, more;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { more = 1; cp = c & 0x1Fu; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { more = 2; cp = c & 0x0Fu; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { more = 3; cp = c & 0x07u; min = 0x10000; }
        else return 0;
        if (n - i <= more) return 0;
        for (k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += more + 1;
    }
    return 1;
}

typedef tsfw_json_span_t span_t; /* a JSON value token [p, e) */

static const uint8_t *ws(const uint8_t *p, const uint8_t *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string token starting at the quote; returns one past the closing quote, NULL if invalid. */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *e) {
    p++;
    while (p < e) {
        uint8_t c = *p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (++p >= e) return NULL;
            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': p++; break;
            case 'u': {
                int k;
                if (e - p < 5) return NULL;
                for (k = 1; k <= 4; k++)
                    if (hexval(p[k]) < 0) return NULL;
                p += 5;
                break;
            }
            default: return NULL;
            }
        } else {
            p++;
        }
    }
    return NULL;
}

static int lit(const uint8_t *p, const uint8_t *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) >= n && memcmp(p, word, n) == 0;
}

/* A number token (Python's json grammar, plus NaN/Infinity/-Infinity, which it accepts). */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *e) {
    const uint8_t *start;
    int digits = 0, is_int = 1;
    if (lit(p, e, "NaN")) return p + 3;
    if (lit(p, e, "Infinity")) return p + 8;
    if (lit(p, e, "-Infinity")) return p + 9;
    if (p < e && *p == '-') p++;
    start = p;
    if (p >= e || *p < '0' || *p > '9') return NULL;
    if (*p == '0') { p++; digits = 1; }
    else while (p < e && *p >= '0' && *p <= '9') { p++; digits++; }
    (void)start;
    if (p < e && *p == '.') {
        is_int = 0;
        p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (is_int && digits > JSON_MAX_INT_DIGITS) return NULL; /* tinyswap.files.MAX_JSON_INT_DIGITS */
    return p;
}

/* One complete JSON value starting at p (after whitespace); returns its end or NULL. Iterative:
 * bit d of `arrays` says whether the container at depth d is an array. */
static const uint8_t *scan_value(const uint8_t *p, const uint8_t *e) {
    uint64_t arrays = 0;
    int depth = 0;
    int expect_value = 1;
    for (;;) {
        p = ws(p, e);
        if (p >= e) return NULL;
        if (expect_value) {
            uint8_t c = *p;
            if (c == '{' || c == '[') {
                if (depth >= JSON_MAX_DEPTH) return NULL; /* tinyswap.files.MAX_JSON_DEPTH */
                if (c == '[') arrays |= (uint64_t)1 << depth; else arrays &= ~((uint64_t)1 << depth);
                depth++;
                p = ws(p + 1, e);
                if (p < e && *p == (c == '{' ? '}' : ']')) { depth--; p++; expect_value = 0; goto after; }
                if (c == '{') {
                    if (p >= e || *p != '"' || !(p = scan_string(p, e))) return NULL;
                    p = ws(p, e);
                    if (p >= e || *p != ':') return NULL;
                    p++;
                }
                continue;
            }
            if (c == '"') p = scan_string(p, e);
            else if (lit(p, e, "true")) p += 4;
            else if (lit(p, e, "false")) p += 5;
            else if (lit(p, e, "null")) p += 4;
            else p = scan_number(p, e);
            if (!p) return NULL;
            expect_value = 0;
        }
    after:
        if (depth == 0) return p;
        p = ws(p, e);
        if (p >= e) return NULL;
        if (*p == ',') {
            p++;
            if (!((arrays >> (depth - 1)) & 1)) {
                p = ws(p, e);
                if (p >= e || *p != '"' || !(p = scan_string(p, e))) return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':') return NULL;
                p++;
            }
            expect_value = 1;
        } else if (*p == (((arrays >> (depth - 1)) & 1) ? ']' : '}')) {
            p++;
            if (--depth == 0) return p;
        } else {
            return NULL;
        }
    }
}

/* Decoded bytes of a (valid) string token, one at a time: escapes become UTF-8 (a lone
 * surrogate as its 3-byte form, as Python's "surrogatepass"), so equal texts give equal bytes. */
typedef struct jiter { const uint8_t *p; const uint8_t *e; uint8_t buf[4]; int n, i; } jiter_t;

static void jiter_init(jiter_t *it, span_t s) { it->p = s.p + 1; it->e = s.e - 1; it->n = it->i = 0; }

static int jiter_next(jiter_t *it) {
    uint32_t cp;
    if (it->i < it->n) return it->buf[it->i++];
    if (it->p >= it->e) return -1;
    if (*it->p != '\\') return *it->p++;
    it->p++;
    switch (*it->p++) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': break;
    default: return it->p[-1]; /* " \ / */
    }
    cp = (uint32_t)(hexval(it->p[0]) << 12 | hexval(it->p[1]) << 8 | hexval(it->p[2]) << 4 | hexval(it->p[3]));
    it->p += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && it->e - it->p >= 6 && it->p[0] == '\\' && it->p[1] == 'u') {
        uint32_t lo = (uint32_t)(hexval(it->p[2]) << 12 | hexval(it->p[3]) << 8 | hexval(it->p[4]) << 4 | hexval(it->p[5]));
        if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            it->p += 6;
        }
    }
    it->i = 0;
    if (cp < 0x80) { it->n = 0; return (int)cp; }
    if (cp < 0x800) { it->buf[0] = (uint8_t)(0x80 | (cp & 0x3F)); it->n = 1; return (int)(0xC0 | (cp >> 6)); }
    if (cp < 0x10000) {
        it->buf[0] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); it->buf[1] = (uint8_t)(0x80 | (cp & 0x3F)); it->n = 2;
        return (int)(0xE0 | (cp >> 12));
    }
    it->buf[0] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F)); it->buf[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    it->buf[2] = (uint8_t)(0x80 | (cp & 0x3F)); it->n = 3;
    return (int)(0xF0 | (cp >> 18));
}

static int is_string(span_t v) { return v.p && *v.p == '"'; }

static int str_eq_c(span_t s, const char *c) {
    jiter_t it;
    int b;
    jiter_init(&it, s);
    while ((b = jiter_next(&it)) >= 0)
        if (*c == '\0' || (uint8_t)*c++ != (uint8_t)b) return 0;
    return *c == '\0';
}

static int str_eq(span_t a, span_t b) {
    jiter_t x, y;
    int u, v;
    jiter_init(&x, a);
    jiter_init(&y, b);
    do {
        u = jiter_next(&x);
        v = jiter_next(&y);
        if (u != v) return 0;
    } while (u >= 0);
    return 1;
}

/* Decode into out[cap] with a NUL; 0 if it does not fit (or holds a NUL). */
static int str_copy(span_t s, char *out, size_t cap) {
    jiter_t it;
    int b;
    size_t n = 0;
    jiter_init(&it, s);
    while ((b = jiter_next(&it)) >= 0) {
        if (b == 0 || n + 1 >= cap) return 0;
        out[n++] = (char)b;
    }
    memset(out + n, 0, cap - n);
    return 1;
}

/* A JSON integer (not a float, not a boolean). *big: it does not fit 63 bits (still an int). */
static int as_int(span_t v, int64_t *out, int *big) {
    const uint8_t *p = v.p;
    int neg = 0;
    uint64_t acc = 0;
    *big = 0;
    if (!p || !(*p == '-' || (*p >= '0' && *p <= '9'))) return 0;
    if (*p == '-') { neg = 1; p++; }
    if (p >= v.e || *p < '0' || *p > '9') return 0; /* -Infinity */
    for (; p < v.e; p++) {
        if (*p < '0' || *p > '9') return 0; /* a fraction or exponent: a float */
        if (acc > (MAX_SEQUENCE - (uint64_t)(*p - '0')) / 10) *big = 1;
        else acc = acc * 10 + (uint64_t)(*p - '0');
    }
    *out = neg ? -(int64_t)acc : (int64_t)acc;
    return 1;
}

/* Walk an object's members: calls `cb(key, value, arg)` for each; the object is already valid. */
typedef void (*member_fn)(span_t key, span_t value, void *arg);
static void members(span_t obj, member_fn cb, void *arg) {
    const uint8_t *p = ws(obj.p + 1, obj.e);
    if (*p == '}') return;
    for (;;) {
        span_t k, v;
        k.p = p;
        k.e = scan_string(p, obj.e);
        p = ws(k.e, obj.e) + 1;
        v.p = ws(p, obj.e);
        v.e = scan_value(v.p, obj.e);
        cb(k, v, arg);
        p = ws(v.e, obj.e);
        if (*p == '}') return;
        p = ws(p + 1, obj.e);
    }
}

/* Array elements: returns the element after `prev` (prev.p NULL: the first), .p NULL at the end. */
static span_t next_elem(span_t arr, span_t prev) {
    span_t v;
    const uint8_t *p = prev.p ? ws(prev.e, arr.e) : ws(arr.p + 1, arr.e);
    v.p = v.e = NULL;
    if (*p == ']') return v;
    if (*p == ',') p = ws(p + 1, arr.e);
    v.p = p;
    v.e = scan_value(p, arr.e);
    return v;
}

/* ------------------------------------------------------------------ metadata */
enum { F_NAME, F_VERSION, F_SEQUENCE, F_BASE, F_KIND, F_TENSORS, F_TAGS, F_ENCRYPTION, F_COUNT };
static const char *const TOP_FIELDS[F_COUNT] = {"name", "version", "sequence", "base_digest", "kind", "tensors",
                                                "tags", "encryption"};
enum { T_LAYER, T_ROLE, T_SHAPE, T_DTYPE, T_OFFSET, T_LENGTH, T_COUNT };
static const char *const TENSOR_FIELDS[T_COUNT] = {"layer", "role", "shape", "dtype", "offset", "length"};

typedef struct fields { const char *const *names; int count; span_t v[F_COUNT]; } fields_t;

/* Last occurrence wins, as Python's json builds a dict. */
static void pick(span_t key, span_t value, void *arg) {
    fields_t *f = (fields_t *)arg;
    int i;
    for (i = 0; i < f->count; i++)
        if (str_eq_c(key, f->names[i])) f->v[i] = value;
}

typedef tsfw_package_tensor_t ptensor_t;
typedef tsfw_parsed_t parsed_t;

static void check_tag(span_t key, span_t value, void *arg) {
    (void)key;
    if (!is_string(value) && !lit(value.p, value.e, "null")) *(int *)arg = 0;
}

static tsfw_status_t parse_tensor(span_t obj, ptensor_t *t, uint64_t *end_prev, uint64_t plaintext) {
    fields_t f;
    int64_t v;
    int big;
    uint64_t count = 1;
    uint32_t rank = 0;
    int zero = 0;
    span_t d;
    int i;
    if (*obj.p != '{') return TSFW_E_FORMAT;
    memset(&f, 0, sizeof f);
    f.names = TENSOR_FIELDS;
    f.count = T_COUNT;
    members(obj, pick, &f);
    for (i = 0; i < T_COUNT; i++) {
        span_t x = f.v[i];
        int ok;
        if (!x.p) return TSFW_E_FORMAT;
        if (i == T_SHAPE) ok = *x.p == '[';
        else if (i == T_OFFSET || i == T_LENGTH) ok = as_int(x, &v, &big);
        else ok = is_string(x);
        if (!ok) return TSFW_E_FORMAT;
    }
    t->layer = f.v[T_LAYER];
    t->role = f.v[T_ROLE];
    t->shape_big = 0;
    d.p = NULL;
    /* Every dimension an int; a negative one, or a length that does not hold the shape: format
     * (the product saturates; a zero dimension makes it zero whatever the others are). */
    for (d = next_elem(f.v[T_SHAPE], d); d.p; d = next_elem(f.v[T_SHAPE], d)) {
        if (!as_int(d, &v, &big)) return TSFW_E_FORMAT;
        if (!big && v < 0) return TSFW_E_FORMAT;
        if (!big && v == 0) zero = 1;
        if (big || v > 0xFFFFFFFFll) t->shape_big = 1;
        else if (rank < TSFW_MAX_RANK) t->shape[rank] = (uint32_t)v;
        if (++rank > TSFW_MAX_RANK) t->shape_big = 1;
        if (big || (v && count > UINT64_MAX / 4 / (uint64_t)v)) count = UINT64_MAX;
        else count *= (uint64_t)v;
    }
    if (zero) count = 0;
    t->rank = (uint8_t)(rank > TSFW_MAX_RANK ? TSFW_MAX_RANK : rank);
    if (str_eq_c(f.v[T_DTYPE], "int8")) t->dtype = TSFW_DTYPE_INT8;
    else if (str_eq_c(f.v[T_DTYPE], "int32")) t->dtype = TSFW_DTYPE_INT32;
    else return TSFW_E_FORMAT;
    as_int(f.v[T_LENGTH], &v, &big);
    if (big || v < 0 || count == UINT64_MAX ||
        (uint64_t)v != count * (t->dtype == TSFW_DTYPE_INT8 ? 1u : 4u))
        return TSFW_E_FORMAT;
    t->length = (uint64_t)v;
    as_int(f.v[T_OFFSET], &v, &big);
    if (big || v < 0 || (uint64_t)v + t->length > plaintext) return TSFW_E_FORMAT;
    t->offset = (uint64_t)v;
    if (t->offset != *end_prev) return TSFW_E_FORMAT; /* concatenated in order: no gap, no overlap */
    *end_prev = t->offset + t->length;
    return TSFW_OK;
}

/* parse_package + check_metadata of tinyswap/package.py, in the same order. */
static tsfw_status_t parse(tsfw_t *fw, const uint8_t *raw, size_t len, parsed_t *out) {
    uint32_t meta_len;
    uint64_t payload_len, end, body_end;
    uint8_t digest[32];
    span_t doc, e;
    fields_t f;
    tsfw_status_t st;
    int64_t v;
    int big, ok = 1;
    uint64_t end_prev = 0;
    const uint8_t *meta;

    if (len < PKG_HEAD + 8 + PKG_TRAILER) return TSFW_E_FORMAT;
    if (memcmp(raw, "TSAP", 4) != 0) return TSFW_E_FORMAT;
    if (rd16(raw + 4) == 2) return TSFW_E_UNSUPPORTED_VERSION; /* encrypted: this reader never writes ciphertext */
    if (rd16(raw + 4) != 1) return TSFW_E_FORMAT;
    meta_len = rd32(raw + 6);
    if (meta_len > MAX_METADATA_BYTES || (uint64_t)PKG_HEAD + meta_len + 8 > len) return TSFW_E_FORMAT;
    payload_len = rd64(raw + PKG_HEAD + meta_len);
    if (payload_len > MAX_PAYLOAD_BYTES) return TSFW_E_FORMAT;
    body_end = PKG_HEAD + meta_len + 8 + payload_len;
    end = body_end + PKG_TRAILER;
    if (end != len) return TSFW_E_FORMAT; /* truncated, or bytes after the end */
    if ((st = hash(fw, raw, (size_t)body_end, digest)) != TSFW_OK) return st;
    if (memcmp(digest, raw + body_end, 32) != 0) return TSFW_E_DIGEST;
    out->payload = raw + PKG_HEAD + meta_len + 8;
    out->payload_len = payload_len;
    out->digest = raw + body_end;
    out->key_id = raw + body_end + 32;
    out->signature = raw + body_end + 64;
    out->signed_len = (size_t)(body_end + 64);

    meta = raw + PKG_HEAD;
    if (!utf8_valid(meta, meta_len)) return TSFW_E_FORMAT;
    doc.p = ws(meta, meta + meta_len);
    doc.e = scan_value(doc.p, meta + meta_len);
    if (!doc.e || ws(doc.e, meta + meta_len) != meta + meta_len) return TSFW_E_FORMAT;
    if (*doc.p != '{') return TSFW_E_FORMAT;
    memset(&f, 0, sizeof f);
    f.names = TOP_FIELDS;
    f.count = F_COUNT;
    members(doc, pick, &f);
    /* check_metadata: required fields and their types, the sequence's range, tags. */
    if (!is_string(f.v[F_NAME]) || !is_string(f.v[F_VERSION]) || !as_int(f.v[F_SEQUENCE], &v, &big) ||
        !is_string(f.v[F_BASE]) || !is_string(f.v[F_KIND]) || !f.v[F_TENSORS].p || *f.v[F_TENSORS].p != '[')
        return TSFW_E_FORMAT;
    if (big || v < 0) return TSFW_E_FORMAT;
    out->sequence = (uint64_t)v;
    if (f.v[F_TAGS].p && !lit(f.v[F_TAGS].p, f.v[F_TAGS].e, "null")) {
        if (*f.v[F_TAGS].p != '{') return TSFW_E_FORMAT;
        members(f.v[F_TAGS], check_tag, &ok);
        if (!ok) return TSFW_E_FORMAT;
    }
    /* The device's own bounds: the record keeps name and version in 32-byte fields. */
    if (!str_copy(f.v[F_NAME], out->info.name, sizeof out->info.name) ||
        !str_copy(f.v[F_VERSION], out->info.version, sizeof out->info.version))
        return TSFW_E_FORMAT;
    if (f.v[F_ENCRYPTION].p) return TSFW_E_FORMAT; /* an encryption object needs format version 2 */
    out->name = f.v[F_NAME];
    out->base = f.v[F_BASE];
    out->num_tensors = 0;
    e.p = NULL;
    for (e = next_elem(f.v[F_TENSORS], e); e.p; e = next_elem(f.v[F_TENSORS], e)) {
        if (out->num_tensors >= TSFW_MAX_PACKAGE_TENSORS) return TSFW_E_FORMAT;
        if ((st = parse_tensor(e, &out->t[out->num_tensors], &end_prev, payload_len)) != TSFW_OK) return st;
        out->num_tensors++;
    }
    if (end_prev != payload_len) return TSFW_E_FORMAT;
    out->info.sequence = out->sequence;
    memcpy(out->info.digest, out->digest, 32);
    return TSFW_OK;
}

static const tsfw_name_entry_t *find_name(const tsfw_state_t *st, const char *name) {
    unsigned i;
    for (i = 0; i < TSFW_MAX_NAMES; i++)
        if (st->names[i].name[0] && strcmp(st->names[i].name, name) == 0) return &st->names[i];
    return NULL;
}

static int free_name(const tsfw_state_t *st) {
    unsigned i;
    for (i = 0; i < TSFW_MAX_NAMES; i++)
        if (!st->names[i].name[0]) return (int)i;
    return -1;
}

/* verify_package + check_slot_layout of tinyswap/package.py, in the same order. `match[i]`: the
 * package tensor holding layout tensor i. */
static tsfw_status_t verify(tsfw_t *fw, const uint8_t *raw, size_t len) {
    parsed_t *p = &fw->pkg;
    uint32_t *match = p->match;
    const tsfw_layout_t *L = fw->layout;
    const tsfw_slot_t *s0 = &L->slots[0];
    tsfw_status_t st;
    uint8_t kid[32];
    size_t k;
    uint32_t i, j;
    const uint8_t *pub = NULL;
    const tsfw_name_entry_t *prev;

    if (!fw->port) return TSFW_E_STATE;
    if (!raw) return TSFW_E_ARGUMENT;
    memset(p, 0, sizeof *p);
    if ((st = parse(fw, raw, len, p)) != TSFW_OK) return st;
    for (k = 0; k < fw->num_keys && !pub; k++) { /* key id = SHA-256 of the raw public key */
        if ((st = hash(fw, fw->keys[k], 32, kid)) != TSFW_OK) return st;
        if (memcmp(kid, p->key_id, 32) == 0) pub = fw->keys[k];
    }
    if (!pub) return TSFW_E_UNKNOWN_KEY;
    if (fw->port->ed25519_verify(fw->port->ctx, pub, raw, p->signed_len, p->signature) != 0) return TSFW_E_SIGNATURE;
    if (!str_eq_c(p->base, L->base_digest_hex)) return TSFW_E_WRONG_BASE;
    for (i = 0; i < p->num_tensors; i++)
        for (j = i + 1; j < p->num_tensors; j++)
            if (str_eq(p->t[i].layer, p->t[j].layer) && str_eq(p->t[i].role, p->t[j].role)) return TSFW_E_SLOT_LAYOUT;
    for (i = 0; i < p->num_tensors; i++) {
        for (j = 0; j < s0->num_tensors; j++)
            if (str_eq_c(p->t[i].layer, s0->tensors[j].layer) && str_eq_c(p->t[i].role, s0->tensors[j].role)) break;
        if (j == s0->num_tensors) return TSFW_E_UNKNOWN_LAYER;
        match[j] = i;
    }
    if (p->num_tensors != s0->num_tensors) return TSFW_E_MISSING_TENSORS; /* no duplicates, none unknown */
    for (j = 0; j < s0->num_tensors; j++) {
        const tsfw_tensor_t *e = &s0->tensors[j];
        const ptensor_t *t = &p->t[match[j]];
        if (t->shape_big || t->rank != e->rank || t->dtype != e->dtype ||
            memcmp(t->shape, e->shape, sizeof(uint32_t) * e->rank) != 0)
            return TSFW_E_SHAPE;
    }
    prev = find_name(&fw->rec.current, p->info.name);
    if (prev && p->sequence <= prev->sequence) return TSFW_E_ROLLBACK;
    if (!prev && free_name(&fw->rec.current) < 0) return TSFW_E_NAMES_FULL;
    /* The content digest the record keeps: the tensor bytes in layout order. */
    if (fw->port->sha256_begin(fw->port->ctx)) return TSFW_E_CRYPTO;
    for (j = 0; j < s0->num_tensors; j++) {
        const ptensor_t *t = &p->t[match[j]];
        if (fw->port->sha256_update(fw->port->ctx, p->payload + t->offset, (size_t)t->length)) return TSFW_E_CRYPTO;
    }
    if (fw->port->sha256_finish(fw->port->ctx, p->info.content)) return TSFW_E_CRYPTO;
    return TSFW_OK;
}

/* ------------------------------------------------------------------ slot bytes */
/* Bytes [pos, pos+n) of slot `slot`'s range as written: zeros, frame runs, tensors (from the
 * package, or zeros for none); `tensor_mask` (optional) marks tensor bytes. */
static void compose(const tsfw_t *fw, uint32_t slot, const parsed_t *p, const uint32_t *match, uint32_t pos,
                    uint32_t n, uint8_t *out, uint8_t *tensor_mask) {
    const tsfw_slot_t *sl = &fw->layout->slots[slot];
    uint32_t r, t;
    memset(out, 0, n);
    if (tensor_mask) memset(tensor_mask, 0, n);
    for (r = 0; r < sl->num_frame_runs; r++) {
        const tsfw_frame_run_t *fr = &sl->frame[r];
        uint32_t a = fr->offset > pos ? fr->offset : pos;
        uint32_t b = fr->offset + fr->length < pos + n ? fr->offset + fr->length : pos + n;
        if (a < b) memcpy(out + (a - pos), fr->data + (a - fr->offset), b - a);
    }
    for (t = 0; t < sl->num_tensors; t++) {
        const tsfw_tensor_t *tn = &sl->tensors[t];
        uint32_t start = tn->offset - sl->offset;
        uint32_t a = start > pos ? start : pos;
        uint32_t b = start + tn->length < pos + n ? start + tn->length : pos + n;
        if (a >= b) continue;
        if (p) memcpy(out + (a - pos), p->payload + p->t[match[t]].offset + (a - start), b - a);
        else memset(out + (a - pos), 0, b - a);
        if (tensor_mask) memset(tensor_mask + (a - pos), 1, b - a);
    }
}

/* Erase the range's sectors, program it chunk by chunk, read it back and compare. */
static tsfw_status_t write_slot(tsfw_t *fw, uint32_t slot, const parsed_t *p, const uint32_t *match) {
    const tsfw_port_t *port = fw->port;
    const tsfw_flash_area_t *m = &port->model;
    const tsfw_slot_t *sl = &fw->layout->slots[slot];
    uint8_t *chunk = fw->ws, *back = fw->ws + TSFW_CHUNK_BYTES;
    uint32_t pos, i;
    fw->dirty |= 1u << slot; /* from the first erase until the read-back matched */
    for (pos = 0; pos < sl->length; pos += m->sector_size)
        if (m->erase(port->ctx, sl->offset + pos, m->sector_size)) return TSFW_E_FLASH;
    for (pos = 0; pos < sl->length; pos += TSFW_CHUNK_BYTES) {
        uint32_t n = sl->length - pos < TSFW_CHUNK_BYTES ? sl->length - pos : TSFW_CHUNK_BYTES;
        int blank = 1;
        compose(fw, slot, p, match, pos, n, chunk, NULL);
        for (i = 0; i < n && blank; i++) blank = chunk[i] == m->erase_value;
        if (!blank && m->program(port->ctx, sl->offset + pos, chunk, n)) return TSFW_E_FLASH;
    }
    for (pos = 0; pos < sl->length; pos += TSFW_CHUNK_BYTES) {
        uint32_t n = sl->length - pos < TSFW_CHUNK_BYTES ? sl->length - pos : TSFW_CHUNK_BYTES;
        compose(fw, slot, p, match, pos, n, chunk, NULL);
        if (m->read(port->ctx, sl->offset + pos, back, n)) return TSFW_E_FLASH;
        if (memcmp(chunk, back, n) != 0) return TSFW_E_VERIFY;
    }
    fw->dirty &= ~(1u << slot);
    return TSFW_OK;
}

/* Does the slot hold `content` (SHA-256 of its tensor bytes in layout order) inside an intact
 * frame (every non-tensor byte equal to zeros + frame)? 1 yes, 0 no, negative: a status. */
static int slot_matches(tsfw_t *fw, uint32_t slot, const uint8_t content[32]) {
    const tsfw_port_t *port = fw->port;
    const tsfw_slot_t *sl = &fw->layout->slots[slot];
    uint8_t *want = fw->ws, *got = fw->ws + TSFW_CHUNK_BYTES, *mask = fw->ws + 2 * TSFW_CHUNK_BYTES;
    uint8_t digest[32];
    uint32_t pos, i, t;
    for (pos = 0; pos < sl->length; pos += TSFW_CHUNK_BYTES) {
        uint32_t n = sl->length - pos < TSFW_CHUNK_BYTES ? sl->length - pos : TSFW_CHUNK_BYTES;
        compose(fw, slot, NULL, NULL, pos, n, want, mask);
        if (port->model.read(port->ctx, sl->offset + pos, got, n)) return -(int)TSFW_E_FLASH;
        for (i = 0; i < n; i++)
            if (!mask[i] && want[i] != got[i]) return 0;
    }
    if (port->sha256_begin(port->ctx)) return -(int)TSFW_E_CRYPTO;
    for (t = 0; t < sl->num_tensors; t++) {
        const tsfw_tensor_t *tn = &sl->tensors[t];
        for (pos = 0; pos < tn->length; pos += TSFW_CHUNK_BYTES) {
            uint32_t n = tn->length - pos < TSFW_CHUNK_BYTES ? tn->length - pos : TSFW_CHUNK_BYTES;
            if (port->model.read(port->ctx, tn->offset + pos, got, n)) return -(int)TSFW_E_FLASH;
            if (port->sha256_update(port->ctx, got, n)) return -(int)TSFW_E_CRYPTO;
        }
    }
    if (port->sha256_finish(port->ctx, digest)) return -(int)TSFW_E_CRYPTO;
    return memcmp(digest, content, 32) == 0;
}

/* SHA-256 of the zeros an empty slot's tensors hold. */
static tsfw_status_t zero_content(tsfw_t *fw, uint8_t out[32]) {
    const tsfw_port_t *port = fw->port;
    const tsfw_slot_t *sl = &fw->layout->slots[0];
    uint32_t t, pos;
    memset(fw->ws, 0, TSFW_CHUNK_BYTES);
    if (port->sha256_begin(port->ctx)) return TSFW_E_CRYPTO;
    for (t = 0; t < sl->num_tensors; t++)
        for (pos = 0; pos < sl->tensors[t].length; pos += TSFW_CHUNK_BYTES) {
            uint32_t n = sl->tensors[t].length - pos < TSFW_CHUNK_BYTES ? sl->tensors[t].length - pos : TSFW_CHUNK_BYTES;
            if (port->sha256_update(port->ctx, fw->ws, n)) return TSFW_E_CRYPTO;
        }
    return port->sha256_finish(port->ctx, out) ? TSFW_E_CRYPTO : TSFW_OK;
}

/* ------------------------------------------------------------------ the record */
static void put_state(const tsfw_state_t *st, uint32_t slots, uint8_t *p) {
    uint32_t s, i;
    for (s = 0; s < slots; s++, p += SLOT_ENTRY) {
        const tsfw_slot_entry_t *e = &st->slots[s];
        memset(p, 0, SLOT_ENTRY);
        p[0] = e->installed;
        wr64(p + 8, e->sequence);
        memcpy(p + 16, e->digest, 32);
        memcpy(p + 48, e->content, 32);
        memcpy(p + 80, e->name, TSFW_NAME_BYTES);
        memcpy(p + 112, e->version, TSFW_VERSION_BYTES);
    }
    for (i = 0; i < TSFW_MAX_NAMES; i++, p += NAME_ENTRY) {
        memcpy(p, st->names[i].name, TSFW_NAME_BYTES);
        wr64(p + 32, st->names[i].sequence);
    }
}

static int get_state(tsfw_state_t *st, uint32_t slots, const uint8_t *p) {
    uint32_t s, i;
    memset(st, 0, sizeof *st);
    for (s = 0; s < slots; s++, p += SLOT_ENTRY) {
        tsfw_slot_entry_t *e = &st->slots[s];
        if (p[0] > 1) return 0;
        e->installed = p[0];
        e->sequence = rd64(p + 8);
        memcpy(e->digest, p + 16, 32);
        memcpy(e->content, p + 48, 32);
        memcpy(e->name, p + 80, TSFW_NAME_BYTES);
        memcpy(e->version, p + 112, TSFW_VERSION_BYTES);
        if (e->name[TSFW_NAME_BYTES - 1] || e->version[TSFW_VERSION_BYTES - 1]) return 0;
    }
    for (i = 0; i < TSFW_MAX_NAMES; i++, p += NAME_ENTRY) {
        memcpy(st->names[i].name, p, TSFW_NAME_BYTES);
        st->names[i].sequence = rd64(p + 32);
        if (st->names[i].name[TSFW_NAME_BYTES - 1]) return 0;
    }
    return 1;
}

static uint32_t area_bytes(const tsfw_t *fw) { return fw->port->record.size / TSFW_RECORD_AREAS; }

/* Read area `a`: 1 and *out if it holds a valid record, 0 if not, negative: a status. */
static int read_area(tsfw_t *fw, int a, tsfw_record_t *out) {
    const tsfw_flash_area_t *r = &fw->port->record;
    uint32_t len = (uint32_t)tinyswap_fw_record_bytes(fw->layout);
    uint32_t state = (len - REC_HEAD - 32) / 2;
    uint8_t digest[32];
    uint8_t *b = fw->ws;
    if (r->read(fw->port->ctx, (uint32_t)a * area_bytes(fw), b, len)) return -(int)TSFW_E_FLASH;
    if (memcmp(b, "TSFR", 4) || rd16(b + 4) != 1 || rd16(b + 6) != len || b[16] != fw->layout->num_slots ||
        b[17] != TSFW_MAX_NAMES || b[18] > 1)
        return 0;
    if (hash(fw, b, len - 32, digest) != TSFW_OK) return -(int)TSFW_E_CRYPTO;
    if (memcmp(digest, b + len - 32, 32)) return 0;
    out->sequence = rd64(b + 8);
    out->trial = b[18];
    return get_state(&out->current, fw->layout->num_slots, b + REC_HEAD) &&
           get_state(&out->confirmed, fw->layout->num_slots, b + REC_HEAD + state);
}

/* Make fw->next the committed record: erase and program the area not holding the current one,
 * read back, compare. The current record is never touched, so a cut leaves it standing; on any
 * failure fw->rec stays the record on flash. */
static tsfw_status_t commit(tsfw_t *fw) {
    const tsfw_port_t *port = fw->port;
    const tsfw_flash_area_t *r = &port->record;
    uint32_t len = (uint32_t)tinyswap_fw_record_bytes(fw->layout);
    uint32_t state = (len - REC_HEAD - 32) / 2;
    uint32_t padded = (len + r->program_unit - 1) / r->program_unit * r->program_unit;
    uint32_t area = fw->area < 0 ? 0 : (uint32_t)(fw->area + 1) % TSFW_RECORD_AREAS;
    uint32_t base = area * area_bytes(fw), pos;
    uint8_t *b = fw->ws;
    tsfw_status_t st;
    fw->next.sequence = fw->next_sequence++; /* consumed even if this attempt fails */
    memset(b, 0, REC_HEAD);
    memcpy(b, "TSFR", 4);
    wr16(b + 4, 1);
    wr16(b + 6, (uint16_t)len);
    wr64(b + 8, fw->next.sequence);
    b[16] = (uint8_t)fw->layout->num_slots;
    b[17] = (uint8_t)TSFW_MAX_NAMES;
    b[18] = fw->next.trial;
    put_state(&fw->next.current, fw->layout->num_slots, b + REC_HEAD);
    put_state(&fw->next.confirmed, fw->layout->num_slots, b + REC_HEAD + state);
    if ((st = hash(fw, b, len - 32, b + len - 32)) != TSFW_OK) return st;
    memset(b + len, r->erase_value, padded - len);
    if (fw->erased_area != (int)area) /* not pre-erased by tinyswap_fw_prepare: erase it now */
        for (pos = 0; pos < area_bytes(fw); pos += r->sector_size)
            if (r->erase(port->ctx, base + pos, r->sector_size)) return TSFW_E_FLASH;
    fw->erased_area = -1; /* from here on the area is being programmed */
    for (pos = 0; pos < padded; pos += TSFW_CHUNK_BYTES) {
        uint32_t n = padded - pos < TSFW_CHUNK_BYTES ? padded - pos : TSFW_CHUNK_BYTES;
        if (r->program(port->ctx, base + pos, b + pos, n)) return TSFW_E_FLASH;
    }
    for (pos = 0; pos < padded; pos += TSFW_CHUNK_BYTES) {
        uint32_t n = padded - pos < TSFW_CHUNK_BYTES ? padded - pos : TSFW_CHUNK_BYTES;
        uint8_t *back = b + padded;
        if (r->read(port->ctx, base + pos, back, n)) return TSFW_E_FLASH;
        if (memcmp(back, b + pos, n) != 0) return TSFW_E_VERIFY;
    }
    fw->rec = fw->next;
    fw->area = (int)area;
    return TSFW_OK;
}


tsfw_status_t tinyswap_fw_prepare(tsfw_t *fw) {
    const tsfw_flash_area_t *r;
    uint32_t area, pos;
    if (!fw || !fw->port) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    r = &fw->port->record;
    area = fw->area < 0 ? 0 : (uint32_t)(fw->area + 1) % TSFW_RECORD_AREAS; /* where commit() goes */
    if (fw->erased_area == (int)area) return TSFW_OK;
    fw->erased_area = -1;
    for (pos = 0; pos < area_bytes(fw); pos += r->sector_size)
        if (r->erase(fw->port->ctx, area * area_bytes(fw) + pos, r->sector_size)) return TSFW_E_FLASH;
    fw->erased_area = (int)area;
    return TSFW_OK;
}

tsfw_status_t tinyswap_fw_format(tsfw_t *fw) {
    const tsfw_flash_area_t *r;
    uint32_t pos;
    if (!fw || !fw->port) return TSFW_E_ARGUMENT;
    r = &fw->port->record;
    for (pos = 0; pos < r->size; pos += r->sector_size)
        if (r->erase(fw->port->ctx, pos, r->sector_size)) return TSFW_E_FLASH;
    memset(&fw->rec, 0, sizeof fw->rec);
    fw->area = -1;
    fw->erased_area = -1;
    fw->next_sequence = 1;
    fw->booted = 0;
    return TSFW_OK;
}

static tsfw_status_t blank_entry(tsfw_t *fw, tsfw_slot_entry_t *e) {
    memset(e, 0, sizeof *e);
    return zero_content(fw, e->content);
}

tsfw_status_t tinyswap_fw_boot(tsfw_t *fw, tsfw_boot_report_t *report) {
    tsfw_boot_report_t rep;
    tsfw_record_t *cand;
    uint64_t highest = 0;
    uint32_t s, need = 0;
    int a, best = -1, r;
    tsfw_status_t st;
    if (!fw || !fw->port) return TSFW_E_ARGUMENT;
    memset(&rep, 0, sizeof rep);
    fw->booted = 0;
    fw->erased_area = -1; /* a boot trusts no area as erased */
    cand = &fw->next; /* candidates are decoded into `next` (no record copy on the stack) */
    for (a = 0; a < (int)TSFW_RECORD_AREAS; a++) {
        r = read_area(fw, a, cand);
        if (r < 0 && r != -(int)TSFW_E_FLASH) return (tsfw_status_t)(-r);
        if (r != 1) continue; /* an unreadable area holds nothing we can trust */
        if (cand->sequence > highest) highest = cand->sequence;
        if (best < 0 || cand->sequence > fw->rec.sequence) { fw->rec = *cand; best = a; }
    }
    fw->area = best;
    fw->next_sequence = highest + 1;
    if (best < 0) { /* factory state: every slot empty */
        memset(&fw->rec, 0, sizeof fw->rec);
        for (s = 0; s < fw->layout->num_slots; s++)
            if ((st = blank_entry(fw, &fw->rec.current.slots[s])) != TSFW_OK) return st;
        fw->rec.confirmed = fw->rec.current;
    } else {
        rep.record_found = 1;
    }
    fw->next = fw->rec;
    if (fw->next.trial) { /* an unconfirmed trial: back to the confirmed state */
        fw->next.current = fw->next.confirmed;
        fw->next.trial = 0;
        rep.reverted = 1;
        need = 1;
    }
    for (s = 0; s < fw->layout->num_slots; s++) {
        tsfw_slot_entry_t *e = &fw->next.current.slots[s];
        r = slot_matches(fw, s, e->content);
        if (r < 0) return (tsfw_status_t)(-r);
        if (r) continue;
        /* Half written, or the trial's bytes: rewrite blank, record it empty. */
        if ((st = write_slot(fw, s, NULL, NULL)) != TSFW_OK) return st;
        if ((st = blank_entry(fw, e)) != TSFW_OK) return st;
        fw->next.confirmed.slots[s] = *e;
        rep.repaired_slots |= 1u << s;
        need = 1;
    }
    if (need && (st = commit(fw)) != TSFW_OK) return st;
    fw->dirty = 0;
    fw->booted = 1;
    rep.record_sequence = fw->rec.sequence;
    if (report) *report = rep;
    return TSFW_OK;
}

tsfw_status_t tinyswap_fw_verify(tsfw_t *fw, const uint8_t *package, size_t len, tsfw_package_info_t *info) {
    tsfw_status_t st;
    if (!fw) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    st = verify(fw, package, len);
    if (st == TSFW_OK && info) *info = fw->pkg.info;
    return st;
}

tsfw_status_t tinyswap_fw_install(tsfw_t *fw, const uint8_t *package, size_t len, int slot, uint32_t flags,
                                  int *out_slot, tsfw_package_info_t *info) {
    const parsed_t *p = &fw->pkg;
    tsfw_status_t st;
    tsfw_slot_entry_t *e;
    tsfw_name_entry_t *n;
    unsigned i;
    if (!fw) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    if (slot != TSFW_ANY_SLOT && (slot < 0 || (uint32_t)slot >= fw->layout->num_slots)) return TSFW_E_ARGUMENT;
    if ((st = verify(fw, package, len)) != TSFW_OK) return st;
    if (slot == TSFW_ANY_SLOT) {
        for (i = 0; i < fw->layout->num_slots; i++)
            if (!fw->rec.current.slots[i].installed && !(fw->dirty & (1u << i))) break;
        if (i == fw->layout->num_slots) return TSFW_E_NO_SLOT;
        slot = (int)i;
    }
    if ((st = write_slot(fw, (uint32_t)slot, p, p->match)) != TSFW_OK) return st;
    fw->next = fw->rec;
    if (!(flags & TSFW_INSTALL_TRIAL)) fw->next.trial = 0;
    else if (!fw->next.trial) { fw->next.trial = 1; fw->next.confirmed = fw->rec.current; }
    e = &fw->next.current.slots[slot];
    memset(e, 0, sizeof *e);
    e->installed = 1;
    e->sequence = p->sequence;
    memcpy(e->digest, p->info.digest, 32);
    memcpy(e->content, p->info.content, 32);
    memcpy(e->name, p->info.name, TSFW_NAME_BYTES);
    memcpy(e->version, p->info.version, TSFW_VERSION_BYTES);
    n = (tsfw_name_entry_t *)find_name(&fw->next.current, p->info.name);
    if (!n) {
        n = &fw->next.current.names[free_name(&fw->next.current)];
        memcpy(n->name, p->info.name, TSFW_NAME_BYTES);
    }
    n->sequence = p->sequence;
    if (!fw->next.trial) fw->next.confirmed = fw->next.current;
    if ((st = commit(fw)) != TSFW_OK) {
        fw->dirty |= 1u << slot; /* new bytes under the old record: boot rewrites the slot blank */
        return st;
    }
    if (out_slot) *out_slot = slot;
    if (info) *info = p->info;
    return TSFW_OK;
}

tsfw_status_t tinyswap_fw_confirm(tsfw_t *fw) {
    if (!fw) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    if (!fw->rec.trial) return TSFW_OK;
    fw->next = fw->rec;
    fw->next.trial = 0;
    fw->next.confirmed = fw->next.current;
    return commit(fw);
}

tsfw_status_t tinyswap_fw_clear_slot(tsfw_t *fw, int slot) {
    tsfw_status_t st;
    if (!fw) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    if (slot < 0 || (uint32_t)slot >= fw->layout->num_slots) return TSFW_E_ARGUMENT;
    if ((st = write_slot(fw, (uint32_t)slot, NULL, NULL)) != TSFW_OK) return st;
    fw->next = fw->rec;
    if ((st = blank_entry(fw, &fw->next.current.slots[slot])) != TSFW_OK) return st;
    if (!fw->next.trial) fw->next.confirmed = fw->next.current;
    if ((st = commit(fw)) != TSFW_OK) fw->dirty |= 1u << slot;
    return st;
}

tsfw_status_t tinyswap_fw_slot_of(const tsfw_t *fw, const char *name, int *slot) {
    uint32_t s;
    if (!fw || !name || !slot) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    for (s = 0; s < fw->layout->num_slots; s++) {
        const tsfw_slot_entry_t *e = &fw->rec.current.slots[s];
        if (e->installed && !(fw->dirty & (1u << s)) && strcmp(e->name, name) == 0) {
            *slot = (int)s;
            return TSFW_OK;
        }
    }
    return TSFW_E_NOT_FOUND;
}

tsfw_status_t tinyswap_fw_slot_entry(const tsfw_t *fw, int slot, tsfw_slot_entry_t *entry) {
    if (!fw || !entry) return TSFW_E_ARGUMENT;
    if (!fw->booted) return TSFW_E_STATE;
    if (slot < 0 || (uint32_t)slot >= fw->layout->num_slots) return TSFW_E_ARGUMENT;
    *entry = fw->rec.current.slots[slot];
    return TSFW_OK;
}

tsfw_status_t tinyswap_fw_gate_value(const tsfw_layout_t *layout, int slot, uint32_t weight_q16, int8_t *out) {
    const tsfw_slot_t *sl;
    double x, r, v;
    if (!layout || !out || slot < 0 || (uint32_t)slot >= layout->num_slots) return TSFW_E_ARGUMENT;
    if ((double)weight_q16 > layout->gate_max * 65536.0) return TSFW_E_ARGUMENT;
    sl = &layout->slots[slot];
    /* Python's round(weight / scale): round half to even, in double precision. */
    x = ((double)weight_q16 / 65536.0) / sl->gate_scale;
    r = (double)(int64_t)x; /* x >= 0: truncation is floor */
    if (x - r > 0.5 || (x - r == 0.5 && ((int64_t)r & 1))) r += 1.0;
    v = r + (double)sl->gate_zero_point;
    *out = (int8_t)(v < -128.0 ? -128 : v > 127.0 ? 127 : (int)v);
    return TSFW_OK;
}
