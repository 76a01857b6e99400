"""Counts submissions per operating system (`info.OS`) and publishes
`os-distribution.json`: a JSON object OS -> count, keys sorted, pretty-printed.
The Python twin of analyses/os-distribution (same output bytes on the same data).

A submission without `info.OS` (missing, `null` or empty) counts as "unknown".
A submission that is not a JSON object, or whose `info` is malformed, is a record error.
"""

import spotmill

UNKNOWN = "unknown"


class OsDistribution(spotmill.Analysis):
    def map(self, sub, partial):
        os = spotmill.parse(sub.json).info["OS"] or UNKNOWN
        partial[os] = partial.get(os, 0) + 1

    def merge(self, into, other):
        for os, count in other.items():
            into[os] = into.get(os, 0) + count
        return into

    def publish(self, partial):
        return [spotmill.json_file("os-distribution.json", partial, sort_keys=True)]


Mapper, Reducer = spotmill.export(OsDistribution)
