// The dashboard page: fetches the published JSON under data/ (served by `spotmill serve`),
// lets the user pick a channel/version, a measure, build or submission dates and a filter
// node, and draws the histogram, its statistics and their evolution.
//
// Only what a view needs is fetched (versions.json once, a folder's filter tree and
// definitions once per folder, one measure file per measure and date kind), and every
// fetch and aggregate is memoised. Data strings are put in the page with textContent only.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';

import {
  aggregate,
  bucketBoundaries,
  children,
  evolution,
  isCategorical,
  nodeAt,
  parseDefinition,
  subtreeRange,
  summarize,
  upperBounds,
} from './stats.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Tooltip, Legend);

const LEVEL_LABELS = { reason: 'Reason', appName: 'Application', OS: 'OS', osVersion: 'OS version', arch: 'Architecture' };
const CHANNEL_ORDER = ['release', 'beta', 'aurora', 'nightly'];
const $ = (id) => document.getElementById(id);

// ---- fetching, memoised ----------------------------------------------------------------

const fetches = new Map();
function getJSON(path) {
  if (!fetches.has(path)) {
    const url = 'data/' + path.split('/').map(encodeURIComponent).join('/');
    const promise = fetch(url).then((r) => {
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
      return r.json();
    });
    promise.catch(() => fetches.delete(path)); // let a later view retry
    fetches.set(path, promise);
  }
  return fetches.get(path);
}

const definitions = new Map(); // folder/measure -> { def, bounds } or { error }
function definitionOf(folder, defs, measure) {
  const key = `${folder}/${measure}`;
  if (!definitions.has(key)) {
    try {
      const def = parseDefinition(defs[measure]);
      definitions.set(key, { def, bounds: bucketBoundaries(def) });
    } catch (e) {
      definitions.set(key, { error: `${measure}: unusable definition (${e.message})` });
    }
  }
  return definitions.get(key);
}

const views = new Map(); // file path + filter range -> { summary, evo }
function computeView(path, file, def, bounds, lo, hi) {
  const key = `${path}|${lo}|${hi}`;
  if (!views.has(key)) {
    const agg = aggregate(Object.values(file), def.nBuckets, lo, hi);
    views.set(key, { agg, summary: summarize(agg, def, bounds), evo: evolution(file, def, bounds, lo, hi) });
    if (views.size > 200) views.delete(views.keys().next().value);
  }
  return views.get(key);
}

// ---- state -----------------------------------------------------------------------------

const state = { versions: {}, version: null, folder: null, tree: null, defs: {}, revisions: {}, measure: null, by: 'build-date', filter: [] };
let sequence = 0;

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return {
    version: params.get('version'),
    measure: params.get('measure'),
    by: params.get('by'),
    filter: params.get('filter') ? params.get('filter').split('/').filter(Boolean) : [],
  };
}

function writeHash() {
  const params = new URLSearchParams();
  params.set('version', state.version);
  if (state.measure) params.set('measure', state.measure);
  params.set('by', state.by);
  if (state.filter.length) params.set('filter', state.filter.join('/'));
  history.replaceState(null, '', '#' + params.toString());
}

function setStatus(text, kind) {
  $('status').textContent = text;
  document.body.dataset.state = kind;
}

// ---- formatting ------------------------------------------------------------------------

function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  const abs = Math.abs(x);
  if (abs !== 0 && (abs >= 1e15 || abs < 1e-4)) return x.toExponential(4);
  return x.toLocaleString('en-US', { maximumFractionDigits: abs < 10 ? 4 : abs < 1000 ? 2 : 0 });
}

function fmtBound(x) {
  if (x >= 1e6) return (x / 1e6).toLocaleString('en-US', { maximumFractionDigits: 2 }) + 'M';
  if (x >= 1e4) return (x / 1e3).toLocaleString('en-US', { maximumFractionDigits: 1 }) + 'k';
  return x.toLocaleString('en-US', { maximumFractionDigits: 2 });
}

function fmtDate(d) {
  return `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}`;
}

function option(value, text) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text ?? value;
  return o;
}

// ---- controls --------------------------------------------------------------------------

function versionOrder(a, b) {
  const [ca, va] = a.split('/');
  const [cb, vb] = b.split('/');
  const ra = CHANNEL_ORDER.indexOf(ca) < 0 ? 99 : CHANNEL_ORDER.indexOf(ca);
  const rb = CHANNEL_ORDER.indexOf(cb) < 0 ? 99 : CHANNEL_ORDER.indexOf(cb);
  return ra - rb || ca.localeCompare(cb) || (Number(vb) - Number(va)) || vb.localeCompare(va);
}

function fillMeasures() {
  const needle = $('measure-search').value.trim().toUpperCase();
  const select = $('measure');
  const names = Object.keys(state.defs).sort().filter((m) => !needle || m.includes(needle) || m === state.measure);
  select.replaceChildren(...names.map((m) => option(m)));
  select.size = Math.min(16, Math.max(4, names.length));
  if (state.measure) select.value = state.measure;
}

function renderFilters() {
  const box = $('filters');
  box.replaceChildren();
  let node = state.tree;
  for (let depth = 0; node && children(node).length > 0; depth++) {
    const label = document.createElement('label');
    const level = node.name ?? `level ${depth + 1}`;
    label.append(LEVEL_LABELS[level] ?? level);
    const select = document.createElement('select');
    select.dataset.level = level;
    select.id = `filter-${level}`;
    select.append(option('', '(all)'));
    for (const [name] of children(node)) select.append(option(name));
    select.value = state.filter[depth] ?? '';
    select.addEventListener('change', () => {
      state.filter = state.filter.slice(0, depth);
      if (select.value) state.filter.push(select.value);
      renderFilters();
      update();
    });
    label.append(select);
    box.append(label);
    if (!state.filter[depth]) break;
    node = node[state.filter[depth]];
  }
}

// ---- charts ----------------------------------------------------------------------------

let histogramChart = null;
let evolutionChart = null;

function drawHistogram(agg, def, bounds) {
  const counts = Array.from(agg.buckets);
  const total = counts.reduce((a, b) => a + b, 0);
  // Leading and trailing empty buckets are left out (one kept on each side).
  let first = counts.findIndex((c) => c > 0);
  let last = counts.length - 1 - [...counts].reverse().findIndex((c) => c > 0);
  if (first < 0) [first, last] = [0, counts.length - 1];
  first = Math.max(0, first - 1);
  last = Math.min(counts.length - 1, last + 1);
  const uppers = upperBounds(bounds, def.kind);
  const idx = [];
  for (let i = first; i <= last; i++) idx.push(i);
  const labels = idx.map((i) => fmtBound(bounds[i]));
  const values = idx.map((i) => counts[i]);
  $('histogram-caption').textContent =
    `(${idx.length} of ${counts.length} buckets${idx.length < counts.length ? ': the others are empty' : ''}; labels are lower bounds)`;
  const tooltip = {
    callbacks: {
      title: (items) => {
        const i = idx[items[0].dataIndex];
        return isCategorical(def.kind) ? `value ${bounds[i]}` : `[${fmt(bounds[i])}, ${fmt(uppers[i])})`;
      },
      label: (item) => `${fmt(item.raw)} samples (${total > 0 ? ((100 * item.raw) / total).toFixed(2) : 0}%)`,
    },
  };
  if (!histogramChart) {
    histogramChart = new Chart($('histogram'), {
      type: 'bar',
      data: { labels, datasets: [{ label: 'samples', data: values, backgroundColor: '#2f6fde', barPercentage: 1, categoryPercentage: 0.95 }] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip },
        scales: { x: { title: { display: true, text: 'bucket' } }, y: { beginAtZero: true, title: { display: true, text: 'samples' } } },
      },
    });
  } else {
    histogramChart.data.labels = labels;
    histogramChart.data.datasets[0].data = values;
    histogramChart.options.plugins.tooltip = tooltip;
    histogramChart.update('none');
  }
}

function drawEvolution(evo) {
  const labels = evo.map((d) => fmtDate(d.date));
  const datasets = [
    { type: 'line', label: 'median', data: evo.map((d) => d.median), borderColor: '#d9480f', backgroundColor: '#d9480f', yAxisID: 'y', pointRadius: 2, spanGaps: true },
    { type: 'line', label: 'mean', data: evo.map((d) => d.mean), borderColor: '#2b8a3e', backgroundColor: '#2b8a3e', yAxisID: 'y', pointRadius: 2, borderDash: [4, 3], spanGaps: true },
    { type: 'bar', label: 'submissions', data: evo.map((d) => d.submissions), backgroundColor: 'rgba(47, 111, 222, 0.25)', yAxisID: 'submissions' },
  ];
  $('evolution-caption').textContent = `(${evo.length} ${state.by === 'build-date' ? 'build' : 'submission'} date${evo.length === 1 ? '' : 's'})`;
  if (!evolutionChart) {
    evolutionChart = new Chart($('evolution'), {
      data: { labels, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          y: { position: 'left', beginAtZero: true, title: { display: true, text: 'value' } },
          submissions: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'submissions' } },
        },
      },
    });
  } else {
    evolutionChart.data.labels = labels;
    evolutionChart.data.datasets = datasets;
    evolutionChart.update('none');
  }
}

// ---- the view --------------------------------------------------------------------------

function renderSummary(s, def) {
  const rows = [
    ['submissions', 'Submissions', s.submissions, ''],
    ['count', 'Samples', s.count, ''],
    ['mean', 'Mean', s.mean, s.meanMethod === 'buckets' ? 'estimated from bucket midpoints' : 'exact (sum / samples)'],
    ['sd', 'Standard deviation', s.sd, s.sdMethod === 'buckets' ? 'estimated from bucket midpoints' : s.sdMethod ? 'exact (sum of squares)' : ''],
    ['median', 'Median', s.median, 'interpolated in its bucket'],
    ['p5', '5th percentile', s.p5, ''],
    ['p25', '25th percentile', s.p25, ''],
    ['p75', '75th percentile', s.p75, ''],
    ['p95', '95th percentile', s.p95, ''],
  ];
  if (def.kind === 'exponential') {
    rows.push(['geometricMean', 'Geometric mean', s.geometricMean, 'exact, e^mean(ln(1+x)) − 1']);
    rows.push(['geometricSdFactor', 'Geometric std. deviation', s.geometricSdFactor, 'exact, a factor: e^sd(ln(1+x))']);
  }
  $('stats').tBodies[0].replaceChildren(
    ...rows.map(([key, label, value, method]) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.textContent = label;
      const td = document.createElement('td');
      td.dataset.stat = key;
      td.dataset.value = value === null ? '' : String(value);
      td.textContent = fmt(value);
      const m = document.createElement('td');
      m.className = 'method';
      m.textContent = method;
      tr.append(th, td, m);
      return tr;
    }),
  );
  $('notes').replaceChildren(...s.notes.map((n) => Object.assign(document.createElement('li'), { textContent: n })));
}

async function update() {
  const token = ++sequence;
  const { folder, measure, by } = state;
  writeHash();
  if (!measure) {
    setStatus('This version has no measures.', 'ready');
    return;
  }
  const d = definitionOf(folder, state.defs, measure);
  if (d.error) {
    setStatus(d.error, 'error');
    return;
  }
  const { def, bounds } = d;
  const path = `${folder}/${measure}-by-${by}.json`;
  setStatus(`Loading ${measure}-by-${by}.json…`, 'loading');
  let file;
  try {
    file = await getJSON(path);
  } catch (e) {
    if (token === sequence) setStatus(`Cannot load ${path}: ${e.message}`, 'error');
    return;
  }
  if (token !== sequence) return; // a newer selection is on its way
  const node = nodeAt(state.tree, state.filter) ?? state.tree;
  const [lo, hi] = subtreeRange(node);
  const { agg, summary, evo } = computeView(path, file, def, bounds, lo, hi);
  $('measure-title').textContent = measure;
  const revision = state.revisions[measure];
  const layout = def.kind === 'exponential' || def.kind === 'linear' ? `, ${def.low}–${def.high}, ${def.nBuckets} buckets` : `, ${def.nBuckets} buckets`;
  $('definition').textContent =
    `${def.kind}${layout}${def.description ? ' — ' + def.description : ''}` +
    (revision && revision.buildId ? ` (newest build ${revision.buildId})` : '');
  renderSummary(summary, def);
  drawHistogram(agg, def, bounds);
  drawEvolution(evo);
  const where = state.filter.length ? state.filter.join(' / ') : 'all';
  setStatus(`${state.version}, ${measure} by ${by.replace('-', ' ')}, filter: ${where}`, 'ready');
  document.body.dataset.rendered = `${state.version}|${measure}|${by}|${state.filter.join('/')}`;
}

async function loadVersion(wanted) {
  const token = ++sequence;
  state.folder = state.versions[state.version];
  setStatus(`Loading ${state.folder}…`, 'loading');
  let tree;
  let defs;
  let revisions;
  try {
    [tree, defs, revisions] = await Promise.all([
      getJSON(`${state.folder}/filter-tree.json`),
      getJSON(`${state.folder}/histograms.json`),
      getJSON(`${state.folder}/revisions.json`).catch(() => ({})),
    ]);
  } catch (e) {
    if (token === sequence) setStatus(`Cannot load ${state.folder}: ${e.message}`, 'error');
    return;
  }
  if (token !== sequence) return;
  Object.assign(state, { tree, defs, revisions });
  const measures = Object.keys(defs).sort();
  const measure = wanted.measure ?? state.measure;
  state.measure = measures.includes(measure) ? measure : (measures[0] ?? null);
  // Keep the longest prefix of the filter path that exists in this tree.
  const filter = wanted.filter ?? state.filter;
  state.filter = [];
  for (const name of filter) {
    if (!nodeAt(tree, [...state.filter, name])) break;
    state.filter.push(name);
  }
  fillMeasures();
  renderFilters();
  await update();
}

async function init() {
  const wanted = readHash();
  try {
    state.versions = await getJSON('versions.json');
  } catch (e) {
    setStatus(`Cannot load versions.json: ${e.message}`, 'error');
    return;
  }
  const keys = Object.keys(state.versions).sort(versionOrder);
  if (keys.length === 0) {
    setStatus('versions.json lists no channel/version.', 'error');
    return;
  }
  $('version').replaceChildren(...keys.map((k) => option(k)));
  state.version = keys.includes(wanted.version) ? wanted.version : keys[0];
  $('version').value = state.version;
  if (wanted.by === 'build-date' || wanted.by === 'submission-date') state.by = wanted.by;
  $('by').value = state.by;

  $('version').addEventListener('change', () => {
    state.version = $('version').value;
    loadVersion({});
  });
  $('measure').addEventListener('change', () => {
    state.measure = $('measure').value;
    update();
  });
  $('measure-search').addEventListener('input', fillMeasures);
  $('by').addEventListener('change', () => {
    state.by = $('by').value;
    update();
  });
  await loadVersion({ measure: wanted.measure, filter: wanted.filter });
}

init();
