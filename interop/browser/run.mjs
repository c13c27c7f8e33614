#!/usr/bin/env node
// End-to-end test of a SIP proxy with a real browser phone.
//
// Serves the JsSIP page on 127.0.0.1, opens it in headless Chromium (driven by
// playwright-core), registers over WebSocket, calls a number and expects:
//   registered -> call confirmed (the browser accepted the SDP answer)
//              -> call ended by a BYE from the remote side.
// Every state transition the page reports is printed. Exit code 0 only for
// that sequence; 1 for a failed test; 2 for a usage error.
//
// Options (each also read from the environment variable in brackets):
//   --ws-url URL          WebSocket URL of the proxy            [SIPLINK_WS_URL]
//   --domain NAME         SIP domain of the user (default: the WS URL's host)
//                                                               [SIPLINK_SIP_DOMAIN]
//   --user NAME           user to register as (default alice)   [SIPLINK_USER]
//   --password PASS       its password (default secret)         [SIPLINK_PASSWORD]
//   --auth-user NAME      digest user name, if not the user     [SIPLINK_AUTH_USER]
//   --target NUMBER       number (or sip: URI) to call (default 1000)
//                                                               [SIPLINK_CALL_TARGET]
//   --register-timeout S  seconds to wait for registration (10) [SIPLINK_REGISTER_TIMEOUT]
//   --answer-timeout S    seconds from INVITE to confirmed (15) [SIPLINK_ANSWER_TIMEOUT]
//   --bye-timeout S       seconds from confirmed to BYE (15)    [SIPLINK_BYE_TIMEOUT]
//   --chromium PATH       browser binary (/usr/bin/chromium)    [SIPLINK_CHROMIUM]
//   --screenshot FILE     save a PNG of the page at the end     [SIPLINK_SCREENSHOT]
//   --debug               print JsSIP's log (SIP messages) live [SIPLINK_DEBUG=1];
//                         without it the log is printed only when the test fails

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServer } from './serve.mjs';

const USAGE = 'usage: node run.mjs --ws-url ws://127.0.0.1:PORT [--domain D] [--user U] [--password P] [--target N] [--debug]';

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        'ws-url': { type: 'string' },
        domain: { type: 'string' },
        user: { type: 'string' },
        password: { type: 'string' },
        'auth-user': { type: 'string' },
        target: { type: 'string' },
        'register-timeout': { type: 'string' },
        'answer-timeout': { type: 'string' },
        'bye-timeout': { type: 'string' },
        chromium: { type: 'string' },
        screenshot: { type: 'string' },
        debug: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    console.error(`${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const env = process.env;
  const wsUrl = parsed['ws-url'] ?? env.SIPLINK_WS_URL;
  if (!wsUrl) {
    console.error(`--ws-url (or SIPLINK_WS_URL) is required\n${USAGE}`);
    process.exit(2);
  }
  let wsHost;
  try {
    const u = new URL(wsUrl);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error('not a ws: or wss: URL');
    wsHost = u.hostname.replace(/^\[|\]$/g, '');
  } catch (e) {
    console.error(`bad --ws-url ${wsUrl}: ${e.message}`);
    process.exit(2);
  }
  const seconds = (name, envName, dflt) => {
    const raw = parsed[name] ?? env[envName] ?? String(dflt);
    const v = Number(raw);
    if (!Number.isFinite(v) || v <= 0 || v > 120) {
      console.error(`--${name} must be 1..120 seconds, got ${raw}`);
      process.exit(2);
    }
    return v * 1000;
  };
  return {
    wsUrl,
    domain: parsed.domain ?? env.SIPLINK_SIP_DOMAIN ?? wsHost,
    user: parsed.user ?? env.SIPLINK_USER ?? 'alice',
    password: parsed.password ?? env.SIPLINK_PASSWORD ?? 'secret',
    authUser: parsed['auth-user'] ?? env.SIPLINK_AUTH_USER ?? null,
    target: parsed.target ?? env.SIPLINK_CALL_TARGET ?? '1000',
    registerMs: seconds('register-timeout', 'SIPLINK_REGISTER_TIMEOUT', 10),
    answerMs: seconds('answer-timeout', 'SIPLINK_ANSWER_TIMEOUT', 15),
    byeMs: seconds('bye-timeout', 'SIPLINK_BYE_TIMEOUT', 15),
    chromium: parsed.chromium ?? env.SIPLINK_CHROMIUM ?? '/usr/bin/chromium',
    screenshot: parsed.screenshot ?? env.SIPLINK_SCREENSHOT ?? null,
    debug: Boolean(parsed.debug || env.SIPLINK_DEBUG === '1'),
  };
}

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // keep host ICE candidates as plain addresses: no mDNS names, so no
  // multicast announcements from the browser
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

const opts = options();
const t0 = Date.now();
const stamp = () => `+${((Date.now() - t0) / 1000).toFixed(2)}s`;
const log = (msg) => console.log(`[run ${stamp()}] ${msg}`);

class TestFailure extends Error {}

// The page's console, kept for the failure report (bounded).
const consoleLines = [];
function keepConsole(line) {
  if (opts.debug) console.log(`[page] ${line}`);
  consoleLines.push(line);
  if (consoleLines.length > 400) consoleLines.shift();
}

let playwright;
try {
  playwright = await import('playwright-core');
} catch (e) {
  console.error(`playwright-core is missing: run npm ci in interop/browser (${e.message})`);
  process.exit(2);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'siplink-chromium-'));
let server = null;
let context = null;
let page = null;
let exitCode = 1;

// Hard bound on the whole run, whatever hangs.
const overallMs = opts.registerMs + opts.answerMs + opts.byeMs + 10000;
const watchdog = setTimeout(() => {
  console.error(`FAIL: the run took longer than ${overallMs / 1000} s`);
  cleanup().finally(() => process.exit(1));
}, overallMs);

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  try {
    if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 5000))]);
  } catch (_) {
    // the browser may already be gone
  }
  if (server) server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.error(`interrupted by ${sig}`);
    cleanup().finally(() => process.exit(1));
  });
}

async function state() {
  return page.evaluate(() => ({
    registration: window.siplinkState.registration,
    call: window.siplinkState.call,
    end: window.siplinkState.end,
    media: window.siplinkState.media,
    error: window.siplinkState.error,
  }));
}

// Waits until pred(state) is true; returns the state, or throws TestFailure
// with `what` once `ms` have passed or `fatal(state)` gives a reason.
async function waitFor(what, ms, pred, fatal) {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await state();
    if (pred(s)) return s;
    const reason = fatal && fatal(s);
    if (reason) throw new TestFailure(`${what}: ${reason} (state ${JSON.stringify(s)})`);
    if (Date.now() > deadline) {
      throw new TestFailure(`${what}: not reached within ${ms / 1000} s (state ${JSON.stringify(s)})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  const started = await startServer({ host: '127.0.0.1', port: 0 });
  server = started.server;
  log(`page served on ${started.url}`);
  log(`proxy ${opts.wsUrl}, user sip:${opts.user}@${opts.domain}, calling ${opts.target}`);

  context = await playwright.chromium.launchPersistentContext(userDataDir, {
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    permissions: ['microphone'],
    timeout: 20000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => keepConsole(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => {
    keepConsole(`pageerror: ${e.message}`);
    console.error(`[page error] ${e.message}`);
  });
  await page.exposeFunction('siplinkReport', (ev) => {
    console.log(`[page +${(ev.t / 1000).toFixed(2)}s] ${ev.kind} ${JSON.stringify(ev.detail)}`);
  });
  await page.goto(started.url, { timeout: 10000 });
  await page.waitForFunction(() => typeof window.siplinkStart === 'function' && window.JsSIP, null, {
    timeout: 10000,
  });

  const uri = `sip:${opts.user}@${opts.domain}`;
  await page.evaluate(
    (cfg) => window.siplinkStart(cfg),
    { wsUrl: opts.wsUrl, uri, password: opts.password, authorizationUser: opts.authUser, debug: true },
  );
  await waitFor(
    'registration',
    opts.registerMs,
    (s) => s.registration === 'registered',
    (s) => (s.registration === 'failed' ? s.error : null),
  );
  log('STEP 1/3 OK: registered');

  const target = /^sips?:/.test(opts.target) ? opts.target : `sip:${opts.target}@${opts.domain}`;
  await page.evaluate((t) => window.siplinkCall(t), target);
  const confirmed = await waitFor(
    'call confirmed',
    opts.answerMs,
    (s) => s.call === 'confirmed' || s.call === 'ended',
    (s) => (s.call === 'failed' ? `call failed: ${JSON.stringify(s.end)} ${s.error ?? ''}` : null),
  );
  const events = await page.evaluate(() => window.siplinkState.events.map((e) => e.kind));
  if (!events.includes('call:confirmed')) {
    throw new TestFailure(`the call ended without being confirmed: ${JSON.stringify(confirmed)}`);
  }
  const media = (await state()).media;
  if (!media || media.remoteType !== 'answer' || !media.remoteHasIce || !media.remoteHasFingerprint) {
    throw new TestFailure(`confirmed, but the remote answer is not a WebRTC answer: ${JSON.stringify(media)}`);
  }
  log(`STEP 2/3 OK: call confirmed, browser applied the SDP answer (${JSON.stringify(media.transceivers)})`);

  const ended = await waitFor(
    'call ended by BYE',
    opts.byeMs,
    (s) => s.call === 'ended' || s.call === 'failed',
  );
  const end = ended.end || {};
  if (end.how !== 'ended' || end.originator !== 'remote' || end.method !== 'BYE') {
    throw new TestFailure(`the call did not end by a BYE from the remote side: ${JSON.stringify(end)}`);
  }
  log(`STEP 3/3 OK: call ended by the remote BYE (cause ${end.cause})`);

  // Unregister politely; not part of the verdict.
  await page.evaluate(() => window.siplinkStop());
  try {
    await waitFor('unregister', 3000, (s) => s.registration === 'unregistered');
  } catch (_) {
    log('note: no unregistration confirmed within 3 s');
  }
  exitCode = 0;
} catch (e) {
  if (e instanceof TestFailure) {
    console.error(`FAIL: ${e.message}`);
  } else {
    console.error(`FAIL (harness error): ${e.stack || e}`);
  }
  if (!opts.debug && consoleLines.length) {
    console.error('--- page console (last lines) ---');
    for (const l of consoleLines.slice(-150)) console.error(l);
    console.error('--- end of page console ---');
  }
} finally {
  if (opts.screenshot && page) {
    try {
      await page.screenshot({ path: opts.screenshot, fullPage: true });
      log(`screenshot saved to ${opts.screenshot}`);
    } catch (e) {
      log(`screenshot failed: ${e.message}`);
    }
  }
  await cleanup();
  clearTimeout(watchdog);
}
if (exitCode === 0) {
  console.log('PASS: registered -> confirmed -> ended by remote BYE');
}
process.exit(exitCode);
