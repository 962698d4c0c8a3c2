// Shared plumbing of the browser tests: a real `oneoff serve` on a loopback port with a
// temporary SQLite database, an optional real nginx in front of it, and Debian's Chromium
// driven by playwright-core. Nothing here downloads a browser.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// Where `cargo build` put it: CARGO_TARGET_DIR (relative to the workspace) when set, as cargo does.
const TARGET_DIR = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
export const BINARY = process.env.ONEOFF_BIN || path.join(TARGET_DIR, 'debug', 'oneoff');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** The catalog every test server gets (TOML; parameters reach scripts as positional args). */
export const JOBS = String.raw`
[[job]]
name = "greet"
description = "Say hello"
command = ["echo", "hello", "{name}"]

[[job.param]]
name = "name"
type = "string"
required = true
pattern = "^[a-z]+$"
description = "Who to greet (lowercase letters)"

[[job]]
name = "tag"
description = "A pattern only the server can check (verbose mode is Rust-only)"
command = ["echo", "tag", "{label}"]

[[job.param]]
name = "label"
type = "string"
required = true
pattern = "(?x) ^ [a-z]+ $"

[[job]]
name = "colour"
description = "Prints an ANSI coloured line"
command = ["sh", "-c", 'echo plain; printf "\033[31mred alert\033[0m\n"; echo after']

[[job]]
name = "progress"
description = "A progress bar drawn with carriage returns"
command = ["sh", "-c", 'for i in 10 20 30 40 50 60 70 80 90 100; do printf "\rprogress %d%%" "$i"; sleep 0.05; done; printf "\n"']

[[job]]
name = "progress-slow"
description = "A progress bar slow enough that the server stores each step as its own entry"
command = ["sh", "-c", 'for i in 20 40 60 80 100; do printf "\rprogress %d%%" "$i"; sleep 0.4; done; printf "\n"; echo next line']

[[job]]
name = "slow"
description = "Starts, then sleeps for ten minutes (for cancel)"
command = ["sh", "-c", 'echo start; sleep 600']
grace = "2s"

[[job]]
name = "drip"
description = "A line every 0.3 s for 6 s"
command = ["sh", "-c", 'i=1; while [ "$i" -le 20 ]; do echo "drip $i"; i=$((i + 1)); sleep 0.3; done']

[[job]]
name = "burst"
description = "Waits for a file to exist, then prints 400,000 lines at once (a live firehose)"
command = ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.05; done; seq 1 400000', "{flag}"]

[[job.param]]
name = "flag"
type = "string"
required = true
pattern = "^/tmp/[A-Za-z0-9._/-]+$"

[[job]]
name = "million"
description = "A million lines"
command = ["seq", "1", "1000000"]
`;

// ---------------------------------------------------------------------------------------
// Small helpers

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` until it returns a truthy value; throws `message` (with the last value) after `timeout` ms. */
export async function waitFor(fn, { timeout = 15000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const detail = lastError ? ` (last error: ${lastError.message})` : ` (last value: ${JSON.stringify(last)})`;
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${detail}`);
    }
    await sleep(interval);
  }
}

/** A free TCP port on 127.0.0.1 (closed again before returning). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Children still running when this process exits (a crashed test file) get SIGTERM. */
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGTERM');
});

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child, name, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) {
      process.stderr.write(`${name} ignored SIGTERM for ${graceMs} ms: SIGKILL\n`);
      child.kill('SIGKILL');
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------
// The oneoff server

/** Runs the `oneoff` binary to completion; resolves with its stdout, rejects with its stderr. */
function runBinary(args) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk) => { stderr += chunk; });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`oneoff ${args.join(' ')} exited (${code ?? signal}):\n${stderr}`));
    });
  });
}

/**
 * Starts `oneoff serve` with a temporary config and data directory. `auth` is the body of
 * an `[auth]` table (e.g. `anonymous = false`); `tokens` lists API tokens to create before
 * the server starts ({name, user, groups}, with `oneoff token create --config`, the offline
 * bootstrap), whose secrets are returned in `tokens` by name. The first one is the identity
 * of the helpers' own API calls. Returns
 * {url, tokens, api(path, init), createRun(job, params), waitForStatus(id, statuses), stop()}.
 */
export async function startServer({
  jobs = JOBS, server = '', auth = '', tokens = [], listen = '127.0.0.1:0', drain = '1s',
} = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: build it with \`cargo build -p oneoff\` (tests/browser/run.sh does)`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'oneoff-browser-'));
  const config = path.join(dir, 'oneoff.toml');
  await writeFile(config, `[server]
listen = ${JSON.stringify(listen)}
data_dir = ${JSON.stringify(path.join(dir, 'data'))}
drain = ${JSON.stringify(drain)}
${server}

[debug]
echo = true
${auth ? `\n[auth]\n${auth}\n` : ''}
${jobs}`);
  const secrets = {};
  for (const { name, user, groups = [] } of tokens) {
    const args = ['token', 'create', '--config', config, '--name', name, '--json'];
    if (user) args.push('--user', user);
    for (const group of groups) args.push('--group', group);
    secrets[name] = JSON.parse(await runBinary(args)).token;
  }
  const ownToken = tokens.length ? secrets[tokens[0].name] : null;
  const child = track(spawn(BINARY, ['serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ONEOFF_LOG: process.env.ONEOFF_LOG || 'warn' },
  }));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
    if (process.env.ONEOFF_TEST_VERBOSE) process.stderr.write(chunk);
  });
  const lines = readline.createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`oneoff did not print its URL within 20 s; stderr:\n${stderr}`)), 20000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      const match = /^oneoff listening on (http:\/\/\S+)$/.exec(line.trim());
      if (match) resolve(match[1].replace(/\/$/, ''));
      else reject(new Error(`unexpected first line from oneoff: ${JSON.stringify(line)}; stderr:\n${stderr}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`oneoff exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
    });
  });
  lines.on('line', () => {}); // keep draining stdout

  async function api(pathname, init = {}) {
    const response = await fetch(url + pathname, {
      ...init,
      headers: {
        accept: 'application/json',
        ...(ownToken ? { authorization: `Bearer ${ownToken}` } : {}),
        ...(init.body ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
    });
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    if (!response.ok) throw new Error(`${init.method || 'GET'} ${pathname}: HTTP ${response.status} ${text}`);
    return body;
  }

  return {
    url,
    dir,
    tokens: secrets,
    stderr: () => stderr,
    api,
    /** Starts a run through the API; returns its id. */
    async createRun(job, params = {}) {
      const run = await api('/api/v1/runs', { method: 'POST', body: JSON.stringify({ job, params }) });
      return run.id;
    },
    async run(id) {
      return api(`/api/v1/runs/${id}`);
    },
    /** Polls the API until the run's status is one of `statuses`; returns the run. */
    async waitForStatus(id, statuses, timeout = 30000) {
      const wanted = Array.isArray(statuses) ? statuses : [statuses];
      return waitFor(async () => {
        const run = await api(`/api/v1/runs/${id}`);
        return wanted.includes(run.status) ? run : null;
      }, { timeout, interval: 100, message: `run ${id} to be ${wanted.join(' or ')}` });
    },
    async stop() {
      await stopChild(child, 'oneoff', 10000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------
// nginx

export const NGINX_BINARY = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((candidate) => existsSync(candidate));

/**
 * The usual mistake: HTTP/1.1 to the upstream, but `Upgrade` and `Connection` are not
 * forwarded. (`Host` is kept as the browser sent it, so that the dropped upgrade is the only
 * fault: nginx's default `Host`, the upstream's address, would also make the page's origin
 * foreign to the server, which the UI then names first.)
 */
export const DROPS_UPGRADES = `proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";`;

/**
 * A real nginx on a free loopback port proxying to `upstream` (a URL, or an array of URLs it
 * balances round-robin, skipping one that refuses connections); `location` goes after `proxy_pass`.
 * With `path` (e.g. `/oneoff/`), only that path is proxied, as it is (an ingress that does not
 * rewrite); anything else is nginx's own 404.
 */
export async function startNginx(upstream, location, { path: prefix = '/' } = {}) {
  const upstreams = Array.isArray(upstream) ? upstream : null;
  // Only the authority: a path in proxy_pass would make nginx rewrite the request's path.
  const target = upstreams ? 'oneoff' : new URL(upstream).host;
  const pool = upstreams
    ? `upstream oneoff {\n${upstreams.map((url) => `        server ${url.replace(/^http:\/\//, '')} max_fails=1 fail_timeout=1s;`).join('\n')}\n    }`
    : '';
  if (!NGINX_BINARY) throw new Error('nginx is not installed: tests/browser/run.sh installs it (apt-get install nginx-light)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'oneoff-nginx-'));
  const port = await freePort();
  const config = path.join(dir, 'nginx.conf');
  await writeFile(config, `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    ${pool}
    server {
        listen 127.0.0.1:${port};
        location ${prefix} {
            proxy_pass http://${target};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Via "1.1 test-nginx";
            ${location}
        }
    }
}
`);
  const child = track(spawn(NGINX_BINARY, ['-p', dir, '-c', config, '-e', path.join(dir, 'error.log')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  }));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}`);
      const response = await fetch(`${url}${prefix}healthz`);
      return response.ok;
    }, { timeout: 10000, interval: 50, message: 'nginx to answer /healthz' });
  } catch (error) {
    const log = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
    child.kill('SIGKILL');
    throw new Error(`${error.message}\nnginx error log:\n${log}${stderr}`);
  }
  return {
    url,
    async stop() {
      await stopChild(child, 'nginx', 3000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------
// Chromium

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * Debian's Chromium, headless. playwright-core starts it with a new empty temporary
 * `--user-data-dir` of its own and deletes it on close, so every launch has a fresh profile;
 * each test also gets a fresh browser context (no shared localStorage or cache).
 */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: tests/browser/run.sh installs Debian's chromium`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60000 });
}

/**
 * A fresh context and page that records console errors and uncaught exceptions. `allow`
 * lists regular expressions of console errors a test expects (e.g. a 426 behind a proxy
 * that drops upgrades). Call `assertNoErrors()` at the end of the test (`close()` does).
 */
export async function openPage(browser, { allow = [], viewport = { width: 1280, height: 800 }, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, reducedMotion: 'reduce' });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const errors = [];
  const allowed = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    const location = message.location();
    const where = location?.url ? ` (${location.url}:${location.lineNumber})` : '';
    if (allow.some((pattern) => pattern.test(text))) allowed.push(text);
    else errors.push(`console error: ${text}${where}`);
  });
  page.on('pageerror', (error) => {
    errors.push(`uncaught exception: ${error.stack || error.message || error}`);
  });
  page.on('crash', () => errors.push('the page crashed'));
  const assertNoErrors = () => {
    if (errors.length) throw new Error(`the browser reported errors:\n  ${errors.join('\n  ')}`);
  };
  return {
    page,
    context,
    errors,
    allowed,
    assertNoErrors,
    async close() {
      await context.close();
      assertNoErrors();
    },
  };
}

/** The texts of the log rows currently in the DOM (line numbers and timestamps left out). */
export function logTexts(page) {
  return page.locator('.log-row:not([hidden]) .log-text').allTextContents();
}

/** The log row element whose text is exactly `text`. */
export function logLine(page, text) {
  const exact = new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
  return page.locator('.log-row:not([hidden]) .log-text').filter({ hasText: exact });
}

/** Whether a line of the page's log is exactly `text` right now. */
export async function hasLine(page, text) {
  return (await logLine(page, text).count()) > 0;
}

/** The status badge on a run page. */
export function statusBadge(page) {
  return page.locator('.status-slot .badge');
}

/** The transport badge above the log ("WebSocket · live", "SSE · live", ...). */
export function transportBadge(page) {
  return page.locator('.log-transport .transport');
}

/**
 * Polls `locator`'s text content until it matches `pattern` (a RegExp, or a string it must
 * contain); returns the text. Fails with the last text seen.
 */
export async function waitForText(locator, pattern, { timeout = 15000, message } = {}) {
  const test = typeof pattern === 'string' ? (text) => text.includes(pattern) : (text) => pattern.test(text);
  let last = null;
  try {
    return await waitFor(async () => {
      last = (await locator.first().textContent({ timeout: 1000 }).catch(() => null));
      return last !== null && test(last) ? last : null;
    }, { timeout, interval: 50, message: message || `text ${pattern}` });
  } catch (error) {
    throw new Error(`${error.message.replace(/ \(last.*$/s, '')}; last text: ${JSON.stringify(last)}`);
  }
}

/**
 * One Chromium and one oneoff server for a test file (and, with `withNginx: LOCATION`, an
 * nginx in front of it, proxying `nginxPath` only), all stopped after it. Returns an object whose `server`, `browser`
 * and `proxy` are set once `before` ran.
 */
export function useServerAndBrowser(hooks, { withNginx = null, nginxPath = '/', ...options } = {}) {
  const fixture = { server: null, browser: null, proxy: null };
  hooks.before(async () => {
    const [server, browser] = await Promise.allSettled([startServer(options), launchBrowser()]);
    fixture.server = server.value ?? null;
    fixture.browser = browser.value ?? null;
    if (server.status === 'rejected') throw server.reason;
    if (browser.status === 'rejected') throw browser.reason;
    if (withNginx !== null) fixture.proxy = await startNginx(fixture.server.url, withNginx, { path: nginxPath });
  });
  hooks.after(async () => {
    await fixture.proxy?.stop();
    await fixture.browser?.close();
    await fixture.server?.stop();
  });
  return fixture;
}

/** The highest N of the `drip N` lines on the page, 0 when none. */
async function lastDrip(page) {
  let last = 0;
  for (const text of await logTexts(page)) {
    const match = /^drip ([0-9]+)$/.exec(text);
    if (match) last = Math.max(last, Number(match[1]));
  }
  return last;
}

/**
 * Watches a drip run's page until `drip 20` shows; returns the distinct line counts seen
 * while the API still said the run was running.
 */
export async function watchDrip(page, server, id) {
  const whileRunning = new Set();
  await waitFor(async () => {
    const last = await lastDrip(page);
    const run = await server.run(id);
    if (run.status === 'running' && last > 0) whileRunning.add(last);
    return last === 20;
  }, { timeout: 20000, interval: 100, message: 'drip 20 to show' });
  return whileRunning;
}

// ---------------------------------------------------------------------------------------
// Several replicas on one PostgreSQL

/** The settings a balancer needs for live logs (docs/deployment.md), and retries on a replica that is down. */
export const BALANCES_LIVE_LOGS = `proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;`;

const TESTPG_HOLD = path.join(TARGET_DIR, 'debug', 'oneoff-testpg-hold');

/**
 * A real throwaway PostgreSQL (the `oneoff-testpg` crate's holder binary: it removes the
 * cluster when its stdin closes, however this process ends); resolves with a database URL.
 */
export async function startPostgres() {
  if (!existsSync(TESTPG_HOLD)) {
    throw new Error(`${TESTPG_HOLD} is missing: build it with \`cargo build -p oneoff-testpg\` (tests/browser/run.sh does)`);
  }
  const child = track(spawn(TESTPG_HOLD, ['--url'], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => { stderr += chunk; });
  const lines = readline.createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`PostgreSQL did not start within 60 s:\n${stderr}`)), 60000);
    lines.once('line', (line) => { clearTimeout(timer); resolve(line.trim()); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`PostgreSQL holder exited (${code}):\n${stderr}`)); });
  });
  return {
    url,
    async stop() {
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

/**
 * `count` replicas (`a`, `b`, …) of `oneoff serve` on one fresh PostgreSQL database, each on
 * a port of its own that it keeps across restarts, behind a round-robin nginx. Returns
 * {url (nginx), replicas: [{name, server}], restart(index), stop()}; `server` has the
 * helpers of `startServer` against that replica directly.
 */
export async function startCluster({ count = 3, jobs = JOBS, server = '', drain = '1s' } = {}) {
  const postgres = await startPostgres();
  const ports = [];
  for (let index = 0; index < count; index += 1) ports.push(await freePort());
  const names = ports.map((_, index) => String.fromCharCode(97 + index));
  const options = (index) => ({
    jobs,
    drain,
    listen: `127.0.0.1:${ports[index]}`,
    server: `database = ${JSON.stringify(postgres.url)}\nreplica = "${names[index]}"\n${server}`,
  });
  const replicas = [];
  for (let index = 0; index < count; index += 1) {
    replicas.push({ name: names[index], server: await startServer(options(index)) });
  }
  const proxy = await startNginx(replicas.map(({ server: replica }) => replica.url), BALANCES_LIVE_LOGS);
  return {
    url: proxy.url,
    replicas,
    /** SIGTERM to replica `index`, wait for its exit (its drain), then start it again on its port. */
    async restart(index) {
      await replicas[index].server.stop();
      replicas[index].server = await startServer(options(index));
    },
    async stop() {
      await proxy.stop();
      for (const { server: replica } of replicas) await replica.stop();
      await postgres.stop();
    },
  };
}
