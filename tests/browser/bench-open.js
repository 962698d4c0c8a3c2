// Benchmark (not a test): how fast the run page opens a big finished log, and whether it
// stays responsive following a live firehose, in Debian's Chromium against the real binary.
//
//   node tests/browser/bench-open.js [open-1m] [open-10m] [firehose] [--rounds N]
//
// open-1m / open-10m: a finished `seq 1 N` run; from navigation to its last line on screen
// (performance.now() in the page, i.e. since navigation start), and the JS heap after a
// forced GC once the stream is complete. firehose: the page opened on a run printing about
// 4,000,000 lines in bursts; the longest main-thread task while following (PerformanceObserver
// longtask) until its last line shows. Targets (issue 13): ≤ 0.7 s, heap ≤ 50 MB, no task
// over 100 ms. ONEOFF_BIN=/path/to/oneoff measures another build (e.g. the old UI) the same way.

import { launchBrowser, startServer, BINARY } from './support.js';

const JOBS = String.raw`
[[job]]
name = "million"
command = ["seq", "1", "1000000"]

[[job]]
name = "ten-million"
command = ["seq", "1", "10000000"]

[[job]]
name = "firehose"
command = ["sh", "-c", 'i=0; while [ "$i" -lt 20 ]; do seq 1 200000; sleep 0.2; i=$((i + 1)); done; echo firehose-end']
`;

const args = process.argv.slice(2);
const roundsAt = args.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 3;
const wanted = args.filter((arg, i) => !arg.startsWith('--') && (roundsAt < 0 || i !== roundsAt + 1));
const scenarios = wanted.length ? wanted : ['open-1m', 'open-10m', 'firehose'];

const server = await startServer({ jobs: JOBS });
const browser = await launchBrowser();
console.log(`binary: ${BINARY}`);

async function finishedRun(job, lines) {
  const started = Date.now();
  const id = await server.createRun(job);
  const run = await server.waitForStatus(id, 'succeeded', 600000);
  console.log(`${job}: ${lines.toLocaleString('en')} lines stored in ${Date.now() - started} ms (run #${run.id})`);
  return id;
}

/** A fresh page with a CDP session (heap figures) and a long-task recorder. */
async function freshPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.__longTasks = [];
    try {
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.__longTasks.push(Math.round(entry.duration));
      }).observe({ type: 'longtask', buffered: true });
    } catch {
      // no long task API
    }
  });
  const cdp = await context.newCDPSession(page);
  return { page, cdp, close: () => context.close() };
}

/** Waits (checking every animation frame) for a row showing `text`; returns performance.now(). */
function shown(page, text, timeout) {
  return page.waitForFunction((wanted) => {
    for (const node of document.querySelectorAll('.log-row:not([hidden]) .log-text')) {
      if (node.textContent === wanted) return performance.now();
    }
    return false;
  }, text, { polling: 'raf', timeout }).then((handle) => handle.jsonValue());
}

/** The JS heap in use as the page left it, and after a forced GC (MiB). */
async function heapMiB(cdp) {
  const before = (await cdp.send('Runtime.getHeapUsage')).usedSize / 1048576;
  await cdp.send('HeapProfiler.collectGarbage');
  const after = (await cdp.send('Runtime.getHeapUsage')).usedSize / 1048576;
  return { before, after };
}

async function open(id, lastLine) {
  const { page, cdp, close } = await freshPage();
  await page.goto(`${server.url}/runs/${id}`, { waitUntil: 'commit' });
  const ms = await shown(page, lastLine, 300000);
  await page.locator('.log-transport .transport', { hasText: 'complete' }).waitFor({ timeout: 300000 });
  const heap = await heapMiB(cdp);
  const longest = Math.max(0, ...(await page.evaluate(() => window.__longTasks)));
  await close();
  return { ms, heap, longest };
}

const stats = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return `median ${sorted[Math.floor(sorted.length / 2)].toFixed(0)}, min ${sorted[0].toFixed(0)}, max ${sorted.at(-1).toFixed(0)}`;
};

for (const scenario of scenarios) {
  if (scenario === 'open-1m' || scenario === 'open-10m') {
    const lines = scenario === 'open-1m' ? 1_000_000 : 10_000_000;
    const id = await finishedRun(scenario === 'open-1m' ? 'million' : 'ten-million', lines);
    const results = [];
    for (let round = 0; round < rounds; round++) {
      const result = await open(id, String(lines));
      console.log(`  ${scenario} round ${round + 1}: last line at ${result.ms.toFixed(0)} ms, heap ${result.heap.before.toFixed(1)} MiB (${result.heap.after.toFixed(1)} after GC), longest task ${result.longest} ms`);
      results.push(result);
    }
    console.log(`${scenario}: last line on screen (ms) ${stats(results.map((r) => r.ms))}; heap (MiB) ${stats(results.map((r) => r.heap.before))}; after GC ${stats(results.map((r) => r.heap.after))}; longest task (ms) ${stats(results.map((r) => r.longest))}`);
  } else if (scenario === 'firehose') {
    for (let round = 0; round < rounds; round++) {
      const { page, cdp, close } = await freshPage();
      const id = await server.createRun('firehose');
      await page.goto(`${server.url}/runs/${id}`, { waitUntil: 'commit' });
      await shown(page, 'firehose-end', 600000);
      const tasks = await page.evaluate(() => window.__longTasks);
      const heap = await heapMiB(cdp);
      const run = await server.waitForStatus(id, 'succeeded', 600000);
      console.log(`  firehose round ${round + 1}: run took ${run.duration_ms} ms; longest task ${Math.max(0, ...tasks)} ms, tasks over 100 ms: ${tasks.filter((t) => t > 100).length}, over 50 ms: ${tasks.length}; heap ${heap.before.toFixed(1)} MiB (${heap.after.toFixed(1)} after GC)`);
      await close();
    }
  } else {
    console.error(`unknown scenario ${scenario}: open-1m, open-10m or firehose`);
  }
}

await browser.close();
await server.stop();
