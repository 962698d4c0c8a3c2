// Three replicas on one PostgreSQL behind a round-robin nginx (no sticky sessions): a run
// page watched through the balancer while every replica is restarted, one after the other,
// as a rolling deploy does, shows every line once and in order, and the run's replica.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  JOBS, launchBrowser, logTexts, openPage, startCluster, statusBadge, transportBadge, waitFor, waitForText,
} from './support.js';

const LINES = 40;
const CLUSTER_JOBS = `${JOBS}
[[job]]
name = "long-drip"
description = "A line every 0.25 s for 10 s"
command = ["sh", "-c", 'i=1; while [ "$i" -le ${LINES} ]; do echo "step $i"; i=$((i + 1)); sleep 0.25; done']
`;

const fixture = { cluster: null, browser: null };
before(async () => {
  // A drain longer than the run: its replica, stopped, finishes the run before it exits.
  fixture.cluster = await startCluster({ count: 3, jobs: CLUSTER_JOBS, drain: '60s' });
  fixture.browser = await launchBrowser();
});
after(async () => {
  await fixture.browser?.close();
  await fixture.cluster?.stop();
});

// A WebSocket closed by a stopping replica, and nginx's answer while one is down, are what
// this test is about; anything else still fails it.
const EXPECTED = [/WebSocket connection to .* failed/, /status of 50[23]/];

test('a rolling restart of every replica under a watched run page loses no line', async (t) => {
  const { cluster, browser } = fixture;
  const { page, close } = await openPage(browser, { allow: EXPECTED, viewport: { width: 1280, height: 2000 } });
  const api = cluster.replicas[0].server;
  const id = await api.createRun('long-drip');
  await page.goto(`${cluster.url}/runs/${id}`);
  await waitFor(async () => (await logTexts(page)).includes('step 1'), { message: 'the first line on the page' });
  const running = await api.waitForStatus(id, 'running');
  t.diagnostic(`the run is on replica ${running.replica}`);

  for (let index = 0; index < cluster.replicas.length; index += 1) {
    await cluster.restart(index);
    t.diagnostic(`restarted replica ${cluster.replicas[index].name}`);
  }

  await waitForText(statusBadge(page), /^succeeded$/, { timeout: 60000 });
  await waitFor(async () => (await logTexts(page)).length >= LINES, { timeout: 20000, message: 'every line on the page' });
  // WebSocket all along: a replica going away is not a proxy problem, and must not read as one.
  assert.match(await transportBadge(page).textContent(), /WebSocket/);
  assert.equal(await page.locator('.notice.fallback').isVisible(), false, 'no fallback notice');
  const expected = Array.from({ length: LINES }, (_, i) => `step ${i + 1}`);
  assert.deepEqual(await logTexts(page), expected, 'every line once, in order, across the restarts');
  const replicaRow = page.locator('dt', { hasText: /^Replica$/ }).locator('xpath=following-sibling::dd[1]');
  assert.equal(await replicaRow.textContent(), running.replica, 'the run page shows which replica ran it');
  await close();
});
