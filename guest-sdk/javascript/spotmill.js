// Write Spotmill analyses in JavaScript (built into a component by componentize-js).
//
// An analysis is an object with `map`, `merge` and `publish`; `exportAnalysis` implements
// the WIT world `analysis` (wit/analysis.wit) around it:
//
//   import { exportAnalysis, parse, jsonFile } from "./spotmill.js";
//
//   export const { mapper, reducer } = exportAnalysis({
//     map(sub, partial) {
//       const os = parse(sub.json).info.OS || "unknown";  // validate first (throws) ...
//       partial[os] = (partial[os] ?? 0) + 1;             // ... then mutate
//     },
//     merge(into, other) {
//       for (const [k, v] of Object.entries(other)) into[k] = (into[k] ?? 0) + v;
//       return into;
//     },
//     publish(partial) {
//       return [jsonFile("os.json", partial, { sortKeys: true })];
//     },
//   });
//
// Build: scripts/build-guests-javascript.sh (componentize-js, world `analysis`).
//
// What the SDK does for each WIT function (the same contract as the Rust SDK, guest-sdk/):
// - setup(params): parses `params` as JSON (the empty string stands for `null`), makes a
//   fresh analysis (`create(params)` if the definition has one, else a shallow copy of the
//   definition) for the mapper and another for the reducer. A call without a `setup` first
//   does `setup("")`.
// - map(batch): calls `map(sub, partial)` on every submission with the instance's partial.
//   A submission whose `map` throws is a record error with the exception's message, and
//   **must leave the partial unchanged**: validate and extract first, then mutate.
//   (Unlike Rust and Python, every exception is a record error: JavaScript has no
//   separate kind for bugs.)
// - flush(): encodes the partial (`encode`, compact JSON by default) and starts a new
//   empty one (`empty()`, by default `Object.create(null)`: an object without prototype,
//   so that any string, "__proto__" included, is an ordinary key); an empty Uint8Array if nothing was mapped since
//   the last flush.
// - merge(partials): decodes each (empty bytes = `empty()`), folds them with `merge` and
//   encodes the result; empty bytes if every input is empty.
// - publish(partial): decodes it and calls `publish`, which returns
//   `[{ path, contents }]` (contents: Uint8Array or string); paths are checked (relative,
//   `/`-separated, no empty, `.` or `..` segment).
// A failing WIT call returns its `result` error: the SDK throws a string, which
// componentize-js hands to the host as the `err` payload.

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function message(e) {
  if (typeof e === "string") return e;
  if (e && typeof e.message === "string") return e.message;
  return String(e);
}

// --- JSON and telemetry helpers -------------------------------------------------------

/** The `info` fields `parse` reads (as the Rust SDK's `telemetry::Info`). */
export const INFO_FIELDS = [
  "OS",
  "version",
  "arch",
  "appName",
  "appVersion",
  "appBuildID",
  "appUpdateChannel",
  "reason",
  "platformBuildID",
  "locale",
];

/** A number as Rust's `f64` Display writes it: shortest digits, never an exponent. */
export function f64Text(x) {
  let s = String(x);
  const e = s.indexOf("e");
  if (e < 0) return s;
  const sign = s[0] === "-" ? "-" : "";
  const mantissa = s.slice(sign.length, e);
  const exp = Number(s.slice(e + 1));
  const dot = mantissa.indexOf(".");
  const digits = mantissa.replace(".", "");
  let point = (dot < 0 ? mantissa.length : dot) + exp; // position of the decimal point
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  if (point <= 0) return sign + "0." + "0".repeat(-point) + digits;
  return sign + digits.slice(0, point) + "." + digits.slice(point);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A JSON scalar as text, the way the Rust SDK reads `info` fields: a string as it is, a
 * number or boolean as its text, `null` for null or absence. Objects and arrays throw.
 */
export function scalarText(value, field = "value") {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
      // JSON.parse keeps a lone surrogate ("\ud800"); serde_json rejects it.
      if (LONE_SURROGATE.test(value)) {
        throw `field \`${field}\`: lone surrogate in a \\u escape`;
      }
      return value;
    case "boolean":
      return value ? "true" : "false";
    case "number":
      // JSON.parse reads 1e400 as Infinity; serde_json rejects it.
      if (!Number.isFinite(value)) throw `field \`${field}\`: number out of range`;
      return f64Text(value);
  }
  throw `field \`${field}\`: expected a string, a number, a boolean or null`;
}

/**
 * Parses a submission's JSON (a Uint8Array). The top level must be an object, its `info`
 * (if present and not null) an object whose INFO_FIELDS are scalars or null. Returns
 * `{ doc, info }`: the whole object, and each INFO_FIELDS name -> text or null.
 * Throws a string saying why not.
 */
export function parse(bytes) {
  let text;
  try {
    text = strictDecoder.decode(bytes);
  } catch (e) {
    throw `submission is not UTF-8: ${message(e)}`;
  }
  if (!/^[ \t\r\n]*\{/.test(text)) throw "submission is not a JSON object";
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw `submission is not valid JSON: ${message(e)}`;
  }
  const raw = doc.info;
  const info = {};
  for (const f of INFO_FIELDS) info[f] = null;
  if (raw !== undefined && raw !== null) {
    if (typeof raw !== "object" || Array.isArray(raw)) {
      throw "submission's `info` is not an object";
    }
    for (const f of INFO_FIELDS) {
      if (Object.prototype.hasOwnProperty.call(raw, f)) info[f] = scalarText(raw[f], f);
    }
  }
  return { doc, info };
}

function sortKeysDeep(value) {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value && typeof value === "object") {
    const out = {};
    for (const k of Object.keys(value).sort(compareUtf8)) out[k] = sortKeysDeep(value[k]);
    return out;
  }
  return value;
}

/** Orders strings by their UTF-8 bytes (code points), as a Rust `BTreeMap<String, _>`. */
export function compareUtf8(a, b) {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const cx = x.value.codePointAt(0);
    const cy = y.value.codePointAt(0);
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

/**
 * An output file holding `value` as pretty JSON (two-space indent, a final newline): the
 * same bytes as the Rust SDK's `json_file` for the same value. `sortKeys` sorts object
 * keys in UTF-8 byte order (a Rust `BTreeMap`). JavaScript objects list integer-like
 * keys ("10") first whatever the insertion order, so sorting goes through an array of
 * entries, not an object.
 */
export function jsonFile(path, value, { sortKeys = false } = {}) {
  const text = sortKeys ? prettySorted(value, "") : JSON.stringify(value, null, 2);
  return { path, contents: encoder.encode(text + "\n") };
}

function prettySorted(value, indent) {
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const inner = indent + "  ";
    return "[\n" + value.map((v) => inner + prettySorted(v, inner)).join(",\n") + "\n" + indent + "]";
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort(compareUtf8);
    if (keys.length === 0) return "{}";
    const inner = indent + "  ";
    const items = keys.map((k) => inner + JSON.stringify(k) + ": " + prettySorted(value[k], inner));
    return "{\n" + items.join(",\n") + "\n" + indent + "}";
  }
  return JSON.stringify(value);
}

/** Throws unless `path` is relative, `/`-separated, without empty, `.` or `..` segments. */
export function checkOutputPath(path) {
  const bad =
    typeof path !== "string" ||
    path === "" ||
    path.startsWith("/") ||
    path.includes("\\") ||
    path.includes("\0") ||
    path.split("/").some((s) => s === "" || s === "." || s === "..");
  if (bad) {
    throw `invalid output path ${JSON.stringify(path)}: must be relative, \`/\`-separated, without empty, \`.\` or \`..\` segments`;
  }
}

// --- The WIT exports ------------------------------------------------------------------

function parseParams(params) {
  if (params.trim() === "") return null;
  try {
    return JSON.parse(params);
  } catch (e) {
    throw `the job's params are not valid JSON: ${message(e)}`;
  }
}

/**
 * Makes the `mapper` and `reducer` exports for an analysis definition:
 * `export const { mapper, reducer } = exportAnalysis({ map, merge, publish })`.
 * Optional members: `create(params)` (a fresh analysis object per side; throw to refuse
 * the params), `empty()`, `encode(partial)` -> Uint8Array, `decode(bytes)`.
 */
export function exportAnalysis(def) {
  for (const name of ["map", "merge", "publish"]) {
    if (typeof def[name] !== "function") throw new Error(`the analysis has no ${name}()`);
  }
  const methods = {
    // No prototype: a key such as "__proto__" is then an ordinary key.
    empty: () => Object.create(null),
    encode: (partial) => encoder.encode(JSON.stringify(partial)),
    decode: (bytes) => JSON.parse(strictDecoder.decode(bytes)),
    ...def,
  };

  function makeSide() {
    return { analysis: null, error: null, partial: null, dirty: false };
  }
  const mapperSide = makeSide();
  const reducerSide = makeSide();

  function setupSide(side, params, implicit) {
    side.analysis = null;
    side.error = null;
    try {
      const parsed = parseParams(params);
      const analysis =
        typeof methods.create === "function" ? methods.create(parsed) : { ...methods };
      for (const [k, v] of Object.entries(methods)) if (!(k in analysis)) analysis[k] = v;
      side.analysis = analysis;
      side.partial = analysis.empty();
      side.dirty = false;
    } catch (e) {
      side.error = implicit ? `implicit setup("") failed: ${message(e)}` : message(e);
    }
    return side.error;
  }

  function get(side) {
    if (side.analysis === null && side.error === null) setupSide(side, "", true);
    if (side.error !== null) throw `setup failed: ${side.error}`;
    return side.analysis;
  }

  function decode(analysis, bytes) {
    return bytes.length === 0 ? analysis.empty() : analysis.decode(bytes);
  }

  function encode(analysis, partial) {
    try {
      const out = analysis.encode(partial);
      return typeof out === "string" ? encoder.encode(out) : out;
    } catch (e) {
      throw `cannot encode the partial: ${message(e)}`;
    }
  }

  const mapper = {
    setup(params) {
      const error = setupSide(mapperSide, params, false);
      if (error !== null) throw error;
    },
    map(batch) {
      let analysis;
      try {
        analysis = get(mapperSide);
      } catch (e) {
        return batch.map((_, index) => ({ index, message: message(e) }));
      }
      const partial = mapperSide.partial;
      const errors = [];
      for (let index = 0; index < batch.length; index++) {
        try {
          analysis.map(batch[index], partial);
        } catch (e) {
          errors.push({ index, message: message(e) });
        }
      }
      if (errors.length < batch.length) mapperSide.dirty = true;
      return errors;
    },
    flush() {
      const analysis = get(mapperSide);
      const { partial, dirty } = mapperSide;
      mapperSide.partial = analysis.empty();
      mapperSide.dirty = false;
      return dirty ? encode(analysis, partial) : new Uint8Array(0);
    },
  };

  const reducer = {
    setup(params) {
      const error = setupSide(reducerSide, params, false);
      if (error !== null) throw error;
    },
    merge(partials) {
      const analysis = get(reducerSide);
      if (partials.every((p) => p.length === 0)) return new Uint8Array(0);
      let acc = analysis.empty();
      partials.forEach((bytes, index) => {
        try {
          acc = analysis.merge(acc, decode(analysis, bytes));
        } catch (e) {
          throw `partial ${index} (of ${partials.length}): ${message(e)}`;
        }
      });
      return encode(analysis, acc);
    },
    publish(partial) {
      const analysis = get(reducerSide);
      let value;
      try {
        value = decode(analysis, partial);
      } catch (e) {
        throw `the final partial: ${message(e)}`;
      }
      let files;
      try {
        files = analysis.publish(value).map(({ path, contents }) => {
          checkOutputPath(path);
          return {
            path,
            contents: typeof contents === "string" ? encoder.encode(contents) : contents,
          };
        });
      } catch (e) {
        throw message(e);
      }
      return files;
    },
  };

  return { mapper, reducer };
}
