// Generate n wafer maps of one class from an edge-infer bundle, in Node.js, with exactly
// the maps of the Python API's WaferGenerator.generate(cls, n, seed=seed).
//
//   npm install onnxruntime-node@1.30.0 --ignore-scripts
//   node generate.mjs BUNDLE CLASS N SEED OUT_DIR
//
// BUNDLE is a bundle folder (`edge-infer bundle export DIR` copies the installed one).
// Writes OUT_DIR/gen_data.npy (float32, N x 26 x 26 x 3, one-hot: boundary, normal,
// defect) and OUT_DIR/gen_label.npy (int64, N x 1, the class index), as the Python
// CLI does, and reads nothing but the bundle's files.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { inflateRawSync } from "node:zlib";
import * as ort from "onnxruntime-node";

const BLOCK_ROWS = 4096; // rows per graph run, as the Python runtime runs them
const MAX_REDRAWS = 8; // sibling redraws: attempts 1 ... 8, sigma x 1.5^k
const REDRAW_GROWTH = 1.5;

// ---- counter-based randomness: SplitMix64 on BigInt, wrapping at 2^64
const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;
const STREAM_MUL = 0xd1b54a32d192ed03n;
const PLAN_STREAM = 1n << 32n; // the stream that orders a class's bank rows

function mix(z) {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}

// Value c of stream s for seed: mix(mix(seed XOR s*K) + (c + 1)*gamma).
function draw(seed, stream, c) {
  const key = mix((seed ^ ((stream * STREAM_MUL) & MASK)) & MASK);
  return mix((key + BigInt(c + 1) * GAMMA) & MASK);
}

// The class's bank rows ordered by their PLAN_STREAM draws (ties keep bank order), cycled to n.
function chooseSources(rows, n, seed) {
  const keys = rows.map((_, i) => draw(seed, PLAN_STREAM, i));
  const order = rows.map((_, i) => i).sort((a, b) => (keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : a - b));
  return Array.from({ length: n }, (_, r) => BigInt(rows[order[r % order.length]]));
}

// ---- a small .npz reader (zip members stored or deflated; .npy format 1-3), for sibling redraws only
function readNpz(path) {
  const zip = readFileSync(path);
  let end = zip.length - 22;
  while (end >= 0 && zip.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) throw new Error(`${path}: not a zip file`);
  const arrays = {};
  let p = zip.readUInt32LE(end + 16);
  for (let i = 0; i < zip.readUInt16LE(end + 10); i++) {
    const method = zip.readUInt16LE(p + 10), size = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28), local = zip.readUInt32LE(p + 42);
    const name = zip.toString("utf8", p + 46, p + 46 + nameLen);
    p += 46 + nameLen + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(start, start + size);
    arrays[name.replace(/\.npy$/, "")] = readNpy(method === 8 ? inflateRawSync(raw) : Buffer.from(raw));
  }
  return arrays;
}

function readNpy(buf) {
  const v1 = buf[6] === 1;
  const headerLen = v1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const header = buf.toString("latin1", v1 ? 10 : 12, (v1 ? 10 : 12) + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error("fortran-order arrays are not supported");
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").filter((s) => s.trim()).map(Number);
  const data = buf.subarray((v1 ? 10 : 12) + headerLen); // a fresh copy, so aligned for typed arrays
  const Type = { "<f4": Float32Array, "<i8": BigInt64Array, "|b1": Uint8Array, "|u1": Uint8Array }[descr];
  if (!Type) throw new Error(`unsupported dtype ${descr}`);
  return { shape, data: new Type(data.buffer, data.byteOffset, data.byteLength / Type.BYTES_PER_ELEMENT) };
}

// ---- .npy writing: a version 1.0 header, then the raw little-endian data
function npyHeader(descr, shape) {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const pad = 64 - ((10 + dict.length + 1) % 64);
  const text = dict + " ".repeat(pad % 64) + "\n";
  const head = Buffer.alloc(10);
  head.write("\x93NUMPY", 0, "latin1");
  head[6] = 1;
  head.writeUInt16LE(text.length, 8);
  return Buffer.concat([head, Buffer.from(text, "latin1")]);
}

// A bundle file's path, once its bytes match the sha256 the manifest lists for it.
function verified(bundle, manifest, name) {
  const digest = createHash("sha256").update(readFileSync(join(bundle, name))).digest("hex");
  if (digest !== manifest.files[name]) throw new Error(`${join(bundle, name)} differs from the manifest's sha256`);
  return join(bundle, name);
}

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

// ---- the request
const [bundle, className, nText, seedText, outDir] = process.argv.slice(2);
if (outDir === undefined) fail("usage: node generate.mjs BUNDLE CLASS N SEED OUT_DIR");
let manifest;
try {
  manifest = JSON.parse(readFileSync(join(bundle, "manifest.json"), "utf8"));
} catch (e) {
  fail(`${bundle} is not a bundle folder (${e.message})`);
}
if (!manifest.class_rows) fail(`${bundle}: the manifest has no class_rows; re-export the bundle with a newer edge-infer`);
const cls = manifest.classes.findIndex((c) => c.toLowerCase() === className.toLowerCase());
if (cls < 0) fail(`unknown class ${className}; choose one of: ${manifest.classes.join(", ")}`);
const rows = manifest.class_rows[manifest.classes[cls]];
if (rows.length === 0) fail(`no maps of class ${manifest.classes[cls]} in the bundle's latent bank`);
if (!/^[0-9]+$/.test(nText) || Number(nText) < 1) fail(`N must be a whole number, at least 1, not ${nText}`);
if (!/^[0-9]+$/.test(seedText) || BigInt(seedText) >= 1n << 63n) fail(`SEED must be a whole number from 0 to 2**63-1, not ${seedText}`);
const n = Number(nText), seed = BigInt(seedText);
const defaults = manifest.noise_defaults; // this client does what generator.onnx does: relative noise, outline lock
if (defaults.mode !== "relative" || defaults.method !== "noise" || !defaults.outline_lock) fail("the bundle's noise defaults need the Python runtime");
const strength = defaults.strength;
const dataPath = join(outDir, "gen_data.npy"), labelPath = join(outDir, "gen_label.npy");
for (const path of [dataPath, labelPath]) if (existsSync(path)) fail(`${path} already exists`);

let sources;
try {
  sources = chooseSources(rows, n, seed);
} catch (e) {
  fail(`${n} maps are too many for this client (${e.message})`);
}
const repeats = n > rows.length; // then two maps of one source may clash: sibling redraws

// The settings the maps depend on: all graph optimisations, the CPU provider.
const options = { graphOptimizationLevel: "all", executionProviders: ["cpu"] };
let generator;
try {
  generator = await ort.InferenceSession.create(verified(bundle, manifest, manifest.graphs.generator.file), options);
} catch (e) {
  fail(`cannot open the bundle's generator graph: ${e.message}`);
}
const int64 = (values) => new ort.Tensor("int64", BigInt64Array.from(values), [values.length]);

// Sibling redraws: in row order, a map whose sibling key equals that of a kept map of an
// earlier row is replaced by the first of its redraws k = 1 ... 8 whose key is new (else by
// redraw 8), drawn by generator_core.onnx from the source's latent with sigma = strength x
// std x 1.5^k. The key of (source, map): the map's one-hot bits packed (numpy.packbits,
// 254 bytes, zero-padded to 32 little-endian uint64 words), each word times its odd weight,
// summed mod 2^64, XOR source x gamma.
const KEY_WEIGHTS = Array.from({ length: 32 }, (_, c) => draw(0x51b1n, 0n, c) | 1n);
function siblingKey(source, map) {
  const packed = Buffer.alloc(256);
  for (let i = 0; i < map.length; i++) if (map[i] !== 0) packed[i >> 3] |= 0x80 >> (i & 7);
  let key = 0n;
  for (let w = 0; w < 32; w++) key += packed.readBigUInt64LE(8 * w) * KEY_WEIGHTS[w];
  return (key & MASK) ^ ((source * GAMMA) & MASK);
}
const seen = new Set();
let core = null, bank = null, redrawn = 0;
async function redraws(source, row) {
  if (core === null) {
    core = await ort.InferenceSession.create(verified(bundle, manifest, manifest.graphs.generator_core.file), options);
    bank = readNpz(verified(bundle, manifest, manifest.latent_bank.file));
  }
  const s = Number(source), L = 64 * 3 * 3, O = 26 * 26;
  const std = manifest.latent_stats.overall.std;
  const latent = new Float32Array(MAX_REDRAWS * L), sigma = new Float32Array(MAX_REDRAWS * 64);
  const outline = new Uint8Array(MAX_REDRAWS * O);
  const shape = Number(bank.outline_ids.data[s]) * O;
  for (let k = 0; k < MAX_REDRAWS; k++) {
    latent.set(bank.latents.data.subarray(s * L, (s + 1) * L), k * L);
    outline.set(bank.outlines.data.subarray(shape, shape + O), k * O);
    const growth = Math.fround(REDRAW_GROWTH ** (k + 1));
    for (let c = 0; c < 64; c++) sigma[k * 64 + c] = Math.fround(Math.fround(Math.fround(strength) * Math.fround(std[c])) * growth);
  }
  const { maps } = await core.run({
    latent: new ort.Tensor("float32", latent, [MAX_REDRAWS, 64, 3, 3]),
    sigma: new ort.Tensor("float32", sigma, [MAX_REDRAWS, 64]),
    outline: new ort.Tensor("bool", outline, [MAX_REDRAWS, 26, 26]),
    seed: int64([seed]),
    row: int64(Array(MAX_REDRAWS).fill(BigInt(row))),
    attempt: int64(Array.from({ length: MAX_REDRAWS }, (_, k) => BigInt(k + 1))),
  }, ["maps"]);
  return maps.data;
}

// ---- generate block by block, streaming the maps into a temporary file renamed into place
mkdirSync(outDir, { recursive: true });
const tmpData = `${dataPath}.part`, tmpLabel = `${labelPath}.part`;
const MAP = 26 * 26 * 3;
try {
  const fd = openSync(tmpData, "w");
  writeSync(fd, npyHeader("<f4", [n, 26, 26, 3]));
  for (let lo = 0; lo < n; lo += BLOCK_ROWS) {
    const block = sources.slice(lo, lo + BLOCK_ROWS);
    const { maps } = await generator.run({
      source: int64(block),
      seed: int64([seed]),
      row0: int64([BigInt(lo)]),
      strength: new ort.Tensor("float32", Float32Array.from([strength]), [1]),
    });
    const data = maps.data;
    for (let i = 0; repeats && i < block.length; i++) {
      let key = siblingKey(block[i], data.subarray(i * MAP, (i + 1) * MAP));
      if (seen.has(key)) {
        const candidates = await redraws(block[i], lo + i);
        let k = 0;
        while (k < MAX_REDRAWS - 1 && seen.has(siblingKey(block[i], candidates.subarray(k * MAP, (k + 1) * MAP)))) k++;
        data.set(candidates.subarray(k * MAP, (k + 1) * MAP), i * MAP);
        key = siblingKey(block[i], data.subarray(i * MAP, (i + 1) * MAP));
        redrawn++;
      }
      seen.add(key);
    }
    writeSync(fd, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }
  closeSync(fd);
  const labels = new BigInt64Array(n).fill(BigInt(cls));
  const fl = openSync(tmpLabel, "w");
  writeSync(fl, npyHeader("<i8", [n, 1]));
  writeSync(fl, Buffer.from(labels.buffer));
  closeSync(fl);
  renameSync(tmpData, dataPath);
  renameSync(tmpLabel, labelPath);
} catch (e) {
  rmSync(tmpData, { force: true });
  rmSync(tmpLabel, { force: true });
  fail(e.message);
}
console.log(`wrote ${n} maps of class ${manifest.classes[cls]} (seed ${seed}, strength ${strength}, ` +
  `${redrawn} sibling redraws) to ${dataPath} (float32 ${n}x26x26x3) and ${labelPath} (int64 ${n}x1)`);
