// Signing in with an API token, against a real server that refuses anonymous callers
// (`[auth] anonymous = false`, no SSO): the sign-in page, a refused token, the top bar,
// live logs over WebSocket with single-use stream tickets (never the token in a URL), the
// download link's ticket, and "Forget token".

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import {
  logTexts, openPage, statusBadge, transportBadge, useServerAndBrowser, waitForText, watchDrip,
} from './support.js';

const fixture = useServerAndBrowser({ before, after }, {
  auth: 'anonymous = false',
  tokens: [{ name: 'browser', user: 'alice', groups: ['eng'] }, { name: 'doomed', user: 'bob' }],
});

// Chromium logs every 401 the page receives as a console error: asking who we are without
// an identity, and trying a refused token, are the point of these tests.
const EXPECTED = [/status of 401/];
const TOKEN_KEY = 'oneoff.token';

/** Every URL the page asks for: HTTP requests (fetches, navigations, assets) and WebSocket handshakes. */
function recordUrls(page) {
  const requests = [];
  const sockets = [];
  page.on('request', (request) => requests.push({
    url: request.url(), method: request.method(), authorization: request.headers().authorization ?? null,
  }));
  page.on('websocket', (socket) => sockets.push(socket.url()));
  return { requests, sockets };
}

/**
 * Keeps every WebSocket the page opens in `window.__sockets`, so that a test can drop the
 * live log's connection (as a network blip would) and watch the page reconnect.
 */
async function keepSockets(context) {
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
}

/** Closes the page's open WebSockets; returns how many there were. */
function dropSockets(page) {
  return page.evaluate(() => {
    const open = window.__sockets.filter((socket) => socket.readyState === WebSocket.OPEN);
    for (const socket of open) socket.close();
    return open.length;
  });
}

function storedToken(page) {
  return page.evaluate((key) => sessionStorage.getItem(key), TOKEN_KEY);
}

/** The sign-in page's form, once shown. */
async function signInForm(page) {
  await waitForText(page.locator('main h1'), /^Sign in$/);
  const input = page.getByLabel('API token', { exact: true });
  await input.waitFor();
  return { input, submit: page.getByRole('button', { name: 'Use token' }), failure: page.locator('main .notice.error') };
}

/** Opens `url`, signs in with `token` on the sign-in page, and waits for the top bar to say so. */
async function signIn(page, url, token) {
  await page.goto(url);
  const { input, submit } = await signInForm(page);
  await input.fill(token);
  await submit.click();
  await page.locator('.topbar .identity').waitFor();
}

test('without an identity the UI asks for a token, refuses a wrong one with a clear message, and signs in with the right one', async () => {
  const { server, browser } = fixture;
  const token = server.tokens.browser;
  const { page, close, allowed } = await openPage(browser, { allow: EXPECTED });
  const { requests } = recordUrls(page);
  await page.goto(`${server.url}/`);

  // The sign-in page says why it is shown, and nothing of the catalog leaked through.
  const { input, submit, failure } = await signInForm(page);
  assert.equal(await page.title(), 'Sign in · oneoff');
  assert.match(await page.locator('main .notice').first().textContent(), /^The server did not recognise you: ./);
  assert.equal(await input.getAttribute('type'), 'password', 'the token is not shown on screen');
  assert.equal(await page.locator('#job-list').count(), 0);
  assert.equal(await page.locator('.topbar .identity').count(), 0);
  assert.equal(await failure.isVisible(), false, 'no error before anything was tried');
  assert.ok(allowed.some((text) => /401/.test(text)), 'the server really answered 401');

  // Something that is not a token at all is refused before anything is sent.
  const sentBefore = requests.length;
  await input.fill('hunter2');
  await submit.click();
  await waitForText(failure, /starts with “oneoff_”/);
  assert.equal(requests.length, sentBefore, 'nothing was sent');

  // A well-formed but unknown token: the server refuses it, and the page says so.
  const wrong = `oneoff_${'0'.repeat(64)}`;
  await input.fill(wrong);
  await submit.click();
  const refusal = await waitForText(failure, /^The token was refused: ./);
  assert.ok(!refusal.includes(wrong), 'the message does not echo the token');
  assert.equal(await failure.getAttribute('role'), 'alert');
  assert.equal(await storedToken(page), null, 'a refused token is not kept');
  assert.equal(await page.locator('.topbar .identity').count(), 0);
  assert.equal(await page.locator('main h1').textContent(), 'Sign in');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'api-token', 'focus is back in the field');
  const whoamiTries = requests.filter((request) => request.url.endsWith('/api/v1/whoami') && request.authorization);
  assert.deepEqual(whoamiTries.map((request) => request.authorization), [`Bearer ${wrong}`],
    'the token went in the Authorization header');

  // The right token: the catalog appears and the top bar says who is signed in.
  await input.fill(token);
  await submit.click();
  await waitForText(page.locator('main h1'), /^Jobs$/);
  await page.locator('#job-list a[href="/jobs/greet"]').waitFor();
  assert.equal(await failure.isVisible(), false);
  const identity = page.locator('.topbar .identity');
  await waitForText(identity, 'alice');
  assert.match(await identity.textContent(), /^alice \(token:browser\)/);
  assert.equal(await identity.getByRole('button', { name: 'Forget token' }).isVisible(), true);
  assert.equal(await storedToken(page), token, 'kept in sessionStorage');
  assert.equal(await page.evaluate((key) => localStorage.getItem(key), TOKEN_KEY), null, 'not in localStorage');
  assert.equal(new URL(page.url()).pathname, '/', 'still on the page that was asked for');

  // The token survives a reload of the tab (sessionStorage), and the top bar comes back.
  await page.reload();
  await page.locator('#job-list a[href="/jobs/greet"]').waitFor();
  await waitForText(identity, 'alice (token:browser)');

  for (const request of requests) {
    assert.ok(!request.url.includes(token), `no URL carries the token: ${request.url}`);
  }
  await close();
});

test('with a token, a launched run streams live over WebSocket using single-use tickets; no URL ever carries the token', async (t) => {
  const { server, browser } = fixture;
  const token = server.tokens.browser;
  const { page, context, close } = await openPage(browser, { allow: EXPECTED });
  await keepSockets(context);
  const { requests, sockets } = recordUrls(page);
  await signIn(page, `${server.url}/jobs/drip`, token);

  // Launch from the form the sign-in led back to.
  const run = page.getByRole('button', { name: 'Run drip' });
  await run.waitFor();
  await run.click();
  await page.waitForURL(/\/runs\/[0-9]+$/);
  const id = Number(new URL(page.url()).pathname.split('/').pop());
  assert.equal((await server.run(id)).requested_by, 'alice', 'the run was started as the token\'s user');

  // Lines arrive while the run is still running, over WebSocket. The connection drops once
  // midway: the page reconnects with a fresh ticket and resumes where it stopped.
  await waitForText(transportBadge(page), /WebSocket · live/);
  await page.locator('.log-text', { hasText: /^drip 3$/ }).waitFor();
  assert.equal(await dropSockets(page), 1, 'one live WebSocket to drop');
  const whileRunning = await watchDrip(page, server, id);
  assert.ok(whileRunning.size >= 3,
    `lines arrived in several steps while the run was running (saw ${[...whileRunning].join(', ')})`);
  await waitForText(statusBadge(page), /^succeeded$/);
  await waitForText(transportBadge(page), /WebSocket · complete/);
  assert.deepEqual(await logTexts(page), Array.from({ length: 20 }, (_, i) => `drip ${i + 1}`), 'no gap, no duplicate');
  assert.equal(await page.locator('.notice.fallback').isVisible(), false, 'no fallback from WebSocket');

  // Each WebSocket connect used a fresh ticket from POST .../log/ticket (sent with the token
  // in a header), and its URL carries that ticket, not the token.
  t.diagnostic(`WebSocket URLs: ${sockets.join(' ')}`);
  assert.ok(sockets.length >= 2, `a WebSocket was opened, and opened again after the drop (${sockets.length})`);
  const ticketRequests = requests.filter((request) => request.url === `${server.url}/api/v1/runs/${id}/log/ticket`);
  assert.ok(ticketRequests.length >= sockets.length, `a ticket per connect (${ticketRequests.length} for ${sockets.length})`);
  for (const request of ticketRequests) {
    assert.equal(request.method, 'POST');
    assert.equal(request.authorization, `Bearer ${token}`);
  }
  const tickets = sockets.map((url) => {
    const parsed = new URL(url);
    assert.equal(parsed.pathname, `/api/v1/runs/${id}/log/ws`);
    assert.match(parsed.searchParams.get('ticket') ?? '', /^ticket_[A-Za-z0-9_-]+$/, `the WebSocket URL has a ticket: ${url}`);
    assert.ok(!url.includes(token), `the WebSocket URL does not carry the token: ${url}`);
    assert.ok(!url.includes(token.slice('oneoff_'.length)), `not even the token's secret part: ${url}`);
    return parsed.searchParams.get('ticket');
  });
  assert.equal(new Set(tickets).size, tickets.length, 'no ticket is used twice');

  // The ticket was used up by that connection: the server refuses it now.
  const replay = await fetch(`${server.url}/api/v1/runs/${id}/log?after=0&ticket=${encodeURIComponent(tickets[0])}`);
  assert.equal(replay.status, 401, 'a used ticket is refused');

  // "Download raw" cannot send a header either: it gets its own ticket at click time.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: /Download raw/ }).click(),
  ]);
  const downloadUrl = new URL(download.url());
  assert.equal(downloadUrl.pathname, `/api/v1/runs/${id}/log.txt`);
  assert.match(downloadUrl.searchParams.get('ticket') ?? '', /^ticket_/);
  const text = await readFile(await download.path(), 'utf8');
  assert.match(text, /drip 1\n[^]*drip 20\n/);

  const everything = [...requests.map((request) => request.url), ...sockets, download.url()];
  assert.ok(everything.length > 10, `requests were recorded (${everything.length})`);
  for (const url of everything) {
    assert.ok(!url.includes(token.slice('oneoff_'.length)), `no URL carries the token: ${url}`);
  }
  assert.ok(!server.stderr().includes(token.slice('oneoff_'.length)), 'the server never logged the token');
  await close();
});

test('"Forget token" returns to the sign-in page and the tab no longer holds the token', async () => {
  const { server, browser } = fixture;
  const token = server.tokens.browser;
  const { page, close } = await openPage(browser, { allow: EXPECTED });
  const { requests } = recordUrls(page);
  await signIn(page, `${server.url}/runs`, token);
  await waitForText(page.locator('main h1'), /^Runs$/);
  assert.equal(await storedToken(page), token);

  const signedInRequests = requests.length;
  await page.locator('.topbar .identity').getByRole('button', { name: 'Forget token' }).click();
  await signInForm(page);
  await page.locator('.topbar .identity').waitFor({ state: 'detached' });
  assert.equal(await storedToken(page), null, 'sessionStorage no longer holds the token');
  assert.equal(await page.evaluate(() => JSON.stringify(sessionStorage)).then((all) => all.includes(token)), false);
  assert.match(await page.locator('main .notice').first().textContent(), /^The server did not recognise you/,
    'not blamed on a refused token: the user chose to forget it');
  for (const request of requests.slice(signedInRequests)) {
    assert.equal(request.authorization, null, `nothing sent afterwards carries the token: ${request.method} ${request.url}`);
  }

  // A reload stays signed out.
  await page.reload();
  await signInForm(page);
  assert.equal(await page.locator('.topbar .identity').count(), 0);
  await close();
});

test('a token revoked while its log is watched: the reconnect is refused, the token is dropped, and the page asks to sign in again', async () => {
  const { server, browser } = fixture;
  const doomed = server.tokens.doomed;
  const asDoomed = { headers: { authorization: `Bearer ${doomed}` } };
  const id = await server.createRun('slow');
  const { page, context, close } = await openPage(browser, { allow: EXPECTED });
  await keepSockets(context);
  const { requests, sockets } = recordUrls(page);
  try {
    await signIn(page, `${server.url}/runs/${id}`, doomed);
    await waitForText(page.locator('.topbar .identity'), 'bob (token:doomed)');
    await page.locator('.log-text', { hasText: /^start$/ }).waitFor();
    await waitForText(transportBadge(page), /WebSocket · live/);

    // The run page also refreshes the run every few seconds, which would notice the revoked
    // token too: answer that from here, so that only the live log's reconnect can notice it.
    const snapshot = await server.run(id);
    await page.route(`${server.url}/api/v1/runs/${id}`, (route) => route.fulfill({ json: snapshot }));

    // Revoking does not close the open stream; the next connect needs a ticket, which is refused.
    const { tokens } = await server.api('/api/v1/tokens', asDoomed);
    const [mine] = tokens.filter((token) => token.name === 'doomed');
    await server.api(`/api/v1/tokens/${mine.id}`, { method: 'DELETE', ...asDoomed });
    const ticketsBefore = requests.filter((request) => request.url.endsWith('/log/ticket')).length;
    assert.equal(await dropSockets(page), 1, 'one live WebSocket to drop');

    const { failure } = await signInForm(page);
    assert.match(await page.locator('main .notice').first().textContent(), /^The API token was refused: ./);
    assert.equal(await failure.isVisible(), false);
    assert.equal(await storedToken(page), null, 'the refused token is dropped');
    await page.locator('.topbar .identity').waitFor({ state: 'detached' });
    assert.ok(requests.filter((request) => request.url.endsWith('/log/ticket')).length > ticketsBefore,
      'the reconnect asked for a ticket');
    assert.equal(sockets.length, 1, 'no WebSocket was opened without a ticket');

    await page.unroute(`${server.url}/api/v1/runs/${id}`);

    // Signing in again (with a good token) brings the same run's log back.
    await page.getByLabel('API token', { exact: true }).fill(server.tokens.browser);
    await page.getByRole('button', { name: 'Use token' }).click();
    await waitForText(page.locator('.topbar .identity'), 'alice (token:browser)');
    await page.locator('.log-text', { hasText: /^start$/ }).waitFor();
    assert.equal(new URL(page.url()).pathname, `/runs/${id}`);
    await waitForText(transportBadge(page), /WebSocket · live/);
    await close();
  } finally {
    await server.api(`/api/v1/runs/${id}/cancel`, { method: 'POST', body: '{}' }).catch(() => {});
  }
});
