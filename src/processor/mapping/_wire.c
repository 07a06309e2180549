/* The OTLP fast path (issue #15): ExportTraceServiceRequest / ExportLogsServiceRequest
 * bytes -> the record views of processor.mapping.views, without upb message objects.
 *
 * Contract: a walk either returns exactly what the reference (upb parse + views.py) would
 * build, or None, meaning "not sure: let the reference decide" (malformed input, invalid
 * UTF-8, nesting past FAST_MAX_DEPTH, a wire type upb might read differently, a singular
 * message field seen twice, and for logs any record or resource whose bytes upb would not
 * re-serialize identically). The input is untrusted: every read is bounds-checked against the
 * end of its enclosing message, and recursion is bounded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Bounds of processor.mapping.values (checked equal at import by views.py). */
#define MAX_DEPTH 8
#define MAX_ATTRIBUTES 256
#define MAX_ITEMS 256
#define MAX_STRING 4096
#define MAX_TEXT 65536
#define MAX_KEY 255
/* Message nesting beyond this goes to the reference (upb stops at 100, repair cuts at 64). */
#define FAST_MAX_DEPTH 60

#define FALLBACK (-1)

/* ---------------------------------------------------------------- reading the wire ---- */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

typedef struct {
    uint32_t number;
    int wire;
    uint64_t value;        /* varint / fixed64 / fixed32 value */
    const uint8_t *data;   /* length-delimited payload */
    size_t len;
    const uint8_t *start;  /* first byte of the field (its tag) */
    int minimal;           /* tag, varint and length encoded minimally */
} Field;

static int read_varint(Reader *r, uint64_t *out, int *minimal) {
    uint64_t result = 0;
    int shift = 0;
    const uint8_t *start = r->p;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return FALLBACK;
        uint8_t byte = *r->p++;
        if (i == 9 && byte > 1) return FALLBACK; /* overflow: leave it to upb */
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = result;
            /* minimal: no trailing zero byte (except the single byte 0) */
            if (minimal != NULL && r->p - start > 1 && byte == 0) *minimal = 0;
            return 0;
        }
        shift += 7;
    }
    return FALLBACK;
}

/* The next field of a message, or 1 at its end; FALLBACK when malformed. */
static int next_field(Reader *r, Field *f) {
    if (r->p >= r->end) return 1;
    uint64_t tag;
    f->start = r->p;
    f->minimal = 1;
    if (read_varint(r, &tag, &f->minimal) < 0) return FALLBACK;
    if (tag > 0xFFFFFFFFu) return FALLBACK;
    f->number = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    if (f->number == 0 || f->number > 536870911u) return FALLBACK;
    f->data = NULL;
    f->len = 0;
    f->value = 0;
    switch (f->wire) {
    case 0:
        return read_varint(r, &f->value, &f->minimal) < 0 ? FALLBACK : 0;
    case 1:
        if (r->end - r->p < 8) return FALLBACK;
        memcpy(&f->value, r->p, 8); /* little-endian hosts only (checked at import) */
        r->p += 8;
        return 0;
    case 5: {
        uint32_t v;
        if (r->end - r->p < 4) return FALLBACK;
        memcpy(&v, r->p, 4);
        f->value = v;
        r->p += 4;
        return 0;
    }
    case 2: {
        uint64_t len;
        if (read_varint(r, &len, &f->minimal) < 0) return FALLBACK;
        if (len > (uint64_t)(r->end - r->p) || len > 0x7FFFFFFF) return FALLBACK;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 0;
    }
    default: /* groups and invalid wire types */
        return FALLBACK;
    }
}

/* Strict UTF-8 as Python decodes it: no overlongs, no surrogates, at most U+10FFFF. */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n) return 0;
            uint8_t c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && c1 < 0xA0) return 0;
            if (c == 0xED && c1 >= 0xA0) return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n) return 0;
            uint8_t c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && c1 < 0x90) return 0;
            if (c == 0xF4 && c1 >= 0x90) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------- the schema, as tables ---- */

enum Kind { K_END = 0, K_INT32, K_UINT32, K_INT64, K_BOOL, K_FIXED64, K_FIXED32, K_STRING,
            K_BYTES, K_MESSAGE };

enum Msg { M_NONE = 0, M_ANY, M_ARRAY, M_KVLIST, M_KV, M_SCOPE, M_ENTITY, M_RESOURCE,
           M_TRACE_REQ, M_RESOURCE_SPANS, M_SCOPE_SPANS, M_SPAN, M_EVENT, M_LINK, M_STATUS,
           M_LOGS_REQ, M_RESOURCE_LOGS, M_SCOPE_LOGS, M_LOG_RECORD, M_COUNT };

#define F_REPEATED 1
#define F_ONEOF 2
#define F_TRACK 4 /* re-serialized by the reference: must be canonical (logs) */

typedef struct {
    uint32_t number;
    uint8_t kind;
    uint8_t msg;
    uint8_t flags;
} FieldDef;

static const FieldDef ANY_FIELDS[] = {
    {1, K_STRING, 0, F_ONEOF}, {2, K_BOOL, 0, F_ONEOF}, {3, K_INT64, 0, F_ONEOF},
    {4, K_FIXED64, 0, F_ONEOF}, {5, K_MESSAGE, M_ARRAY, F_ONEOF},
    {6, K_MESSAGE, M_KVLIST, F_ONEOF}, {7, K_BYTES, 0, F_ONEOF}, {0}};
static const FieldDef ARRAY_FIELDS[] = {{1, K_MESSAGE, M_ANY, F_REPEATED}, {0}};
static const FieldDef KVLIST_FIELDS[] = {{1, K_MESSAGE, M_KV, F_REPEATED}, {0}};
static const FieldDef KV_FIELDS[] = {{1, K_STRING, 0, 0}, {2, K_MESSAGE, M_ANY, 0}, {0}};
static const FieldDef SCOPE_FIELDS[] = {{1, K_STRING, 0, 0}, {2, K_STRING, 0, 0},
                                        {3, K_MESSAGE, M_KV, F_REPEATED}, {4, K_UINT32, 0, 0},
                                        {0}};
static const FieldDef ENTITY_FIELDS[] = {{1, K_STRING, 0, 0}, {2, K_STRING, 0, 0},
                                         {3, K_STRING, 0, F_REPEATED},
                                         {4, K_STRING, 0, F_REPEATED}, {0}};
static const FieldDef RESOURCE_FIELDS[] = {{1, K_MESSAGE, M_KV, F_REPEATED},
                                           {2, K_UINT32, 0, 0},
                                           {3, K_MESSAGE, M_ENTITY, F_REPEATED}, {0}};
static const FieldDef TRACE_REQ_FIELDS[] = {{1, K_MESSAGE, M_RESOURCE_SPANS, F_REPEATED}, {0}};
static const FieldDef RESOURCE_SPANS_FIELDS[] = {{1, K_MESSAGE, M_RESOURCE, 0},
                                                 {2, K_MESSAGE, M_SCOPE_SPANS, F_REPEATED},
                                                 {3, K_STRING, 0, 0}, {0}};
static const FieldDef SCOPE_SPANS_FIELDS[] = {{1, K_MESSAGE, M_SCOPE, 0},
                                              {2, K_MESSAGE, M_SPAN, F_REPEATED},
                                              {3, K_STRING, 0, 0}, {0}};
static const FieldDef SPAN_FIELDS[] = {
    {1, K_BYTES, 0, 0}, {2, K_BYTES, 0, 0}, {3, K_STRING, 0, 0}, {4, K_BYTES, 0, 0},
    {5, K_STRING, 0, 0}, {6, K_INT32, 0, 0}, {7, K_FIXED64, 0, 0}, {8, K_FIXED64, 0, 0},
    {9, K_MESSAGE, M_KV, F_REPEATED}, {10, K_UINT32, 0, 0},
    {11, K_MESSAGE, M_EVENT, F_REPEATED}, {12, K_UINT32, 0, 0},
    {13, K_MESSAGE, M_LINK, F_REPEATED}, {14, K_UINT32, 0, 0}, {15, K_MESSAGE, M_STATUS, 0},
    {16, K_FIXED32, 0, 0}, {0}};
static const FieldDef EVENT_FIELDS[] = {{1, K_FIXED64, 0, 0}, {2, K_STRING, 0, 0},
                                        {3, K_MESSAGE, M_KV, F_REPEATED}, {4, K_UINT32, 0, 0},
                                        {0}};
static const FieldDef LINK_FIELDS[] = {{1, K_BYTES, 0, 0}, {2, K_BYTES, 0, 0},
                                       {3, K_STRING, 0, 0}, {4, K_MESSAGE, M_KV, F_REPEATED},
                                       {5, K_UINT32, 0, 0}, {6, K_FIXED32, 0, 0}, {0}};
static const FieldDef STATUS_FIELDS[] = {{2, K_STRING, 0, 0}, {3, K_INT32, 0, 0}, {0}};
static const FieldDef LOGS_REQ_FIELDS[] = {{1, K_MESSAGE, M_RESOURCE_LOGS, F_REPEATED}, {0}};
static const FieldDef RESOURCE_LOGS_FIELDS[] = {{1, K_MESSAGE, M_RESOURCE, F_TRACK},
                                                {2, K_MESSAGE, M_SCOPE_LOGS, F_REPEATED},
                                                {3, K_STRING, 0, 0}, {0}};
static const FieldDef SCOPE_LOGS_FIELDS[] = {
    {1, K_MESSAGE, M_SCOPE, 0}, {2, K_MESSAGE, M_LOG_RECORD, F_REPEATED | F_TRACK},
    {3, K_STRING, 0, 0}, {0}};
static const FieldDef LOG_RECORD_FIELDS[] = {
    {1, K_FIXED64, 0, 0}, {2, K_INT32, 0, 0}, {3, K_STRING, 0, 0},
    {5, K_MESSAGE, M_ANY, 0}, {6, K_MESSAGE, M_KV, F_REPEATED}, {7, K_UINT32, 0, 0},
    {8, K_FIXED32, 0, 0}, {9, K_BYTES, 0, 0}, {10, K_BYTES, 0, 0}, {11, K_FIXED64, 0, 0},
    {12, K_STRING, 0, 0}, {0}};

static const FieldDef *const SCHEMA[M_COUNT] = {
    [M_ANY] = ANY_FIELDS, [M_ARRAY] = ARRAY_FIELDS, [M_KVLIST] = KVLIST_FIELDS,
    [M_KV] = KV_FIELDS, [M_SCOPE] = SCOPE_FIELDS, [M_ENTITY] = ENTITY_FIELDS,
    [M_RESOURCE] = RESOURCE_FIELDS, [M_TRACE_REQ] = TRACE_REQ_FIELDS,
    [M_RESOURCE_SPANS] = RESOURCE_SPANS_FIELDS, [M_SCOPE_SPANS] = SCOPE_SPANS_FIELDS,
    [M_SPAN] = SPAN_FIELDS, [M_EVENT] = EVENT_FIELDS, [M_LINK] = LINK_FIELDS,
    [M_STATUS] = STATUS_FIELDS, [M_LOGS_REQ] = LOGS_REQ_FIELDS,
    [M_RESOURCE_LOGS] = RESOURCE_LOGS_FIELDS, [M_SCOPE_LOGS] = SCOPE_LOGS_FIELDS,
    [M_LOG_RECORD] = LOG_RECORD_FIELDS};

static int expected_wire(uint8_t kind) {
    switch (kind) {
    case K_INT32: case K_UINT32: case K_INT64: case K_BOOL: return 0;
    case K_FIXED64: return 1;
    case K_FIXED32: return 5;
    default: return 2;
    }
}

/* Would upb write this field back byte for byte? (only asked when tracking) */
static int canonical_value(const FieldDef *d, const Field *f) {
    if (!f->minimal) return 0;
    int oneof = d->flags & F_ONEOF;
    switch (d->kind) {
    case K_INT32: /* written back as the sign-extended 64-bit varint of the int32 */
        if (f->value != (uint64_t)(int64_t)(int32_t)(uint32_t)f->value) return 0;
        return oneof || f->value != 0;
    case K_UINT32:
        if (f->value > 0xFFFFFFFFu) return 0;
        return oneof || f->value != 0;
    case K_BOOL:
        if (f->value > 1) return 0;
        return oneof || f->value != 0;
    case K_INT64: case K_FIXED64: case K_FIXED32:
        return oneof || f->value != 0;
    case K_STRING: case K_BYTES:
        return oneof || f->len != 0;
    default:
        return 1; /* messages are written when present, even empty */
    }
}

/* Check one message against the schema, recursively. With ``track``, anything upb would not
 * write back identically (order, duplicates, defaults, unknown fields, long encodings) is a
 * FALLBACK too. */
static int validate(const uint8_t *p, size_t n, int msg, int depth, int track) {
    if (depth > FAST_MAX_DEPTH) return FALLBACK;
    const FieldDef *defs = SCHEMA[msg];
    Reader r = {p, p + n};
    Field f;
    int rc;
    uint32_t last = 0;
    uint32_t seen_messages = 0; /* bit per field number < 32: singular message seen */
    int oneofs = 0;
    while ((rc = next_field(&r, &f)) == 0) {
        const FieldDef *d = defs;
        while (d->number != 0 && d->number != f.number) d++;
        if (d->number == 0) {
            if (track) return FALLBACK; /* upb moves unknown fields to the end */
            if (f.wire == 2 || f.wire == 0 || f.wire == 1 || f.wire == 5) continue;
            return FALLBACK;
        }
        if (f.wire != expected_wire(d->kind)) return FALLBACK;
        if (track) {
            if (f.number < last || (f.number == last && !(d->flags & F_REPEATED)))
                return FALLBACK;
            if (!canonical_value(d, &f)) return FALLBACK;
            last = f.number;
        }
        if (d->flags & F_ONEOF) {
            if (++oneofs > 1) return FALLBACK; /* a oneof set twice: leave it to upb */
        }
        if (d->kind == K_STRING) {
            if (!valid_utf8(f.data, f.len)) return FALLBACK;
        } else if (d->kind == K_MESSAGE) {
            if (!(d->flags & F_REPEATED)) {
                uint32_t bit = 1u << (f.number & 31);
                if (seen_messages & bit) return FALLBACK; /* upb would merge the two */
                seen_messages |= bit;
            }
            if (validate(f.data, f.len, d->msg, depth + 1, track || (d->flags & F_TRACK)) < 0)
                return FALLBACK;
        }
    }
    return rc < 0 ? FALLBACK : 0;
}

/* ------------------------------------------------------- values, as values.py makes them - */

static PyObject *S_STACK_KEY, *S_TOO_DEEP_LIST, *S_TOO_DEEP_DICT, *S_TRUNCATED, *S_NAN, *S_INF, *S_NINF,
    *S_EMPTY;
static const char STACK_KEY[] = "exception.stacktrace";

/* Short ASCII strings repeat across spans (attribute keys, methods, routes, service names):
 * one str object per distinct text, found by hash, saves decoding it and hashing it again
 * (str caches its hash) for every span. A slot holds the last text that hashed to it. */
#define SHORT_TEXT 48
#define SHORT_SLOTS 1024
static PyObject *SHORT[SHORT_SLOTS];

static PyObject *short_text(const uint8_t *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    PyObject **slot = &SHORT[h & (SHORT_SLOTS - 1)];
    PyObject *cached = *slot;
    if (cached != NULL && (size_t)PyUnicode_GET_LENGTH(cached) == n &&
        memcmp(PyUnicode_DATA(cached), s, n) == 0) {
        Py_INCREF(cached);
        return cached;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "strict");
    if (text == NULL) return NULL;
    if (PyUnicode_IS_COMPACT_ASCII(text)) { /* then its data are exactly these bytes */
        Py_INCREF(text);
        Py_XSETREF(*slot, text);
    }
    return text;
}

/* values.clean(): the text without NUL characters, at most ``limit`` code points. The bytes
 * are valid UTF-8 (validated before). */
static PyObject *clean_text(const uint8_t *s, size_t n, Py_ssize_t limit) {
    if (n == 0) {
        Py_INCREF(S_EMPTY);
        return S_EMPTY;
    }
    const uint8_t *nul = memchr(s, 0, n);
    if (nul == NULL && n <= SHORT_TEXT) return short_text(s, n);
    uint8_t *copy = NULL;
    if (nul != NULL) {
        copy = PyMem_Malloc(n);
        if (copy == NULL) return PyErr_NoMemory();
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i] != 0) copy[k++] = s[i];
        s = copy;
        n = k;
    }
    if ((Py_ssize_t)n > limit) { /* cut after ``limit`` code points */
        Py_ssize_t points = 0;
        size_t i = 0;
        for (; i < n; i++) {
            if ((s[i] & 0xC0) != 0x80) {
                if (points == limit) break;
                points++;
            }
        }
        n = i;
    }
    PyObject *out = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "strict");
    if (copy != NULL) PyMem_Free(copy);
    return out;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static PyObject *base64_text(const uint8_t *s, size_t n) {
    if (n > MAX_STRING) n = MAX_STRING;
    size_t out_len = (n + 2) / 3 * 4;
    PyObject *out = PyUnicode_New((Py_ssize_t)out_len, 127);
    if (out == NULL) return NULL;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    size_t i = 0, k = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        o[k++] = B64[v >> 18];
        o[k++] = B64[(v >> 12) & 63];
        o[k++] = B64[(v >> 6) & 63];
        o[k++] = B64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)s[i + 1] << 8;
        o[k++] = B64[v >> 18];
        o[k++] = B64[(v >> 12) & 63];
        o[k++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        o[k++] = '=';
    }
    return out;
}

/* Extraction re-reads validated bytes; a failure here would be a bug, not bad input. */
static PyObject *invalid(void) {
    PyErr_SetString(PyExc_SystemError, "_wire: validated bytes did not read back");
    return NULL;
}

static PyObject *attributes_of(Reader *fields_of, uint32_t number, int depth);

/* values.any_value(): an AnyValue (validated) as a Python value. */
static PyObject *any_value(const uint8_t *p, size_t n, int depth, Py_ssize_t limit) {
    Reader r = {p, p + n};
    Field f;
    int rc;
    while ((rc = next_field(&r, &f)) == 0 && (f.number < 1 || f.number > 7))
        ; /* unknown fields (validated) */
    if (rc == 1) Py_RETURN_NONE; /* no kind set */
    if (rc < 0) return invalid();
    switch (f.number) {
    case 1:
        return clean_text(f.data, f.len, limit);
    case 2:
        return PyBool_FromLong(f.value != 0);
    case 3:
        return PyLong_FromLongLong((long long)(int64_t)f.value);
    case 4: {
        double d;
        memcpy(&d, &f.value, 8);
        if (isfinite(d)) return PyFloat_FromDouble(d);
        PyObject *s = isnan(d) ? S_NAN : (d > 0 ? S_INF : S_NINF);
        Py_INCREF(s);
        return s;
    }
    case 5: {
        if (depth >= MAX_DEPTH) {
            Py_INCREF(S_TOO_DEEP_LIST);
            return S_TOO_DEEP_LIST;
        }
        PyObject *list = PyList_New(0);
        if (list == NULL) return NULL;
        Reader items = {f.data, f.data + f.len};
        Field item;
        while (PyList_GET_SIZE(list) < MAX_ITEMS && (rc = next_field(&items, &item)) == 0) {
            if (item.number != 1) continue; /* an unknown field (validated) */
            PyObject *v = any_value(item.data, item.len, depth + 1, MAX_STRING);
            if (v == NULL || PyList_Append(list, v) < 0) {
                Py_XDECREF(v);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(v);
        }
        return list;
    }
    case 6: {
        if (depth >= MAX_DEPTH) {
            Py_INCREF(S_TOO_DEEP_DICT);
            return S_TOO_DEEP_DICT;
        }
        Reader kvs = {f.data, f.data + f.len};
        return attributes_of(&kvs, 1, depth + 1);
    }
    case 7:
        return base64_text(f.data, f.len);
    }
    Py_RETURN_NONE;
}

/* One KeyValue (validated): its key's bytes and its value's bytes (NULL when unset). */
static void key_value(const uint8_t *p, size_t n, Field *key, Field *value) {
    Reader r = {p, p + n};
    Field f;
    key->data = (const uint8_t *)"";
    key->len = 0;
    value->data = NULL;
    value->len = 0;
    while (next_field(&r, &f) == 0) {
        if (f.number == 1) *key = f; /* last one wins, as in upb */
        else if (f.number == 2) *value = f;
    }
}

/* values.attributes(): the KeyValues in field ``number`` of the message read by
 * ``fields_of`` (validated), as a dict. */
static PyObject *attributes_of(Reader *fields_of, uint32_t number, int depth) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    Field f, key, value;
    while (next_field(fields_of, &f) == 0) {
        if (f.number != number) continue;
        if (PyDict_GET_SIZE(out) >= MAX_ATTRIBUTES) {
            if (PyDict_SetItem(out, S_TRUNCATED, Py_True) < 0) goto fail;
            break;
        }
        key_value(f.data, f.len, &key, &value);
        PyObject *k = clean_text(key.data, key.len, MAX_KEY);
        if (k == NULL) goto fail;
        PyObject *v;
        if (value.data == NULL) {
            v = Py_None;
            Py_INCREF(v);
        } else {
            v = any_value(value.data, value.len, depth, MAX_STRING);
        }
        if (v == NULL || PyDict_SetItem(out, k, v) < 0) {
            Py_DECREF(k);
            Py_XDECREF(v);
            goto fail;
        }
        Py_DECREF(v);
        Py_DECREF(k);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* views.long_stacktrace(): when the dict's ``exception.stacktrace`` is a string cut at
 * MAX_STRING, the first string KeyValue with exactly that key, clipped at MAX_TEXT (what
 * values.long_text() finds); else None. */
static PyObject *long_stacktrace(const uint8_t *p, size_t n, uint32_t number, PyObject *attrs) {
    PyObject *shown = PyDict_GetItemWithError(attrs, S_STACK_KEY);
    if (shown == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    if (!PyUnicode_Check(shown) || PyUnicode_GET_LENGTH(shown) < MAX_STRING) Py_RETURN_NONE;
    Reader r = {p, p + n};
    Field f, key, value;
    while (next_field(&r, &f) == 0) {
        if (f.number != number) continue;
        key_value(f.data, f.len, &key, &value);
        if (value.data == NULL || key.len != sizeof(STACK_KEY) - 1 ||
            memcmp(key.data, STACK_KEY, key.len) != 0)
            continue;
        Reader v = {value.data, value.data + value.len};
        Field s;
        int rc;
        while ((rc = next_field(&v, &s)) == 0 && (s.number < 1 || s.number > 7))
            ;
        if (rc == 0 && s.number == 1) return clean_text(s.data, s.len, MAX_TEXT);
    }
    Py_RETURN_NONE;
}


static PyObject *bytes_of(const Field *f) {
    return PyBytes_FromStringAndSize((const char *)f->data, (Py_ssize_t)f->len);
}

static PyObject *string_of(const Field *f) {
    if (f->len == 0) {
        Py_INCREF(S_EMPTY);
        return S_EMPTY;
    }
    if (f->len <= SHORT_TEXT) return short_text(f->data, f->len);
    return PyUnicode_DecodeUTF8((const char *)f->data, (Py_ssize_t)f->len, "strict");
}

static const Field NO_FIELD = {0, 2, 0, (const uint8_t *)"", 0, NULL, 1};

/* The resource's attributes (an empty dict without a resource). */
static PyObject *resource_attributes(const Field *resource) {
    Reader r = {resource->data, resource->data + resource->len};
    return attributes_of(&r, 1, 0);
}

/* ------------------------------------------------------------------------ traces ---- */

/* views.EventView: (name, time_unix_nano, attributes, stacktrace) */
static PyObject *event_view(const uint8_t *p, size_t n) {
    Reader r = {p, p + n};
    Field f, name = NO_FIELD;
    uint64_t time = 0;
    while (next_field(&r, &f) == 0) {
        if (f.number == 1) time = f.value;
        else if (f.number == 2) name = f;
    }
    Reader a = {p, p + n};
    PyObject *attrs = attributes_of(&a, 3, 0);
    if (attrs == NULL) return NULL;
    PyObject *stack = long_stacktrace(p, n, 3, attrs);
    if (stack == NULL) {
        Py_DECREF(attrs);
        return NULL;
    }
    return Py_BuildValue("(NKNN)", string_of(&name), (unsigned long long)time, attrs, stack);
}

/* views.SpanView: (trace_id, span_id, parent_span_id, name, kind, start, end, status_code,
 * attributes, events) */
static PyObject *span_view(const uint8_t *p, size_t n) {
    Reader r = {p, p + n};
    Field f, trace = NO_FIELD, span = NO_FIELD, parent = NO_FIELD, name = NO_FIELD;
    uint64_t start = 0, end = 0;
    int32_t kind = 0, status = 0;
    PyObject *events = PyList_New(0);
    if (events == NULL) return NULL;
    while (next_field(&r, &f) == 0) {
        switch (f.number) {
        case 1: trace = f; break;
        case 2: span = f; break;
        case 4: parent = f; break;
        case 5: name = f; break;
        case 6: kind = (int32_t)(uint32_t)f.value; break;
        case 7: start = f.value; break;
        case 8: end = f.value; break;
        case 11: {
            PyObject *event = event_view(f.data, f.len);
            if (event == NULL || PyList_Append(events, event) < 0) {
                Py_XDECREF(event);
                Py_DECREF(events);
                return NULL;
            }
            Py_DECREF(event);
            break;
        }
        case 15: {
            Reader s = {f.data, f.data + f.len};
            Field g;
            status = 0;
            while (next_field(&s, &g) == 0)
                if (g.number == 3) status = (int32_t)(uint32_t)g.value;
            break;
        }
        }
    }
    Reader a = {p, p + n};
    PyObject *attrs = attributes_of(&a, 9, 0);
    if (attrs == NULL) {
        Py_DECREF(events);
        return NULL;
    }
    return Py_BuildValue("(NNNNiKKiNN)", bytes_of(&trace), bytes_of(&span), bytes_of(&parent),
                         string_of(&name), (int)kind, (unsigned long long)start,
                         (unsigned long long)end, (int)status, attrs, events);
}

typedef PyObject *(*RecordView)(const uint8_t *p, size_t n);

/* Walk ResourceSpans / ResourceLogs: per resource, (attributes, resource bytes, records). */
static PyObject *walk(const uint8_t *data, size_t n, RecordView view, int resource_bytes) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Reader req = {data, data + n};
    Field rs;
    while (next_field(&req, &rs) == 0) {
        if (rs.number != 1) continue;
        Field resource = NO_FIELD, f;
        Reader r = {rs.data, rs.data + rs.len};
        while (next_field(&r, &f) == 0)
            if (f.number == 1) resource = f;
        PyObject *records = PyList_New(0);
        if (records == NULL) goto fail;
        r.p = rs.data;
        while (next_field(&r, &f) == 0) {
            if (f.number != 2) continue;
            Reader scope = {f.data, f.data + f.len};
            Field g;
            while (next_field(&scope, &g) == 0) {
                if (g.number != 2) continue;
                PyObject *record = view(g.data, g.len);
                if (record == NULL || PyList_Append(records, record) < 0) {
                    Py_XDECREF(record);
                    Py_DECREF(records);
                    goto fail;
                }
                Py_DECREF(record);
            }
        }
        PyObject *item = Py_BuildValue("(NNN)", resource_attributes(&resource),
                                       bytes_of(resource_bytes ? &resource : &NO_FIELD),
                                       records);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* -------------------------------------------------------------------------- logs ---- */

/* views.LogView: (trace_id, span_id, time, observed, severity_number, severity_text,
 * event_name, body, attributes, stacktrace, raw) */
static PyObject *log_view(const uint8_t *p, size_t n) {
    Reader r = {p, p + n};
    Field f, trace = NO_FIELD, span = NO_FIELD, text = NO_FIELD, event = NO_FIELD;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    uint64_t time = 0, observed = 0;
    int32_t severity = 0;
    while (next_field(&r, &f) == 0) {
        switch (f.number) {
        case 1: time = f.value; break;
        case 2: severity = (int32_t)(uint32_t)f.value; break;
        case 3: text = f; break;
        case 5: body = f.data; body_len = f.len; break;
        case 9: trace = f; break;
        case 10: span = f; break;
        case 11: observed = f.value; break;
        case 12: event = f; break;
        }
    }
    PyObject *body_value;
    if (body == NULL) {
        body_value = Py_None;
        Py_INCREF(body_value);
    } else {
        body_value = any_value(body, body_len, 0, MAX_TEXT);
        if (body_value == NULL) return NULL;
    }
    Reader a = {p, p + n};
    PyObject *attrs = attributes_of(&a, 6, 0);
    PyObject *stack = attrs == NULL ? NULL : long_stacktrace(p, n, 6, attrs);
    if (stack == NULL) {
        Py_XDECREF(attrs);
        Py_DECREF(body_value);
        return NULL;
    }
    return Py_BuildValue("(NNKKiNNNNNy#)", bytes_of(&trace), bytes_of(&span),
                         (unsigned long long)time, (unsigned long long)observed, (int)severity,
                         string_of(&text), string_of(&event), body_value, attrs, stack,
                         (const char *)p, (Py_ssize_t)n);
}

/* ---------------------------------------------------------------------- the module ---- */

static PyObject *walk_signal(PyObject *arg, int request_msg, RecordView view,
                             int resource_bytes) {
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out;
    if (validate(buf.buf, (size_t)buf.len, request_msg, 0, 0) < 0) {
        out = Py_None;
        Py_INCREF(out);
    } else {
        out = walk(buf.buf, (size_t)buf.len, view, resource_bytes);
    }
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *walk_traces(PyObject *self, PyObject *arg) {
    return walk_signal(arg, M_TRACE_REQ, span_view, 0);
}

static PyObject *walk_logs(PyObject *self, PyObject *arg) {
    return walk_signal(arg, M_LOGS_REQ, log_view, 1);
}

/* identity.scrubbed_attributes' first pass: a copy of ``attrs`` and the keys whose values
 * privacy.scrub_mapping() may change. The others it keeps as they are: a key not in
 * ``sensitive`` with None, an int, a bool, a float, or a str without '@', '.' and ':' (what
 * privacy.scrub_text() returns unchanged). */
static PyObject *scrub_candidates(PyObject *self, PyObject *args) {
    PyObject *attrs, *sensitive;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &attrs, &PyFrozenSet_Type, &sensitive))
        return NULL;
    PyObject *out = PyDict_Copy(attrs);
    PyObject *todo = PyList_New(0);
    if (out == NULL || todo == NULL) goto fail;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        int keep;
        int is_sensitive = PySet_Contains(sensitive, key);
        if (is_sensitive < 0) goto fail;
        if (is_sensitive) {
            keep = 0;
        } else if (PyUnicode_CheckExact(value)) {
            Py_ssize_t n = PyUnicode_GET_LENGTH(value);
            keep = PyUnicode_FindChar(value, '@', 0, n, 1) == -1 &&
                   PyUnicode_FindChar(value, '.', 0, n, 1) == -1 &&
                   PyUnicode_FindChar(value, ':', 0, n, 1) == -1;
        } else {
            keep = value == Py_None || PyLong_CheckExact(value) || PyBool_Check(value) ||
                   PyFloat_CheckExact(value);
        }
        if (!keep && PyList_Append(todo, key) < 0) goto fail;
    }
    return Py_BuildValue("(NN)", out, todo);
fail:
    Py_XDECREF(out);
    Py_XDECREF(todo);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"scrub_candidates", scrub_candidates, METH_VARARGS,
     "(attrs, sensitive keys) -> (a copy of attrs, the keys privacy.scrub_mapping may change)"},
    {"walk_traces", walk_traces, METH_O,
     "ExportTraceServiceRequest bytes -> [(resource attributes, resource bytes, [SpanView "
     "tuple])], or None when the reference must decide."},
    {"walk_logs", walk_logs, METH_O,
     "ExportLogsServiceRequest bytes -> [(resource attributes, resource bytes, [LogView "
     "tuple])], or None when the reference must decide."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_wire", NULL, -1, METHODS,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__wire(void) {
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "the OTLP fast path assumes a little-endian host");
        return NULL;
    }
    S_STACK_KEY = PyUnicode_InternFromString(STACK_KEY);
    S_TOO_DEEP_LIST = PyUnicode_InternFromString("[nested too deep]");
    S_TOO_DEEP_DICT = PyUnicode_InternFromString("{nested too deep}");
    S_TRUNCATED = PyUnicode_InternFromString("_truncated");
    S_NAN = PyUnicode_InternFromString("nan");
    S_INF = PyUnicode_InternFromString("inf");
    S_NINF = PyUnicode_InternFromString("-inf");
    S_EMPTY = PyUnicode_InternFromString("");
    if (!S_STACK_KEY || !S_TOO_DEEP_LIST || !S_TOO_DEEP_DICT || !S_TRUNCATED || !S_NAN || !S_INF || !S_NINF ||
        !S_EMPTY)
        return NULL;
    PyObject *m = PyModule_Create(&MODULE);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ATTRIBUTES", MAX_ATTRIBUTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ITEMS", MAX_ITEMS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_STRING", MAX_STRING) < 0 ||
        PyModule_AddIntConstant(m, "MAX_TEXT", MAX_TEXT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
