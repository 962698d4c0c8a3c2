// The bounded window: blocks and placeholders, merging pages fetched in any order, eviction,
// page planning, and the server search's match list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogWindow, MatchList, planFetches } from '../logwindow.js';

const entry = (seq, text = `line ${seq}`, stream = 'stdout') => ({ seq, ts: '2026-11-26T09:00:00.000000Z', stream, text });
const piece = (seq, text, stream = 'stdout') => ({ ...entry(seq, text, stream), continues: true });
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => entry(from + i));
const texts = (log) => Array.from({ length: log.length }, (_, i) => log.row(i).text ?? null);

test('the tail alone sizes the row space by the head: the rest are placeholders', () => {
  const log = new LogWindow();
  log.insert(range(999_501, 1_000_000));
  assert.equal(log.head, 1_000_000);
  assert.equal(log.length, 1_000_000, 'one row per seq: the scrollbar means position in the whole log');
  assert.deepEqual(log.row(0), { seq: 1, placeholder: true });
  assert.deepEqual(log.row(999_499), { seq: 999_500, placeholder: true });
  assert.equal(log.row(999_500).text, 'line 999501');
  assert.equal(log.indexOfSeq(1), 0);
  assert.equal(log.indexOfSeq(123), 122);
  assert.equal(log.indexOfSeq(5_000_000), 999_999, 'clamped to the head');
  assert.equal(log.entries, 500);
  assert.deepEqual(log.gapsBetween(0, 999_999), [[1, 999_500]]);
  assert.deepEqual(log.gapsBetween(999_400, 999_999), [[999_401, 999_500]]);
});

test('the head moves without rows: placeholders after the last block', () => {
  const log = new LogWindow();
  log.insert(range(1, 10));
  log.setHead(20);
  log.setHead(15); // never backwards
  assert.equal(log.length, 20);
  assert.deepEqual(log.row(12), { seq: 13, placeholder: true });
  assert.deepEqual(log.gapsBetween(0, 19), [[11, 20]]);
});

test('pages in any order merge into one block; duplicates are ignored', () => {
  const log = new LogWindow();
  log.insert(range(201, 300));
  log.insert(range(1, 100));
  assert.equal(log.blocks.length, 2);
  assert.deepEqual(log.gapsBetween(0, 299), [[101, 200]]);
  log.insert(range(150, 250)); // overlaps the block after it
  assert.equal(log.blocks.length, 2);
  log.insert(range(90, 160));
  assert.equal(log.blocks.length, 1);
  assert.equal(log.entries, 300);
  assert.deepEqual(texts(log), range(1, 300).map((e) => e.text), 'every line once, in order');
  assert.deepEqual(log.gapsBetween(0, 299), []);
});

test('a progress line cut by a page boundary joins when the page before arrives', () => {
  const log = new LogWindow();
  // seq 1..2 | 3..6: the bar started at 2, its pieces 3 and 5 continue it (4 is stderr).
  log.insert([piece(3, '\r 50%'), entry(4, 'warn', 'stderr'), piece(5, '\r100%'), entry(6, 'next')]);
  assert.deepEqual(texts(log), [null, null, '\r 50%\r100%', 'warn', 'next'], 'shown alone until its start arrives');
  log.insert([entry(1, 'start'), entry(2, '\r  0%')]);
  assert.equal(log.blocks.length, 1);
  assert.deepEqual(texts(log), ['start', '\r  0%\r 50%\r100%', 'warn', 'next']);
  assert.equal(log.indexOfSeq(3), 1, 'a piece finds its row');
  assert.equal(log.indexOfSeq(6), 3);
  // Appending after a merged block keeps continuing the right row.
  log.insert([piece(7, ' and more')]);
  assert.equal(log.row(3).text, 'next and more');
});

test('a piece whose stream had no row in the block before stays its own row', () => {
  const log = new LogWindow();
  log.insert([piece(2, 'tail of an error', 'stderr')]);
  log.insert([entry(1, 'out')]);
  assert.deepEqual(texts(log), ['out', 'tail of an error']);
});

test('eviction keeps the rows around the centre and drops the far ends', () => {
  const log = new LogWindow({ maxEntries: 1000 });
  log.insert(range(1, 900));
  assert.equal(log.evict(450), false, 'under the bound nothing is dropped');
  log.insert(range(5001, 5400));
  assert.equal(log.entries, 1300);
  assert.equal(log.evict(5200), true);
  assert.ok(log.entries <= 900, `at most 90% kept: ${log.entries}`);
  assert.ok(log.isCovered(5001) && log.isCovered(5400), 'the block at the centre is whole');
  assert.ok(!log.isCovered(1), 'the far end went first');
  assert.equal(log.length, 5400, 'dropped rows become placeholders: the row space does not change');
  assert.deepEqual(log.row(0), { seq: 1, placeholder: true });
  // From the other side: the centre near the start drops the tail.
  log.insert(range(1, 500));
  log.evict(1);
  assert.ok(log.isCovered(1) && !log.isCovered(5400));
});

test('a live firehose stays within the bound while following', () => {
  const log = new LogWindow({ maxEntries: 20_000 });
  for (let batch = 0; batch < 100; batch++) {
    log.insert(range(batch * 1000 + 1, batch * 1000 + 1000));
    log.evict(log.head);
    assert.ok(log.entries <= 20_000);
  }
  assert.equal(log.head, 100_000);
  assert.equal(log.length, 100_000);
  assert.ok(log.isCovered(100_000));
  assert.equal(log.blocks.length, 1);
});

test('eviction drops whole merged rows, and the row space grows back to one per seq', () => {
  const log = new LogWindow({ maxEntries: 10 });
  log.insert([entry(1, 'bar'), piece(2, '\r1'), piece(3, '\r2'), piece(4, '\r3'), ...range(5, 14)]);
  assert.equal(log.length, 11);
  log.evict(14);
  assert.ok(!log.isCovered(1) && !log.isCovered(4), 'the merged row went as a whole');
  assert.equal(log.length, 14);
});

test('page planning fetches the gaps in view, nearest first, in bounded pages', () => {
  const log = new LogWindow();
  log.insert(range(999_501, 1_000_000));
  // The view at the end: nothing missing.
  assert.deepEqual(planFetches(log, 999_960, 999_999), []);
  // Just above the tail: the page ending at the tail, fetched backwards.
  const up = planFetches(log, 999_000, 999_600, { pageSize: 400 });
  assert.deepEqual(up.map(({ after, before, limit }) => ({ after, before, limit })),
    [{ after: 999_100, before: 999_501, limit: 400 }, { after: 999_000, before: 999_101, limit: 100 }]);
  // Line 1: the first page.
  const top = planFetches(log, 0, 40, { pageSize: 2000 });
  assert.deepEqual(top[0], { from: 1, to: 41, after: 0, before: 42, limit: 41 });
  // A jump into the middle: the page around the centre first.
  const middle = planFetches(log, 499_000, 501_000, { pageSize: 1000, centerSeq: 500_000 });
  assert.equal(middle[0].from, 499_500);
  assert.ok(middle[0].to >= 500_000);
  assert.ok(middle.every((page) => page.limit <= 1000 && page.limit === page.to - page.from + 1));
  const covered = middle.flatMap((page) => [page.from, page.to]);
  assert.equal(Math.min(...covered), 499_001);
  assert.equal(Math.max(...covered), 501_001);
  // Pages already on the way are not asked for twice.
  const again = planFetches(log, 499_000, 501_000, { pageSize: 1000, centerSeq: 500_000, inFlight: [[499_500, 500_499]] });
  assert.ok(again.every((page) => page.to < 499_500 || page.from > 500_499));
});

test('an empty log plans nothing', () => {
  const log = new LogWindow();
  assert.equal(log.length, 0);
  assert.deepEqual(planFetches(log, 0, 40), []);
  assert.equal(log.indexOfSeq(1), -1);
  assert.equal(log.row(0), null);
});

test('the match list steps through matches, asking for more only beyond those known', () => {
  const list = new MatchList('error');
  assert.deepEqual(list.stepFrom(0, 1), { fetch: true });
  list.add({ matches: [{ seq: 10 }, { seq: 500 }], next: 1000, done: false });
  assert.deepEqual(list.stepFrom(0, 1), { index: 0 });
  assert.deepEqual(list.stepFrom(10, 1), { index: 1 });
  assert.deepEqual(list.stepFrom(500, 1), { fetch: true }, 'beyond the scan: fetch before wrapping');
  assert.deepEqual(list.stepFrom(500, -1), { index: 0 });
  assert.deepEqual(list.stepFrom(10, -1), { fetch: true }, 'wrapping backwards needs the last match');
  list.add({ matches: [{ seq: 500 }, { seq: 700_000 }], next: 1_000_000, done: true });
  assert.deepEqual(list.seqs, [10, 500, 700_000], 'a repeated match is not counted twice');
  assert.deepEqual(list.stepFrom(700_000, 1), { index: 0 }, 'wraps to the first');
  assert.deepEqual(list.stepFrom(10, -1), { index: 2 }, 'wraps to the last');
  const none = new MatchList('x');
  none.add({ matches: [], next: 5, done: true });
  assert.deepEqual(none.stepFrom(0, 1), { none: true });
});

test('a finished search of a live run opens again only for lines past where it ended', () => {
  const list = new MatchList('needle');
  assert.equal(list.reopen(100), false, 'a scan under way needs no reopening');
  list.add({ matches: [{ seq: 7 }], next: 40, done: true });
  assert.equal(list.reopen(40), false, 'nothing new');
  assert.equal(list.reopen(undefined), false);
  assert.equal(list.reopen(55), true);
  assert.equal(list.done, false);
  assert.deepEqual(list.stepFrom(7, 1), { fetch: true }, 'stepping past the last match asks the server again');
  list.add({ matches: [{ seq: 52 }], next: 55, done: true });
  assert.deepEqual(list.seqs, [7, 52]);
});
