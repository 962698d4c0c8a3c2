// The transport ladder: WebSocket → Server-Sent Events → long-poll, on one resumable sequence.
//
// Rules (also in the report and web/README.md):
//  1. Start with WebSocket, unless WebSocket failed on this origin less than an hour ago
//     (remembered in localStorage); likewise skip SSE when it failed within the hour.
//  2. WebSocket: if it errors or has not opened within 3 s, probe the same URL with a plain
//     fetch (the browser hides a failed handshake's response). A 426 `websocket_*` answer
//     proves the request reaches oneoff over HTTP, so a proxy on the way dropped the upgrade;
//     if the probe cannot reach the server at all, the network is down: retry with backoff
//     instead of falling back.
//  3. SSE: fall back if `open` has not fired within 4 s, or if the request failed while plain
//     HTTP works. A quiet run legitimately sends nothing but `: ping` comments (invisible to
//     EventSource), so "no event yet" alone proves nothing. Instead, 4 s after connecting
//     without an event, ask the long-poll endpoint (no wait) whether anything is pending
//     after our last sequence (or the run is done). If so and SSE still has not delivered it
//     1.5 s later, a proxy is buffering the stream: fall back. If nothing is pending, the run
//     is just quiet: check again later (every 4 s, then every 15 s) until the first event.
//  4. Long-poll works through anything; on errors it retries with backoff forever.
//  5. Every step, and every reconnect, resumes with `after=<last seq seen>`; entries with a
//     sequence not above it are dropped, so there is no gap and no duplicate.
//  6. A transport that worked on this page and then drops is reconnected (same transport)
//     with exponential backoff (a replica that is stopping, WebSocket close 1001 or SSE
//     `shutting_down`, is left at once: the next connect lands on another replica); after two failed reconnects while plain HTTP works, the
//     next transport is used.
//  7. When the page's identity is an API token (`token` option), fetches send it as
//     `Authorization: Bearer`; WebSocket and EventSource cannot send headers, so every
//     connect and reconnect first asks `POST .../log/ticket` for a single-use ticket and
//     puts that in the URL instead (never the token).

export const WS_OPEN_TIMEOUT_MS = 3000;
export const SSE_OPEN_TIMEOUT_MS = 4000;
export const SSE_FIRST_EVENT_MS = 4000;
export const SSE_QUIET_RECHECK_MS = 15000;
export const SSE_BUFFER_GRACE_MS = 1500;
export const RETRY_FAILED_AFTER_MS = 60 * 60 * 1000;
export const POLL_WAIT_SECONDS = 25;
export const POLL_LIMIT = 5000;
export const MEMORY_KEY = 'oneoff.transport.v1';

export const LADDER = ['ws', 'sse', 'poll'];
export const LABELS = { ws: 'WebSocket', sse: 'SSE', poll: 'long-poll' };

/** The JSON value of a message from the server, or `null` when it is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export function nextTransport(transport) {
  const index = LADDER.indexOf(transport);
  return index >= 0 && index + 1 < LADDER.length ? LADDER[index + 1] : null;
}

// ---------------------------------------------------------------------------------------
// Pure decisions (unit-tested in web/test/transport.test.js)

/** What to remember per origin: {ws: {failedAt, reason}, sse: {...}, worked, workedAt}. */
export function loadMemory(storage) {
  try {
    const parsed = JSON.parse(storage?.getItem(MEMORY_KEY) || '{}');
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}

export function saveMemory(storage, memory) {
  try {
    storage?.setItem(MEMORY_KEY, JSON.stringify(memory));
  } catch {
    // Private mode or a full quota: remembering is an optimisation only.
  }
}

/**
 * Where to start: the first transport that has not failed within the last hour.
 * Returns {transport, skipped: [{transport, reason, at}]}.
 */
export function chooseStart(memory, now) {
  const skipped = [];
  for (const transport of ['ws', 'sse']) {
    const failure = memory?.[transport];
    if (failure && typeof failure.failedAt === 'number' && now - failure.failedAt < RETRY_FAILED_AFTER_MS
        && now >= failure.failedAt) {
      skipped.push({ transport, reason: failure.reason || '', at: failure.failedAt });
    } else {
      return { transport, skipped };
    }
  }
  return { transport: 'poll', skipped };
}

export function rememberFailure(memory, transport, reason, now) {
  if (transport === 'poll') return memory;
  return { ...memory, [transport]: { failedAt: now, reason } };
}

export function rememberSuccess(memory, transport, now) {
  const next = { ...memory, worked: transport, workedAt: now };
  delete next[transport];
  return next;
}

/**
 * Resume bookkeeping: keeps entries after `last`, in order. `gap` is true when the first
 * kept entry is not `last + 1` (entries would be missing: reconnect from `last` instead).
 */
export function acceptEntries(last, entries) {
  const fresh = [];
  let position = last;
  for (const entry of entries || []) {
    if (typeof entry?.seq !== 'number' || entry.seq <= position) continue;
    if (entry.seq !== position + 1) return { fresh, last: position, gap: true };
    fresh.push(entry);
    position = entry.seq;
  }
  return { fresh, last: position, gap: false };
}

/** 0.5 s, 1 s, 2 s, 4 s, 8 s, then 15 s, each ±20 %. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(15000, 500 * 2 ** Math.max(0, attempt));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * The one sentence explaining why WebSocket is not used, from what a plain fetch of the
 * WebSocket URL answered (`status`, parsed `body`), whether the socket timed out rather than
 * failed, and what the SSE endpoint answered when it was probed too (`sse`: {status, body}).
 * Returns {reason, reachable}: reachable=false means the server could not be reached at all.
 */
export function explainWebSocketFailure({ status, body, timedOut, sse }) {
  const code = body?.error?.code;
  if (status === 0 || status === undefined || status === null) {
    return { reachable: false, reason: 'the server cannot be reached' };
  }
  if (status >= 502 && status <= 504) {
    return { reachable: false, reason: `the server is unavailable (HTTP ${status})` };
  }
  if (sse?.status === 503 && sse?.body?.error?.code === 'viewer_limit') {
    return { reachable: true, reason: `the server refused another live viewer: ${sse.body.error.message}` };
  }
  if (status === 426 && typeof code === 'string' && code.startsWith('websocket')) {
    if (timedOut) {
      return {
        reachable: true,
        reason: `the WebSocket connection did not open within ${WS_OPEN_TIMEOUT_MS / 1000} s although the server answers plain HTTP; a proxy between you and the server is probably holding or dropping the upgrade`,
      };
    }
    return {
      reachable: true,
      reason: 'a proxy between you and the server removed the WebSocket upgrade headers',
    };
  }
  if (status === 403 && code === 'origin_rejected') {
    // Certain, and a blocker whatever else is wrong; a plain fetch cannot tell whether a
    // proxy also drops the upgrade headers, so say that it is not ruled out.
    return {
      reachable: true,
      reason: `the server refused this page's origin: ${body.error.message} (whether a proxy also removes the upgrade headers is checked once this is fixed; \`oneoff doctor\` checks every hop)`,
    };
  }
  if (status === 401 || status === 403) {
    return { reachable: true, reason: `the WebSocket request was refused (HTTP ${status}), probably by an authenticating proxy` };
  }
  if (code && body?.error?.message) {
    return { reachable: true, reason: `the WebSocket request was refused (HTTP ${status}): ${body.error.message}` };
  }
  return {
    reachable: true,
    reason: `the WebSocket handshake failed, and something other than oneoff answers its URL (HTTP ${status}); a proxy is probably not forwarding it`,
  };
}

/**
 * The SSE watchdog's verdict. `state`: {startedAt, openedAt, gotEvent, pendingSince}.
 * Returns 'ok', 'wait', or {fallback: reason}.
 */
export function sseVerdict(state, now) {
  if (state.gotEvent) return 'ok';
  if (state.openedAt === null || state.openedAt === undefined) {
    if (now - state.startedAt >= SSE_OPEN_TIMEOUT_MS) {
      return { fallback: `the Server-Sent Events stream did not connect within ${SSE_OPEN_TIMEOUT_MS / 1000} s` };
    }
    return 'wait';
  }
  if (state.pendingSince !== null && state.pendingSince !== undefined
      && now - state.pendingSince >= SSE_BUFFER_GRACE_MS) {
    return {
      fallback: 'the Server-Sent Events stream connected but delivered nothing while the log had new lines: a proxy between you and the server is buffering it',
    };
  }
  return 'wait';
}

/** Explains a failed SSE connection from a probe of its URL ({status, body}). */
export function explainSseFailure({ status, body }) {
  if (!status) return { reachable: false, reason: 'the server cannot be reached' };
  if (status >= 502 && status <= 504) return { reachable: false, reason: `the server is unavailable (HTTP ${status})` };
  if (status === 200) {
    return { reachable: true, reason: 'the Server-Sent Events stream failed although the server accepts it; a proxy is probably cutting it' };
  }
  const detail = body?.error?.message ? `: ${body.error.message}` : '';
  return { reachable: true, reason: `the Server-Sent Events request was refused (HTTP ${status})${detail}` };
}

/** Adds a stream ticket to a URL that already has a query. */
export function withTicket(url, ticket) {
  return ticket ? `${url}&ticket=${encodeURIComponent(ticket)}` : url;
}

/** The WebSocket URL of a run's log; `base` is the UI's path prefix (`''` at the root). */
export function wsUrl(location, runId, after, ticket = null, base = '') {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const path = `${base}/api/v1/runs/${encodeURIComponent(runId)}/log/ws?after=${after}`;
  return withTicket(`${scheme}//${location.host}${path}`, ticket);
}

/**
 * What to do when no stream ticket could be had ({status, body} of `POST .../log/ticket`).
 * Returns {fatal, reason}: fatal means retrying cannot help (the token or the permission is
 * gone); otherwise retry the same transport with backoff (server busy or unreachable).
 */
export function explainTicketFailure({ status, body }) {
  const detail = body?.error?.message ? `: ${body.error.message}` : '';
  if (!status) return { fatal: false, reason: 'the server cannot be reached' };
  if (status === 401) return { fatal: true, reason: `the API token was not accepted${detail}; sign in again` };
  if (status === 403 || status === 404) return { fatal: true, reason: `the log cannot be opened (HTTP ${status})${detail}` };
  if (status === 429 || status === 503) return { fatal: false, reason: `the server is not giving out stream tickets right now${detail}` };
  return { fatal: false, reason: `no stream ticket (HTTP ${status})${detail}` };
}

// ---------------------------------------------------------------------------------------
// The controller

/**
 * Follows one run's log. Callbacks:
 *  - onEntries(entries): new entries, in order, each exactly once;
 *  - onDone({status, exit_code, signal, next}): the run is final and every entry was delivered;
 *  - onState({transport, state, reason, fallbacks, retryInMs}): for the badge and notices.
 *    state is 'connecting' | 'live' | 'reconnecting' | 'done' | 'failed'.
 *    `fallbacks` lists [{from, reason, remembered, at}] explaining why earlier steps are not used.
 */
export class LogStream {
  constructor(runId, options = {}) {
    this.runId = runId;
    this.last = options.after ?? 0;
    this.onEntries = options.onEntries || (() => {});
    this.onDone = options.onDone || (() => {});
    this.onState = options.onState || (() => {});
    // An API token pasted into the page, or null when the browser's own identity (SSO) is used.
    this.token = options.token || null;
    // The server's path prefix (`[server] base_path`), `''` at the root.
    this.base = options.base || '';
    const g = globalThis;
    this.env = {
      WebSocket: g.WebSocket,
      EventSource: g.EventSource,
      fetch: g.fetch?.bind(g),
      setTimeout: g.setTimeout.bind(g),
      clearTimeout: g.clearTimeout.bind(g),
      now: () => Date.now(),
      location: g.location,
      storage: safeStorage(g),
      window: typeof g.addEventListener === 'function' ? g : null,
      random: Math.random,
      ...(options.env || {}),
    };
    this.transport = null;
    this.session = null;
    this.timers = new Set();
    this.attempt = 0;
    this.failuresSinceWorked = 0;
    this.proven = new Set();
    this.fallbacks = [];
    this.stopped = false;
    this.finished = false;
    this.retry = null;
    this.onlineListener = () => this.retryNow();
  }

  start() {
    const memory = loadMemory(this.env.storage);
    const { transport, skipped } = chooseStart(memory, this.env.now());
    for (const skip of skipped) {
      this.fallbacks.push({ from: skip.transport, reason: skip.reason, remembered: true, at: skip.at });
    }
    this.env.window?.addEventListener('online', this.onlineListener);
    this.connect(transport);
  }

  stop() {
    this.stopped = true;
    this.endSession();
    this.clearRetry();
    this.env.window?.removeEventListener('online', this.onlineListener);
  }

  /** Retries at once if waiting for a backoff (e.g. the browser went back online). */
  retryNow() {
    if (this.retry) {
      const { run } = this.retry;
      this.clearRetry();
      run();
    }
  }

  // -- plumbing

  url(path) {
    return `${this.base}/api/v1/runs/${encodeURIComponent(this.runId)}${path}`;
  }

  /** Request headers, with the token when the page has one. */
  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  }

  /** A single-use ticket for the next WebSocket or EventSource: {ticket} or {fatal, reason}. */
  async fetchTicket() {
    let status = 0;
    let body = null;
    try {
      const response = await this.env.fetch(this.url('/log/ticket'), {
        method: 'POST',
        headers: this.headers({ Accept: 'application/json' }),
        cache: 'no-store',
      });
      status = response.status;
      body = await response.json().catch(() => null);
    } catch {
      // status 0: unreachable
    }
    if (status >= 200 && status < 300 && typeof body?.ticket === 'string') return { ticket: body.ticket };
    return explainTicketFailure({ status, body });
  }

  emitState(state, extra = {}) {
    this.onState({
      transport: this.transport,
      state,
      fallbacks: this.fallbacks.slice(),
      reason: extra.reason || null,
      retryInMs: extra.retryInMs ?? null,
    });
  }

  timer(session, ms, fn) {
    const handle = this.env.setTimeout(() => {
      this.timers.delete(handle);
      if (session === this.session && !this.stopped) fn();
    }, ms);
    this.timers.add(handle);
    return handle;
  }

  endSession() {
    const session = this.session;
    this.session = null;
    for (const handle of this.timers) this.env.clearTimeout(handle);
    this.timers.clear();
    if (session) {
      session.closed = true;
      try {
        session.close?.();
      } catch {
        // already closed
      }
    }
  }

  clearRetry() {
    if (this.retry) this.env.clearTimeout(this.retry.handle);
    this.retry = null;
  }

  connect(transport) {
    if (this.stopped || this.finished) return;
    this.endSession();
    this.clearRetry();
    this.transport = transport;
    const session = { transport, closed: false, close: null };
    this.session = session;
    this.emitState(this.attempt > 0 ? 'reconnecting' : 'connecting');
    if (transport === 'poll') {
      this.pollLoop(session);
      return;
    }
    const open = (ticket) => (transport === 'ws' ? this.connectWs(session, ticket) : this.connectSse(session, ticket));
    if (!this.token) {
      open(null);
      return;
    }
    // A ticket is good for one connection: a fresh one for every connect and reconnect.
    this.fetchTicket().then((result) => {
      if (session !== this.session || this.stopped || this.finished) return;
      if (result.ticket) open(result.ticket);
      else if (result.fatal) this.fail(result.reason);
      else this.lost(session, async () => ({ reachable: false, reason: result.reason }));
    });
  }

  /** Delivers a batch; returns false on a gap (the caller reconnects from `last`). */
  deliver(entries) {
    const { fresh, last, gap } = acceptEntries(this.last, entries);
    this.last = last;
    if (fresh.length) this.onEntries(fresh);
    return !gap;
  }

  worked(session) {
    if (session !== this.session) return;
    const first = !this.proven.has(session.transport);
    this.proven.add(session.transport);
    this.attempt = 0;
    this.failuresSinceWorked = 0;
    if (first) {
      saveMemory(this.env.storage, rememberSuccess(loadMemory(this.env.storage), session.transport, this.env.now()));
    }
    this.emitState('live');
  }

  finish(done) {
    if (this.finished) return;
    if (typeof done.next === 'number' && done.next > this.last) {
      // The server says entries exist that we have not seen: fetch them before ending.
      this.connect('poll');
      return;
    }
    this.finished = true;
    this.endSession();
    this.clearRetry();
    this.env.window?.removeEventListener('online', this.onlineListener);
    this.emitState('done');
    this.onDone(done);
  }

  fail(reason) {
    this.finished = true;
    this.endSession();
    this.clearRetry();
    this.emitState('failed', { reason });
  }

  /** Retries the same transport after a backoff delay. */
  reconnectLater(transport, reason) {
    this.endSession();
    const delay = backoffDelay(this.attempt, this.env.random);
    this.attempt += 1;
    const run = () => this.connect(transport);
    const handle = this.env.setTimeout(() => {
      this.retry = null;
      if (!this.stopped) run();
    }, delay);
    this.retry = { handle, run };
    this.transport = transport;
    this.emitState('reconnecting', { reason, retryInMs: delay });
  }

  fallBack(from, reason) {
    const to = nextTransport(from);
    this.fallbacks.push({ from, reason, remembered: false, at: this.env.now() });
    saveMemory(this.env.storage, rememberFailure(loadMemory(this.env.storage), from, reason, this.env.now()));
    this.attempt = 0;
    this.failuresSinceWorked = 0;
    this.connect(to);
  }

  /**
   * A connection failed or dropped. `explain` resolves to {reachable, reason}.
   * Unreachable server → retry the same transport later. Reachable: a transport that never
   * worked on this page is skipped at once; one that worked gets two more tries first.
   */
  async lost(session, explain, immediate = false) {
    if (session !== this.session || this.stopped || this.finished || session.lost) return;
    session.lost = true;
    session.closed = true;
    try {
      session.close?.();
    } catch {
      // already closed
    }
    const transport = session.transport;
    if (immediate) {
      this.reconnectLater(transport, 'resuming');
      return;
    }
    let verdict;
    try {
      verdict = await explain();
    } catch {
      verdict = { reachable: false, reason: 'the server cannot be reached' };
    }
    if (session !== this.session || this.stopped || this.finished) return;
    const canFallBack = transport !== 'poll';
    if (verdict.reachable && canFallBack
        && (!this.proven.has(transport) || ++this.failuresSinceWorked >= 3)) {
      this.fallBack(transport, verdict.reason);
    } else {
      this.reconnectLater(transport, verdict.reason);
    }
  }

  async probe(path, { abortAfterHeaders = false, timeoutMs = 4000, extraHeaders = {} } = {}) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timeout = this.env.setTimeout(() => controller?.abort(), timeoutMs);
    try {
      const response = await this.env.fetch(path, {
        headers: this.headers({ 'X-Oneoff-Probe': '1', Accept: 'application/json', ...extraHeaders }),
        cache: 'no-store',
        signal: controller?.signal,
      });
      let body = null;
      if (!(abortAfterHeaders && response.ok)) {
        body = await response.json().catch(() => null);
      }
      return { status: response.status, body };
    } catch {
      return { status: 0, body: null };
    } finally {
      this.env.clearTimeout(timeout);
      if (abortAfterHeaders) controller?.abort();
    }
  }

  // -- WebSocket

  connectWs(session, ticket) {
    let socket;
    try {
      socket = new this.env.WebSocket(wsUrl(this.env.location, this.runId, this.last, ticket, this.base));
    } catch {
      this.lost(session, () => this.explainWs(false));
      return;
    }
    let opened = false;
    session.close = () => {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000);
      } catch {
        // not open yet
      }
    };
    this.timer(session, WS_OPEN_TIMEOUT_MS, () => {
      if (!opened) this.lost(session, () => this.explainWs(true));
    });
    socket.onopen = () => {
      if (session !== this.session) return;
      opened = true;
      this.worked(session);
    };
    socket.onmessage = (event) => {
      if (session !== this.session) return;
      const message = parseJson(event.data);
      if (message === null) return;
      if (message.done) {
        this.finish(message);
      } else if (Array.isArray(message.entries) && !this.deliver(message.entries)) {
        this.lost(session, null, true);
      }
    };
    socket.onerror = () => {};
    socket.onclose = (event) => {
      if (session !== this.session) return;
      if (event.code === 1000 && /deleted/.test(event.reason || '')) {
        this.fail('the run was deleted');
        return;
      }
      if (!opened) {
        this.lost(session, () => this.explainWs(false));
      } else if (event.code === 1013 || event.code === 1001) {
        // Too slow, or this replica is stopping (its reason names the `after` to resume
        // from, which is ours): resume at once, through the load balancer to any replica.
        this.lost(session, null, true);
      } else {
        this.lost(session, () => this.reachable());
      }
    };
  }

  async explainWs(timedOut) {
    // The probe's fetch carries no Origin (same-origin GET): name it, so that a handshake
    // refused for its origin is not mistaken for one that lost its upgrade headers.
    const origin = this.env.location?.origin;
    const ws = await this.probe(this.url('/log/ws'), { extraHeaders: origin ? { 'X-Oneoff-Probe-Origin': origin } : {} });
    let sse = null;
    // Only to tell a viewer limit from a stripped upgrade; a buffering proxy may hold it, so briefly.
    if (ws.status === 426) {
      sse = await this.probe(this.url(`/log/sse?after=${this.last}`), { abortAfterHeaders: true, timeoutMs: 1000 });
    }
    return explainWebSocketFailure({ status: ws.status, body: ws.body, timedOut, sse });
  }

  async reachable() {
    const result = await this.probe(this.url(`/log?after=${this.last}&limit=1`));
    if (result.status === 0 || (result.status >= 502 && result.status <= 504)) {
      return { reachable: false, reason: 'connection lost' };
    }
    return { reachable: true, reason: 'the connection kept failing although the server answers plain HTTP' };
  }

  // -- Server-Sent Events

  connectSse(session, ticket) {
    let source;
    try {
      source = new this.env.EventSource(withTicket(this.url(`/log/sse?after=${this.last}`), ticket));
    } catch {
      this.lost(session, () => this.explainSse());
      return;
    }
    const watch = { startedAt: this.env.now(), openedAt: null, gotEvent: false, pendingSince: null, checks: 0 };
    session.close = () => source.close();
    const judge = () => {
      const verdict = sseVerdict(watch, this.env.now());
      if (verdict !== 'ok' && verdict !== 'wait') {
        // Only blame the stream when plain HTTP gets through (otherwise the network is down).
        this.lost(session, async () => {
          const plain = await this.reachable();
          if (!plain.reachable) return plain;
          const reason = watch.openedAt === null
            ? `${verdict.fallback} although plain HTTP works: a proxy between you and the server is probably buffering it`
            : verdict.fallback;
          return { reachable: true, reason };
        });
      }
      return verdict;
    };
    const check = async () => {
      if (watch.gotEvent) return;
      if (watch.openedAt === null) {
        judge();
        return;
      }
      const result = await this.probe(this.url(`/log?after=${this.last}&limit=1`));
      if (session !== this.session || watch.gotEvent) return;
      const pending = result.status === 200 && (result.body?.entries?.length > 0 || result.body?.done === true);
      if (pending) {
        watch.pendingSince = this.env.now();
        this.timer(session, SSE_BUFFER_GRACE_MS, judge);
      } else {
        watch.checks += 1;
        this.timer(session, watch.checks > 10 ? SSE_QUIET_RECHECK_MS : SSE_FIRST_EVENT_MS, check);
      }
    };
    this.timer(session, SSE_FIRST_EVENT_MS, check);
    source.onopen = () => {
      if (session !== this.session) return;
      watch.openedAt = this.env.now();
      // Shown as live at once; it counts as working (and is remembered) from its first event.
      if (this.proven.has('sse')) this.worked(session);
      else this.emitState('live');
    };
    const gotEvent = () => {
      if (!watch.gotEvent) {
        watch.gotEvent = true;
        this.worked(session);
      }
    };
    source.onmessage = (event) => {
      if (session !== this.session) return;
      const message = parseJson(event.data);
      if (message === null) return;
      gotEvent();
      if (Array.isArray(message.entries) && !this.deliver(message.entries)) this.lost(session, null, true);
    };
    source.addEventListener('done', (event) => {
      if (session !== this.session) return;
      gotEvent();
      // A done event without a body still means done.
      this.finish({ done: true, ...parseJson(event.data) });
    });
    source.addEventListener('error', (event) => {
      if (session !== this.session) return;
      if (typeof event.data === 'string') {
        // `event: error` sent by the server (shutting down, internal error, run deleted).
        const body = parseJson(event.data);
        if (body?.error?.code === 'not_found') {
          this.fail(body.error.message || 'the run was deleted');
          return;
        }
        if (body?.error?.code === 'shutting_down') {
          // This replica is stopping: resume at once from our last entry, on any replica.
          this.lost(session, null, true);
          return;
        }
        this.lost(session, async () => ({ reachable: false, reason: body?.error?.message || 'the stream ended' }));
        return;
      }
      // A connection error. EventSource would retry by itself; we retry with our own backoff.
      if (watch.gotEvent || this.proven.has('sse')) this.lost(session, () => this.reachable());
      else this.lost(session, () => this.explainSse());
    });
  }

  async explainSse() {
    const result = await this.probe(this.url(`/log/sse?after=${this.last}`), { abortAfterHeaders: true });
    if (result.status === 0) {
      // No answer at all: offline, or a proxy holding the stream. Plain HTTP tells which.
      const plain = await this.reachable();
      if (!plain.reachable) return plain;
      return { reachable: true, reason: 'the Server-Sent Events request got no answer although plain HTTP works; a proxy is probably holding it' };
    }
    return explainSseFailure(result);
  }

  // -- Long-poll

  async pollLoop(session) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    session.close = () => controller?.abort();
    while (session === this.session && !this.stopped) {
      let response;
      let page;
      try {
        const path = this.url(`/log?after=${this.last}&wait=${POLL_WAIT_SECONDS}&limit=${POLL_LIMIT}`);
        response = await this.env.fetch(path, { headers: this.headers(), cache: 'no-store', signal: controller?.signal });
        if (response.ok) page = await response.json();
      } catch {
        if (session !== this.session) return;
        this.lost(session, async () => ({ reachable: false, reason: 'connection lost' }));
        return;
      }
      if (session !== this.session) return;
      if (response.status === 404) {
        this.fail('the run does not exist (any more)');
        return;
      }
      if (response.status === 401 && this.token) {
        // A revoked or expired token does not come back by retrying.
        const body = await response.json().catch(() => null);
        this.fail(explainTicketFailure({ status: 401, body }).reason);
        return;
      }
      if (!response.ok || !page) {
        this.lost(session, async () => ({ reachable: false, reason: `the server answered HTTP ${response.status}` }));
        return;
      }
      if (!this.proven.has('poll') || this.attempt > 0) this.worked(session);
      this.deliver(page.entries);
      if (page.done && page.next <= this.last) {
        this.finish({ done: true, status: page.status, exit_code: null, signal: null, next: page.next });
        return;
      }
    }
  }
}

function safeStorage(g) {
  try {
    return g.localStorage || null;
  } catch {
    return null;
  }
}
