// Counts submissions per operating system (`info.OS`) and publishes
// `os-distribution.json`: a JSON object OS -> count, keys sorted, pretty-printed.
// The JavaScript twin of analyses/os-distribution (same output bytes on the same data).
//
// A submission without `info.OS` (missing, null or empty) counts as "unknown".
// A submission that is not a JSON object, or whose `info` is malformed, is a record error.

import { exportAnalysis, jsonFile, parse } from "./spotmill.js";

const UNKNOWN = "unknown";

export const { mapper, reducer } = exportAnalysis({
  map(sub, partial) {
    const os = parse(sub.json).info.OS || UNKNOWN;
    partial[os] = (partial[os] ?? 0) + 1;
  },
  merge(into, other) {
    for (const [os, count] of Object.entries(other)) into[os] = (into[os] ?? 0) + count;
    return into;
  },
  publish(partial) {
    return [jsonFile("os-distribution.json", partial, { sortKeys: true })];
  },
});
