// The dashboard in a real browser: headless Chromium (the Debian package, driven by
// playwright-core; no browser is downloaded) loads the page from `spotmill serve`.
//
// 1. A hand-crafted output folder whose statistics are known (worked out below): the page
//    must show them, for the whole tree and for filter nodes.
// 2. The output of the dashboard analysis over generated logs: the page's submission
//    count, sample count and mean must equal what this test computes from the JSON on its
//    own (not with web/src/stats.js), for a version, a measure and a filter.
// In both, the charts must have drawn (canvas pixels of the series' colours), and the page
// must make no request off the server and log no error.
//
// Run through scripts/test-browser.sh, which builds what is needed and sets:
//   SPOTMILL_BIN       the spotmill binary
//   DASHBOARD_OUT      a dashboard analysis output folder (skipped if unset)
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR     where the screenshots go
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

const BIN = process.env.SPOTMILL_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(tmpdir(), 'spotmill-browser');
const DASHBOARD_OUT = process.env.DASHBOARD_OUT;
const TIMEOUT = 30_000;

assert.ok(BIN, 'set SPOTMILL_BIN to the spotmill binary (scripts/test-browser.sh does)');

let context;
let profile;
const cleanups = [];

before(async () => {
  profile = mkdtempSync(path.join(tmpdir(), 'spotmill-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1100 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
});

after(async () => {
  await context?.close();
  for (const f of cleanups.reverse()) f();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Starts `spotmill serve` on a free loopback port; resolves to the page's URL. */
function serve(dir) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['serve', '--dir', dir, '--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => child.kill());
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/ at (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) resolve(m[1]);
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => reject(new Error(`spotmill serve exited (${code}): ${err}`)));
    setTimeout(() => reject(new Error(`spotmill serve printed no URL: ${out} ${err}`)), 10_000);
  });
}

/** A page that records errors and any request that leaves the server. */
async function openPage(url) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('response', (r) => r.status() >= 400 && problems.push(`HTTP ${r.status()}: ${r.url()}`));
  page.on('request', (r) => !r.url().startsWith(url) && problems.push(`request off the server: ${r.url()}`));
  await page.goto(url);
  return { page, problems };
}

async function waitRendered(page, key) {
  await page.waitForFunction(
    (k) => document.body.dataset.rendered === k && document.body.dataset.state === 'ready',
    key,
    { timeout: TIMEOUT },
  );
}

/** The statistics table: key -> { text, value }. */
async function stats(page) {
  return page.$$eval('#stats td[data-stat]', (tds) =>
    Object.fromEntries(tds.map((td) => [td.dataset.stat, { text: td.textContent, value: td.dataset.value === '' ? null : Number(td.dataset.value) }])),
  );
}

/** Pixels of a canvas close to an RGB colour (the chart series' colours). */
async function pixels(page, id, rgb) {
  return page.$eval(
    `#${id}`,
    (canvas, [r, g, b]) => {
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 200 && Math.abs(data[i] - r) < 12 && Math.abs(data[i + 1] - g) < 12 && Math.abs(data[i + 2] - b) < 12) n++;
      }
      return n;
    },
    rgb,
  );
}
const BAR_BLUE = [0x2f, 0x6f, 0xde];
const MEDIAN_ORANGE = [0xd9, 0x48, 0x0f];

const close = (actual, expected, what) =>
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: page ${actual}, expected ${expected}`);

// ---- 1. a hand-crafted folder ----------------------------------------------------------
//
// TEST_LINEAR: linear, low 1, high 3, 4 buckets: bounds [0, 1, 2, 3] (values 0, 1, 2, 3).
// Leaves (filter ids): 5 idle-daily/Firefox/Linux/3.2/x86-64,
//   10 saved-session/Firefox/Linux/3.2/x86-64, 13 saved-session/Firefox/WINNT/6.1/x86.
//   20131025: leaf 5  [10, 0, 0, 0]   sum 0,   Σx² 0,   1 submission
//             leaf 10 [0, 20, 0, 0]   sum 20,  Σx² 20,  2 submissions
//             leaf 13 [0, 0, 10, 10]  sum 50,  Σx² 130, 2 submissions
//   20131026: leaf 10 [0, 0, 20, 30]  sum 130, Σx² 350, 2 submissions
// All: [10, 20, 30, 40], N 100, sum 200, Σx² 500, 7 submissions: mean 2, sd √(5 - 4) = 1;
//   median: cumulative 10, 30, 60 -> bucket 2, 2 + (50 - 30)/30 = 2.6667; p5 0.5; p95 3.875.
// saved-session: [0, 20, 30, 40], N 90, sum 200, Σx² 500, 6 submissions: mean 20/9,
//   sd √(500/90 - (20/9)²).
// saved-session/Firefox/WINNT: [0, 0, 10, 10], N 20, sum 50, Σx² 130, 2 submissions:
//   mean 2.5, sd √(6.5 - 6.25) = 0.5; median: target 10 = the whole of bucket 2 -> 3.
// TEST_FLAG: statistics all -1, [30, 70, 0]: mean and sd estimated (0.7, √0.21).
// TEST_EXP: exponential 1..3000, 10 buckets; samples 0, 0, e²-1, e⁴-1: log sums 6 and 20,
//   geometric mean e^1.5 - 1, geometric sd e^√2.75.
function fixture() {
  const root = mkdtempSync(path.join(tmpdir(), 'spotmill-dashboard-fixture-'));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const folder = 'test/1/00000000000000aa';
  const dir = path.join(root, folder);
  mkdirSync(dir, { recursive: true });
  const write = (name, value) => writeFileSync(path.join(dir, name), JSON.stringify(value) + '\n');
  writeFileSync(path.join(root, 'versions.json'), JSON.stringify({ 'test/1': folder }) + '\n');
  const leaf = (id) => ({ _id: id });
  write('filter-tree.json', {
    _id: 0,
    name: 'reason',
    'idle-daily': { _id: 1, name: 'appName', Firefox: { _id: 2, name: 'OS', Linux: { _id: 3, name: 'osVersion', 3.2: { _id: 4, name: 'arch', 'x86-64': leaf(5) } } } },
    'saved-session': {
      _id: 6,
      name: 'appName',
      Firefox: {
        _id: 7,
        name: 'OS',
        Linux: { _id: 8, name: 'osVersion', 3.2: { _id: 9, name: 'arch', 'x86-64': leaf(10) } },
        WINNT: { _id: 11, name: 'osVersion', 6.1: { _id: 12, name: 'arch', x86: leaf(13) } },
      },
    },
  });
  write('histograms.json', {
    TEST_EXP: { kind: 'exponential', low: 1, high: '3000', n_buckets: 10, extended_statistics_ok: true, description: 'an exponential test histogram' },
    TEST_FLAG: { kind: 'flag', description: 'a flag without statistics' },
    TEST_LINEAR: { kind: 'linear', low: 1, high: 3, n_buckets: 4, description: 'a linear test histogram' },
  });
  write('revisions.json', { TEST_LINEAR: { buildId: '20131026030201', revision: 'r' } });
  const linear = {
    20131025: [
      [10, 0, 0, 0, 0, -1, -1, 0, 0, 1, 5],
      [0, 20, 0, 0, 20, -1, -1, 20, 0, 2, 10],
      [0, 0, 10, 10, 50, -1, -1, 130, 0, 2, 13],
    ],
    20131026: [[0, 0, 20, 30, 130, -1, -1, 350, 0, 2, 10]],
  };
  const flag = { 20131025: [[30, 70, 0, -1, -1, -1, -1, -1, 100, 10]] };
  const sum = Math.E ** 2 - 1 + Math.E ** 4 - 1;
  const exp = { 20131025: [[2, 0, 1, 0, 1, 0, 0, 0, 0, 0, sum, 6, 20, -1, -1, 3, 13]] };
  for (const by of ['build-date', 'submission-date']) {
    write(`TEST_LINEAR-by-${by}.json`, linear);
    write(`TEST_FLAG-by-${by}.json`, flag);
    write(`TEST_EXP-by-${by}.json`, exp);
  }
  return root;
}

test('hand-crafted folder: the page shows the known statistics, filters sum the leaves, charts draw', async () => {
  const url = await serve(fixture());
  const { page, problems } = await openPage(url);

  // The first measure (TEST_EXP) is shown first.
  await waitRendered(page, 'test/1|TEST_EXP|build-date|');
  let s = await stats(page);
  assert.equal(s.count.value, 4);
  close(s.geometricMean.value, Math.exp(1.5) - 1, 'geometric mean');
  close(s.geometricSdFactor.value, Math.exp(Math.sqrt(2.75)), 'geometric sd');
  close(s.mean.value, (Math.E ** 2 - 1 + Math.E ** 4 - 1) / 4, 'exponential mean');

  await page.selectOption('#measure', 'TEST_LINEAR');
  await waitRendered(page, 'test/1|TEST_LINEAR|build-date|');
  s = await stats(page);
  assert.equal(s.submissions.text, '7');
  assert.equal(s.count.text, '100');
  assert.equal(s.mean.text, '2');
  assert.equal(s.sd.text, '1');
  assert.equal(s.median.text, '2.6667');
  close(s.median.value, 2 + 2 / 3, 'median');
  close(s.p5.value, 0.5, 'p5');
  close(s.p25.value, 1.75, 'p25');
  close(s.p75.value, 3.375, 'p75');
  close(s.p95.value, 3.875, 'p95');
  assert.ok((await pixels(page, 'histogram', BAR_BLUE)) > 500, 'the histogram bars drew');
  assert.ok((await pixels(page, 'evolution', MEDIAN_ORANGE)) > 20, 'the median line drew');
  assert.match(await page.textContent('#histogram-caption'), /4 of 4 buckets/);

  await page.selectOption('#filter-reason', 'saved-session');
  await waitRendered(page, 'test/1|TEST_LINEAR|build-date|saved-session');
  s = await stats(page);
  assert.equal(s.submissions.value, 6);
  assert.equal(s.count.value, 90);
  close(s.mean.value, 20 / 9, 'saved-session mean');
  close(s.sd.value, Math.sqrt(500 / 90 - (20 / 9) ** 2), 'saved-session sd');

  await page.selectOption('#filter-appName', 'Firefox');
  await page.selectOption('#filter-OS', 'WINNT');
  await waitRendered(page, 'test/1|TEST_LINEAR|build-date|saved-session/Firefox/WINNT');
  s = await stats(page);
  assert.deepEqual([s.submissions.value, s.count.value, s.mean.value, s.sd.value, s.median.value], [2, 20, 2.5, 0.5, 3]);
  assert.equal(await page.textContent('#evolution-caption'), '(1 build date)');
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'dashboard-fixture.png'), fullPage: true });

  // Missing statistics: estimated, and the page says so.
  await page.selectOption('#filter-reason', '');
  await page.selectOption('#measure', 'TEST_FLAG');
  await waitRendered(page, 'test/1|TEST_FLAG|build-date|');
  s = await stats(page);
  close(s.mean.value, 0.7, 'flag mean');
  close(s.sd.value, Math.sqrt(0.21), 'flag sd');
  assert.match(await page.textContent('#notes'), /estimated from bucket midpoints/);
  assert.match(await page.textContent('#stats'), /estimated from bucket midpoints/);

  // The state is in the address: a reload shows the same view.
  await page.selectOption('#measure', 'TEST_LINEAR');
  await page.selectOption('#by', 'submission-date');
  await waitRendered(page, 'test/1|TEST_LINEAR|submission-date|');
  await page.reload();
  await waitRendered(page, 'test/1|TEST_LINEAR|submission-date|');
  assert.deepEqual(problems, []);
  await page.close();
});

// ---- 2. the analysis's output over generated logs --------------------------------------

/** An independent reading of a definition's bucket count (numbers or "a * b + c"). */
function bucketCount(def) {
  const num = (v) => (typeof v === 'number' ? v : v.split('+').reduce((s, t) => s + t.split('*').reduce((p, f) => p * Number(f.trim()), 1), 0));
  if (def.kind === 'flag' || def.kind === 'boolean') return 3;
  if (def.kind === 'enumerated') return num(def.n_values) + 1;
  return num(def.n_buckets);
}

/** Leaf ids below a node, by walking the tree (not by the pre-order range the page uses). */
function leafIds(node) {
  const keys = Object.keys(node).filter((k) => k !== '_id' && k !== 'name');
  return keys.length === 0 ? [node._id] : keys.flatMap((k) => leafIds(node[k]));
}

/** Submissions, samples and mean of the rows of the given leaves with the definition's layout. */
function expected(file, nBuckets, leaves) {
  const wanted = new Set(leaves);
  let submissions = 0;
  let count = 0;
  let sum = 0;
  for (const rows of Object.values(file)) {
    for (const row of rows) {
      if (!wanted.has(row[row.length - 1]) || row.length !== nBuckets + 7) continue;
      submissions += row[nBuckets + 5];
      for (let i = 0; i < nBuckets; i++) count += row[i];
      if (row[nBuckets] !== -1) sum += row[nBuckets];
    }
  }
  return { submissions, count, mean: sum / count };
}

test('generated logs through the dashboard analysis: the page agrees with the JSON', { skip: !DASHBOARD_OUT && 'DASHBOARD_OUT not set' }, async () => {
  const read = (p) => JSON.parse(readFileSync(path.join(DASHBOARD_OUT, p), 'utf8'));
  const versions = read('versions.json');
  const names = (node) => Object.keys(node).filter((k) => k !== '_id' && k !== 'name').sort();
  // GC_MS (exponential) is in every saved-session; the version where most submissions carry
  // it, then the filter nodes with the most submissions.
  const measure = 'GC_MS';
  const candidates = Object.keys(versions).map((version) => {
    const folder = versions[version];
    const defs = read(`${folder}/histograms.json`);
    if (!(measure in defs)) return { version, submissions: -1 };
    const tree = read(`${folder}/filter-tree.json`);
    const nBuckets = bucketCount(defs[measure]);
    const file = read(`${folder}/${measure}-by-build-date.json`);
    return { version, folder, tree, nBuckets, file, submissions: expected(file, nBuckets, leafIds(tree)).submissions };
  });
  const { version, folder, tree, nBuckets, file } = candidates.sort((a, b) => b.submissions - a.submissions)[0];
  assert.ok(file, `no version has ${measure}`);
  const most = (node) => names(node).sort((a, b) => expected(file, nBuckets, leafIds(node[b])).submissions - expected(file, nBuckets, leafIds(node[a])).submissions)[0];
  const reason = most(tree);

  const url = await serve(DASHBOARD_OUT);
  const { page, problems } = await openPage(url);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: TIMEOUT });
  await page.selectOption('#version', version);
  await page.selectOption('#measure', measure);
  await waitRendered(page, `${version}|${measure}|build-date|`);
  let s = await stats(page);
  let want = expected(file, nBuckets, leafIds(tree));
  assert.ok(want.submissions > 0, 'the measure has data');
  assert.equal(s.submissions.value, want.submissions);
  assert.equal(s.submissions.text, want.submissions.toLocaleString('en-US'));
  assert.equal(s.count.value, want.count);
  close(s.mean.value, want.mean, 'mean');
  assert.ok((await pixels(page, 'histogram', BAR_BLUE)) > 200, 'the histogram bars drew');
  assert.ok((await pixels(page, 'evolution', MEDIAN_ORANGE)) > 20, 'the median line drew');

  await page.selectOption('#filter-reason', reason);
  await waitRendered(page, `${version}|${measure}|build-date|${reason}`);
  s = await stats(page);
  want = expected(file, nBuckets, leafIds(tree[reason]));
  assert.equal(s.submissions.value, want.submissions);
  assert.equal(s.count.value, want.count);
  close(s.mean.value, want.mean, `${reason} mean`);

  const app = most(tree[reason]);
  await page.selectOption('#filter-appName', app);
  await waitRendered(page, `${version}|${measure}|build-date|${reason}/${app}`);
  s = await stats(page);
  want = expected(file, nBuckets, leafIds(tree[reason][app]));
  assert.equal(s.submissions.value, want.submissions);
  close(s.mean.value, want.mean, `${reason}/${app} mean`);

  assert.ok(want.submissions > 1, 'a filter node with a few submissions');
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'dashboard.png'), fullPage: true });

  // Submission dates: the other file, same filter.
  await page.selectOption('#by', 'submission-date');
  await waitRendered(page, `${version}|${measure}|submission-date|${reason}/${app}`);
  s = await stats(page);
  const bySubmission = expected(read(`${folder}/${measure}-by-submission-date.json`), nBuckets, leafIds(tree[reason][app]));
  assert.equal(s.submissions.value, bySubmission.submissions);
  assert.equal(s.count.value, bySubmission.count);
  close(s.mean.value, bySubmission.mean, 'by-submission-date mean');
  console.log(`# ${version} ${measure} ${reason}/${app}: ${want.submissions} submissions, mean ${want.mean}`);
  console.log(`# screenshot: ${path.join(SCREENSHOT_DIR, 'dashboard.png')}`);
  assert.deepEqual(problems, []);
  await page.close();
});
