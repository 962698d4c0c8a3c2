// A `\r` progress bar that never pauses (tqdm's 10 Hz) shows, and moves, while it runs: the
// server stores it in pieces marked `continues`, and the viewer joins them into one row.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { logTexts, openPage, statusBadge, useServerAndBrowser, waitFor, waitForText } from './support.js';

const JOBS = String.raw`
[[job]]
name = "bar"
description = "A progress bar at 10 Hz for 8 s, never quiet"
command = ["sh", "-c", 'i=0; while [ $i -lt 80 ]; do printf "\rprogress %d" $i; sleep 0.1; i=$((i+1)); done; echo; echo done']
`;

const fixture = useServerAndBrowser({ before, after }, { jobs: JOBS });

test('a 10 Hz progress bar moves on one line while it runs, and ends as a terminal shows it', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openPage(browser);
  const id = await server.createRun('bar');
  await page.goto(`${server.url}/runs/${id}`);
  const seen = [];
  await waitFor(async () => {
    const bars = (await logTexts(page)).filter((text) => text.startsWith('progress'));
    assert.ok(bars.length <= 1, `one bar row at any time (got ${JSON.stringify(bars)})`);
    if (bars.length === 1 && (await server.run(id)).status === 'running') {
      const state = Number(bars[0].slice('progress '.length));
      if (seen[seen.length - 1] !== state) seen.push(state);
    }
    return bars[0] === 'progress 79';
  }, { timeout: 30000, interval: 100, message: 'progress 79' });
  assert.ok(seen.length >= 5, `the bar moved while the run was running (saw ${seen.join(', ')})`);
  assert.ok(seen[0] < 40, `the bar showed in the first half of its run, not at its end (first: ${seen[0]})`);
  assert.deepEqual([...seen].sort((a, b) => a - b), seen, 'states only move forward');
  await waitForText(statusBadge(page), /^succeeded$/);
  assert.deepEqual(await logTexts(page), ['progress 79', 'done'], 'one line, then the next: as a terminal shows it');
  await close();
});
