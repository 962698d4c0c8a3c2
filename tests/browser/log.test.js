// The run page's live log in a real Chromium: streaming, ANSI colour, `\r` progress bars, cancel.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  hasLine, logLine, logTexts, openPage, statusBadge, transportBadge, useServerAndBrowser, waitFor, waitForText, watchDrip,
} from './support.js';

const fixture = useServerAndBrowser({ before, after });

test('log lines appear live while the run is still running', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openPage(browser);
  const id = await server.createRun('drip');
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, 'drip 1').waitFor();
  await waitForText(transportBadge(page), /WebSocket.*live/);

  const whileRunning = await watchDrip(page, server, id);
  assert.ok(whileRunning.size >= 3,
    `lines arrived in several steps while the run was running (saw ${[...whileRunning].join(', ')})`);
  assert.ok(Math.min(...whileRunning) < 15, 'the first lines showed early, not at the end');

  await waitForText(statusBadge(page), /^succeeded$/);
  await waitForText(transportBadge(page), /WebSocket.*complete/);
  const texts = await logTexts(page);
  assert.deepEqual(texts, Array.from({ length: 20 }, (_, i) => `drip ${i + 1}`), 'every line once, in order');
  await close();
});

test('a coloured line is rendered in its colour, in the light and the dark theme', async () => {
  const { server, browser } = fixture;
  const id = await server.createRun('colour');
  await server.waitForStatus(id, 'succeeded');
  for (const colorScheme of ['light', 'dark']) {
    const { page, close } = await openPage(browser, { colorScheme });
    await page.goto(`${server.url}/runs/${id}`);
    const red = page.locator('.log-text span', { hasText: 'red alert' });
    await red.waitFor();
    assert.equal(await red.textContent(), 'red alert', 'the escape codes are not shown');
    assert.deepEqual(await logTexts(page), ['plain', 'red alert', 'after']);
    const [r, g, b] = (await red.evaluate((node) => getComputedStyle(node).color)).match(/[0-9.]+/g).map(Number);
    assert.ok(r >= 150 && r - g >= 80 && r - b >= 80, `${colorScheme}: rgb(${r}, ${g}, ${b}) is red`);
    // The reset after the red text applies: the next line has the log's normal colour.
    const normal = await logLine(page, 'after').evaluate((node) => getComputedStyle(node).color);
    const [nr, ng, nb] = normal.match(/[0-9.]+/g).map(Number);
    assert.ok(Math.abs(nr - ng) < 30 && Math.abs(ng - nb) < 30, `${colorScheme}: ${normal} is not coloured`);
    await close();
  }
});

test('a carriage-return progress bar is rendered as one line showing its final state', async () => {
  const { server, browser } = fixture;
  const id = await server.createRun('progress');
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/runs/${id}`);
  await waitForText(statusBadge(page), /^succeeded$/);
  await waitForText(transportBadge(page), /complete/);
  await logLine(page, 'progress 100%').waitFor();
  const texts = await logTexts(page);
  assert.deepEqual(texts, ['progress 100%'], `one line, as a terminal shows it (got ${JSON.stringify(texts)})`);
  await close();
});

test('a slow carriage-return progress bar stored in pieces is merged into one line that updates live', async () => {
  const { server, browser } = fixture;
  const id = await server.createRun('progress-slow');
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/runs/${id}`);
  // While it runs, the one progress line shows an intermediate state.
  const seen = new Set();
  await waitFor(async () => {
    const texts = (await logTexts(page)).filter((text) => text.startsWith('progress'));
    assert.ok(texts.length <= 1, `at most one progress line at any time (got ${JSON.stringify(texts)})`);
    if (texts.length === 1) seen.add(texts[0]);
    return texts[0] === 'progress 100%';
  }, { timeout: 15000, interval: 50, message: 'progress 100%' });
  assert.ok(seen.size >= 2, `the line was rewritten in place while running (saw ${[...seen].join(' | ')})`);
  await logLine(page, 'next line').waitFor();
  await waitForText(statusBadge(page), /^succeeded$/);
  const entries = (await server.api(`/api/v1/runs/${id}/log`)).entries.map((entry) => entry.text);
  assert.ok(entries.filter((text) => text.startsWith('\rprogress')).length >= 3,
    `the server stored the bar in pieces, so this test covers merging (${JSON.stringify(entries)})`);
  // One row, and no blank row from the newline that ended the last flushed piece (it arrives
  // as an empty entry): as a terminal shows it.
  assert.deepEqual(await logTexts(page), ['progress 100%', 'next line']);
  await close();
});

test('cancel, after confirming, stops the run and the badge shows cancelled', async () => {
  const { server, browser } = fixture;
  const id = await server.createRun('slow');
  const { page, close } = await openPage(browser);
  // The UI confirms in the page; accept a native dialog too, should it ever use one.
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, 'start').waitFor();
  await waitForText(statusBadge(page), /^running$/);

  await page.getByRole('button', { name: 'Cancel run' }).click();
  const confirm = page.getByRole('group', { name: 'Confirm cancel' });
  await confirm.waitFor();
  assert.match(await confirm.textContent(), new RegExp(`Cancel run #${id}\\?`));
  assert.equal(await server.run(id).then((run) => run.status), 'running', 'nothing happens before confirming');
  await page.getByRole('button', { name: 'Yes, cancel it' }).click();

  await waitForText(statusBadge(page), /^cancelled$/, { timeout: 15000 });
  assert.equal((await server.run(id)).status, 'cancelled');
  await waitForText(transportBadge(page), /complete/);
  // The buttons follow the refetched run a moment after the stream's done message.
  await page.getByRole('button', { name: 'Cancel run' }).waitFor({ state: 'detached', timeout: 10000 });
  assert.ok(await hasLine(page, 'start'));
  await close();
});

test('"Keep it running" dismisses the confirmation without cancelling', async () => {
  const { server, browser } = fixture;
  const id = await server.createRun('slow');
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/runs/${id}`);
  await waitForText(statusBadge(page), /^running$/);
  await page.getByRole('button', { name: 'Cancel run' }).click();
  await page.getByRole('button', { name: 'Keep it running' }).click();
  await page.getByRole('button', { name: 'Cancel run' }).waitFor();
  assert.equal((await server.run(id)).status, 'running');
  await server.api(`/api/v1/runs/${id}/cancel`, { method: 'POST' });
  await waitForText(statusBadge(page), /^cancelled$/);
  await close();
});
