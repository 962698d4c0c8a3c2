// Tail first, in a real Chromium, on a finished 1,000,000-line run: the page opens at the
// end having fetched only the last screens; scrolling back reaches line 1, a `#L` permalink
// opens in the middle, a search finds a line the browser never loaded, wrapping shows
// fetched rows too, "Download raw" is still the whole log, and a live firehose leaves a
// bounded window whose dropped lines are fetched again, and a search of a live run goes on
// over the lines stored after it finished.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { logLine, openPage, transportBadge, useServerAndBrowser, waitFor, waitForText } from './support.js';

const fixture = useServerAndBrowser({ before, after });

const LINES = 1_000_000;
let millionRun = null;
/**
 * A `burst` run that prints its 400,000 lines once `release()` is called, open on its run
 * page, which follows it live; `close()` closes the page, `remove()` cleans up.
 */
async function followedBurst() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'oneoff-burst-'));
  const flag = path.join(dir, 'go');
  const id = await fixture.server.createRun('burst', { flag });
  const { page, close } = await openPage(fixture.browser);
  await page.goto(`${fixture.server.url}/runs/${id}`);
  await waitForText(transportBadge(page), /live/);
  return { page, close, release: () => writeFile(flag, ''), remove: () => rm(dir, { recursive: true, force: true }) };
}

function million() {
  millionRun ??= (async () => {
    const id = await fixture.server.createRun('million');
    return fixture.server.waitForStatus(id, 'succeeded', 120000);
  })();
  return millionRun;
}

/**
 * Counts the log entries the page received, over HTTP (`/log` pages, search answers) and
 * WebSocket, and the sequence numbers seen, so a test can say what was never downloaded.
 */
function countEntries(page) {
  const seen = { entries: 0, seqs: new Set(), requests: [] };
  const take = (body) => {
    for (const entry of body?.entries || []) {
      seen.entries += 1;
      seen.seqs.add(entry.seq);
    }
    for (const match of body?.matches || []) {
      seen.entries += 1;
      seen.seqs.add(match.seq);
    }
  };
  page.on('response', async (response) => {
    const url = new URL(response.url());
    if (!/\/api\/v1\/runs\/[0-9]+\/log(\/search)?$/.test(url.pathname)) return;
    seen.requests.push(url.pathname + url.search);
    try {
      take(await response.json());
    } catch {
      // not JSON (an error page): nothing received
    }
  });
  page.on('websocket', (socket) => socket.on('framereceived', ({ payload }) => {
    try {
      take(JSON.parse(String(payload)));
    } catch {
      // a ping
    }
  }));
  return seen;
}

/** The line numbers of the rows on screen, top to bottom. */
function shownNumbers(page) {
  return page.evaluate(() => [...document.querySelectorAll('.log-row:not([hidden])')]
    .map((row) => ({ top: row.getBoundingClientRect().top, no: Number(row.querySelector('.log-no')?.textContent), text: row.querySelector('.log-text')?.textContent }))
    .sort((a, b) => a.top - b.top));
}

test('a finished 1,000,000-line run opens at its end, having downloaded only its last screens', async () => {
  const { server, browser } = fixture;
  const { id } = await million();
  const { page, close } = await openPage(browser);
  const seen = countEntries(page);
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, String(LINES)).waitFor();
  await waitForText(transportBadge(page), /complete/);
  // The end is on screen, in order, with the line numbers of the whole log.
  const rows = await shownNumbers(page);
  const last = rows.at(-1);
  assert.equal(last.no, LINES);
  for (const row of rows.filter((r) => r.text !== '')) assert.equal(row.text, String(row.no), 'each row shows its own line');
  assert.ok(seen.entries < 10_000, `only the tail was downloaded: ${seen.entries} entries (${seen.requests.join(', ')})`);
  assert.ok(!seen.seqs.has(1), 'line 1 was never downloaded');
  // The scrollbar stands for the whole log: at the bottom, with a million rows above.
  const geometry = await page.locator('.log-scroller').evaluate((node) => ({ top: node.scrollTop, height: node.scrollHeight, client: node.clientHeight }));
  assert.ok(geometry.height > 1_000_000, `the scroll space covers the whole log (${geometry.height} px)`);
  assert.ok(geometry.top + geometry.client >= geometry.height - 4, 'scrolled to the end');
  await close();
});

test('scrolling back reaches line 1, fetching pages as they come into view', async () => {
  const { server, browser } = fixture;
  const { id } = await million();
  const { page, close } = await openPage(browser);
  const seen = countEntries(page);
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, String(LINES)).waitFor();
  const scroller = page.locator('.log-scroller');
  // Drag to the top, as the scrollbar would.
  await scroller.evaluate((node) => {
    node.scrollTop = 0;
  });
  await logLine(page, '1').waitFor({ timeout: 15000 });
  await waitFor(async () => {
    const rows = await shownNumbers(page);
    return rows.length > 10 && rows.every((row, i) => row.no === i + 1 && row.text === String(i + 1));
  }, { timeout: 15000, message: 'lines 1, 2, 3… on screen, each with its text' });
  // The wheel goes on from there: the next rows are fetched as well.
  await scroller.hover();
  for (let i = 0; i < 5; i++) await page.mouse.wheel(0, 2000);
  await waitFor(async () => {
    const rows = await shownNumbers(page);
    return rows.length > 10 && rows[0].no > 1 && rows.every((row) => row.text === String(row.no));
  }, { timeout: 15000, message: 'the rows below line 1 load as the wheel scrolls' });
  assert.ok(seen.entries < 100_000, `pages near the view, not the whole log: ${seen.entries} entries`);
  await close();
});

test('a #L permalink into the middle opens there with its line highlighted', async () => {
  const { server, browser } = fixture;
  const { id } = await million();
  const { page, close } = await openPage(browser);
  const seen = countEntries(page);
  await page.goto(`${server.url}/runs/${id}#L500000`);
  await waitForText(page.locator('.log-row.target .log-text'), /^500000$/, { timeout: 15000 });
  const rows = await shownNumbers(page);
  const numbers = rows.map((row) => row.no);
  assert.ok(numbers.includes(499999) && numbers.includes(500001), `its neighbours around it: ${numbers.join(', ')}`);
  assert.ok(!seen.seqs.has(LINES - 100_000), 'nothing near the end was downloaded');
  // Scrolling up from there fetches the lines before it.
  await page.locator('.log-scroller').hover();
  await page.mouse.wheel(0, -3000);
  await waitFor(async () => {
    const shown = await shownNumbers(page);
    return shown.length > 0 && shown[0].no < 499_900 && shown.every((row) => row.text === String(row.no));
  }, { timeout: 15000, message: 'earlier lines above the permalink' });
  // Another permalink in the same page moves there.
  await page.evaluate(() => {
    location.hash = '#L250000';
  });
  await waitForText(page.locator('.log-row.target .log-text'), /^250000$/, { timeout: 15000 });
  // A line past the end of the log goes to its end.
  await page.evaluate(() => {
    location.hash = '#L5000000';
  });
  await logLine(page, String(LINES)).waitFor({ timeout: 15000 });
  await close();
});

test('search runs over the whole log and brings a line the browser never loaded on screen', async () => {
  const { server, browser } = fixture;
  const { id } = await million();
  const { page, close } = await openPage(browser);
  const seen = countEntries(page);
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, String(LINES)).waitFor();
  assert.ok(!seen.seqs.has(123_456), 'line 123456 is not held before the search');
  const input = page.getByRole('searchbox', { name: 'Search the log' });
  await input.fill('123456');
  await input.press('Enter');
  // 123456, 1234560..1234569 are past the end: only 123456 in this log.
  await waitForText(page.locator('.log-count'), /^1 of 1$/, { timeout: 30000 });
  await waitForText(page.locator('.log-row:not([hidden]) mark.current'), /^123456$/, { timeout: 15000 });
  assert.equal(await page.locator('.log-row:not([hidden]) mark.current').evaluate((mark) => mark.closest('.log-row').querySelector('.log-no').textContent), '123456');
  // A query with many matches counts them across the log (99999, x99999, 99999x: 19) and
  // steps in order from the first match at or below the top line.
  await input.fill('99999');
  const counted = await waitForText(page.locator('.log-count'), /^[0-9]+ of 19$/, { timeout: 30000 });
  const k = Number(counted.split(' ')[0]);
  const current = () => page.locator('.log-row:not([hidden]) mark.current')
    .evaluate((mark) => Number(mark.closest('.log-row').querySelector('.log-no').textContent)).catch(() => null);
  const first = await waitFor(current, { timeout: 15000, message: 'the first match on screen' });
  await input.press('Enter');
  await waitForText(page.locator('.log-count'), `${k === 19 ? 1 : k + 1} of 19`);
  await waitFor(async () => {
    const shown = await current();
    return shown !== null && shown !== first && String(shown).includes('99999');
  }, { timeout: 15000, message: 'Enter goes to the next match' });
  // Shift+Enter twice goes back past the first one.
  await input.press('Shift+Enter');
  await input.press('Shift+Enter');
  await waitForText(page.locator('.log-count'), `${k === 1 ? 19 : k - 1} of 19`, { timeout: 15000 });
  // Nothing to find says so.
  await input.fill('no such text');
  await waitForText(page.locator('.log-count'), /^no matches$/, { timeout: 30000 });
  await close();
});

test('with wrapping on, a permalink into the middle shows its fetched rows', async () => {
  const { server, browser } = fixture;
  const { id } = await million();
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, String(LINES)).waitFor();
  await page.getByLabel('Wrap').check();
  await logLine(page, String(LINES)).waitFor();
  await page.evaluate(() => {
    location.hash = '#L700000';
  });
  await waitForText(page.locator('.log-row.target .log-text'), /^700000$/, { timeout: 15000 });
  await page.getByRole('button', { name: /Show earlier lines/ }).click();
  await waitFor(async () => (await page.locator('.log-row .log-text').allTextContents()).includes('699200'),
    { timeout: 15000, message: 'earlier rows fetched in wrap mode' });
  await close();
});

test('Download raw is the whole log', async () => {
  const { server, browser } = fixture;
  const { id } = await million();
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, String(LINES)).waitFor();
  const href = await page.getByRole('link', { name: 'Download raw' }).getAttribute('href');
  const summary = await page.evaluate(async (url) => {
    const text = await (await fetch(url)).text();
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    let inOrder = true;
    for (let i = 0; i < lines.length; i++) if (lines[i] !== String(i + 1)) inOrder = false;
    return { count: lines.length, first: lines[0], last: lines.at(-1), inOrder };
  }, href);
  assert.deepEqual(summary, { count: LINES, first: '1', last: String(LINES), inOrder: true });
  await close();
});

test('following a live firehose keeps a bounded window, and what it dropped comes back when scrolled to', async () => {
  const burst = await followedBurst();
  const { page, close } = burst;
  await burst.release();
  await logLine(page, '400000').waitFor({ timeout: 60000 });
  await waitForText(transportBadge(page), /complete/, { timeout: 60000 });
  const held = await page.locator('.logview').evaluate((node) => ({ held: Number(node.dataset.held), head: Number(node.dataset.head) }));
  assert.equal(held.head, 400000);
  assert.ok(held.held <= 200_000, `at most 200,000 entries held after 400,000 live ones: ${held.held}`);
  // Line 1 was dropped while following; scrolled to, it is fetched again.
  await page.locator('.log-scroller').evaluate((node) => {
    node.scrollTop = 0;
  });
  await logLine(page, '1').waitFor({ timeout: 15000 });
  await waitFor(async () => {
    const rows = await shownNumbers(page);
    return rows.length > 10 && rows.every((row, i) => row.no === i + 1 && row.text === String(i + 1));
  }, { timeout: 15000, message: 'lines 1, 2, 3… fetched again' });
  await close();
  await burst.remove();
});

test('a search of a live run goes on over the lines stored after it finished', async () => {
  const burst = await followedBurst();
  const { page, close } = burst;
  const input = page.getByRole('searchbox', { name: 'Search the log' });
  await input.fill('399999');
  await input.press('Enter');
  // Nothing is printed yet: the search covers the log as it is, and says so.
  await waitForText(page.locator('.log-count'), /^no matches$/, { timeout: 15000 });
  await burst.release();
  // 399999 is the one line of 1..400000 holding that text.
  await waitForText(page.locator('.log-count'), /^1 match$/, { timeout: 60000 });
  await waitForText(transportBadge(page), /complete/, { timeout: 60000 });
  await page.getByRole('button', { name: 'Next match' }).click();
  await waitForText(page.locator('.log-row:not([hidden]) mark.current'), /^399999$/, { timeout: 15000 });
  await close();
  await burst.remove();
});
