// The UI under a path prefix (`[server] base_path = "/oneoff"`), through a real nginx that
// proxies only `/oneoff/` and passes the path on unchanged, as an ingress does: every page,
// script, API call and live stream stays under the prefix, and nothing asks the root.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  BALANCES_LIVE_LOGS, logLine, logTexts, openPage, statusBadge, transportBadge, useServerAndBrowser,
  waitForText, watchDrip,
} from './support.js';

const fixture = useServerAndBrowser({ before, after }, {
  server: 'base_path = "/oneoff"', withNginx: BALANCES_LIVE_LOGS, nginxPath: '/oneoff/',
});

test('under /oneoff/ behind nginx, the catalog, the launch form, the run page and its live log work', async () => {
  const { server, browser, proxy } = fixture;
  const { page, close } = await openPage(browser);
  const requests = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('websocket', (socket) => requests.push(socket.url()));
  const prefix = `${proxy.url}/oneoff/`;

  await page.goto(prefix);
  await page.getByRole('link', { name: 'greet' }).click();
  await page.waitForURL(`${prefix}jobs/greet`);
  await page.getByRole('textbox', { name: /^name/ }).fill('alice');
  await page.getByRole('button', { name: 'Run greet' }).click();
  await page.waitForURL(new RegExp(`^${prefix}runs/[0-9]+$`));
  await logLine(page, 'hello alice').waitFor();
  await waitForText(statusBadge(page), /^succeeded$/);
  const download = await page.getByRole('link', { name: /Download raw/i }).getAttribute('href');
  assert.match(download, /^\/oneoff\/api\/v1\/runs\/[0-9]+\/log\.txt/);

  // A live log over WebSocket through the proxy, under the prefix.
  const id = await server.createRun('drip');
  await page.goto(`${prefix}runs/${id}`);
  await logLine(page, 'drip 1').waitFor();
  await waitForText(transportBadge(page), /WebSocket.*live/);
  await watchDrip(page, server, id);
  await waitForText(statusBadge(page), /^succeeded$/);
  assert.deepEqual(await logTexts(page), Array.from({ length: 20 }, (_, i) => `drip ${i + 1}`));

  // The menu's links stay under the prefix.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Runs' }).click();
  await page.waitForURL(`${prefix}runs`);
  await page.getByRole('link', { name: `#${id}` }).waitFor();

  const outside = requests.filter((url) => !url.startsWith(prefix) && !url.startsWith(prefix.replace('http', 'ws')));
  assert.deepEqual(outside, [], 'no request left the prefix');
  assert.ok(requests.some((url) => url.startsWith(`${prefix.replace('http', 'ws')}api/v1/runs/${id}/log/ws`)),
    'the live log came over WebSocket under the prefix');
  await close();
});
