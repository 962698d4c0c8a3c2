// Behind a real nginx that drops `Upgrade`/`Connection` (the outage this product comes
// from): the UI falls back from WebSocket, says why, and still streams the log live.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  DROPS_UPGRADES, logLine, logTexts, openPage, statusBadge, transportBadge, useServerAndBrowser,
  waitForText, watchDrip,
} from './support.js';

const fixture = useServerAndBrowser({ before, after }, { withNginx: DROPS_UPGRADES });

// Chromium logs the refused handshake and the UI's probe of the same URL (HTTP 426) as
// console errors: those are the point of this test. Anything else still fails it.
const EXPECTED = [/WebSocket connection to .* failed/, /status of 426/];

test('behind an nginx that drops the upgrade headers, the UI falls back, says why, and streams live', async (t) => {
  const { server, browser, proxy } = fixture;
  const { page, close, allowed } = await openPage(browser, { allow: EXPECTED });
  const id = await server.createRun('drip');
  await page.goto(`${proxy.url}/runs/${id}`);

  // The fallback is shown, with the reason from the server's 426 diagnosis.
  const badge = transportBadge(page);
  const badgeText = await waitForText(badge, /(SSE|long-poll) · live/, { timeout: 15000 });
  t.diagnostic(`transport badge: ${badgeText}`);
  const notice = page.locator('.notice.fallback');
  await notice.waitFor({ state: 'visible' });
  const noticeText = await notice.textContent();
  assert.match(noticeText, /WebSocket is not used: a proxy between you and the server removed the WebSocket upgrade headers/);
  const guide = notice.locator('a', { hasText: 'the deployment guide' });
  const guideUrl = new URL(await guide.getAttribute('href'), proxy.url).href;
  const guideResponse = await fetch(guideUrl);
  assert.equal(guideResponse.status, 200, 'the guide the notice links is served, even through the proxy');
  assert.match(await guideResponse.text(), /proxy_http_version 1\.1/);
  assert.match(await badge.getAttribute('title'), /live/);
  assert.ok(allowed.some((text) => /426/.test(text)), 'the handshake really was refused with 426');
  t.diagnostic(`expected console errors: ${allowed.join(' | ')}`);

  // And the log still streams live through the proxy.
  const whileRunning = await watchDrip(page, server, id);
  assert.ok(whileRunning.size >= 3,
    `lines arrived in several steps while the run was running (saw ${[...whileRunning].join(', ')})`);
  await waitForText(statusBadge(page), /^succeeded$/);
  await waitForText(badge, /complete/);
  assert.deepEqual(await logTexts(page), Array.from({ length: 20 }, (_, i) => `drip ${i + 1}`), 'no gap, no duplicate');

  // The next page load remembers what failed on this origin and does not try WebSocket again.
  const refusedBefore = allowed.length;
  const second = await server.createRun('drip');
  await page.goto(`${proxy.url}/runs/${second}`);
  await logLine(page, 'drip 1').waitFor();
  await waitForText(badge, /(SSE|long-poll)/);
  await waitForText(notice, /remembered/);
  await logLine(page, 'drip 3').waitFor();
  if (process.env.ONEOFF_TEST_SCREENSHOT_DIR) {
    await page.screenshot({ path: `${process.env.ONEOFF_TEST_SCREENSHOT_DIR}/fallback.png` });
  }
  assert.equal(allowed.length, refusedBefore, `no new WebSocket attempt (${allowed.slice(refusedBefore).join('; ')})`);
  await close();
});

test('without the proxy, the same server streams over WebSocket (the fallback is the proxy\'s doing)', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openPage(browser);
  const id = await server.createRun('greet', { name: 'direct' });
  await page.goto(`${server.url}/runs/${id}`);
  await logLine(page, 'hello direct').waitFor();
  await waitForText(transportBadge(page), /WebSocket/);
  assert.equal(await page.locator('.notice.fallback').isVisible(), false);
  await close();
});
