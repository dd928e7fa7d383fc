#!/usr/bin/env node
/*
 * Real-browser tests of the web page (DESIGN §7), in Debian's Chromium
 * driven by playwright-core, against `BINARY all` on free loopback ports.
 *
 *   node tests/browser/run.mjs BINARY OUTDIR
 *
 * Prints one line per check ("ok    ..." / "FAIL  ..."), then
 * "N passed, N failed"; exits 1 when any check failed. Screenshots, the
 * servers' logs and the browser's console go to OUTDIR.
 * Needs /usr/bin/chromium (apt-get install chromium), ffmpeg, and
 * `npm ci` in tests/browser; a missing one is a failure, never a skip.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ADMIN = { email: 'admin@example.com', password: 'admin-browser-password' };
const USER = { email: 'user@example.com', password: 'user-browser-password' };
const T0 = Date.now();

function die(msg) {
  console.error('FAIL  ' + msg);
  console.error('0 passed, 1 failed');
  process.exit(1);
}

if (process.argv.length !== 4) die('usage: node tests/browser/run.mjs BINARY OUTDIR');
const BIN = path.resolve(process.argv[2]);
const OUT = path.resolve(process.argv[3]);
if (!fs.existsSync(BIN)) die(`the binary ${BIN} does not exist: build it first`);
if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} is missing: apt-get install -y chromium`);
if (!fs.existsSync(path.join(HERE, 'node_modules', 'playwright-core'))) {
  die(`${HERE}/node_modules is missing: run (cd tests/browser && npm ci)`);
}
if (spawnSync('ffmpeg', ['-version']).status !== 0) die('ffmpeg is missing: apt-get install -y ffmpeg');
const { chromium } = await import('playwright-core');
fs.mkdirSync(OUT, { recursive: true });
for (const f of fs.readdirSync(OUT)) if (/^\d\d-.*\.png$/.test(f)) fs.rmSync(path.join(OUT, f));
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'vid2mp3-browser-'));

// --- checks ------------------------------------------------------------------
let passed = 0;
let failed = 0;
async function check(name, fn) {
  const t = Date.now();
  try {
    const note = await fn();
    passed++;
    console.log(`ok    ${name}${note ? ' (' + note + ')' : ''} [${Date.now() - t} ms]`);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}: ${String(e && e.message || e).split('\n')[0]}`);
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- servers -----------------------------------------------------------------
// A loopback port below the ephemeral range (see scripts/free-port): no
// outgoing connection can take it before the server binds it.
function freePort() {
  const r = spawnSync('python3', [path.join(HERE, '..', '..', 'scripts', 'free-port')], { encoding: 'utf8' });
  const port = Number.parseInt(r.stdout, 10);
  if (r.status !== 0 || !Number.isInteger(port)) throw new Error(`scripts/free-port failed: ${r.stderr}`);
  return Promise.resolve(port);
}

// The environment for the binary: ours, less every variable it reads
// (as `BINARY config` lists them), so a developer's shell changes nothing.
const CONFIG_KEYS = spawnSync(BIN, ['config'], { env: { PATH: process.env.PATH }, encoding: 'utf8' })
  .stdout.split('\n').map((l) => l.split('=')[0]).filter((k) => /^[A-Z][A-Z0-9_]*$/.test(k));
function serverEnv(extra) {
  const env = { ...process.env };
  for (const k of CONFIG_KEYS) delete env[k];
  return { ...env, MONGOC_DISABLE_SHM: '1', BIND_ADDRESS: '127.0.0.1', LOG_LEVEL: 'info', ...extra };
}

const servers = [];
async function startServer(name) {
  const dataDir = path.join(TMP, name);
  fs.mkdirSync(dataDir);
  const [gw, auth, metrics] = [await freePort(), await freePort(), await freePort()];
  const env = serverEnv({
    DATA_DIR: dataDir, GATEWAY_PORT: String(gw), AUTH_PORT: String(auth),
    METRICS_PORT: String(metrics), AUTH_SVC_ADDRESS: `127.0.0.1:${auth}`,
    CONVERTER_WORKERS: '1', GC_INTERVAL_SECONDS: '3600',
  });
  for (const u of [ADMIN, USER]) {
    const args = ['user', 'add', u.email].concat(u === ADMIN ? ['--admin'] : []);
    const r = spawnSync(BIN, args, { env, input: u.password + '\n', encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
  }
  const logPath = path.join(OUT, `server-${name}.log`);
  const log = fs.openSync(logPath, 'w');
  const proc = spawn(BIN, ['all'], { env, stdio: ['ignore', log, log] });
  const srv = { name, proc, base: `http://127.0.0.1:${gw}`, logPath, exited: false, killed: false };
  proc.on('exit', (code, signal) => { srv.exited = true; srv.code = code; srv.signal = signal; });
  servers.push(srv);
  for (const deadline = Date.now() + 30000; ;) {
    if (srv.exited) throw new Error(`${name}: \`${BIN} all\` exited at start; see ${logPath}`);
    try {
      const r = await fetch(srv.base + '/readyz');
      if (r.status === 200) return srv;
    } catch (e) { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`${name}: /readyz not 200 within 30 s; see ${logPath}`);
    await sleep(100);
  }
}

async function stopServer(srv) {
  if (srv.exited) return;
  const gone = new Promise((r) => srv.proc.once('exit', r));
  srv.proc.kill('SIGTERM');
  const t = setTimeout(() => { if (!srv.exited) srv.proc.kill('SIGKILL'); }, 10000);
  await gone;
  clearTimeout(t);
}
process.on('exit', () => { for (const s of servers) if (!s.exited) s.proc.kill('SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// --- direct API calls (to learn the server's own messages) ---------------------
async function apiLogin(srv, who, password = who.password) {
  const r = await fetch(srv.base + '/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: who.email, password }),
  });
  return { status: r.status, body: await r.json() };
}
// Sent with "Expect: 100-continue", so a refusal before the body (403) is read
// cleanly: Node's fetch gives up (EPIPE) when the server closes while it sends.
function apiUpload(srv, token, file, type) {
  const boundary = '----vid2mp3-browser-' + Date.now();
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${path.basename(file)}"\r\n` +
      `Content-Type: ${type}\r\n\r\n`),
    fs.readFileSync(file), Buffer.from(`\r\n--${boundary}--\r\n`)]);
  return new Promise((resolve, reject) => {
    const req = http.request(srv.base + '/upload', {
      method: 'POST',
      headers: {
        Authorization: 'Bearer ' + token, 'Content-Type': `multipart/form-data; boundary=${boundary}`,
        'Content-Length': body.length, Expect: '100-continue',
      },
    });
    req.on('continue', () => req.end(body));
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        req.destroy();
        try { resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) }); } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

// --- media -------------------------------------------------------------------
function makeMedia() {
  const video = path.join(TMP, 'clip.mp4');
  const hasX264 = spawnSync('ffmpeg', ['-hide_banner', '-encoders'], { encoding: 'utf8' }).stdout.includes('libx264');
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-t', '3', '-c:v', hasX264 ? 'libx264' : 'mpeg4', '-c:a', 'aac', '-shortest', video], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('ffmpeg failed: ' + r.stderr);
  // a video without sound: accepted, then failed by the converter
  const silent = path.join(TMP, 'silent.mp4');
  const q = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10', '-t', '1', '-c:v', 'mpeg4', silent], { encoding: 'utf8' });
  if (q.status !== 0) throw new Error('ffmpeg failed: ' + q.stderr);
  const text = path.join(TMP, 'notes.txt');
  fs.writeFileSync(text, 'These are notes, not a video.\n'.repeat(20));
  // 40 MB that starts as a real MP4, so the server keeps reading it.
  const big = path.join(TMP, 'big.mp4');
  fs.writeFileSync(big, Buffer.concat([fs.readFileSync(video), Buffer.alloc(40 * 1024 * 1024)]));
  return { video, silent, text, big };
}

// --- browser -------------------------------------------------------------------
const problems = []; // console errors, page errors, CSP violations: any fails the run
const consoleLog = [];
let shotNo = 0;
async function shot(page, name) {
  shotNo++;
  await page.screenshot({ path: path.join(OUT, `${String(shotNo).padStart(2, '0')}-${name}.png`), fullPage: true });
}

// allow(path, text): more failed requests this page provokes on purpose
// (a route answering 503, say), beyond those every page may see.
async function newPage(browser, srv, opts = {}, allow = () => false) {
  const context = await browser.newContext({ acceptDownloads: true, baseURL: srv.base, ...opts });
  await context.exposeBinding('__cspViolation', (_src, v) => { problems.push('CSP violation: ' + v); });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on('console', (m) => {
    const url = m.location().url || '';
    const line = `[${srv.name}] ${m.type()}: ${m.text()} ${url}`;
    consoleLog.push(line);
    // A failed request is logged as an error. The tests provoke some: refused
    // logins and uploads, bad tokens, every request to the server they kill,
    // and what a page's allow() names. Any other error (a script error, a CSP
    // refusal, a missing file, a 503 from the event stream) is a problem.
    const where = new URL(url, srv.base).pathname;
    const expected = /^Failed to load resource: /.test(m.text()) && (srv.killed ||
      /status of 401 /.test(m.text()) || ['/login', '/upload'].includes(where) || allow(where, m.text()));
    if (m.type() === 'error' && !expected) problems.push(line);
  });
  page.on('pageerror', (e) => problems.push(`[${srv.name}] page error: ${e.message}`));
  return { context, page };
}

async function login(page, who, password = who.password) {
  await page.fill('#login-email', who.email);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}
const errorText = (page) => page.evaluate(() => {
  const e = document.getElementById('error');
  return e.hidden ? '' : e.textContent;
});
async function waitError(page, timeout = 10000) {
  await page.waitForSelector('#error:not([hidden])', { timeout });
  return errorText(page);
}
const token = (page) => page.evaluate(() => sessionStorage.getItem('vid2mp3.token'));
const jobItem = (id) => `li[data-testid=job][data-job-id="${id}"]`;

// The URLs in the page (links, players, sources, anything with src or href)
// that carry a token: none may, since the download cookie replaced them.
async function tokenUrls(page, tok) {
  return page.evaluate((t) => [...document.querySelectorAll('[href], [src]')]
    .map((n) => n.getAttribute('href') || n.getAttribute('src') || '')
    .filter((u) => /access_token/i.test(u) || (t && (u.includes(t) || u.includes(encodeURIComponent(t))))), tok);
}

// For the main page: keeps what arrives over /jobs/events in
// window.__sse (the page reads a tee of the same body), the time the answer
// to POST /download-session reached the page in window.__sessionAt, and
// the time the first player or download link appeared in window.__firstMediaAt.
function watchPageInit() {
  window.__sse = '';
  window.__sessionAt = null;
  const fetch0 = window.fetch;
  window.fetch = async function (input, init) {
    const res = await fetch0.call(this, input, init);
    const u = new URL(typeof input === 'string' ? input : input.url, location.href);
    if (u.pathname === '/download-session' && res.ok && window.__sessionAt === null) window.__sessionAt = performance.now();
    if (u.pathname !== '/jobs/events' || !res.body) return res;
    const [mine, copy] = res.body.tee();
    (async () => {
      const r = copy.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await r.read().catch(() => ({ done: true }));
        if (done) break;
        window.__sse += value;
      }
    })();
    return new Response(mine, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  window.__firstMediaAt = null;
  new MutationObserver(() => {
    if (window.__firstMediaAt === null &&
        document.querySelector('audio[data-testid=player], a[data-testid=download]')) {
      window.__firstMediaAt = performance.now();
    }
  }).observe(document, { childList: true, subtree: true });
}
// The "event: NAME" blocks in SSE text, as {type, data}.
const sseEvents = (text) => text.split(/\r?\n\r?\n/).map((block) => {
  const lines = block.split(/\r?\n/);
  const type = (lines.find((l) => l.startsWith('event:')) || 'event: message').slice(6).trim();
  const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
  return { type, data };
}).filter((e) => e.data);

// Records the highest value the upload bar shows, and whether its box is visible.
async function watchUploadBar(page) {
  await page.evaluate(() => {
    window.__upMax = 0;
    const bar = document.getElementById('upload-progress');
    new MutationObserver(() => { window.__upMax = Math.max(window.__upMax, bar.value); })
      .observe(bar, { attributes: true, attributeFilter: ['value'] });
  });
}

// axe-core's WCAG 2 A and AA rules (contrast, labels, names, ...) on the page
// as it is now; returns the violations as "rule: target" strings.
const AXE = fs.readFileSync(path.join(HERE, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE);
  const v = await page.evaluate(async () => (await window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  })).violations.map((x) => `${x.id}: ${x.nodes.map((n) => n.target.join(' ')).join(', ')}`));
  return v;
}

async function throttleUpload(page, bytesPerSecond) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: bytesPerSecond,
  });
  return cdp;
}

// --- the run --------------------------------------------------------------------
let browser;
try {
  const media = makeMedia();
  const [srv, srv2] = await Promise.all([startServer('main'), startServer('killed')]);
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });

  const { page, context: mainContext } = await newPage(browser, srv);
  await mainContext.addInitScript(watchPageInit);
  const events = []; // responses of /jobs/events and the polls
  const sessions = []; // responses of /download-session
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/jobs/events' || (u.pathname === '/jobs' && !u.searchParams.has('before'))) {
      events.push({ path: u.pathname, status: r.status(), at: Date.now() });
    }
    if (u.pathname === '/download-session') {
      sessions.push({ method: r.request().method(), status: r.status(), at: Date.now() });
    }
  });
  let jobId = null;
  let jobFid = null;

  await check('the page is served with its Content-Security-Policy', async () => {
    const r = await page.goto('/');
    assert(r.status() === 200, `GET / answered ${r.status()}`);
    const csp = r.headers()['content-security-policy'] || '';
    assert(/script-src 'self'/.test(csp) && /default-src 'none'/.test(csp), `CSP header is "${csp}"`);
    for (const f of ['/app.js', '/app.css']) {
      const s = await fetch(srv.base + f);
      assert(s.status === 200, `GET ${f} answered ${s.status}`);
    }
    await page.waitForSelector('#login-form', { state: 'visible' });
    await shot(page, 'login');
  });

  await check('a wrong password shows the server\'s 401 message', async () => {
    const direct = await apiLogin(srv, ADMIN, 'not-the-password');
    assert(direct.status === 401, `POST /login with a wrong password answered ${direct.status}`);
    await login(page, ADMIN, 'not-the-password');
    const shown = await waitError(page);
    assert(shown === direct.body.error.message, `shown "${shown}", the server wrote "${direct.body.error.message}"`);
    assert(await page.isVisible('#login-form'), 'the login form is gone');
    await shot(page, 'login-wrong-password');
  });

  await check('the admin logs in; the token is kept in sessionStorage; the download cookie is set', async () => {
    const set = page.waitForResponse((r) => new URL(r.url()).pathname === '/download-session');
    await login(page, ADMIN);
    const r = await set;
    assert(r.request().method() === 'POST' && r.ok(), `${r.request().method()} /download-session answered ${r.status()}`);
    assert((await r.request().allHeaders()).authorization === 'Bearer ' + await token(page),
      'POST /download-session did not carry the token in Authorization');
    const cookie = (await mainContext.cookies()).find((c) => c.name === 'vid2mp3_download');
    assert(cookie && cookie.httpOnly && cookie.path === '/download' && cookie.sameSite === 'Strict',
      `the download cookie is ${JSON.stringify(cookie)}`);
    await page.waitForSelector('#app-view:not([hidden])');
    assert(await page.isHidden('#error'), 'the earlier error is still shown');
    assert((await token(page) || '').split('.').length === 3, 'no JWT in sessionStorage');
    assert((await page.textContent('#who-name')) === ADMIN.email, 'the user\'s email is not shown');
    await shot(page, 'logged-in');
    return `POST /download-session ${r.status()}`;
  });

  await check('uploading a video moves the upload progress bar and lists the job', async () => {
    await watchUploadBar(page);
    await page.selectOption('#quality', 'quality:4');
    const resp = page.waitForResponse((r) => r.url().endsWith('/upload') && r.request().method() === 'POST');
    await page.setInputFiles('#file-input', media.video);
    const r = await resp;
    assert(r.status() === 202, `POST /upload answered ${r.status()}: ${await r.text()}`);
    jobId = (await r.json()).job_id;
    const max = await page.evaluate(() => window.__upMax);
    assert(max > 0, `the upload bar never moved (max ${max})`);
    await page.waitForSelector(jobItem(jobId));
    const name = await page.textContent(`${jobItem(jobId)} [data-testid=job-name]`);
    assert(name === 'clip.mp4', `the job is listed as "${name}"`);
    const first = await page.getAttribute('li[data-testid=job]', 'data-job-id');
    assert(first === jobId, 'the new job is not first');
    await page.waitForSelector('#upload-box', { state: 'hidden' });
    await shot(page, 'uploaded');
    return `bar reached ${max}`;
  });

  await check('the job reaches "done" with its duration and size', async () => {
    assert(jobId, 'no job');
    await page.waitForSelector(`${jobItem(jobId)} .badge.done`, { timeout: 60000 });
    const meta = await page.textContent(`${jobItem(jobId)} [data-testid=job-meta]`);
    assert(/^0:0[23] · \d+ KB$/.test(meta), `the job shows "${meta}" (expected 0:03 · N KB)`);
    assert(await page.isHidden(`${jobItem(jobId)} [data-testid=job-progress]`), 'the progress bar is still shown');
    const job = await page.evaluate(async (id) => (await fetch('/jobs/' + id, {
      headers: { Authorization: 'Bearer ' + sessionStorage.getItem('vid2mp3.token') } })).json(), jobId);
    assert(job.options && job.options.quality === 4, `the quality chosen (V4) reached the job as ${JSON.stringify(job.options)}`);
    jobFid = job.mp3_fid;
    await shot(page, 'job-done');
    return meta;
  });

  await check('a video without sound fails, and the page shows the reason the job gives', async () => {
    const resp = page.waitForResponse((r) => r.url().endsWith('/upload') && r.request().method() === 'POST');
    await page.setInputFiles('#file-input', media.silent);
    const r = await resp;
    assert(r.status() === 202, `POST /upload answered ${r.status()}: ${await r.text()}`);
    const id = (await r.json()).job_id;
    await page.waitForSelector(`${jobItem(id)} .badge.failed`, { timeout: 60000 });
    const job = await page.evaluate(async (jid) => (await fetch('/jobs/' + jid, {
      headers: { Authorization: 'Bearer ' + sessionStorage.getItem('vid2mp3.token') } })).json(), id);
    assert(job.status === 'failed' && job.error, `the job is ${JSON.stringify(job)}`);
    const shown = await page.textContent(`${jobItem(id)} [data-testid=job-error]`);
    assert(shown === job.error, `the page shows "${shown}", the job says "${job.error}"`);
    assert(await page.isVisible(`${jobItem(id)} [data-testid=job-error]`), 'the reason is not visible');
    assert(await page.$(`${jobItem(id)} audio`) === null, 'a failed job has a player');
    await shot(page, 'job-failed');
    return shown;
  });

  await check('live updates arrive over the event stream (200, "event: job" for the upload)', async () => {
    const ev = events.filter((e) => e.path === '/jobs/events');
    assert(ev.length > 0, 'the page never asked for /jobs/events');
    assert(ev[0].status === 200, `/jobs/events answered ${ev[0].status}`);
    const got = sseEvents(await page.evaluate(() => window.__sse))
      .filter((e) => e.type === 'job').map((e) => JSON.parse(e.data)).filter((j) => j.job_id === jobId);
    assert(got.length > 0, `no "event: job" for ${jobId} arrived over /jobs/events`);
    assert(got.some((j) => j.status === 'done'), `the stream never said the job is done: ${got.map((j) => j.status).join(', ')}`);
    const opened = ev[0].at;
    const polls = events.filter((e) => e.path === '/jobs' && e.at > opened + 500).length;
    assert(polls <= 2, `the page polled /jobs ${polls} times while the event stream was open`);
    return `${got.length} job events: ${[...new Set(got.map((j) => j.status))].join(', ')}`;
  });

  await check('no URL in the page carries the token (a[href], audio[src], source[src])', async () => {
    const bad = await tokenUrls(page, await token(page));
    assert(bad.length === 0, bad.join(' '));
    const urls = await page.evaluate((sel) => [...document.querySelectorAll(`${sel} a[href], ${sel} audio[src]`)]
      .map((n) => n.getAttribute('href') || n.getAttribute('src')), jobItem(jobId));
    const want = '/download?fid=' + jobFid;
    assert(urls.length === 2 && urls.every((u) => u === want), `the player and link are ${urls.join(', ')}`);
    return want;
  });

  await check('the MP3 plays in the page', async () => {
    const t = await page.evaluate(async (sel) => {
      const a = document.querySelector(sel);
      a.scrollIntoView();
      await a.play();
      await new Promise((r) => setTimeout(r, 1300));
      a.pause();
      return a.currentTime;
    }, `${jobItem(jobId)} audio[data-testid=player]`);
    assert(t > 0.5, `currentTime is ${t} after 1.3 s of play`);
    await shot(page, 'played');
    return `currentTime ${t.toFixed(2)} s`;
  });

  await check('the download button saves an MP3', async () => {
    const dl = page.waitForEvent('download');
    await page.click(`${jobItem(jobId)} [data-testid=download]`);
    const d = await dl;
    const name = d.suggestedFilename();
    assert(name === 'clip.mp3', `suggested file name "${name}"`);
    const file = await d.path();
    const b = fs.readFileSync(file);
    const id3 = b.subarray(0, 3).toString('latin1') === 'ID3';
    const sync = b[0] === 0xff && (b[1] & 0xe0) === 0xe0;
    assert(id3 || sync, `the file starts with ${b.subarray(0, 4).toString('hex')}`);
    assert(b.length > 10000, `only ${b.length} bytes`);
    return `${name}, ${b.length} bytes (by the cookie)`;
  });

  await check('keyboard focus stays on a Download link when a new job arrives', async () => {
    const link = `${jobItem(jobId)} [data-testid=download]`;
    await page.focus(jobItem(jobId));
    for (let i = 0; i < 20 && !(await page.evaluate((s) => document.activeElement === document.querySelector(s), link)); i++) {
      await page.keyboard.press('Tab');
    }
    const onLink = () => page.evaluate((s) => document.activeElement === document.querySelector(s), link);
    assert(await onLink(), 'Tab from the job never reached its Download link');
    const up = await apiUpload(srv, (await apiLogin(srv, ADMIN)).body.token, media.video, 'video/mp4');
    assert(up.status === 202, `a direct upload answered ${up.status}`);
    const other = up.body.job_id;
    await page.waitForSelector(jobItem(other));
    assert(await onLink(), `the focus moved to ${await page.evaluate(() => document.activeElement.outerHTML.slice(0, 80))} when the job arrived`);
    await page.waitForSelector(`${jobItem(other)} .badge.done`, { timeout: 60000 });
    assert(await onLink(), `the focus moved to ${await page.evaluate(() => document.activeElement.outerHTML.slice(0, 80))} while the job converted`);
    const order = await page.$$eval('li[data-testid=job]', (l) => l.map((n) => n.dataset.jobId));
    assert(order[0] === other && order.indexOf(jobId) > 0, `the jobs are in the order ${order.join(', ')}`);
    const outline = await page.evaluate(() => parseFloat(getComputedStyle(document.activeElement).outlineWidth));
    assert(outline >= 2, `the focused link has an outline of ${outline}px`);
    await shot(page, 'focus-kept');
  });

  await check('after a reload the session and the job are still there; the cookie is set again first', async () => {
    const before = sessions.length;
    await page.reload();
    await page.waitForSelector(`${jobItem(jobId)} .badge.done`);
    await page.waitForSelector(`${jobItem(jobId)} [data-testid=download]`);
    assert(await page.isHidden('#login-view'), 'the login form is shown');
    const again = sessions.slice(before);
    assert(again.some((x) => x.method === 'POST' && x.status >= 200 && x.status < 300),
      `after the reload /download-session answered ${JSON.stringify(again)}`);
    const t = await page.evaluate(() => ({ set: window.__sessionAt, media: window.__firstMediaAt }));
    assert(t.set !== null, 'the page got no answer to POST /download-session');
    assert(t.media !== null && t.set <= t.media,
      `the first player or link appeared at ${t.media} ms, POST /download-session ended at ${t.set} ms`);
    const bad = await tokenUrls(page, await token(page));
    assert(bad.length === 0, bad.join(' '));
    await shot(page, 'reloaded');
  });

  await check('accessibility (axe-core, WCAG 2.1 A/AA): login with an error, and the jobs page', async () => {
    const found = await axeViolations(page);
    const { page: p, context } = await newPage(browser, srv);
    await p.goto('/');
    await login(p, ADMIN, 'wrong-password-again');
    await waitError(p);
    found.push(...await axeViolations(p));
    await context.close();
    assert(found.length === 0, found.join(' | '));
  });

  await check('a text file dropped on the page shows the 415 message as the server wrote it', async () => {
    const direct = await apiUpload(srv, (await apiLogin(srv, ADMIN)).body.token, media.text, 'text/plain');
    assert(direct.status === 415, `a direct upload of a text file answered ${direct.status}`);
    const dataTransfer = await page.evaluateHandle((text) => {
      const dt = new DataTransfer();
      dt.items.add(new File([text], 'notes.txt', { type: 'text/plain' }));
      return dt;
    }, fs.readFileSync(media.text, 'utf8'));
    await page.dispatchEvent('#drop', 'dragover', { dataTransfer });
    assert(await page.evaluate(() => document.getElementById('drop').classList.contains('over')),
      'the drop zone does not show a file is over it');
    await page.dispatchEvent('#drop', 'drop', { dataTransfer });
    const shown = await waitError(page);
    assert(shown === direct.body.error.message, `shown "${shown}", the server wrote "${direct.body.error.message}"`);
    await page.waitForSelector('#upload-box', { state: 'hidden' });
    await shot(page, 'unsupported-file');
    return shown;
  });

  await check('log out shows the login form, forgets the token and clears the download cookie', async () => {
    const get = (fid) => page.evaluate(async (f) =>
      (await fetch('/download?fid=' + f, { credentials: 'same-origin', cache: 'no-store' })).status, fid);
    const was = await get(jobFid);
    assert(was === 200, `before log out GET /download answered ${was}`);
    const del = page.waitForResponse((r) => new URL(r.url()).pathname === '/download-session' &&
      r.request().method() === 'DELETE');
    await page.click('#logout');
    const d = await del;
    assert(d.ok(), `DELETE /download-session answered ${d.status()}`);
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert(await page.isHidden('#app-view'), 'the upload area is still shown');
    const left = await page.evaluate(() => sessionStorage.length);
    assert(left === 0, `sessionStorage still has ${left} item(s)`);
    assert((await page.$$('li[data-testid=job]')).length === 0, 'the jobs are still in the page');
    const now = await get(jobFid);
    assert(now === 401, `after log out GET /download answered ${now}`);
    await shot(page, 'logged-out');
    return `DELETE ${d.status()}, then GET /download ${now}`;
  });

  await check('keyboard only: log in with Tab, typing and Enter; focus is visible', async () => {
    await page.goto(`/#job=${jobId}`);
    await page.reload(); // a fresh load of the link an email would carry
    await page.waitForSelector('#login-form', { state: 'visible' });
    await page.keyboard.press('Tab');
    let f = await page.evaluate(() => document.activeElement.id);
    assert(f === 'login-email', `the first Tab focuses "${f}"`);
    const outline = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return s.outlineStyle !== 'none' ? parseFloat(s.outlineWidth) : 0;
    });
    assert(outline >= 2, `the focused email field has an outline of ${outline}px`);
    await page.keyboard.type(ADMIN.email);
    await page.keyboard.press('Tab');
    f = await page.evaluate(() => document.activeElement.id);
    assert(f === 'login-password', `Tab from the email goes to "${f}"`);
    await page.keyboard.type(ADMIN.password);
    await shot(page, 'keyboard-login');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#app-view:not([hidden])');
  });

  await check('a /#job=ID link scrolls to and highlights that job after login', async () => {
    await page.waitForSelector(`${jobItem(jobId)}.highlight`);
    const focused = await page.evaluate(() => document.activeElement.dataset.jobId);
    assert(focused === jobId, 'the job is not focused');
    await shot(page, 'job-link');
  });

  await check('keyboard only: Shift+Tab from the job reaches the file picker and the quality choice', async () => {
    // through the controls of the newer job above it (uploaded by the focus check)
    const seen = [];
    for (let i = 0; i < 24 && !seen.includes('quality'); i++) {
      await page.keyboard.press('Shift+Tab');
      seen.push(await page.evaluate(() => (document.activeElement.closest('#jobs') ? 'job:' : '') +
        (document.activeElement.id || document.activeElement.tagName.toLowerCase())));
    }
    const pick = seen.indexOf('file-input');
    assert(pick >= 0 && seen.slice(0, pick).every((x) => x.startsWith('job:')) && seen.indexOf('quality') > pick,
      `Shift+Tab goes through ${seen.join(', ')}`);
    const outline = await page.evaluate(() => parseFloat(getComputedStyle(document.activeElement).outlineWidth));
    assert(outline >= 2, `the focused quality choice has an outline of ${outline}px`);
  });

  await check('a non-admin sees "uploads are limited to administrators"', async () => {
    const direct = await apiUpload(srv, (await apiLogin(srv, USER)).body.token, media.big, 'video/mp4');
    assert(direct.status === 403, `a direct upload by the non-admin answered ${direct.status}`);
    const { page: p, context } = await newPage(browser, srv);
    await p.goto('/');
    await login(p, USER);
    await p.waitForSelector('#app-view:not([hidden])');
    await p.setInputFiles('#file-input', media.video);
    const shown = await waitError(p);
    assert(shown === direct.body.error.message && /uploads are limited to administrators/.test(shown),
      `shown "${shown}", the server wrote "${direct.body.error.message}"`);
    await p.waitForSelector('#upload-box', { state: 'hidden' });
    await shot(p, 'not-admin');
    await context.close();
  });

  await check('the event stream parser reads CRLF, multi-line data and comments', async () => {
    const { page: p, context } = await newPage(browser, srv);
    const fake = { job_id: 'f'.repeat(24), status: 'converting', progress: 0.5, filename: 'from-the-stream.mp4',
      video_fid: 'e'.repeat(24), mp3_fid: null, error: null, created_at: '2999-01-01T00:00:00.000Z' };
    const json = JSON.stringify(fake);
    const half = json.indexOf(',"filename"');
    const body = ': hello\r\nretry: 5000\r\n\r\nevent: jobs\r\ndata: {"jobs":[]}\r\n\r\n' +
      `event: job\nid: 7\ndata: ${json.slice(0, half)}\ndata: ${json.slice(half)}\n\n`;
    await p.route('**/jobs/events', (route) => route.fulfill({
      status: 200, headers: { 'Content-Type': 'text/event-stream' }, body,
    }));
    await p.goto('/');
    await login(p, ADMIN);
    await p.waitForSelector(`${jobItem(fake.job_id)} .badge.converting`);
    const first = await p.getAttribute('li[data-testid=job]', 'data-job-id');
    assert(first === fake.job_id, 'the streamed job is not first');
    await context.close();
  });

  await check('without the event stream (503) the page polls, and tries the stream again after ~10 s', async () => {
    const { page: p, context } = await newPage(browser, srv, {},
      (where, text) => where === '/jobs/events' && /status of 503 /.test(text));
    const seen = { events: 0, polls: 0, at: [] };
    await p.route('**/jobs/events', (route) => {
      seen.events++;
      seen.at.push(Date.now());
      route.fulfill({ status: 503, headers: { 'Content-Type': 'application/json', 'Retry-After': '10' },
        body: '{"error":{"code":"too_many_streams","message":"too many event streams"}}' });
    });
    p.on('request', (r) => { if (new URL(r.url()).pathname === '/jobs') seen.polls++; });
    await p.goto('/');
    await login(p, ADMIN);
    await p.waitForSelector(`${jobItem(jobId)} .badge.done`);
    const t = Date.now();
    while (seen.events < 2 && Date.now() - t < 14000) await sleep(200);
    assert(seen.events >= 2, `the stream was asked for ${seen.events} time(s) in 14 s`);
    assert(seen.polls >= 8, `only ${seen.polls} polls of /jobs while the stream was refused`);
    assert(await p.isHidden('#error'), `an error is shown: ${await errorText(p)}`);
    await context.close();
    const gap = (seen.at[1] - seen.at[0]) / 1000;
    assert(gap >= 8 && gap <= 14, `the stream was tried again after ${gap} s`);
    return `${seen.polls} polls, stream tried again after ${gap.toFixed(1)} s`;
  });

  await check('a poll answered with an HTTP error shows the server\'s message, not "connection lost"', async () => {
    const { page: p, context } = await newPage(browser, srv, {},
      (where, text) => (where === '/jobs/events' && /status of 503 /.test(text)) ||
        (where === '/jobs' && /status of 500 /.test(text)));
    await p.route('**/jobs/events', (route) => route.fulfill({ status: 503,
      headers: { 'Content-Type': 'application/json', 'Retry-After': '10' },
      body: '{"error":{"code":"too_many_streams","message":"too many event streams"}}' }));
    await p.goto('/');
    await login(p, ADMIN);
    await p.waitForSelector(`${jobItem(jobId)} .badge.done`);
    const message = 'the job store is having a bad day';
    const polls = (url) => url.pathname === '/jobs';
    await p.route(polls, (route) => route.fulfill({ status: 500, headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'internal', message } }) }));
    await p.waitForFunction((m) => document.getElementById('status').textContent.includes(m), message);
    const shown = await p.textContent('#status');
    assert(!/connection/i.test(shown), `the status says "${shown}"`);
    await shot(p, 'poll-http-error');
    await p.unroute(polls);
    await p.waitForFunction(() => /again/.test(document.getElementById('status').textContent));
    await context.close();
    return shown;
  });

  await check('POST /download-session refused (503): the server\'s message, no players until a retry works', async () => {
    const { page: p, context } = await newPage(browser, srv, {},
      (where, text) => where === '/download-session' && /status of 503 /.test(text));
    const message = 'the authentication service is unavailable';
    let posts = 0;
    await p.route((u) => u.pathname === '/download-session', (route) => {
      if (route.request().method() !== 'POST' || posts++ > 0) return route.continue();
      return route.fulfill({ status: 503, headers: { 'Content-Type': 'application/json', 'Retry-After': '5' },
        body: JSON.stringify({ error: { code: 'auth_unavailable', message } }) });
    });
    await p.goto('/');
    await login(p, ADMIN);
    await p.waitForSelector(`${jobItem(jobId)} .badge.done`);
    const shown = await waitError(p);
    assert(shown.includes(message), `the error says "${shown}"`);
    const media = await p.$$('#jobs [data-testid=player], #jobs [data-testid=download]');
    assert(media.length === 0, `${media.length} player(s) or link(s) shown without the cookie`);
    await shot(p, 'download-session-503');
    await p.waitForSelector(`${jobItem(jobId)} [data-testid=download]`, { timeout: 8000 });
    assert(await p.isHidden('#error'), `the error is still shown: ${await errorText(p)}`);
    assert(posts === 2, `POST /download-session was sent ${posts} times`);
    await context.close();
    return shown;
  });

  await check('an older job still converting (past the newest 20) is updated by GET /jobs/ID', async () => {
    const { page: p, context } = await newPage(browser, srv);
    const fake = (n, extra) => ({ job_id: 'b' + String(n).padStart(23, '0'), status: 'done', progress: 1,
      filename: `fake-${n}.mp4`, video_fid: 'e'.repeat(24), mp3_fid: 'd'.repeat(24), error: null,
      duration: 3, mp3_bytes: 50000, created_at: `2998-01-01T00:00:${String(59 - n).padStart(2, '0')}.000Z`, ...extra });
    const newest = Array.from({ length: 20 }, (_, i) => fake(i));
    const old = fake(40, { status: 'converting', progress: 0.3, mp3_fid: null, duration: null, mp3_bytes: null,
      filename: 'old-one.mp4', created_at: '2001-01-01T00:00:00.000Z' });
    const asked = [];
    const json = (route, body) => route.fulfill({ status: 200, headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body) });
    await p.route((u) => u.pathname === '/jobs/events', (route) => route.fulfill({ status: 200,
      headers: { 'Content-Type': 'text/event-stream' }, body: `event: jobs\ndata: ${JSON.stringify({ jobs: newest })}\n\n` }));
    await p.route((u) => u.pathname === '/jobs', (route) => {
      const before = new URL(route.request().url()).searchParams.get('before');
      json(route, before ? { jobs: [old], next_before: null } : { jobs: newest, next_before: 'older' });
    });
    await p.route((u) => u.pathname === '/jobs/' + old.job_id, (route) => {
      asked.push(Date.now());
      json(route, asked.length < 2 ? { ...old, progress: 0.6 }
        : { ...old, status: 'done', progress: 1, mp3_fid: 'c'.repeat(24), duration: 3, mp3_bytes: 50000 });
    });
    await p.goto('/');
    await login(p, ADMIN);
    await p.waitForSelector(jobItem(newest[19].job_id));
    await p.click('#more');
    await p.waitForSelector(`${jobItem(old.job_id)} .badge.converting`);
    await p.waitForSelector(`${jobItem(old.job_id)} .badge.done`, { timeout: 10000 });
    const gap = (asked[1] - asked[0]) / 1000;
    assert(gap >= 1.5 && gap <= 4, `GET /jobs/ID was repeated after ${gap} s`);
    await sleep(2200);
    assert(asked.length === 2, `GET /jobs/ID went on after the job was done (${asked.length} calls)`);
    await context.close();
    return `${asked.length} calls, ${gap.toFixed(1)} s apart`;
  });

  await check('an expired or invalid token returns to the login form with a message', async () => {
    const { page: p, context } = await newPage(browser, srv);
    await p.goto('/');
    await p.evaluate(() => sessionStorage.setItem('vid2mp3.token', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad'));
    await p.reload();
    await p.waitForSelector('#login-form', { state: 'visible' });
    const shown = await waitError(p);
    assert(/expired/.test(shown), `the error says "${shown}"`);
    assert(await p.evaluate(() => sessionStorage.length) === 0, 'the bad token is still kept');
    await shot(p, 'session-expired');
    await context.close();
  });

  await check('phone size (360x740): login and upload fit without horizontal scrolling', async () => {
    const { page: p, context } = await newPage(browser, srv, { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
    await p.goto('/');
    await p.waitForSelector('#login-form', { state: 'visible' });
    let w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 360, `the login page is ${w}px wide`);
    for (const s of ['#login-email', '#login-password', '#login-submit']) {
      const b = await p.locator(s).boundingBox();
      assert(b && b.x >= 0 && b.x + b.width <= 360, `${s} is not fully visible: ${JSON.stringify(b)}`);
    }
    await shot(p, 'phone-login');
    await login(p, ADMIN);
    await p.waitForSelector(`${jobItem(jobId)} .badge.done`);
    w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 360, `the logged-in page is ${w}px wide`);
    for (const s of ['#file-input', '#quality', `${jobItem(jobId)} [data-testid=download]`]) {
      const b = await p.locator(s).boundingBox();
      assert(b && b.x >= 0 && b.x + b.width <= 360, `${s} is not fully visible: ${JSON.stringify(b)}`);
    }
    await shot(p, 'phone-jobs');
    await context.close();
  });

  // On the second server, which gets killed.
  const { page: kp } = await newPage(browser, srv2);
  await check('Cancel stops an upload in flight', async () => {
    await kp.goto('/');
    await login(kp, ADMIN);
    await kp.waitForSelector('#app-view:not([hidden])');
    await throttleUpload(kp, 2 * 1024 * 1024);
    await watchUploadBar(kp);
    await kp.setInputFiles('#file-input', media.big);
    await kp.waitForFunction(() => window.__upMax > 0, null, { timeout: 10000 });
    await shot(kp, 'uploading');
    await kp.click('#cancel-upload');
    await kp.waitForSelector('#upload-box', { state: 'hidden' });
    const s = await kp.textContent('#status');
    assert(/cancel/i.test(s), `the status says "${s}"`);
    assert(await kp.isHidden('#error'), 'an error is shown');
  });

  await check('the server killed mid-upload: an error is shown, no progress left running', async () => {
    await watchUploadBar(kp);
    await kp.setInputFiles('#file-input', media.big);
    await kp.waitForFunction(() => window.__upMax > 0, null, { timeout: 10000 });
    const at = await kp.evaluate(() => window.__upMax);
    assert(at < 1, 'the upload finished before the server could be killed');
    srv2.killed = true;
    srv2.proc.kill('SIGKILL');
    const shown = await waitError(kp, 10000);
    assert(/fail|lost|server/i.test(shown), `the error says "${shown}"`);
    await kp.waitForSelector('#upload-box', { state: 'hidden', timeout: 2000 });
    const running = await kp.evaluate(() => [...document.querySelectorAll('progress')]
      .filter((p) => p.offsetParent !== null && (!p.hasAttribute('value') || p.id === 'upload-progress')).length);
    assert(running === 0, `${running} progress bar(s) still shown`);
    await shot(kp, 'server-killed');
    return `killed at ${Math.round(at * 100)}%: "${shown}"`;
  });

  await check('no CSP violations, script errors or console errors', async () => {
    await sleep(200);
    assert(problems.length === 0, problems.join(' | '));
  });
} catch (e) {
  failed++;
  console.log(`FAIL  the run stopped: ${e && e.stack || e}`);
} finally {
  fs.writeFileSync(path.join(OUT, 'console.log'), consoleLog.join('\n') + '\n');
  if (browser) await browser.close().catch(() => {});
  await Promise.all(servers.map(stopServer));
  // SIGTERM must end `all` cleanly: exit 0 (in the sanitizer build, also
  // no leak and no error report)
  for (const s of servers.filter((x) => !x.killed)) {
    if (s.code === 0) {
      passed++;
      console.log(`ok    ${s.name}: SIGTERM, exit 0`);
    } else {
      failed++;
      console.log(`FAIL  ${s.name}: SIGTERM, exit ${s.code} signal ${s.signal}; see ${s.logPath}`);
    }
  }
  fs.rmSync(TMP, { recursive: true, force: true });
}
console.log(`browser suite: ${((Date.now() - T0) / 1000).toFixed(1)} s, screenshots in ${OUT}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
