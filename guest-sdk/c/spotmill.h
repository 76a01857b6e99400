/*
 * Write Spotmill analyses in C.
 *
 * spotmill.c implements the WIT world `analysis` (wit/analysis.wit, bindings made at build
 * time by wit-bindgen's C generator) for an analysis whose partial result is a
 * string -> count table (sm_counts). The analysis defines three functions and nothing
 * else:
 *
 *   #include "spotmill.h"
 *
 *   bool spotmill_map(sm_counts *partial, const sm_submission *sub, sm_error *err) {
 *       sm_info info;
 *       if (!sm_parse_info(sub->json, sub->json_len, &info, err)) return false; // validate
 *       if (info.os.present && info.os.len > 0)                                  // then mutate
 *           sm_counts_add(partial, info.os.ptr, info.os.len, 1);
 *       else
 *           sm_counts_add(partial, "unknown", 7, 1);
 *       sm_info_free(&info);
 *       return true;
 *   }
 *   void spotmill_merge(sm_counts *into, const sm_counts *other) { sm_counts_add_all(into, other); }
 *   bool spotmill_publish(const sm_counts *partial, sm_files *files, sm_error *err) {
 *       return sm_files_add_counts_json(files, "os-distribution.json", partial, err);
 *   }
 *
 * Build: scripts/build-guests-c.sh (wit-bindgen c, zig cc for wasm32-wasi, wasm-tools).
 *
 * The contract, as the Rust SDK's (guest-sdk/):
 * - setup(params): `params` must be empty or valid JSON; then spotmill_setup (optional:
 *   a weak default accepts anything) is called. A call without `setup` does `setup("")`.
 * - map(batch): spotmill_map on each submission with the instance's partial. Returning
 *   false (with sm_error_set) makes the submission a record error, and **it must leave
 *   the partial unchanged**: validate and extract first, then mutate.
 * - flush(): the partial as compact JSON ({"key":count,...}), then a new empty one; the
 *   empty byte string if nothing was mapped since the previous flush.
 * - merge(partials): decodes each (empty = empty table), folds them with spotmill_merge,
 *   encodes the result; empty if every input is empty.
 * - publish(partial): decodes it and calls spotmill_publish; paths are checked.
 * Out of memory aborts (a trap: the host drops the instance), like a Rust panic.
 *
 * JSON: sm_parse_info is a small validating JSON scanner written for this SDK (no
 * third-party code): it checks the whole submission (UTF-8, syntax, strings, numbers; any
 * nesting, skipped without recursion) and decodes only what the Rust SDK decodes: the
 * top-level keys and `info`'s usual fields, with the same rules (lone surrogates rejected
 * there only, a repeated `ver`/`info`/`histograms`/`simpleMeasurements` rejected, numbers
 * out of f64 range rejected in `info`'s fields).
 */
#ifndef SPOTMILL_H
#define SPOTMILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A borrowed UTF-8 string (not NUL-terminated). */
typedef struct {
    const char *ptr;
    size_t len;
} sm_str;

/* One submission (see `submission` and `dimensions` in wit/analysis.wit). Borrowed:
 * valid during the spotmill_map call only. */
typedef struct {
    sm_str id;
    sm_str reason, app_name, channel, version, build_id, submission_date;
    const uint8_t *json;
    size_t json_len;
} sm_submission;

/* A record or call error message (owned by the SDK; set it with sm_error_set). */
typedef struct {
    char *msg;
} sm_error;

/* Sets the message (printf format). Returns false, for `return sm_error_set(...)`. */
bool sm_error_set(sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- Submissions -------------------------------------------------------------------- */

/* A field's text: a string as it is, a number or boolean as its text (as Rust prints
 * it), absent when missing or null (`present` false, `ptr` NULL). NUL-terminated too. */
typedef struct {
    char *ptr;
    size_t len;
    bool present;
} sm_text;

/* The usual fields of a submission's `info` (the Rust SDK's telemetry::Info). */
typedef struct {
    sm_text os, version, arch, app_name, app_version, app_build_id, app_update_channel,
        reason, platform_build_id, locale;
} sm_info;

/* Parses a submission: the top level must be a JSON object, its `info` (if present and
 * not null) an object whose usual fields are strings, numbers, booleans or null. Fills
 * `info` (free it with sm_info_free) or returns false with `err` set. */
bool sm_parse_info(const uint8_t *json, size_t len, sm_info *info, sm_error *err);
void sm_info_free(sm_info *info);

/* Whether `json` is one valid JSON value (surrounding whitespace allowed). */
bool sm_json_valid(const uint8_t *json, size_t len, sm_error *err);

/* --- The partial: a string -> count table, keys kept in byte order ----------------- */

typedef struct {
    char *key; /* NUL-terminated too */
    size_t len;
    uint64_t count;
} sm_count;

typedef struct {
    sm_count *items; /* sorted by key bytes */
    size_t len, cap;
} sm_counts;

/* Adds `n` to `key` (inserted at 0). Always true (out of memory aborts). */
bool sm_counts_add(sm_counts *counts, const char *key, size_t len, uint64_t n);
/* Adds every count of `other` to `into`. */
void sm_counts_add_all(sm_counts *into, const sm_counts *other);
void sm_counts_clear(sm_counts *counts);

/* --- Output files ------------------------------------------------------------------- */

typedef struct {
    char *path;
    uint8_t *contents;
    size_t len;
} sm_file;

typedef struct {
    sm_file *items;
    size_t len, cap;
} sm_files;

/* Adds a file; takes ownership of `contents` (malloc'd). */
void sm_files_add(sm_files *files, const char *path, uint8_t *contents, size_t len);
/* Adds `counts` as a pretty JSON object (keys sorted, 2-space indent, final newline):
 * the bytes the Rust SDK's json_file writes for a BTreeMap<String, u64>. */
bool sm_files_add_counts_json(sm_files *files, const char *path, const sm_counts *counts,
                              sm_error *err);

/* --- What the analysis defines ------------------------------------------------------ */

/* Optional (weak default: accepts anything). `params` is the job's JSON ("" if none). */
bool spotmill_setup(sm_str params, sm_error *err);
bool spotmill_map(sm_counts *partial, const sm_submission *sub, sm_error *err);
void spotmill_merge(sm_counts *into, const sm_counts *other);
bool spotmill_publish(const sm_counts *partial, sm_files *files, sm_error *err);

#ifdef __cplusplus
}
#endif

#endif
