// The dashboard's arithmetic, pure (no DOM, no I/O) so node:test can check it on known
// histograms (web/test/stats.test.js).
//
// Published rows (analyses/dashboard/src/publish.rs) are
//   [bucket counts..., sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi,
//    submissions, filter id]
// with -1 for a statistic that no contribution carried. Rows are summed the way the
// analysis merges them: counts and submissions add up, and a statistic adds up over the
// rows that carry it (absent + absent = absent, absent + x = x).
//
// What the statistics mean and what is computed from them (shown in the page as well):
// - count N: the number of samples, the sum of the bucket counts (not the submissions).
// - mean: sum / N, exact whenever `sum` is known.
// - linear, enumerated, boolean, flag: Firefox keeps the 64-bit sum of squares, published
//   as sum_squares_lo + sum_squares_hi * 2^32, so the (population) standard deviation is
//   exact: sqrt(sumSq / N - mean^2).
// - exponential: Firefox keeps log_sum = Σ ln(1 + x) and log_sum_squares = Σ ln(1 + x)^2
//   instead (only for definitions with extended_statistics_ok; otherwise both stay 0).
//   They give exactly the mean μ and standard deviation σ of ln(1 + x): the geometric mean
//   of (1 + x) is e^μ (shown as e^μ - 1, in the histogram's unit) and its geometric
//   standard deviation (a factor) is e^σ. The standard deviation of x itself cannot be
//   derived from them: it is estimated from the buckets (below) and flagged as such.
//   (telemetry-dashboard divided the log sums by the submission count: that is only right
//   when every submission carries exactly one sample.)
// - whenever the needed statistics are absent (-1), the mean and standard deviation are
//   estimated from bucket representatives: the bucket's middle [(lower + upper) / 2] for
//   linear and exponential histograms, the value itself (the lower bound) for enumerated,
//   boolean and flag ones, whose buckets hold a single value each.
// - percentiles (5, 25, 50, 75, 95): linear interpolation within the bucket holding the
//   percentile, as telemetry-dashboard's first version did; the last bucket's upper bound
//   is estimated as telemetry-dashboard did (last + (last - previous) for linear kinds,
//   last * last / previous for exponential ones).

/** Offsets of the five statistics after the buckets. */
export const SUM = 0;
export const LOG_SUM = 1;
export const LOG_SUM_SQUARES = 2;
export const SUM_SQUARES_LO = 3;
export const SUM_SQUARES_HI = 4;
/** Values after the buckets in a row: 5 statistics, submissions, filter id. */
export const TRAILER = 7;

/** Symbolic sizes some definitions use (guest-sdk/histograms/src/lib.rs KNOWN_CONSTANTS). */
const KNOWN_CONSTANTS = new Map([
  ['JS::gcreason::NUM_TELEMETRY_REASONS', 101],
  ['mozilla::StartupTimeline::MAX_EVENT_ID', 12],
]);

/**
 * A definition's number: a JSON number or a string holding a sum of products of integers
 * or known constants ("32 * 1024", "80 + 1"), as histogram_tools.py evaluates them.
 * Returns null when it is not one.
 */
export function evalNumber(v) {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  let sum = 0;
  for (const term of v.split('+')) {
    let product = 1;
    for (const raw of term.split('*')) {
      const factor = raw.trim();
      let value;
      if (/^[0-9]+$/.test(factor)) value = Number(factor);
      else if (KNOWN_CONSTANTS.has(factor)) value = KNOWN_CONSTANTS.get(factor);
      else return null;
      product *= value;
    }
    sum += product;
  }
  return Number.isSafeInteger(sum) ? sum : null;
}

/**
 * The bucket parameters of a definition from histograms.json (as given), the way
 * histogram_tools.py derives them: flag and boolean 1, 2, 3 buckets; enumerated 1,
 * n_values, n_values + 1; linear and exponential low (default 1), high, n_buckets.
 * Throws on a definition the bucket algorithms cannot handle.
 */
export function parseDefinition(def) {
  if (def === null || typeof def !== 'object') throw new Error('definition is not an object');
  const kind = def.kind;
  let low;
  let high;
  let nBuckets;
  const need = (key) => {
    const v = evalNumber(def[key]);
    if (v === null) throw new Error(`${key} ${JSON.stringify(def[key])} is not a number`);
    return v;
  };
  switch (kind) {
    case 'flag':
    case 'boolean':
      [low, high, nBuckets] = [1, 2, 3];
      break;
    case 'enumerated': {
      const n = need('n_values');
      [low, high, nBuckets] = [1, n, n + 1];
      break;
    }
    case 'linear':
    case 'exponential':
      low = def.low === undefined ? 1 : need('low');
      high = need('high');
      nBuckets = need('n_buckets');
      break;
    default:
      throw new Error(`unknown kind ${JSON.stringify(kind)}`);
  }
  if (low < 1 || high <= low) throw new Error(`needs 1 <= low < high, got ${low}..${high}`);
  if (nBuckets < 3 || nBuckets > 10000) throw new Error(`n_buckets ${nBuckets} out of 3..=10000`);
  return {
    kind,
    low,
    high,
    nBuckets,
    extendedStatisticsOk: def.extended_statistics_ok === true,
    description: typeof def.description === 'string' ? def.description : '',
  };
}

/** histogram_tools.py linear_buckets: bucket i starts at int((dmin*(n-1-i) + dmax*(i-1)) / (n-2) + 0.5). */
function linearBuckets(low, high, n) {
  const out = new Array(n).fill(0);
  for (let i = 1; i < n; i++) {
    const range = (low * (n - 1 - i) + high * (i - 1)) / (n - 2);
    out[i] = Math.trunc(range + 0.5);
  }
  return out;
}

/** histogram_tools.py exponential_buckets: the remaining log range split evenly, rounded, at least +1. */
function exponentialBuckets(low, high, n) {
  const logMax = Math.log(high);
  const out = new Array(n).fill(0);
  let current = low;
  out[1] = current;
  for (let index = 2; index < n; index++) {
    const logCurrent = Math.log(current);
    const logRatio = (logMax - logCurrent) / (n - index);
    const next = Math.floor(Math.exp(logCurrent + logRatio) + 0.5);
    current = next > current ? next : current + 1;
    out[index] = current;
  }
  return out;
}

/** The lower bound of every bucket (n_buckets values, the first 0), as Firefox computes them. */
export function bucketBoundaries(def) {
  return def.kind === 'exponential'
    ? exponentialBuckets(def.low, def.high, def.nBuckets)
    : linearBuckets(def.low, def.high, def.nBuckets);
}

/** Enumerated, boolean and flag buckets each hold one value (their lower bound). */
export function isCategorical(kind) {
  return kind === 'flag' || kind === 'boolean' || kind === 'enumerated';
}

/** The upper bound of every bucket: the next lower bound, the last one estimated. */
export function upperBounds(bounds, kind) {
  const n = bounds.length;
  const last = bounds[n - 1];
  const prev = bounds[n - 2];
  const lastUpper = kind === 'exponential' ? (last * last) / prev : last + (last - prev);
  return bounds.map((_, i) => (i + 1 < n ? bounds[i + 1] : lastUpper));
}

/** One bucket's representative value, for the estimates from buckets. */
function representatives(bounds, kind) {
  if (isCategorical(kind)) return bounds.slice();
  const uppers = upperBounds(bounds, kind);
  return bounds.map((lo, i) => (lo + uppers[i]) / 2);
}

/**
 * Sums the rows whose filter id is in [lo, hi] (a subtree of the filter tree: ids number
 * the nodes in pre-order, so a node's subtree is a contiguous range) and whose bucket
 * count is `nBuckets`. Rows of another layout (a definition that changed between builds)
 * cannot be labelled with these buckets: they are counted in `skippedRows` /
 * `skippedSubmissions` and left out.
 */
export function aggregate(rowLists, nBuckets, lo = 0, hi = Infinity) {
  const buckets = new Float64Array(nBuckets);
  const stats = [null, null, null, null, null];
  let submissions = 0;
  let rows = 0;
  let skippedRows = 0;
  let skippedSubmissions = 0;
  for (const list of rowLists) {
    for (const row of list) {
      const id = row[row.length - 1];
      if (id < lo || id > hi) continue;
      if (row.length - TRAILER !== nBuckets) {
        skippedRows += 1;
        skippedSubmissions += row[row.length - 2];
        continue;
      }
      for (let i = 0; i < nBuckets; i++) buckets[i] += row[i];
      for (let s = 0; s < 5; s++) {
        const v = row[nBuckets + s];
        if (v !== -1) stats[s] = (stats[s] ?? 0) + v;
      }
      submissions += row[nBuckets + 5];
      rows += 1;
    }
  }
  return { buckets, stats, submissions, rows, skippedRows, skippedSubmissions };
}

/**
 * The value below which `p` percent of the samples fall, interpolated linearly within
 * the bucket that holds it. null for an empty histogram.
 */
export function percentile(buckets, bounds, kind, p) {
  let total = 0;
  for (const c of buckets) total += c;
  if (total <= 0) return null;
  const uppers = upperBounds(bounds, kind);
  const target = (total * p) / 100;
  let before = 0;
  let last = -1;
  for (let i = 0; i < buckets.length; i++) {
    const c = buckets[i];
    if (c <= 0) continue;
    last = i;
    if (before + c >= target) {
      const fraction = Math.min(1, Math.max(0, (target - before) / c));
      return bounds[i] + (uppers[i] - bounds[i]) * fraction;
    }
    before += c;
  }
  return uppers[last]; // rounding: p = 100 past the last non-empty bucket
}

/** Mean and (population) standard deviation estimated from bucket representatives. */
export function bucketEstimates(buckets, bounds, kind) {
  const reps = representatives(bounds, kind);
  let n = 0;
  let s1 = 0;
  for (let i = 0; i < buckets.length; i++) {
    n += buckets[i];
    s1 += buckets[i] * reps[i];
  }
  if (n <= 0) return { mean: null, sd: null };
  const mean = s1 / n;
  let s2 = 0;
  for (let i = 0; i < buckets.length; i++) s2 += buckets[i] * (reps[i] - mean) ** 2;
  return { mean, sd: Math.sqrt(s2 / n) };
}

/**
 * Everything the page shows for one aggregate (see the header comment).
 * `agg` comes from aggregate(); `def` from parseDefinition(); `bounds` from bucketBoundaries().
 */
export function summarize(agg, def, bounds) {
  const { buckets, stats } = agg;
  let count = 0;
  for (const c of buckets) count += c;
  const out = {
    kind: def.kind,
    submissions: agg.submissions,
    count,
    mean: null,
    meanMethod: null, // 'sum' | 'buckets'
    sd: null,
    sdMethod: null, // 'sum-of-squares' | 'buckets'
    geometricMean: null,
    geometricSdFactor: null,
    median: null,
    p5: null,
    p25: null,
    p75: null,
    p95: null,
    notes: [],
  };
  if (count <= 0) {
    out.notes.push('No samples for this selection.');
    return out;
  }
  for (const [key, p] of [['p5', 5], ['p25', 25], ['median', 50], ['p75', 75], ['p95', 95]]) {
    out[key] = percentile(buckets, bounds, def.kind, p);
  }
  const estimate = bucketEstimates(buckets, bounds, def.kind);
  const sum = stats[SUM];
  if (sum !== null) {
    out.mean = sum / count;
    out.meanMethod = 'sum';
  } else {
    out.mean = estimate.mean;
    out.meanMethod = 'buckets';
    out.notes.push('The sum is absent (-1): the mean is estimated from bucket midpoints.');
  }
  if (def.kind === 'exponential') {
    const logSum = stats[LOG_SUM];
    const logSumSquares = stats[LOG_SUM_SQUARES];
    // Any sample >= 1 (every bucket but the first) makes Σ ln(1 + x) > 0: a zero log sum
    // then means that Firefox did not collect the log sums (no extended_statistics_ok).
    let positive = false;
    for (let i = 1; i < buckets.length; i++) if (buckets[i] > 0) positive = true;
    const collected = logSum !== null && logSumSquares !== null && !(positive && logSum === 0);
    if (collected) {
      const mu = logSum / count;
      const sigma = Math.sqrt(Math.max(0, logSumSquares / count - mu * mu));
      out.geometricMean = Math.exp(mu) - 1;
      out.geometricSdFactor = Math.exp(sigma);
    } else {
      out.notes.push('No log sums (Firefox collects them only for extended_statistics_ok histograms): no geometric mean or geometric standard deviation.');
    }
    out.sd = estimate.sd;
    out.sdMethod = 'buckets';
    out.notes.push('Exponential histograms carry Σln(1+x) and Σln²(1+x), not Σx²: the standard deviation is estimated from bucket midpoints; the geometric mean and standard deviation of (1+x) are exact.');
  } else {
    const lo = stats[SUM_SQUARES_LO];
    const hi = stats[SUM_SQUARES_HI];
    if (sum !== null && lo !== null && hi !== null) {
      const sumSquares = lo + hi * 4294967296;
      const mean = sum / count;
      out.sd = Math.sqrt(Math.max(0, sumSquares / count - mean * mean));
      out.sdMethod = 'sum-of-squares';
    } else {
      out.sd = estimate.sd;
      out.sdMethod = 'buckets';
      out.notes.push('The sum of squares is absent (-1): the standard deviation is estimated from bucket midpoints.');
    }
  }
  if (agg.skippedRows > 0) {
    out.notes.push(`${agg.skippedRows} aggregate(s) (${agg.skippedSubmissions} submissions) have another bucket layout than the definition and are left out.`);
  }
  return out;
}

/** Per date (sorted): submissions, samples, median and mean of the rows in [lo, hi]. */
export function evolution(file, def, bounds, lo = 0, hi = Infinity) {
  const out = [];
  for (const date of Object.keys(file).sort()) {
    const agg = aggregate([file[date]], def.nBuckets, lo, hi);
    if (agg.rows === 0) continue;
    let count = 0;
    for (const c of agg.buckets) count += c;
    const sum = agg.stats[SUM];
    out.push({
      date,
      submissions: agg.submissions,
      count,
      median: percentile(agg.buckets, bounds, def.kind, 50),
      mean: count > 0 ? (sum !== null ? sum / count : bucketEstimates(agg.buckets, bounds, def.kind).mean) : null,
    });
  }
  return out;
}

// ---- the filter tree -------------------------------------------------------------------

/** A node's children, [name, node] sorted by name (the keys other than `_id` and `name`). */
export function children(node) {
  return Object.keys(node)
    .filter((k) => k !== '_id' && k !== 'name')
    .sort()
    .map((k) => [k, node[k]]);
}

/** The node at a path of names from the root, or null. */
export function nodeAt(tree, path) {
  let node = tree;
  for (const name of path) {
    if (!node || name === '_id' || name === 'name' || !Object.hasOwn(node, name)) return null;
    node = node[name];
  }
  return node;
}

/** [first id, last id] of a node's subtree: ids are numbered in pre-order. */
export function subtreeRange(node) {
  let max = node._id;
  const stack = [node];
  while (stack.length) {
    const n = stack.pop();
    if (n._id > max) max = n._id;
    for (const [, child] of children(n)) stack.push(child);
  }
  return [node._id, max];
}
