// Static file server for the browser-phone page, loopback only, no dependencies
// beyond Node's standard library.
//
// It serves exactly three paths:
//   /            index.html
//   /phone.js    the page logic (exposes window.siplinkState)
//   /jssip.js    JsSIP and its dependencies, bundled at start-up from
//                node_modules (the npm package ships CommonJS only)
//
// Used in-process by run.mjs (startServer) or by hand:
//   node serve.mjs [port]      (prints the URL it listens on)

import { createServer } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

function isFile(p) {
  return existsSync(p) && statSync(p).isFile();
}

// Resolves `p` as a file: itself, with .js, or as a directory with index.js.
function asFile(p) {
  for (const candidate of [p, `${p}.js`, join(p, 'index.js')]) {
    if (isFile(candidate)) return candidate;
  }
  return null;
}

// Resolves a bare package name the way Node does (walking up node_modules),
// preferring the package.json "browser" entry when it is a plain string.
function resolvePackage(name, fromDir) {
  let dir = fromDir;
  for (;;) {
    const pkgDir = join(dir, 'node_modules', name);
    const pkgJson = join(pkgDir, 'package.json');
    if (isFile(pkgJson)) {
      const pkg = JSON.parse(readFileSync(pkgJson, 'utf8'));
      const entry = typeof pkg.browser === 'string' ? pkg.browser : pkg.main || 'index.js';
      const file = asFile(resolve(pkgDir, entry));
      if (file) return file;
      throw new Error(`package ${name}: entry ${entry} not found in ${pkgDir}`);
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package ${name} not found (run npm ci in ${HERE})`);
    dir = parent;
  }
}

function resolveSpecifier(spec, fromFile) {
  if (spec.startsWith('./') || spec.startsWith('../')) {
    const file = asFile(resolve(dirname(fromFile), spec));
    if (!file) throw new Error(`cannot resolve ${spec} from ${fromFile}`);
    return file;
  }
  return resolvePackage(spec, dirname(fromFile));
}

const REQUIRE_RE = /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g;

/**
 * Bundles a CommonJS package and everything it require()s into one script
 * that sets `globalThis[globalName]` to the package's exports.
 */
export function bundlePackage(name, globalName) {
  const ids = new Map(); // absolute file -> numeric id
  const modules = []; // [source, {specifier: id}]
  const visit = (file) => {
    if (ids.has(file)) return ids.get(file);
    const id = modules.length;
    ids.set(file, id);
    modules.push(null);
    const text = readFileSync(file, 'utf8');
    // JSON files (JsSIP reads its version from package.json) become a module
    // exporting the parsed value.
    const source = file.endsWith('.json') ? `module.exports = ${JSON.stringify(JSON.parse(text))};` : text;
    const deps = {};
    for (const m of file.endsWith('.json') ? [] : source.matchAll(REQUIRE_RE)) {
      deps[m[1]] = visit(resolveSpecifier(m[1], file));
    }
    modules[id] = [source, deps];
    return id;
  };
  const entry = visit(resolvePackage(name, HERE));
  const parts = modules.map(
    ([source, deps]) =>
      `[function (module, exports, require) {\n${source}\n}, ${JSON.stringify(deps)}]`,
  );
  return `(function () {
var defs = [
${parts.join(',\n')}
];
var cache = {};
function load(id) {
  if (cache[id]) return cache[id].exports;
  var module = (cache[id] = { exports: {} });
  var deps = defs[id][1];
  defs[id][0].call(module.exports, module, module.exports, function (spec) {
    if (!(spec in deps)) throw new Error("bundle: unknown module " + spec);
    return load(deps[spec]);
  });
  return module.exports;
}
globalThis[${JSON.stringify(globalName)}] = load(${entry});
})();
`;
}

/**
 * Starts the server on host:port (port 0 = let the OS choose).
 * Resolves to { server, url }.
 */
export function startServer({ host = '127.0.0.1', port = 0 } = {}) {
  const files = {
    '/': ['text/html; charset=utf-8', readFileSync(join(HERE, 'index.html'))],
    '/index.html': ['text/html; charset=utf-8', readFileSync(join(HERE, 'index.html'))],
    '/phone.js': ['text/javascript; charset=utf-8', readFileSync(join(HERE, 'phone.js'))],
    '/jssip.js': ['text/javascript; charset=utf-8', Buffer.from(bundlePackage('jssip', 'JsSIP'))],
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = files[path];
    if (req.method !== 'GET' || !file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': file[0], 'cache-control': 'no-store' }).end(file[1]);
  });
  return new Promise((resolveP, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolveP({ server, url: `http://${host}:${addr.port}/` });
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const port = Number(process.argv[2] || 0);
  const { url } = await startServer({ port });
  console.log(`serving ${HERE} on ${url}`);
}
