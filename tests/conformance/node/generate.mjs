// Generate wafer maps with a bundle's generator.onnx from Node.js (onnxruntime-node),
// reading nothing but the bundle's files: the conformance client of docs/other-languages.md.
//
//   node generate.mjs BUNDLE REQUEST.json OUT.f32
//
// REQUEST.json: {"sources": [...], "seed": "123", "row0": 0, "strength": 0.4 (optional: the
// manifest's noise_defaults.strength), "chunk": 0 (optional: rows per graph run; 0 = all at once)}.
// The seed is a decimal string: it is an int64 and JavaScript numbers stop at 2**53.
// OUT.f32 receives the maps, float32 little-endian, N x 26 x 26 x 3, row-major.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const ort = require(process.env.ONNXRUNTIME_NODE || "onnxruntime-node");

const [bundle, requestPath, outPath] = process.argv.slice(2);
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const manifest = JSON.parse(readFileSync(join(bundle, "manifest.json"), "utf8"));
const strength = request.strength ?? manifest.noise_defaults.strength;
const sources = request.sources.map(BigInt);
const chunk = request.chunk || sources.length;

// The settings the maps depend on: all graph optimisations, the CPU provider.
const session = await ort.InferenceSession.create(join(bundle, manifest.graphs.generator.file), {
  graphOptimizationLevel: "all",
  executionProviders: ["cpu"],
});

const parts = [];
for (let start = 0; start < sources.length; start += chunk) {
  const rows = sources.slice(start, start + chunk);
  const feeds = {
    source: new ort.Tensor("int64", BigInt64Array.from(rows), [rows.length]),
    seed: new ort.Tensor("int64", BigInt64Array.from([BigInt(request.seed)]), [1]),
    row0: new ort.Tensor("int64", BigInt64Array.from([BigInt((request.row0 ?? 0) + start)]), [1]),
    strength: new ort.Tensor("float32", Float32Array.from([strength]), [1]),
  };
  const { maps } = await session.run(feeds);
  parts.push(Buffer.from(maps.data.buffer, maps.data.byteOffset, maps.data.byteLength));
}
writeFileSync(outPath, Buffer.concat(parts));
