// encode.mjs DIR TEXT...: loads DIR/tokenizer.json and DIR/tokenizer_config.json with
// @huggingface/tokenizers (the tokenizers.js library) and prints, as JSON, the ids of each
// TEXT encoded without special tokens added, and the decoding of those ids.
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "node:fs";
import path from "node:path";

const [dir, ...texts] = process.argv.slice(2);
const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
const tok = new Tokenizer(tj, tc);
const out = texts.map((t) => {
  const ids = tok.encode(t, { add_special_tokens: false }).ids;
  return { text: t, ids, decoded: tok.decode(ids) };
});
console.log(JSON.stringify(out));
