// The viewer's pure parts: `\r` continuation and merged rows, over the bounded window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { continuesLine, findAll } from '../logview.js';
import { LogWindow } from '../logwindow.js';

const entry = (seq, text, stream = 'stdout') => ({ seq, ts: '2026-11-26T09:00:00.000000Z', stream, text });
/** A piece that continues the previous line of its stream, as the server marks it. */
const piece = (seq, text, stream = 'stdout') => ({ ...entry(seq, text, stream), continues: true });
const texts = (log) => Array.from({ length: log.length }, (_, i) => log.row(i).text);

test('rows keep seq, stream, timestamp and text', () => {
  const log = new LogWindow();
  const from = log.insert([entry(1, 'one'), entry(2, 'two', 'stderr'), entry(3, 'oneoff: cancelled', 'system')]);
  assert.equal(from, 0);
  assert.equal(log.length, 3);
  assert.equal(log.head, 3);
  assert.deepEqual(log.row(1), { seq: 2, ts: Date.parse('2026-11-26T09:00:00Z'), stream: 'stderr', text: 'two' });
  assert.equal(log.row(2).stream, 'system');
  assert.equal(log.row(3), null);
});

test('a progress bar stored in pieces becomes one row', () => {
  const log = new LogWindow();
  log.insert([entry(1, 'starting')]);
  assert.equal(log.insert([entry(2, '\rprogress   5%')]), 1, 'a piece that does not continue is a new line');
  assert.equal(log.insert([piece(3, '\rprogress  50%'), piece(4, '\rprogress 100%')]), 1, 'the progress row changed');
  assert.equal(log.length, 2);
  assert.equal(log.row(1).text, '\rprogress   5%\rprogress  50%\rprogress 100%');
  assert.equal(log.row(1).seq, 2, 'the row is numbered by its first entry');
  assert.equal(log.indexOfSeq(4), 1);
  // Only the server's mark joins: a `\r` line that does not continue is a line of its own.
  log.insert([entry(5, 'downloading 1/3\r'), piece(6, 'downloading 3/3\r'), entry(7, '\rnext')]);
  assert.equal(log.length, 4);
  assert.equal(log.row(2).text, 'downloading 1/3\rdownloading 3/3\r');
  log.insert([piece(8, '\rerr', 'stderr')]);
  assert.equal(log.length, 5, 'a stream with no row yet starts one');
});

test('a long line cut at max_line_bytes joins, but a row never grows past its bound', () => {
  const log = new LogWindow();
  const big = 'x'.repeat(40000);
  log.insert([entry(1, big), piece(2, big)]);
  assert.equal(log.length, 2, 'two 40,000-character pieces would pass the bound: the second is a row');
  log.insert([piece(3, 'y')]);
  assert.equal(log.row(1).text, `${big}y`);
  log.insert([entry(4, 'a'), piece(5, 'b'), piece(6, '')]);
  assert.equal(log.row(2).text, 'ab', 'the empty last piece is the newline, not a blank row');
  assert.equal(log.length, 3);
});

test('a progress line continues across lines of the other stream, and its newline adds no blank row', () => {
  const log = new LogWindow();
  log.insert([entry(1, 'starting'), entry(2, '\rprogress  20%')]);
  const from = log.insert([entry(3, 'a warning', 'stderr'), piece(4, '\rprogress 100%'), piece(5, ''), entry(6, 'after')]);
  assert.equal(from, 1, 'the progress row changed');
  assert.deepEqual(texts(log), ['starting', '\rprogress  20%\rprogress 100%', 'a warning', 'after']);
  assert.equal(log.indexOfSeq(5), 2, 'sequence numbers still find a row');
  log.insert([entry(7, '')]);
  assert.equal(log.row(4).text, '', 'a blank line after a plain line is a blank line');
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

test('findAll: case folding, non-overlapping', () => {
  assert.deepEqual(findAll('Error error ERROR', 'error', true), [0, 6, 12]);
  assert.deepEqual(findAll('aaaa', 'aa', false), [0, 2]);
  assert.deepEqual(findAll('abc', '', true), []);
});
