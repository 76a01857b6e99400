// Unit tests of web/src/stats.js on histograms whose statistics are worked out by hand
// (the arithmetic is in the comments). Run: node --test web/test/stats.test.js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import {
  aggregate,
  bucketBoundaries,
  bucketEstimates,
  children,
  evalNumber,
  evolution,
  nodeAt,
  parseDefinition,
  percentile,
  subtreeRange,
  summarize,
  upperBounds,
} from '../src/stats.js';

const close = (actual, expected, message) =>
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${message}: ${actual} != ${expected}`);

/** A row as published: buckets, 5 statistics (null -> -1), submissions, filter id. */
const row = (buckets, stats, submissions, id) => [...buckets, ...stats.map((s) => (s === null ? -1 : s)), submissions, id];

test('definition numbers: integers, "a * b", "a + b" and the known constants', () => {
  assert.equal(evalNumber(50), 50);
  assert.equal(evalNumber('32 * 1024'), 32768);
  assert.equal(evalNumber('16 * 1024 * 1024'), 16 << 20);
  assert.equal(evalNumber('80 + 1'), 81);
  assert.equal(evalNumber('JS::gcreason::NUM_TELEMETRY_REASONS'), 101);
  assert.equal(evalNumber('FOO::BAR'), null);
  assert.equal(evalNumber('1e3'), null);
  assert.equal(evalNumber(-1), null);
  assert.deepEqual(
    [parseDefinition({ kind: 'flag' }).nBuckets, parseDefinition({ kind: 'boolean' }).nBuckets],
    [3, 3],
  );
  const e = parseDefinition({ kind: 'enumerated', n_values: 11 });
  assert.deepEqual([e.low, e.high, e.nBuckets], [1, 11, 12]);
  const x = parseDefinition({ kind: 'exponential', high: '10000', n_buckets: 50 });
  assert.deepEqual([x.low, x.high, x.nBuckets], [1, 10000, 50]);
  assert.throws(() => parseDefinition({ kind: 'count' }));
  assert.throws(() => parseDefinition({ kind: 'linear', low: 5, high: 5, n_buckets: 10 }));
});

test('bucket lower bounds match Firefox (the values of guest-sdk/histograms tests)', () => {
  const b = bucketBoundaries(parseDefinition({ kind: 'exponential', low: 1, high: 10000, n_buckets: 50 }));
  assert.equal(b.length, 50);
  assert.deepEqual(b.slice(0, 13), [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17]);
  assert.deepEqual(b.slice(45), [5017, 5961, 7083, 8416, 10000]);
  assert.deepEqual(
    bucketBoundaries(parseDefinition({ kind: 'exponential', low: 1, high: 3000, n_buckets: 10 })),
    [0, 1, 3, 8, 21, 57, 154, 414, 1114, 3000],
  );
  const l = bucketBoundaries(parseDefinition({ kind: 'linear', low: 1, high: 100, n_buckets: 20 }));
  assert.deepEqual(l.slice(0, 5), [0, 1, 7, 12, 18]);
  assert.equal(l[19], 100);
  const l2 = bucketBoundaries(parseDefinition({ kind: 'linear', low: 25, high: 2000, n_buckets: '80 + 1' }));
  assert.deepEqual(l2.slice(0, 4), [0, 25, 50, 75]);
  assert.equal(l2[80], 2000);
  assert.deepEqual(bucketBoundaries(parseDefinition({ kind: 'flag' })), [0, 1, 2]);
  assert.deepEqual(bucketBoundaries(parseDefinition({ kind: 'enumerated', n_values: 3 })), [0, 1, 2, 3]);
});

test('every Aurora 24 definition parses into increasing bounds from 0 through low to high', () => {
  const path = fileURLToPath(new URL('../../guest-sdk/histograms/data/Histograms.aurora24.json', import.meta.url));
  const defs = JSON.parse(readFileSync(path, 'utf8'));
  assert.equal(Object.keys(defs).length, 590);
  for (const [name, raw] of Object.entries(defs)) {
    const def = parseDefinition(raw);
    const b = bucketBoundaries(def);
    assert.equal(b.length, def.nBuckets, name);
    assert.equal(b[0], 0, name);
    assert.deepEqual([b[1], b[def.nBuckets - 1]], [def.low, def.high], name);
    for (let i = 1; i < b.length; i++) assert.ok(b[i - 1] < b[i], `${name} not increasing at ${i}`);
  }
  const mem = parseDefinition(defs.MEMORY_RESIDENT);
  assert.deepEqual([mem.low, mem.high, mem.nBuckets, mem.extendedStatisticsOk], [32768, 16 << 20, 200, true]);
  assert.equal(parseDefinition(defs.POPUP_NOTIFICATION_MAINACTION_TRIGGERED_MS).nBuckets, 81);
  assert.equal(parseDefinition(defs.A11Y_CONSUMERS).nBuckets, 12);
});

// Linear, low 1, high 3, 4 buckets: bounds [0, 1, 2, 3], upper bounds [1, 2, 3, 4 (3 + (3 - 2))].
// Samples: 0 x10, 1 x20, 2 x30, 3 x40 (N = 100).
//   sum = 20 + 60 + 120 = 200 -> mean 2; Σx² = 20 + 120 + 360 = 500 -> variance 500/100 - 4 = 1, sd 1.
//   cumulative counts 10, 30, 60, 100:
//   p5:  target 5,  bucket 0: 0 + 1 * 5/10          = 0.5
//   p25: target 25, bucket 1: 1 + 1 * (25 - 10)/20  = 1.75
//   p50: target 50, bucket 2: 2 + 1 * (50 - 30)/30  = 2.6667
//   p75: target 75, bucket 3: 3 + 1 * (75 - 60)/40  = 3.375
//   p95: target 95, bucket 3: 3 + 1 * (95 - 60)/40  = 3.875
const LINEAR = parseDefinition({ kind: 'linear', low: 1, high: 3, n_buckets: 4 });
const LINEAR_BOUNDS = bucketBoundaries(LINEAR);

test('linear: exact mean and standard deviation from sum and sum of squares; percentiles', () => {
  assert.deepEqual(LINEAR_BOUNDS, [0, 1, 2, 3]);
  assert.deepEqual(upperBounds(LINEAR_BOUNDS, 'linear'), [1, 2, 3, 4]);
  const agg = aggregate([[row([10, 20, 30, 40], [200, null, null, 500, 0], 7, 3)]], 4);
  const s = summarize(agg, LINEAR, LINEAR_BOUNDS);
  assert.equal(s.submissions, 7);
  assert.equal(s.count, 100);
  assert.equal(s.mean, 2);
  assert.equal(s.meanMethod, 'sum');
  assert.equal(s.sd, 1);
  assert.equal(s.sdMethod, 'sum-of-squares');
  close(s.p5, 0.5, 'p5');
  close(s.p25, 1.75, 'p25');
  close(s.median, 2 + 2 / 3, 'median');
  close(s.p75, 3.375, 'p75');
  close(s.p95, 3.875, 'p95');
  assert.equal(s.geometricMean, null);
  assert.deepEqual(s.notes, []);
});

test('linear: the sum of squares is lo + hi * 2^32', () => {
  // Samples: 65536 x2 (bucket 2 of a [0, 1, 65536, 131071] layout): Σx² = 2 * 2^32 -> hi 2, lo 0;
  // plus one sample of 1: Σx² = 2^33 + 1 -> lo 1. N = 3, sum = 131073, mean 43691,
  // variance (2^33 + 1)/3 - 43691² = 2863311531 - 1908903481 = 954408050.
  const def = parseDefinition({ kind: 'linear', low: 1, high: 131071, n_buckets: 4 });
  const bounds = bucketBoundaries(def);
  assert.deepEqual(bounds, [0, 1, 65536, 131071]);
  const agg = aggregate([[row([0, 1, 2, 0], [131073, null, null, 1, 2], 2, 0)]], 4);
  const s = summarize(agg, def, bounds);
  assert.equal(s.mean, 43691);
  close(s.sd, Math.sqrt(954408050), 'sd');
});

test('absent statistics (-1): mean and standard deviation estimated from bucket midpoints', () => {
  // Midpoints 0.5, 1.5, 2.5, 3.5 -> mean (5 + 30 + 75 + 140)/100 = 2.5;
  // variance (10 * 4 + 20 * 1 + 30 * 0 + 40 * 1)/100 = 1.
  const agg = aggregate([[row([10, 20, 30, 40], [null, null, null, null, null], 7, 3)]], 4);
  const s = summarize(agg, LINEAR, LINEAR_BOUNDS);
  assert.equal(s.mean, 2.5);
  assert.equal(s.meanMethod, 'buckets');
  assert.equal(s.sd, 1);
  assert.equal(s.sdMethod, 'buckets');
  assert.equal(s.notes.length, 2);
  assert.match(s.notes.join(' '), /bucket midpoints/);
});

test('boolean: buckets hold single values (0 and 1)', () => {
  // 30 false, 70 true: mean 0.7, variance 0.7 - 0.49 = 0.21, both ways.
  const def = parseDefinition({ kind: 'boolean' });
  const bounds = bucketBoundaries(def);
  const exact = summarize(aggregate([[row([30, 70, 0], [70, null, null, 70, 0], 100, 0)]], 3), def, bounds);
  close(exact.mean, 0.7, 'mean');
  close(exact.sd, Math.sqrt(0.21), 'sd');
  const estimated = summarize(aggregate([[row([30, 70, 0], [null, null, null, null, null], 100, 0)]], 3), def, bounds);
  close(estimated.mean, 0.7, 'estimated mean');
  close(estimated.sd, Math.sqrt(0.21), 'estimated sd');
  // median: target 50, bucket 1 (cumulative 30, 100): 1 + 1 * (50 - 30)/70
  close(exact.median, 1 + 20 / 70, 'median');
});

// Exponential, low 1, high 3000, 10 buckets: bounds [0, 1, 3, 8, 21, 57, ...].
// Samples 0, 0, e² - 1 (bucket [3, 8)), e⁴ - 1 (bucket [21, 57)): N = 4.
//   Σln(1+x) = 0 + 0 + 2 + 4 = 6, Σln²(1+x) = 4 + 16 = 20: μ = 1.5, σ² = 20/4 - 2.25 = 2.75.
//   geometric mean of (1+x) = e^1.5 (shown minus 1), geometric sd factor = e^√2.75.
//   mean = (e² - 1 + e⁴ - 1)/4 exactly (from sum).
//   sd from midpoints 0.5, 5.5, 39: mean 45.5/4 = 11.375,
//   variance (2 * 10.875² + 5.875² + 27.625²)/4 = (236.53125 + 34.515625 + 763.140625)/4 = 258.546875.
//   percentiles (cumulative 2, 3, 4): p5 target 0.2 -> 0 + 1 * 0.1 = 0.1; p25 target 1 -> 0.5;
//   p50 target 2 -> 1 (top of bucket 0); p75 target 3 -> 8 (top of [3, 8)); p95 target 3.8 ->
//   21 + 36 * 0.8 = 49.8.
const EXP = parseDefinition({ kind: 'exponential', low: 1, high: 3000, n_buckets: 10, extended_statistics_ok: true });
const EXP_BOUNDS = bucketBoundaries(EXP);

test('exponential: exact mean, geometric statistics from the log sums, sd estimated', () => {
  const sum = Math.E ** 2 - 1 + Math.E ** 4 - 1;
  const agg = aggregate([[row([2, 0, 1, 0, 1, 0, 0, 0, 0, 0], [sum, 6, 20, null, null], 3, 0)]], 10);
  const s = summarize(agg, EXP, EXP_BOUNDS);
  assert.equal(s.count, 4);
  close(s.mean, sum / 4, 'mean');
  close(s.geometricMean, Math.exp(1.5) - 1, 'geometric mean');
  close(s.geometricSdFactor, Math.exp(Math.sqrt(2.75)), 'geometric sd');
  close(s.sd, Math.sqrt(258.546875), 'sd');
  assert.equal(s.sdMethod, 'buckets');
  close(s.p5, 0.1, 'p5');
  close(s.p25, 0.5, 'p25');
  close(s.median, 1, 'median');
  close(s.p75, 8, 'p75');
  close(s.p95, 49.8, 'p95');
});

test('exponential without extended statistics: zero log sums are "not collected"', () => {
  const agg = aggregate([[row([2, 0, 1, 0, 1, 0, 0, 0, 0, 0], [60, 0, 0, null, null], 3, 0)]], 10);
  const s = summarize(agg, EXP, EXP_BOUNDS);
  assert.equal(s.mean, 15);
  assert.equal(s.geometricMean, null);
  assert.equal(s.geometricSdFactor, null);
  assert.match(s.notes.join(' '), /No log sums/);
  // Only zeros: a zero log sum is then right, and the geometric mean is 0.
  const zeros = summarize(aggregate([[row([5, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, null, null], 1, 0)]], 10), EXP, EXP_BOUNDS);
  assert.equal(zeros.geometricMean, 0);
  assert.equal(zeros.geometricSdFactor, 1);
});

test('percentile: last bucket upper bound estimated; empty histogram', () => {
  // Exponential [0, 1, 3, 8, ..., 1114, 3000]: last upper = 3000² / 1114.
  const counts = new Array(10).fill(0);
  counts[9] = 4;
  close(percentile(counts, EXP_BOUNDS, 'exponential', 50), 3000 + (3000 * 3000 / 1114 - 3000) / 2, 'p50 in the last bucket');
  assert.equal(percentile(new Array(10).fill(0), EXP_BOUNDS, 'exponential', 50), null);
  assert.deepEqual(bucketEstimates(new Array(10).fill(0), EXP_BOUNDS, 'exponential'), { mean: null, sd: null });
  const s = summarize(aggregate([], 10), EXP, EXP_BOUNDS);
  assert.equal(s.count, 0);
  assert.equal(s.mean, null);
});

test('aggregate: sums the rows of a filter range; absent + x = x; other layouts left out', () => {
  const rows = [
    row([1, 0, 0, 0], [0, null, null, 0, 0], 1, 2),
    row([0, 2, 0, 0], [2, null, null, 2, 0], 1, 4),
    row([0, 0, 3, 0], [null, null, null, null, null], 2, 5),
    row([0, 0, 0, 4], [12, null, null, 36, 0], 3, 9),
    [1, 1, 1, 1, 1, -1, -1, -1, -1, -1, 5, 4], // 5 buckets: another layout
  ];
  const all = aggregate([rows], 4);
  assert.deepEqual([...all.buckets], [1, 2, 3, 4]);
  assert.deepEqual(all.stats, [14, null, null, 38, 0]);
  assert.equal(all.submissions, 7);
  assert.deepEqual([all.rows, all.skippedRows, all.skippedSubmissions], [4, 1, 5]);
  const some = aggregate([rows], 4, 4, 5);
  assert.deepEqual([...some.buckets], [0, 2, 3, 0]);
  assert.deepEqual(some.stats, [2, null, null, 2, 0]);
  assert.equal(some.submissions, 3);
  const s = summarize(all, LINEAR, LINEAR_BOUNDS);
  assert.match(s.notes.join(' '), /1 aggregate\(s\) \(5 submissions\) have another bucket layout/);
});

test('filter tree: children, paths and pre-order subtree ranges', () => {
  const tree = {
    _id: 0,
    name: 'reason',
    'idle-daily': { _id: 1, name: 'appName', Firefox: { _id: 2 } },
    'saved-session': {
      _id: 3,
      name: 'appName',
      Fennec: { _id: 4 },
      Firefox: { _id: 5, name: 'OS', Linux: { _id: 6 }, WINNT: { _id: 7 } },
    },
  };
  assert.deepEqual(children(tree).map(([k]) => k), ['idle-daily', 'saved-session']);
  assert.deepEqual(subtreeRange(tree), [0, 7]);
  assert.deepEqual(subtreeRange(nodeAt(tree, ['saved-session'])), [3, 7]);
  assert.deepEqual(subtreeRange(nodeAt(tree, ['saved-session', 'Firefox'])), [5, 7]);
  assert.deepEqual(subtreeRange(nodeAt(tree, ['idle-daily', 'Firefox'])), [2, 2]);
  assert.equal(nodeAt(tree, ['nope']), null);
  assert.equal(nodeAt(tree, ['_id']), null);
});

test('evolution: per date, sorted, only dates with rows in the range', () => {
  const file = {
    20131026: [row([0, 0, 10, 0], [20, null, null, 40, 0], 2, 4)],
    20131025: [row([10, 0, 0, 0], [0, null, null, 0, 0], 1, 2), row([0, 0, 0, 10], [30, null, null, 90, 0], 1, 9)],
    20131027: [row([0, 0, 0, 1], [3, null, null, 9, 0], 1, 9)],
  };
  const all = evolution(file, LINEAR, LINEAR_BOUNDS);
  assert.deepEqual(all.map((d) => d.date), ['20131025', '20131026', '20131027']);
  assert.deepEqual(all.map((d) => d.submissions), [2, 2, 1]);
  assert.deepEqual(all.map((d) => d.mean), [1.5, 2, 3]);
  // 20131025: counts [10, 0, 0, 10], target 10 -> top of bucket 0 = 1.
  assert.equal(all[0].median, 1);
  const some = evolution(file, LINEAR, LINEAR_BOUNDS, 2, 4);
  assert.deepEqual(some.map((d) => d.date), ['20131025', '20131026']);
  assert.deepEqual(some.map((d) => d.mean), [0, 2]);
});
