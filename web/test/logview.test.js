// The viewer's pure parts: compact storage, `\r` continuation, head drop, search.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogStore, LogSearch, continuesLine, findAll, searchMode } from '../logview.js';

const entry = (seq, text, stream = 'stdout') => ({ seq, ts: '2026-11-26T09:00:00.000000Z', stream, text });
/** A piece that continues the previous line of its stream, as the server marks it. */
const piece = (seq, text, stream = 'stdout') => ({ ...entry(seq, text, stream), continues: true });

test('rows keep seq, stream, timestamp and text', () => {
  const store = new LogStore();
  const { from } = store.append([entry(1, 'one'), entry(2, 'two', 'stderr'), entry(3, 'oneoff: cancelled', 'system')]);
  assert.equal(from, 0);
  assert.equal(store.length, 3);
  assert.deepEqual(store.row(1), { seq: 2, ts: Date.parse('2026-11-26T09:00:00Z'), stream: 'stderr', text: 'two' });
  assert.equal(store.row(2).stream, 'system');
  assert.equal(store.row(3), null);
  assert.equal(store.lastSeq, 3);
});

test('a progress bar stored in pieces becomes one row', () => {
  const store = new LogStore();
  store.append([entry(1, 'starting')]);
  const first = store.append([entry(2, '\rprogress   5%')]);
  assert.equal(first.from, 1, 'a piece that does not continue is a new line');
  const merged = store.append([piece(3, '\rprogress  50%'), piece(4, '\rprogress 100%')]);
  assert.equal(merged.from, 1, 'the progress row changed');
  assert.equal(store.length, 2);
  assert.equal(store.text(1), '\rprogress   5%\rprogress  50%\rprogress 100%');
  assert.equal(store.row(1).seq, 2, 'the row is numbered by its first entry');
  assert.equal(store.rowOfSeq(4), 1);
  // Only the server's mark joins: a `\r` line that does not continue is a line of its own.
  store.append([entry(5, 'downloading 1/3\r'), piece(6, 'downloading 3/3\r'), entry(7, '\rnext')]);
  assert.equal(store.length, 4);
  assert.equal(store.text(2), 'downloading 1/3\rdownloading 3/3\r');
  store.append([piece(8, '\rerr', 'stderr')]);
  assert.equal(store.length, 5, 'a stream with no row yet starts one');
});

test('a long line cut at max_line_bytes joins, but a row never grows past its bound', () => {
  const store = new LogStore();
  const big = 'x'.repeat(40000);
  store.append([entry(1, big), piece(2, big)]);
  assert.equal(store.length, 2, 'two 40,000-character pieces would pass the bound: the second is a row');
  store.append([piece(3, 'y')]);
  assert.equal(store.text(1), `${big}y`);
  store.append([entry(4, 'a'), piece(5, 'b'), piece(6, '')]);
  assert.equal(store.text(2), 'ab', 'the empty last piece is the newline, not a blank row');
  assert.equal(store.length, 3);
});

test('a progress line continues across lines of the other stream, and its newline adds no blank row', () => {
  const store = new LogStore();
  store.append([entry(1, 'starting'), entry(2, '\rprogress  20%')]);
  const { from } = store.append([entry(3, 'a warning', 'stderr'), piece(4, '\rprogress 100%'), piece(5, ''), entry(6, 'after')]);
  assert.equal(from, 1, 'the progress row changed');
  assert.deepEqual([0, 1, 2, 3].map((abs) => store.text(abs)), ['starting', '\rprogress  20%\rprogress 100%', 'a warning', 'after']);
  assert.equal(store.rowOfSeq(5), 2, 'sequence numbers still find a row');
  // A blank line after a plain line is a blank line.
  store.append([entry(7, '')]);
  assert.equal(store.text(4), '');
});

test('continuation rule', () => {
  assert.equal(continuesLine(undefined, piece(1, '\rx')), false);
  assert.equal(continuesLine('10%\r', entry(2, '20%')), false, 'no mark, no join');
  assert.equal(continuesLine('\r10%', entry(2, '\r20%')), false);
  assert.equal(continuesLine('\r10%', piece(2, '\r20%')), true);
  assert.equal(continuesLine('foo', piece(2, 'bar')), true);
  assert.equal(continuesLine('\r50%', piece(2, '')), true);
  assert.equal(continuesLine('x'.repeat(65536), piece(2, 'y')), false, 'past the bound');
  assert.equal(continuesLine(`\r${'x'.repeat(65536)}`, piece(2, '\ry')), true, 'a \\r row is cut back instead');
});

test('rowOfSeq finds rows by binary search', () => {
  const store = new LogStore();
  const entries = [];
  for (let seq = 1; seq <= 10000; seq++) entries.push(entry(seq, `line ${seq}`));
  store.append(entries);
  assert.equal(store.rowOfSeq(1), 0);
  assert.equal(store.rowOfSeq(1234), 1233);
  assert.equal(store.rowOfSeq(10000), 9999);
  assert.equal(store.rowOfSeq(10001), -1);
  assert.equal(store.rowOfSeq(0), -1);
});

test('beyond maxRows the oldest rows are dropped in chunks; indices stay absolute', () => {
  const store = new LogStore({ maxRows: 100 });
  const entries = [];
  for (let seq = 1; seq <= 105; seq++) entries.push(entry(seq, `line ${seq}`));
  const { dropped } = store.append(entries);
  assert.equal(dropped, 10);
  assert.equal(store.base, 10);
  assert.equal(store.length, 95);
  assert.equal(store.end, 105);
  assert.equal(store.droppedThroughSeq, 10);
  assert.equal(store.row(9), null);
  assert.equal(store.row(10).text, 'line 11');
  assert.equal(store.rowOfSeq(5), -1);
  assert.equal(store.rowOfSeq(50), 49);
});

test('a million lines fit quickly', () => {
  const store = new LogStore();
  const started = performance.now();
  for (let batch = 0; batch < 100; batch++) {
    const entries = [];
    for (let k = 1; k <= 10000; k++) {
      const seq = batch * 10000 + k;
      entries.push({ seq, ts: `2026-11-26T09:00:${String(k % 60).padStart(2, '0')}.123456Z`, stream: 'stdout', text: String(seq) });
    }
    store.append(entries);
  }
  const elapsed = performance.now() - started;
  assert.equal(store.length, 1_000_000);
  assert.equal(store.row(999_999).text, '1000000');
  assert.ok(elapsed < 3000, `took ${elapsed} ms`);
});

test('search: smart case, plain text, counts across rows', () => {
  assert.deepEqual(searchMode('error'), { needle: 'error', fold: true });
  assert.deepEqual(searchMode('Error'), { needle: 'Error', fold: false });
  assert.deepEqual(findAll('Error error ERROR', 'error', true), [0, 6, 12]);
  assert.deepEqual(findAll('aaaa', 'aa', false), [0, 2]);
  const store = new LogStore();
  store.append([
    entry(1, 'no match'),
    entry(2, '\x1b[31merr\x1b[0mor: disk full'),
    entry(3, 'ERROR again, error'),
  ]);
  const search = new LogSearch('error');
  search.scan(store, store.end);
  assert.deepEqual(search.rows, [1, 2, 2], 'a match split by an escape sequence is found');
  assert.deepEqual(search.starts, [0, 0, 13]);
  assert.equal(search.step(1), 0);
  assert.equal(search.step(1), 1);
  assert.equal(search.step(-1), 0);
  assert.equal(search.step(-1), 2, 'wraps around');
  assert.equal(search.firstFrom(2), 1);
});

test('search follows appended and rewritten rows', () => {
  const store = new LogStore();
  store.append([entry(1, 'a'), entry(2, '\rloading 10%')]);
  const search = new LogSearch('100%');
  search.scan(store, store.end);
  assert.equal(search.rows.length, 0);
  const { from } = store.append([piece(3, '\rloading 100%'), entry(4, 'done 100%')]);
  search.invalidate(from, store.base);
  search.scan(store, store.end);
  assert.deepEqual(search.rows, [1, 2]);
});
