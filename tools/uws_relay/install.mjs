// Fetches uWebSockets.js for tools/uws_relay/relay.mjs from the npm registry:
// the `uws-pack` package, a repack of uWS.js's own release binaries
// (github.com/uNetworking/uWebSockets.js, not on npm itself), pinned to one
// version and checked against its registry integrity hash. Only the binary for
// this Node (its platform, architecture and ABI) and the loader are kept.
// Idempotent: returns at once when they are in place.
//
// Usage: node tools/uws_relay/install.mjs   (`make peers`; make test and make bench run it)
import {createHash} from 'node:crypto';
import {execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync}
    from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const NAME = 'uws-pack';
const VERSION = '20.0.8';  // uWS.js v20
const INTEGRITY =
    'sha512-EziGwZOMH8Y09erf/DHBgaGoTgt+XgqLFoyQfRiDrWHDCZ+jZ5aEBW7fSIcD5LzxDimHK2NxJpmlwSIfJiAZkg==';
const registry = (process.env.npm_config_registry || 'https://registry.npmjs.org/').replace(/\/?$/, '/');

const here = dirname(fileURLToPath(import.meta.url));
const dest = join(here, 'node_modules', NAME);
const binary = `dist/bin/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
const wanted = ['package.json', 'LICENSE', 'dist/uws.mjs', binary];

function installed() {
  try {
    return JSON.parse(readFileSync(join(dest, 'package.json'))).version === VERSION &&
        wanted.every((f) => existsSync(join(dest, f)));
  } catch {
    return false;
  }
}

if (!installed()) {
  const url = `${registry}${NAME}/-/${NAME}-${VERSION}.tgz`;
  let tgz;
  for (let attempt = 1; !tgz; ++attempt) {  // a registry hiccup is not a failed build
    try {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      tgz = Buffer.from(await res.arrayBuffer());
    } catch (e) {
      if (attempt === 3) throw new Error(`${url}: ${e.message}`);
      await new Promise((done) => setTimeout(done, 2000 * attempt));
    }
  }
  const got = 'sha512-' + createHash('sha512').update(tgz).digest('base64');
  if (got !== INTEGRITY) throw new Error(`${url}: integrity ${got}, expected ${INTEGRITY}`);
  const work = mkdtempSync(join(tmpdir(), 'uws-pack-'));
  try {
    writeFileSync(join(work, 'p.tgz'), tgz);
    execFileSync('tar', ['-xzf', join(work, 'p.tgz'), '-C', work,
                         ...wanted.map((f) => `package/${f}`)]);
    rmSync(dest, {recursive: true, force: true});
    mkdirSync(dirname(dest), {recursive: true});
    renameSync(join(work, 'package'), dest);
  } finally {
    rmSync(work, {recursive: true, force: true});
  }
  console.log(`uws relay: installed ${NAME}@${VERSION} (${binary})`);
}
