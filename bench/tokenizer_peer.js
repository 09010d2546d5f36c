// Peer side of bench/bench_tokenizer.c: single-thread encode throughput of js-tiktoken
// (cl100k_base) and llama3-tokenizer-js on the same text, in the same run.
// usage: node bench/tokenizer_peer.js NPM_DIR SAMPLE.txt SECONDS
// NPM_DIR holds node_modules/ with js-tiktoken and llama3-tokenizer-js (bench_tokenizer installs
// them there). Prints one JSON object per encoder: name, bytes, tokens, checksum, mb_per_s.
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const { pathToFileURL } = require('url');

function checksum(ids) {
  // FNV-1a over the ids, as bench_tokenizer.c computes it
  let h = 0x811c9dc5;
  for (const id of ids) {
    h ^= id >>> 0;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function measure(name, encode, text, bytes, seconds) {
  const ids = encode(text); // warm-up (JIT)
  let reps = 0;
  const t0 = process.hrtime.bigint();
  let dt = 0;
  do {
    encode(text);
    reps++;
    dt = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (dt < seconds);
  return { name, bytes, tokens: ids.length, checksum: checksum(ids), mb_per_s: (reps * bytes) / dt / 1e6 };
}

async function main() {
  const [npmDir, sample, secondsArg] = process.argv.slice(2);
  const seconds = Number(secondsArg || 2);
  const req = createRequire(path.join(path.resolve(npmDir), 'node_modules', 'peer.js'));
  const { getEncoding } = req('js-tiktoken');
  const llama3 = (await import(pathToFileURL(req.resolve('llama3-tokenizer-js')).href)).default;
  const text = fs.readFileSync(sample, 'utf8');
  const bytes = Buffer.byteLength(text);
  const enc = getEncoding('cl100k_base');
  const rows = [
    // encode(text, allowed = [], disallowed = []): ordinary text, no special-token checks
    measure('js-tiktoken cl100k_base', (t) => enc.encode(t, [], []), text, bytes, seconds),
    measure('llama3-tokenizer-js', (t) => llama3.encode(t, { bos: false, eos: false }), text, bytes, seconds),
  ];
  for (const r of rows) console.log(JSON.stringify(r));
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
