/*
 * Counts submissions per operating system (`info.OS`) and publishes
 * `os-distribution.json`: a JSON object OS -> count, keys sorted, pretty-printed.
 * The C twin of analyses/os-distribution (same output bytes on the same data).
 *
 * A submission without `info.OS` (missing, null or empty) counts as "unknown".
 * A submission that is not a JSON object, or whose `info` is malformed, is a record error.
 */
#include "spotmill.h"

#define UNKNOWN "unknown"

bool spotmill_map(sm_counts *partial, const sm_submission *sub, sm_error *err) {
    sm_info info;
    if (!sm_parse_info(sub->json, sub->json_len, &info, err)) return false;
    if (info.os.present && info.os.len > 0) sm_counts_add(partial, info.os.ptr, info.os.len, 1);
    else sm_counts_add(partial, UNKNOWN, sizeof UNKNOWN - 1, 1);
    sm_info_free(&info);
    return true;
}

void spotmill_merge(sm_counts *into, const sm_counts *other) { sm_counts_add_all(into, other); }

bool spotmill_publish(const sm_counts *partial, sm_files *files, sm_error *err) {
    return sm_files_add_counts_json(files, "os-distribution.json", partial, err);
}
