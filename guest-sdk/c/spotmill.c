/*
 * The Spotmill C SDK: JSON scanning, the counts partial, output files, and the WIT
 * exports (wit-bindgen's C bindings of the world `analysis`, generated at build time into
 * analysis.h / analysis.c by scripts/build-guests-c.sh). See spotmill.h.
 */
#include "spotmill.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"

/* --- Memory and errors -------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort(); /* out of memory: a trap, the host drops the instance */
    return q;
}

static char *xstrndup(const char *s, size_t n) {
    char *p = xrealloc(NULL, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

bool sm_error_set(sm_error *err, const char *fmt, ...) {
    if (!err) return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(err->msg);
    err->msg = xrealloc(NULL, (size_t)(n < 0 ? 0 : n) + 1);
    va_start(ap, fmt);
    vsnprintf(err->msg, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap);
    va_end(ap);
    return false;
}

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} buf;

static void buf_reserve(buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + extra) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_put(buf *b, const void *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_putc(buf *b, char c) { buf_put(b, &c, 1); }
static void buf_puts(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* --- UTF-8 -------------------------------------------------------------------------- */

/* Strict UTF-8 (as Rust's str::from_utf8): no overlongs, no surrogates, <= U+10FFFF.
 * Returns the offset of the first invalid byte, or `len`. */
static size_t utf8_valid_up_to(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) n = 2, lo = 0xA0;
        else if (c == 0xED) n = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) n = 2;
        else if (c == 0xF0) n = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else if (c == 0xF4) n = 3, hi = 0x8F;
        else return i;
        if (i + n >= len) return i; /* truncated */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += n + 1;
    }
    return len;
}

/* --- The JSON scanner ----------------------------------------------------------------- */

typedef struct {
    const uint8_t *start, *p, *end;
    const char *what; /* why it failed */
} jp;

static bool jfail(jp *j, const char *what) {
    j->what = what;
    return false;
}

static size_t joffset(const jp *j) { return (size_t)(j->p - j->start); }

static void jws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jlit(jp *j, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return jfail(j, "expected a value");
    j->p += n;
    return true;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool jhex4(jp *j, unsigned *out) {
    if (j->end - j->p < 4) return jfail(j, "EOF in a \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(j->p[k]);
        if (h < 0) return jfail(j, "invalid \\u escape");
        v = v << 4 | (unsigned)h;
    }
    j->p += 4;
    *out = v;
    return true;
}

static void put_utf8(buf *b, unsigned cp) {
    char t[4];
    size_t n;
    if (cp < 0x80) t[0] = (char)cp, n = 1;
    else if (cp < 0x800) t[0] = (char)(0xC0 | cp >> 6), t[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        t[0] = (char)(0xE0 | cp >> 12), t[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
        t[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        t[0] = (char)(0xF0 | cp >> 18), t[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
        t[2] = (char)(0x80 | (cp >> 6 & 0x3F)), t[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    buf_put(b, t, n);
}

/* A string at j->p (the opening quote). With `out`, decodes it there and rejects lone
 * surrogates (as serde_json does for strings it decodes); without, only checks it (as
 * serde_json does for the values it skips). The input is valid UTF-8 already. */
static bool jstring(jp *j, buf *out) {
    j->p++; /* '"' */
    for (;;) {
        const uint8_t *run = j->p;
        while (j->p < j->end && *j->p != '"' && *j->p != '\\' && *j->p >= 0x20) j->p++;
        if (out) buf_put(out, run, (size_t)(j->p - run));
        if (j->p >= j->end) return jfail(j, "EOF while parsing a string");
        uint8_t c = *j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20) return jfail(j, "control character in a string");
        /* an escape */
        j->p++;
        if (j->p >= j->end) return jfail(j, "EOF while parsing a string");
        c = *j->p++;
        char e;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!jhex4(j, &cp)) return false;
            if (!out) continue;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return jfail(j, "lone trailing surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return jfail(j, "lone leading surrogate in a \\u escape");
                j->p += 2;
                if (!jhex4(j, &lo)) return false;
                if (lo < 0xDC00 || lo > 0xDFFF) return jfail(j, "lone leading surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(out, cp);
            continue;
        }
        default:
            return jfail(j, "invalid escape");
        }
        if (out) buf_putc(out, e);
    }
}

/* A number at j->p: its token, and whether it is an integer (no fraction, no exponent). */
static bool jnumber(jp *j, const uint8_t **tok, size_t *len, bool *is_int) {
    const uint8_t *s = j->p;
    *is_int = true;
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end) return jfail(j, "invalid number");
    if (*j->p == '0') j->p++;
    else if (*j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    else return jfail(j, "invalid number");
    if (j->p < j->end && *j->p == '.') {
        *is_int = false;
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "invalid number");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        *is_int = false;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "invalid number");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    *tok = s;
    *len = (size_t)(j->p - s);
    return true;
}

/* A key and its colon at j->p, with the whitespace after. */
static bool jkey(jp *j) {
    if (j->p >= j->end || *j->p != '"') return jfail(j, "expected a key");
    if (!jstring(j, NULL)) return false;
    jws(j);
    if (j->p >= j->end || *j->p != ':') return jfail(j, "expected ':'");
    j->p++;
    jws(j);
    return true;
}

/* Checks and skips any value at j->p. Iterative, with the open brackets on the heap: like
 * serde_json skipping a value, it has no nesting limit. */
static bool jvalue(jp *j) {
    buf open = {0};
    bool ok = false;
    for (;;) {
        /* at a value */
        if (j->p >= j->end) {
            jfail(j, "EOF while parsing a value");
            goto out;
        }
        const uint8_t *tok;
        size_t len;
        bool is_int, scalar_ok;
        uint8_t c = *j->p;
        if (c == '{' || c == '[') {
            j->p++;
            jws(j);
            if (j->p < j->end && *j->p == (c == '{' ? '}' : ']')) {
                j->p++;
            } else {
                buf_putc(&open, (char)c);
                if (c == '{' && !jkey(j)) goto out;
                continue;
            }
        } else {
            switch (c) {
            case '"': scalar_ok = jstring(j, NULL); break;
            case 't': scalar_ok = jlit(j, "true"); break;
            case 'f': scalar_ok = jlit(j, "false"); break;
            case 'n': scalar_ok = jlit(j, "null"); break;
            default: scalar_ok = jnumber(j, &tok, &len, &is_int);
            }
            if (!scalar_ok) goto out;
        }
        /* after a value: close what it ends, up to a ',' (next value) or the end */
        for (;;) {
            if (open.len == 0) {
                ok = true;
                goto out;
            }
            jws(j);
            char top = open.p[open.len - 1];
            if (j->p >= j->end) {
                jfail(j, "EOF in an object or array");
                goto out;
            }
            if (*j->p == ',') {
                j->p++;
                jws(j);
                if (top == '{' && !jkey(j)) goto out;
                break;
            }
            if (*j->p == (top == '{' ? '}' : ']')) {
                j->p++;
                open.len--;
                continue;
            }
            jfail(j, top == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
            goto out;
        }
    }
out:
    free(open.p);
    return ok;
}

bool sm_json_valid(const uint8_t *json, size_t len, sm_error *err) {
    size_t bad = utf8_valid_up_to(json, len);
    if (bad < len) return sm_error_set(err, "not UTF-8 (invalid byte at %zu)", bad);
    jp j = {json, json, json + len, NULL};
    jws(&j);
    if (!jvalue(&j)) return sm_error_set(err, "%s at byte %zu", j.what, joffset(&j));
    jws(&j);
    if (j.p != j.end) return sm_error_set(err, "trailing characters at byte %zu", joffset(&j));
    return true;
}

/* --- Numbers as Rust prints them ------------------------------------------------------ */

/* Whether the digits `d` (n of them, no leading zero) are <= the decimal `max`. */
static bool digits_le(const uint8_t *d, size_t n, const char *max) {
    size_t m = strlen(max);
    if (n != m) return n < m;
    return memcmp(d, max, n) <= 0;
}

/* A double as Rust's f64 Display: shortest round-trip digits, no exponent. */
static void f64_text(buf *b, double x) {
    if (x == 0) {
        buf_puts(b, signbit(x) ? "-0" : "0");
        return;
    }
    char t[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(t, sizeof t, "%.*e", prec - 1, x);
        if (strtod(t, NULL) == x) break;
    }
    /* t: [-]d[.ddd]e[+-]xx */
    const char *s = t;
    if (*s == '-') buf_putc(b, '-'), s++;
    char digits[24];
    size_t nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    long exp = strtol(s + 1, NULL, 10);
    long point = 1 + exp; /* digits before the decimal point */
    if (point <= 0) {
        buf_puts(b, "0.");
        for (long k = 0; k < -point; k++) buf_putc(b, '0');
        buf_put(b, digits, nd);
    } else if ((size_t)point >= nd) {
        buf_put(b, digits, nd);
        for (size_t k = nd; k < (size_t)point; k++) buf_putc(b, '0');
    } else {
        buf_put(b, digits, (size_t)point);
        buf_putc(b, '.');
        buf_put(b, digits + point, nd - (size_t)point);
    }
}

/* A number token as the Rust SDK's text: integers that fit i64/u64 as they are, anything
 * else through f64. False if the number is out of f64 range (serde_json rejects it). */
static bool number_text(buf *b, const uint8_t *tok, size_t len, bool is_int) {
    if (is_int) {
        bool neg = tok[0] == '-';
        const uint8_t *d = tok + neg;
        size_t n = len - neg;
        if (n == 1 && d[0] == '0') {
            buf_putc(b, '0'); /* "-0" is the integer 0 */
            return true;
        }
        if (neg ? digits_le(d, n, "9223372036854775808") : digits_le(d, n, "18446744073709551615")) {
            buf_put(b, tok, len);
            return true;
        }
    }
    char *z = xstrndup((const char *)tok, len);
    double x = strtod(z, NULL);
    free(z);
    if (isinf(x)) return false;
    f64_text(b, x);
    return true;
}

/* --- Submissions ----------------------------------------------------------------------- */

static const char *const INFO_FIELDS[] = {
    "OS", "version", "arch", "appName", "appVersion", "appBuildID", "appUpdateChannel",
    "reason", "platformBuildID", "locale",
};

static sm_text *info_slot(sm_info *info, int k) {
    sm_text *slots[] = {
        &info->os, &info->version, &info->arch, &info->app_name, &info->app_version,
        &info->app_build_id, &info->app_update_channel, &info->reason,
        &info->platform_build_id, &info->locale,
    };
    return slots[k];
}

void sm_info_free(sm_info *info) {
    for (int k = 0; k < 10; k++) {
        free(info_slot(info, k)->ptr);
        *info_slot(info, k) = (sm_text){NULL, 0, false};
    }
}

static bool key_is(const buf *key, const char *name) {
    size_t n = strlen(name);
    return key->len == n && memcmp(key->p, name, n) == 0;
}

/* The `info` object at j->p ('{'): its usual fields into `info`. */
static bool parse_info_object(jp *j, sm_info *info, sm_error *err) {
    buf key = {0};
    bool ok = false;
    j->p++;
    jws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        ok = true;
        goto done;
    }
    for (;;) {
        if (j->p >= j->end || *j->p != '"') { jfail(j, "expected a key"); goto json; }
        key.len = 0;
        if (!jstring(j, &key)) goto json;
        jws(j);
        if (j->p >= j->end || *j->p != ':') { jfail(j, "expected ':'"); goto json; }
        j->p++;
        jws(j);
        int field = -1;
        for (int k = 0; k < 10; k++)
            if (key_is(&key, INFO_FIELDS[k])) field = k;
        if (field < 0) {
            if (!jvalue(j)) goto json;
        } else {
            sm_text *slot = info_slot(info, field);
            buf text = {0};
            bool present = true;
            if (j->p >= j->end) { jfail(j, "EOF while parsing a value"); goto json; }
            uint8_t c = *j->p;
            if (c == '"') {
                if (!jstring(j, &text)) { free(text.p); goto json; }
            } else if (c == 't' || c == 'f') {
                if (!jlit(j, c == 't' ? "true" : "false")) goto json;
                buf_puts(&text, c == 't' ? "true" : "false");
            } else if (c == 'n') {
                if (!jlit(j, "null")) goto json;
                present = false;
            } else if (c == '{' || c == '[') {
                sm_error_set(err, "submission's `info`: field `%s`: expected a string, a number, a boolean or null",
                             INFO_FIELDS[field]);
                goto done;
            } else {
                const uint8_t *tok;
                size_t len;
                bool is_int;
                if (!jnumber(j, &tok, &len, &is_int)) goto json;
                if (!number_text(&text, tok, len, is_int)) {
                    sm_error_set(err, "submission's `info`: field `%s`: number out of range", INFO_FIELDS[field]);
                    goto done;
                }
            }
            free(slot->ptr);
            if (present) {
                buf_putc(&text, 0);
                *slot = (sm_text){text.p, text.len - 1, true};
            } else {
                free(text.p);
                *slot = (sm_text){NULL, 0, false};
            }
        }
        jws(j);
        if (j->p >= j->end) { jfail(j, "EOF while parsing an object"); goto json; }
        if (*j->p == ',') {
            j->p++;
            jws(j);
            continue;
        }
        if (*j->p == '}') {
            j->p++;
            ok = true;
            goto done;
        }
        jfail(j, "expected ',' or '}'");
        goto json;
    }
json:
    sm_error_set(err, "submission is not valid JSON: %s at byte %zu", j->what, joffset(j));
done:
    free(key.p);
    return ok;
}

bool sm_parse_info(const uint8_t *json, size_t len, sm_info *info, sm_error *err) {
    memset(info, 0, sizeof *info);
    size_t bad = utf8_valid_up_to(json, len);
    if (bad < len) return sm_error_set(err, "submission is not UTF-8 (invalid byte at %zu)", bad);
    jp j = {json, json, json + len, NULL};
    jws(&j);
    if (j.p >= j.end || *j.p != '{') return sm_error_set(err, "submission is not a JSON object");

    /* The top level: the fields the Rust SDK names may appear once each. */
    static const char *const TOP[] = {"ver", "info", "histograms", "simpleMeasurements"};
    bool seen[4] = {false};
    bool info_not_object = false;
    buf key = {0};
    j.p++;
    jws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
        goto end;
    }
    for (;;) {
        if (j.p >= j.end || *j.p != '"') { jfail(&j, "expected a key"); goto json; }
        key.len = 0;
        if (!jstring(&j, &key)) goto json;
        jws(&j);
        if (j.p >= j.end || *j.p != ':') { jfail(&j, "expected ':'"); goto json; }
        j.p++;
        jws(&j);
        int top = -1;
        for (int k = 0; k < 4; k++)
            if (key_is(&key, TOP[k])) top = k;
        if (top >= 0) {
            if (seen[top]) {
                free(key.p);
                sm_info_free(info);
                return sm_error_set(err, "submission is not valid JSON: duplicate field `%s`", TOP[top]);
            }
            seen[top] = true;
        }
        if (top == 1 && j.p < j.end && *j.p == '{') {
            sm_info_free(info);
            if (!parse_info_object(&j, info, err)) {
                free(key.p);
                sm_info_free(info);
                return false;
            }
        } else {
            if (top == 1 && !(j.p < j.end && *j.p == 'n')) info_not_object = true;
            if (!jvalue(&j)) goto json;
        }
        jws(&j);
        if (j.p >= j.end) { jfail(&j, "EOF while parsing an object"); goto json; }
        if (*j.p == ',') {
            j.p++;
            jws(&j);
            continue;
        }
        if (*j.p == '}') {
            j.p++;
            break;
        }
        jfail(&j, "expected ',' or '}'");
        goto json;
    }
end:
    free(key.p);
    jws(&j);
    if (j.p != j.end) {
        sm_info_free(info);
        return sm_error_set(err, "submission is not valid JSON: trailing characters at byte %zu", joffset(&j));
    }
    if (info_not_object) {
        sm_info_free(info);
        return sm_error_set(err, "submission's `info` is not an object");
    }
    return true;
json:
    free(key.p);
    sm_info_free(info);
    return sm_error_set(err, "submission is not valid JSON: %s at byte %zu", j.what, joffset(&j));
}

/* --- The counts partial ------------------------------------------------------------------ */

static int key_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c) return c;
    return an < bn ? -1 : an > bn;
}

bool sm_counts_add(sm_counts *counts, const char *key, size_t len, uint64_t n) {
    size_t lo = 0, hi = counts->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(counts->items[mid].key, counts->items[mid].len, key, len);
        if (c == 0) {
            counts->items[mid].count += n;
            return true;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (counts->len == counts->cap) {
        counts->cap = counts->cap ? counts->cap * 2 : 8;
        counts->items = xrealloc(counts->items, counts->cap * sizeof *counts->items);
    }
    memmove(counts->items + lo + 1, counts->items + lo, (counts->len - lo) * sizeof *counts->items);
    counts->items[lo] = (sm_count){xstrndup(key, len), len, n};
    counts->len++;
    return true;
}

void sm_counts_add_all(sm_counts *into, const sm_counts *other) {
    for (size_t i = 0; i < other->len; i++)
        sm_counts_add(into, other->items[i].key, other->items[i].len, other->items[i].count);
}

void sm_counts_clear(sm_counts *counts) {
    for (size_t i = 0; i < counts->len; i++) free(counts->items[i].key);
    free(counts->items);
    *counts = (sm_counts){0};
}

/* A JSON string as serde_json writes it. */
static void put_json_string(buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        default:
            if (c < 0x20) {
                char t[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_put(b, t, 6);
            } else {
                buf_putc(b, (char)c);
            }
        }
    }
    buf_putc(b, '"');
}

static void put_u64(buf *b, uint64_t v) {
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    buf_put(b, t, (size_t)n);
}

/* {"key":count,...} (compact), or {\n  "key": count,\n ...\n}\n (pretty). */
static void counts_json(buf *b, const sm_counts *counts, bool pretty) {
    if (counts->len == 0) {
        buf_puts(b, "{}");
    } else {
        buf_putc(b, '{');
        for (size_t i = 0; i < counts->len; i++) {
            if (i) buf_putc(b, ',');
            if (pretty) buf_puts(b, "\n  ");
            put_json_string(b, counts->items[i].key, counts->items[i].len);
            buf_puts(b, pretty ? ": " : ":");
            put_u64(b, counts->items[i].count);
        }
        if (pretty) buf_putc(b, '\n');
        buf_putc(b, '}');
    }
    if (pretty) buf_putc(b, '\n');
}

/* Decodes a partial made by counts_json (compact) into `out` (added to). */
static bool counts_decode(const uint8_t *data, size_t len, sm_counts *out, sm_error *err) {
    size_t bad = utf8_valid_up_to(data, len);
    if (bad < len) return sm_error_set(err, "not a valid JSON partial: not UTF-8");
    jp j = {data, data, data + len, NULL};
    buf key = {0};
    jws(&j);
    if (j.p >= j.end || *j.p != '{') {
        jfail(&j, "expected an object");
        goto fail;
    }
    j.p++;
    jws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            if (j.p >= j.end || *j.p != '"') { jfail(&j, "expected a key"); goto fail; }
            key.len = 0;
            if (!jstring(&j, &key)) goto fail;
            jws(&j);
            if (j.p >= j.end || *j.p != ':') { jfail(&j, "expected ':'"); goto fail; }
            j.p++;
            jws(&j);
            const uint8_t *tok;
            size_t n;
            bool is_int;
            if (j.p >= j.end || *j.p == '-' || !jnumber(&j, &tok, &n, &is_int) || !is_int ||
                !digits_le(tok, n, "18446744073709551615")) {
                jfail(&j, "expected a count (an integer >= 0)");
                goto fail;
            }
            uint64_t v = 0;
            for (size_t k = 0; k < n; k++) v = v * 10 + (uint64_t)(tok[k] - '0');
            sm_counts_add(out, key.p ? key.p : "", key.len, v);
            jws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                jws(&j);
                continue;
            }
            if (j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            jfail(&j, "expected ',' or '}'");
            goto fail;
        }
    }
    jws(&j);
    if (j.p != j.end) {
        jfail(&j, "trailing characters");
        goto fail;
    }
    free(key.p);
    return true;
fail:
    free(key.p);
    return sm_error_set(err, "not a valid JSON partial: %s at byte %zu", j.what, joffset(&j));
}

/* --- Output files ---------------------------------------------------------------------- */

void sm_files_add(sm_files *files, const char *path, uint8_t *contents, size_t len) {
    if (files->len == files->cap) {
        files->cap = files->cap ? files->cap * 2 : 4;
        files->items = xrealloc(files->items, files->cap * sizeof *files->items);
    }
    files->items[files->len++] = (sm_file){xstrndup(path, strlen(path)), contents, len};
}

bool sm_files_add_counts_json(sm_files *files, const char *path, const sm_counts *counts,
                              sm_error *err) {
    (void)err;
    buf b = {0};
    counts_json(&b, counts, true);
    sm_files_add(files, path, (uint8_t *)b.p, b.len);
    return true;
}

static void files_clear(sm_files *files) {
    for (size_t i = 0; i < files->len; i++) {
        free(files->items[i].path);
        free(files->items[i].contents);
    }
    free(files->items);
    *files = (sm_files){0};
}

static bool check_output_path(const char *path, sm_error *err) {
    size_t n = strlen(path);
    bool bad = n == 0 || path[0] == '/' || strchr(path, '\\') != NULL;
    for (const char *seg = path; !bad;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            bad = true;
        if (!slash) break;
        seg = slash + 1;
    }
    if (bad)
        return sm_error_set(err,
                            "invalid output path \"%s\": must be relative, `/`-separated, without "
                            "empty, `.` or `..` segments",
                            path);
    return true;
}

/* --- The WIT exports --------------------------------------------------------------------- */

__attribute__((weak)) bool spotmill_setup(sm_str params, sm_error *err) {
    (void)params;
    (void)err;
    return true;
}

/* A side's state: 0 before setup, 1 ready, -1 setup failed (with `error`). */
typedef struct {
    int state;
    char *error;
} side;

static side mapper_side, reducer_side;
static sm_counts mapper_partial;
static bool mapper_dirty;

static void set_string(analysis_string_t *s, const char *text) {
    size_t n = strlen(text);
    s->ptr = (uint8_t *)xstrndup(text, n);
    s->len = n;
}

/* Runs setup for a side. False with `*msg` (malloc'd) on failure. */
static bool side_setup(side *sd, const uint8_t *params, size_t len, bool implicit) {
    sm_error err = {0};
    free(sd->error);
    sd->error = NULL;
    bool blank = true;
    for (size_t i = 0; i < len; i++)
        if (params[i] != ' ' && params[i] != '\t' && params[i] != '\n' && params[i] != '\r') blank = false;
    bool ok = true;
    if (!blank && !sm_json_valid(params, len, &err)) {
        char *m = err.msg;
        err.msg = NULL;
        sm_error_set(&err, "the job's params are not valid JSON: %s", m);
        free(m);
        ok = false;
    }
    if (ok) ok = spotmill_setup((sm_str){(const char *)params, len}, &err);
    if (ok) {
        sd->state = 1;
    } else {
        const char *m = err.msg ? err.msg : "setup failed";
        sm_error e2 = {0};
        if (implicit) sm_error_set(&e2, "implicit setup(\"\") failed: %s", m);
        else sm_error_set(&e2, "%s", m);
        sd->error = e2.msg;
        sd->state = -1;
    }
    free(err.msg);
    return ok;
}

/* Implicit setup; false (with `err` set) if the side's setup failed. */
static bool side_get(side *sd, analysis_string_t *err) {
    if (sd->state == 0) side_setup(sd, (const uint8_t *)"", 0, true);
    if (sd->state < 0) {
        sm_error e = {0};
        sm_error_set(&e, "setup failed: %s", sd->error);
        err->ptr = (uint8_t *)e.msg;
        err->len = strlen(e.msg);
        return false;
    }
    return true;
}

bool exports_spotmill_analysis_mapper_setup(analysis_string_t *params, analysis_string_t *err) {
    sm_counts_clear(&mapper_partial);
    mapper_dirty = false;
    bool ok = side_setup(&mapper_side, params->ptr, params->len, false);
    if (!ok) set_string(err, mapper_side.error);
    analysis_string_free(params);
    return ok;
}

static sm_str str_of(const analysis_string_t *s) { return (sm_str){(const char *)s->ptr, s->len}; }

void exports_spotmill_analysis_mapper_map(exports_spotmill_analysis_mapper_list_submission_t *batch,
                                          exports_spotmill_analysis_mapper_list_record_error_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    size_t cap = 0;
    analysis_string_t setup_err = {0};
    bool ready = side_get(&mapper_side, &setup_err);
    size_t failed = 0;
    for (size_t i = 0; i < batch->len; i++) {
        sm_error err = {0};
        bool ok;
        if (ready) {
            const spotmill_analysis_types_submission_t *s = &batch->ptr[i];
            sm_submission sub = {
                str_of(&s->id),
                str_of(&s->dimensions.reason),
                str_of(&s->dimensions.app_name),
                str_of(&s->dimensions.channel),
                str_of(&s->dimensions.version),
                str_of(&s->dimensions.build_id),
                str_of(&s->dimensions.submission_date),
                s->json.ptr,
                s->json.len,
            };
            ok = spotmill_map(&mapper_partial, &sub, &err);
            if (!ok && !err.msg) sm_error_set(&err, "rejected");
        } else {
            ok = false;
            sm_error_set(&err, "%.*s", (int)setup_err.len, (const char *)setup_err.ptr);
        }
        if (ok) continue;
        failed++;
        if (ret->len == cap) {
            cap = cap ? cap * 2 : 8;
            ret->ptr = xrealloc(ret->ptr, cap * sizeof *ret->ptr);
        }
        ret->ptr[ret->len].index = (uint32_t)i;
        ret->ptr[ret->len].message.ptr = (uint8_t *)err.msg;
        ret->ptr[ret->len].message.len = strlen(err.msg);
        ret->len++;
    }
    if (failed < batch->len) mapper_dirty = true;
    analysis_string_free(&setup_err);
    exports_spotmill_analysis_mapper_list_submission_free(batch);
}

bool exports_spotmill_analysis_mapper_flush(analysis_list_u8_t *ret, analysis_string_t *err) {
    if (!side_get(&mapper_side, err)) return false;
    ret->ptr = NULL;
    ret->len = 0;
    if (mapper_dirty) {
        buf b = {0};
        counts_json(&b, &mapper_partial, false);
        ret->ptr = (uint8_t *)b.p;
        ret->len = b.len;
    }
    sm_counts_clear(&mapper_partial);
    mapper_dirty = false;
    return true;
}

bool exports_spotmill_analysis_reducer_setup(analysis_string_t *params, analysis_string_t *err) {
    bool ok = side_setup(&reducer_side, params->ptr, params->len, false);
    if (!ok) set_string(err, reducer_side.error);
    analysis_string_free(params);
    return ok;
}

bool exports_spotmill_analysis_reducer_merge(analysis_list_list_u8_t *partials, analysis_list_u8_t *ret,
                                             analysis_string_t *err) {
    bool ok = side_get(&reducer_side, err);
    ret->ptr = NULL;
    ret->len = 0;
    bool all_empty = true;
    for (size_t i = 0; i < partials->len; i++)
        if (partials->ptr[i].len) all_empty = false;
    if (ok && !all_empty) {
        sm_counts acc = {0};
        for (size_t i = 0; ok && i < partials->len; i++) {
            sm_counts one = {0};
            sm_error e = {0};
            if (partials->ptr[i].len && !counts_decode(partials->ptr[i].ptr, partials->ptr[i].len, &one, &e)) {
                sm_error e2 = {0};
                sm_error_set(&e2, "partial %zu (of %zu): %s", i, partials->len, e.msg);
                err->ptr = (uint8_t *)e2.msg;
                err->len = strlen(e2.msg);
                ok = false;
            } else {
                spotmill_merge(&acc, &one);
            }
            free(e.msg);
            sm_counts_clear(&one);
        }
        if (ok) {
            buf b = {0};
            counts_json(&b, &acc, false);
            ret->ptr = (uint8_t *)b.p;
            ret->len = b.len;
        }
        sm_counts_clear(&acc);
    }
    analysis_list_list_u8_free(partials);
    return ok;
}

bool exports_spotmill_analysis_reducer_publish(analysis_list_u8_t *partial,
                                               exports_spotmill_analysis_reducer_list_output_file_t *ret,
                                               analysis_string_t *err) {
    sm_counts value = {0};
    sm_files files = {0};
    sm_error e = {0};
    bool ok = true;
    if (partial->len && !counts_decode(partial->ptr, partial->len, &value, &e)) {
        sm_error e2 = {0};
        sm_error_set(&e2, "the final partial: %s", e.msg);
        free(e.msg);
        e.msg = e2.msg;
        ok = false;
    }
    if (ok && !side_get(&reducer_side, err)) {
        ok = false;
    } else if (ok) {
        ok = spotmill_publish(&value, &files, &e);
        if (!ok && !e.msg) sm_error_set(&e, "publish failed");
        for (size_t i = 0; ok && i < files.len; i++) ok = check_output_path(files.items[i].path, &e);
    }
    if (ok) {
        ret->len = files.len;
        ret->ptr = xrealloc(NULL, files.len * sizeof *ret->ptr);
        for (size_t i = 0; i < files.len; i++) {
            ret->ptr[i].path.ptr = (uint8_t *)files.items[i].path;
            ret->ptr[i].path.len = strlen(files.items[i].path);
            ret->ptr[i].contents.ptr = files.items[i].contents;
            ret->ptr[i].contents.len = files.items[i].len;
        }
        free(files.items); /* the paths and contents now belong to `ret` */
    } else {
        if (e.msg) {
            err->ptr = (uint8_t *)e.msg;
            err->len = strlen(e.msg);
        }
        files_clear(&files);
    }
    sm_counts_clear(&value);
    analysis_list_u8_free(partial);
    return ok;
}
