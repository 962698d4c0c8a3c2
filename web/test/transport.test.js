// The transport ladder: pure decisions, then the controller driven by fakes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LogStream, chooseStart, rememberFailure, rememberSuccess, acceptEntries, backoffDelay, sseVerdict,
  explainWebSocketFailure, explainSseFailure, explainTicketFailure, wsUrl, withTicket, nextTransport, loadMemory, MEMORY_KEY,
  RETRY_FAILED_AFTER_MS, WS_OPEN_TIMEOUT_MS, SSE_FIRST_EVENT_MS, SSE_BUFFER_GRACE_MS,
} from '../transport.js';

const HOUR = 60 * 60 * 1000;

test('the ladder', () => {
  assert.equal(nextTransport('ws'), 'sse');
  assert.equal(nextTransport('sse'), 'poll');
  assert.equal(nextTransport('poll'), null);
});

test('start: skip what failed on this origin within the hour', () => {
  const now = 10 * HOUR;
  assert.deepEqual(chooseStart({}, now), { transport: 'ws', skipped: [] });
  let memory = rememberFailure({}, 'ws', 'a proxy removed the upgrade headers', now - 5 * 60_000);
  const start = chooseStart(memory, now);
  assert.equal(start.transport, 'sse');
  assert.equal(start.skipped[0].reason, 'a proxy removed the upgrade headers');
  assert.equal(chooseStart(memory, now - 5 * 60_000 + RETRY_FAILED_AFTER_MS).transport, 'ws', 'retried after an hour');
  memory = rememberFailure(memory, 'sse', 'buffered', now);
  assert.equal(chooseStart(memory, now).transport, 'poll');
  memory = rememberSuccess(memory, 'sse', now);
  assert.equal(chooseStart(memory, now).transport, 'sse');
  assert.equal(memory.worked, 'sse');
  assert.equal(chooseStart(rememberFailure({}, 'ws', 'x', now + HOUR), now).transport, 'ws', 'a clock that went back does not pin a failure');
});

test('memory survives bad storage contents', () => {
  assert.deepEqual(loadMemory({ getItem: () => 'not json' }), {});
  assert.deepEqual(loadMemory(null), {});
});

test('resume: no duplicate, no gap', () => {
  const e = (seq) => ({ seq });
  assert.deepEqual(acceptEntries(0, [e(1), e(2)]), { fresh: [e(1), e(2)], last: 2, gap: false });
  assert.deepEqual(acceptEntries(2, [e(1), e(2), e(3)]), { fresh: [e(3)], last: 3, gap: false });
  assert.deepEqual(acceptEntries(3, [e(5)]), { fresh: [], last: 3, gap: true });
  assert.deepEqual(acceptEntries(3, []), { fresh: [], last: 3, gap: false });
});

test('backoff grows exponentially to 15 s, with jitter', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, mid)), [500, 1000, 2000, 4000, 8000, 15000, 15000]);
  assert.equal(backoffDelay(0, () => 0), 400);
  assert.equal(backoffDelay(0, () => 1), 600);
});

test('SSE verdicts: no open in time, buffered, or just quiet', () => {
  const start = { startedAt: 0, openedAt: null, gotEvent: false, pendingSince: null };
  assert.equal(sseVerdict(start, 3999), 'wait');
  assert.ok(sseVerdict(start, 4000).fallback.includes('did not connect'));
  const opened = { ...start, openedAt: 100 };
  assert.equal(sseVerdict(opened, 60_000), 'wait', 'a quiet run is not a failure');
  const pending = { ...opened, pendingSince: 5000 };
  assert.equal(sseVerdict(pending, 5000 + SSE_BUFFER_GRACE_MS - 1), 'wait');
  assert.ok(sseVerdict(pending, 5000 + SSE_BUFFER_GRACE_MS).fallback.includes('buffering'));
  assert.equal(sseVerdict({ ...pending, gotEvent: true }, 99_999), 'ok');
});

test('explaining a failed WebSocket from a plain fetch of its URL', () => {
  const stripped = explainWebSocketFailure({ status: 426, body: { error: { code: 'websocket_required' } } });
  assert.deepEqual(stripped, { reachable: true, reason: 'a proxy between you and the server removed the WebSocket upgrade headers' });
  assert.ok(explainWebSocketFailure({ status: 426, body: { error: { code: 'websocket_required' } }, timedOut: true }).reason.includes('did not open'));
  assert.equal(explainWebSocketFailure({ status: 0 }).reachable, false);
  assert.equal(explainWebSocketFailure({ status: 502 }).reachable, false);
  assert.ok(explainWebSocketFailure({ status: 404, body: null }).reason.includes('something other than oneoff'));
  const limit = explainWebSocketFailure({
    status: 426, body: { error: { code: 'websocket_required' } },
    sse: { status: 503, body: { error: { code: 'viewer_limit', message: 'run 1 already has 2 live viewers' } } },
  });
  assert.ok(limit.reason.includes('viewer'));
  assert.ok(explainWebSocketFailure({ status: 401 }).reason.includes('authenticating proxy'));
  assert.equal(explainSseFailure({ status: 0 }).reachable, false);
  assert.ok(explainSseFailure({ status: 403, body: { error: { message: 'origin' } } }).reason.includes('(HTTP 403): origin'));
});

test('WebSocket URL follows the page scheme', () => {
  assert.equal(wsUrl({ protocol: 'https:', host: 'x.example' }, 7, 3), 'wss://x.example/api/v1/runs/7/log/ws?after=3');
  assert.equal(wsUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, 7, 0), 'ws://127.0.0.1:8080/api/v1/runs/7/log/ws?after=0');
});

// ---------------------------------------------------------------------------------------
// The controller against fakes: a manual clock, scripted sockets, streams and fetches.

function harness({ ws = 'fail', sse = 'buffered', probe = 426, memory = null, token = null, tickets = () => 201 } = {}) {
  let now = 1_000_000;
  let timers = [];
  let nextId = 1;
  const log = { sockets: [], sources: [], fetches: [], requests: [], tickets: [], states: [], entries: [], done: null };
  const store = new Map();
  if (memory) store.set(MEMORY_KEY, JSON.stringify(memory));
  // The server's log: entries 1..N and whether the run is done.
  const server = { entries: [], done: false };
  const page = (after, limit) => {
    const entries = server.entries.filter((entry) => entry.seq > after).slice(0, limit);
    const next = entries.length ? entries[entries.length - 1].seq : after;
    return { entries, next, done: server.done && next === server.entries.length, status: server.done ? 'succeeded' : 'running' };
  };
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      log.sockets.push(this);
      if (ws === 'fail') env.setTimeout(() => { this.onerror?.({}); this.onclose?.({ code: 1006, reason: '' }); }, 10);
      if (ws === 'open') env.setTimeout(() => this.onopen?.({}), 10);
    }
    close() { this.closed = true; }
    send(data) { this.onmessage?.({ data: JSON.stringify(data) }); }
  }
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.listeners = {};
      log.sources.push(this);
      if (sse !== 'never-open') env.setTimeout(() => this.onopen?.({}), 10);
      if (sse === 'works') {
        env.setTimeout(() => {
          const after = Number(new URL(url, 'http://x').searchParams.get('after'));
          const batch = page(after, 1e9);
          if (batch.entries.length) this.onmessage?.({ data: JSON.stringify({ entries: batch.entries, next: batch.next }) });
        }, 20);
      }
    }
    addEventListener(type, fn) { this.listeners[type] = fn; }
    close() { this.closed = true; }
  }
  const fetch = async (path, init = {}) => {
    log.fetches.push(path);
    log.requests.push({ path, method: init.method || 'GET', headers: init.headers || {} });
    const url = new URL(path, 'http://x');
    const json = (status, body) => ({ status, ok: status >= 200 && status < 300, json: async () => body });
    if (url.pathname.endsWith('/log/ticket')) {
      // Like the server: a fresh ticket per request, or the scripted refusal.
      const status = tickets(log.requests.filter((request) => request.path.endsWith('/log/ticket')).length - 1);
      if (status !== 201) return json(status, { error: { code: 'x', message: `refused with ${status}` } });
      const ticket = `ticket_${log.tickets.length + 1}`;
      log.tickets.push(ticket);
      return json(201, { ticket, run: 7, expires_at: '2026-11-26T09:00:30Z' });
    }
    if (url.pathname.endsWith('/log/ws')) {
      // Like the server: a probe that names its page's origin gets the origin refusal the
      // handshake met (`probe: 'origin'`), if any.
      if (probe === 'origin' && init.headers?.['X-Oneoff-Probe-Origin'] === 'http://oneoff.test') {
        return json(403, { error: { code: 'origin_rejected', message: 'Origin `http://oneoff.test` is not this server (oneoff)' } });
      }
      return json(probe === 'origin' ? 426 : probe, { error: { code: 'websocket_required', message: 'x' } });
    }
    if (url.pathname.endsWith('/log/sse')) return json(200, null);
    if (url.pathname.endsWith('/log')) {
      const after = Number(url.searchParams.get('after'));
      const limit = Number(url.searchParams.get('limit') || 1000);
      const wait = Number(url.searchParams.get('wait') || 0);
      // Like the server: with `wait`, hold the request until an entry or the end (checked every 10 ms).
      const deadline = now + wait * 1000;
      for (;;) {
        const body = page(after, limit);
        if (body.entries.length || body.done || now >= deadline) return json(200, body);
        await new Promise((resolve) => env.setTimeout(resolve, 10));
      }
    }
    return json(404, null);
  };
  const env = {
    WebSocket: FakeWebSocket,
    EventSource: FakeEventSource,
    fetch,
    now: () => now,
    setTimeout: (fn, ms) => { const id = nextId++; timers.push({ id, at: now + ms, fn }); return id; },
    clearTimeout: (id) => { timers = timers.filter((timer) => timer.id !== id); },
    location: { protocol: 'http:', host: 'oneoff.test', origin: 'http://oneoff.test' },
    storage: { getItem: (key) => store.get(key) ?? null, setItem: (key, value) => store.set(key, value) },
    window: null,
    random: () => 0.5,
  };
  const advance = async (ms) => {
    const until = now + ms;
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const timer = timers[0];
      if (!timer || timer.at > until) break;
      timers.shift();
      now = timer.at;
      timer.fn();
    }
    now = until;
    for (let k = 0; k < 5; k++) await new Promise((resolve) => setImmediate(resolve));
  };
  const stream = (after = 0) => new LogStream(7, {
    after,
    env,
    token,
    onEntries: (entries) => log.entries.push(...entries.map((entry) => entry.seq)),
    onDone: (done) => { log.done = done; },
    onState: (state) => log.states.push(state),
  });
  const add = (count) => {
    for (let k = 0; k < count; k++) {
      server.entries.push({ seq: server.entries.length + 1, ts: '2026-11-26T09:00:00Z', stream: 'stdout', text: 'x' });
    }
  };
  return { log, server, stream, advance, add, store, memory: () => JSON.parse(store.get(MEMORY_KEY) || '{}') };
}

test('WebSocket works: entries arrive once, done ends the stream', async () => {
  const h = harness({ ws: 'open' });
  const s = h.stream();
  s.start();
  await h.advance(20);
  assert.equal(h.log.states.at(-1).state, 'live');
  assert.equal(h.log.states.at(-1).transport, 'ws');
  const socket = h.log.sockets[0];
  assert.equal(socket.url, 'ws://oneoff.test/api/v1/runs/7/log/ws?after=0');
  socket.send({ entries: [{ seq: 1 }, { seq: 2 }], next: 2 });
  socket.send({ entries: [{ seq: 2 }, { seq: 3 }], next: 3 });
  socket.send({ done: true, status: 'succeeded', exit_code: 0, signal: null, next: 3 });
  assert.deepEqual(h.log.entries, [1, 2, 3]);
  assert.equal(h.log.done.status, 'succeeded');
  assert.equal(h.log.states.at(-1).state, 'done');
  assert.equal(h.memory().worked, 'ws');
  s.stop();
});

test('a stripped upgrade: WebSocket → SSE with the reason, remembered; the next load starts on SSE', async () => {
  const h = harness({ ws: 'fail', sse: 'works' });
  h.add(5);
  const s = h.stream();
  s.start();
  await h.advance(100);
  assert.ok(h.log.fetches.some((path) => path === '/api/v1/runs/7/log/ws'), 'the WebSocket URL was probed over plain HTTP');
  const live = h.log.states.at(-1);
  assert.equal(live.transport, 'sse');
  assert.equal(live.state, 'live');
  assert.equal(live.fallbacks[0].from, 'ws');
  assert.equal(live.fallbacks[0].reason, 'a proxy between you and the server removed the WebSocket upgrade headers');
  assert.deepEqual(h.log.entries, [1, 2, 3, 4, 5]);
  assert.equal(h.memory().ws.reason, live.fallbacks[0].reason);
  s.stop();

  const again = h.stream(5);
  again.start();
  await h.advance(5);
  assert.equal(h.log.sockets.length, 1, 'no second WebSocket attempt within the hour');
  const state = h.log.states.at(-1);
  assert.equal(state.transport, 'sse');
  assert.equal(state.fallbacks[0].remembered, true);
  again.stop();
});

test('a WebSocket that never opens falls back after 3 s', async () => {
  const h = harness({ ws: 'hang', sse: 'works' });
  h.add(1);
  const s = h.stream();
  s.start();
  await h.advance(WS_OPEN_TIMEOUT_MS - 1);
  assert.equal(h.log.sources.length, 0);
  await h.advance(100);
  assert.equal(h.log.sources.length, 1);
  assert.ok(h.log.states.at(-1).fallbacks[0].reason.includes('did not open within 3 s'));
  s.stop();
});

test('a buffering proxy: SSE opens but delivers nothing while lines are pending → long-poll, resuming', async () => {
  const h = harness({ ws: 'fail', sse: 'buffered' });
  h.add(3);
  const s = h.stream();
  s.start();
  await h.advance(SSE_FIRST_EVENT_MS + SSE_BUFFER_GRACE_MS + 200);
  const state = h.log.states.at(-1);
  assert.equal(state.transport, 'poll');
  assert.equal(state.fallbacks.length, 2);
  assert.ok(state.fallbacks[1].reason.includes('buffering'));
  assert.deepEqual(h.log.entries, [1, 2, 3]);
  // Long-poll continues from the last sequence: new lines come exactly once.
  h.add(2);
  h.server.done = true;
  await h.advance(100);
  assert.deepEqual(h.log.entries, [1, 2, 3, 4, 5]);
  assert.equal(h.log.states.at(-1).state, 'done');
  assert.ok(h.log.fetches.some((path) => path.includes('/log?after=3&wait=25')));
  assert.equal(h.memory().sse.reason, state.fallbacks[1].reason);
  s.stop();
});

test('a quiet run keeps SSE: nothing pending is not buffering', async () => {
  const h = harness({ ws: 'fail', sse: 'buffered' });
  const s = h.stream();
  s.start();
  await h.advance(60_000);
  const state = h.log.states.at(-1);
  assert.equal(state.transport, 'sse');
  assert.equal(state.state, 'live');
  s.stop();
});

test('SSE that never opens → long-poll after 4 s', async () => {
  const h = harness({ ws: 'fail', sse: 'never-open' });
  const s = h.stream();
  s.start();
  await h.advance(4200);
  assert.equal(h.log.states.at(-1).transport, 'poll');
  assert.ok(h.log.states.at(-1).fallbacks[1].reason.includes('did not connect'));
  s.stop();
});

test('network loss: reconnecting with backoff on the same transport, resuming after the last seq', async () => {
  const h = harness({ ws: 'open' });
  const s = h.stream();
  s.start();
  await h.advance(20);
  h.log.sockets[0].send({ entries: [{ seq: 1 }, { seq: 2 }], next: 2 });
  // The connection drops and the server is unreachable for a while.
  h.log.sockets[0].onclose({ code: 1006, reason: '' });
  await h.advance(1);
  const state = h.log.states.at(-1);
  assert.equal(state.state, 'reconnecting');
  assert.equal(state.transport, 'ws');
  assert.ok(state.retryInMs >= 400);
  await h.advance(state.retryInMs + 20);
  const socket = h.log.sockets.at(-1);
  assert.equal(h.log.sockets.length, 2);
  assert.ok(socket.url.endsWith('after=2'));
  socket.send({ entries: [{ seq: 2 }, { seq: 3 }], next: 3 });
  assert.deepEqual(h.log.entries, [1, 2, 3]);
  assert.equal(h.log.states.at(-1).state, 'live');
  s.stop();
});

test('offline at load: WebSocket is retried, not blamed', async () => {
  const h = harness({ ws: 'fail', probe: 0 });
  const s = h.stream();
  // Make the probe fail like a network error.
  s.env.fetch = async () => { throw new TypeError('network'); };
  s.start();
  await h.advance(50);
  assert.equal(h.log.states.at(-1).state, 'reconnecting');
  assert.equal(h.log.states.at(-1).transport, 'ws');
  assert.equal(h.memory().ws, undefined);
  s.stop();
});

// ---------------------------------------------------------------------------------------
// A page whose identity is a pasted API token: a single-use ticket per WebSocket / SSE
// connection, the token itself only ever in an Authorization header.

test('ticket helpers: URLs and what a refused ticket means', () => {
  assert.equal(withTicket('/api/v1/runs/7/log/sse?after=3', null), '/api/v1/runs/7/log/sse?after=3');
  assert.equal(withTicket('/api/v1/runs/7/log/sse?after=3', 'ticket_a b'), '/api/v1/runs/7/log/sse?after=3&ticket=ticket_a%20b');
  assert.equal(wsUrl({ protocol: 'https:', host: 'x.example' }, 7, 3, 'ticket_1'), 'wss://x.example/api/v1/runs/7/log/ws?after=3&ticket=ticket_1');
  assert.equal(explainTicketFailure({ status: 401, body: { error: { message: 'API token `x` was revoked' } } }).fatal, true);
  assert.ok(explainTicketFailure({ status: 401 }).reason.includes('sign in again'));
  assert.equal(explainTicketFailure({ status: 403 }).fatal, true);
  assert.equal(explainTicketFailure({ status: 503 }).fatal, false);
  assert.equal(explainTicketFailure({ status: 429 }).fatal, false);
  assert.equal(explainTicketFailure({ status: 0 }).fatal, false);
});

test('without a token no ticket is asked for and no Authorization is sent', async () => {
  const h = harness({ ws: 'open' });
  const s = h.stream();
  s.start();
  await h.advance(20);
  assert.equal(h.log.sockets[0].url, 'ws://oneoff.test/api/v1/runs/7/log/ws?after=0');
  assert.equal(h.log.tickets.length, 0);
  assert.ok(h.log.requests.every((request) => !request.headers.Authorization));
  s.stop();
});

test('with a token: a fresh ticket for every WebSocket connect and reconnect, never the token in a URL', async () => {
  const h = harness({ ws: 'open', token: 'oneoff_secret' });
  const s = h.stream();
  s.start();
  await h.advance(20);
  const ticketRequest = h.log.requests.find((request) => request.path === '/api/v1/runs/7/log/ticket');
  assert.equal(ticketRequest.method, 'POST');
  assert.equal(ticketRequest.headers.Authorization, 'Bearer oneoff_secret');
  assert.equal(h.log.sockets[0].url, 'ws://oneoff.test/api/v1/runs/7/log/ws?after=0&ticket=ticket_1');
  assert.equal(h.log.states.at(-1).state, 'live');
  h.log.sockets[0].send({ entries: [{ seq: 1 }], next: 1 });
  h.log.sockets[0].onclose({ code: 1006, reason: '' });
  await h.advance(2000);
  assert.equal(h.log.sockets.length, 2);
  assert.equal(h.log.sockets[1].url, 'ws://oneoff.test/api/v1/runs/7/log/ws?after=1&ticket=ticket_2');
  for (const url of [...h.log.sockets.map((socket) => socket.url), ...h.log.fetches]) {
    assert.ok(!url.includes('oneoff_secret'), url);
  }
  s.stop();
});

test('with a token: SSE gets its own ticket, and probes and long-polls carry the token as a header', async () => {
  const h = harness({ ws: 'fail', sse: 'buffered', token: 'oneoff_secret' });
  h.add(2);
  const s = h.stream();
  s.start();
  await h.advance(100);
  assert.equal(h.log.sources.length, 1);
  assert.equal(h.log.sources[0].url, '/api/v1/runs/7/log/sse?after=0&ticket=ticket_2');
  assert.deepEqual(h.log.tickets, ['ticket_1', 'ticket_2'], 'one for the WebSocket, one for SSE');
  await h.advance(SSE_FIRST_EVENT_MS + SSE_BUFFER_GRACE_MS + 200);
  assert.equal(h.log.states.at(-1).transport, 'poll');
  assert.deepEqual(h.log.entries, [1, 2]);
  const others = h.log.requests.filter((request) => !request.path.endsWith('/log/ticket'));
  assert.ok(others.length > 2);
  for (const request of others) assert.equal(request.headers.Authorization, 'Bearer oneoff_secret', request.path);
  s.stop();
});

test('with a token: a busy ticket service is retried with backoff; a refused token stops the stream', async () => {
  const busy = harness({ ws: 'open', token: 'oneoff_secret', tickets: (n) => (n === 0 ? 503 : 201) });
  const s = busy.stream();
  s.start();
  await busy.advance(5);
  assert.equal(busy.log.states.at(-1).state, 'reconnecting');
  assert.ok(busy.log.states.at(-1).reason.includes('not giving out stream tickets'));
  assert.equal(busy.log.sockets.length, 0);
  await busy.advance(1000);
  assert.equal(busy.log.sockets.length, 1);
  assert.ok(busy.log.sockets[0].url.endsWith('&ticket=ticket_1'));
  s.stop();

  const revoked = harness({ ws: 'open', token: 'oneoff_revoked', tickets: () => 401 });
  const t = revoked.stream();
  t.start();
  await revoked.advance(5000);
  const state = revoked.log.states.at(-1);
  assert.equal(state.state, 'failed');
  assert.ok(state.reason.includes('API token was not accepted'), state.reason);
  assert.equal(revoked.log.sockets.length, 0);
  assert.equal(revoked.log.fetches.filter((path) => path.endsWith('/log/ticket')).length, 1, 'not retried');
  t.stop();
});

test('a stopping replica (WebSocket close 1001): resumed at once, no probe, after the last seq', async () => {
  const h = harness({ ws: 'open' });
  const s = h.stream();
  s.start();
  await h.advance(20);
  h.log.sockets[0].send({ entries: [{ seq: 1 }, { seq: 2 }], next: 2 });
  const fetchesBefore = h.log.fetches.length;
  h.log.sockets[0].onclose({ code: 1001, reason: 'server stopping; resume with after=2' });
  await h.advance(1);
  assert.equal(h.log.fetches.length, fetchesBefore, 'nothing to diagnose: no probe');
  const state = h.log.states.at(-1);
  assert.equal(state.state, 'reconnecting');
  assert.equal(state.transport, 'ws', 'the same transport, not a fallback');
  await h.advance(state.retryInMs + 20);
  assert.equal(h.log.sockets.length, 2);
  assert.ok(h.log.sockets[1].url.endsWith('after=2'), h.log.sockets[1].url);
  h.log.sockets[1].send({ entries: [{ seq: 2 }, { seq: 3 }], next: 3 });
  assert.deepEqual(h.log.entries, [1, 2, 3]);
  assert.equal(h.log.states.at(-1).fallbacks.length, 0);
  s.stop();
});

test('a stopping replica (SSE shutting_down): resumed at once on SSE after the last seq', async () => {
  const h = harness({ ws: 'fail', sse: 'works', memory: { ws: { failedAt: 1_000_000 - 1000, reason: 'x' } } });
  h.add(2);
  const s = h.stream();
  s.start();
  await h.advance(50);
  assert.equal(h.log.sources.length, 1);
  assert.deepEqual(h.log.entries, [1, 2]);
  const body = { error: { code: 'shutting_down', message: 'server stopping; reconnect to resume after 2' } };
  h.log.sources[0].listeners.error({ data: JSON.stringify(body) });
  await h.advance(1);
  assert.equal(h.log.states.at(-1).state, 'reconnecting');
  h.add(1);
  await h.advance(h.log.states.at(-1).retryInMs + 50);
  assert.equal(h.log.sources.length, 2);
  assert.equal(h.log.sources[1].url, '/api/v1/runs/7/log/sse?after=2');
  assert.deepEqual(h.log.entries, [1, 2, 3]);
  assert.equal(h.log.states.at(-1).transport, 'sse');
  s.stop();
});

test('a handshake refused for its origin (a proxy rewrote Host) is named, not blamed on upgrade headers', async () => {
  const h = harness({ ws: 'fail', sse: 'works', probe: 'origin' });
  h.add(3);
  const s = h.stream();
  s.start();
  await h.advance(100);
  const probe = h.log.requests.find((request) => request.path === '/api/v1/runs/7/log/ws');
  assert.equal(probe.headers['X-Oneoff-Probe-Origin'], 'http://oneoff.test', 'the probe names its page\'s origin');
  const live = h.log.states.at(-1);
  assert.equal(live.transport, 'sse');
  assert.match(live.fallbacks[0].reason, /^the server refused this page's origin: Origin `http:\/\/oneoff.test` is not this server/);
  assert.deepEqual(h.log.entries, [1, 2, 3]);
  s.stop();
});
