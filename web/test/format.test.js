import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseTimestamp, formatCount, describeOutcome, formatAgo, isFinal, auditVerdict } from '../format.js';

test('durations', () => {
  assert.equal(formatDuration(null), '—');
  assert.equal(formatDuration(850), '850ms');
  assert.equal(formatDuration(2600), '2.6s');
  assert.equal(formatDuration(65_000), '1m 05s');
  assert.equal(formatDuration(7_380_000), '2h 03m');
});

test('timestamps as the server writes them', () => {
  const expected = Date.parse('2026-11-26T09:00:00.123Z');
  assert.equal(parseTimestamp('2026-11-26T09:00:00.123456Z'), expected + 0.456);
  assert.equal(parseTimestamp('2026-11-26T09:00:00Z'), Date.parse('2026-11-26T09:00:00Z'));
  assert.equal(parseTimestamp('2026-11-26T09:00:00.5Z'), Date.parse('2026-11-26T09:00:00.500Z'));
  assert.equal(parseTimestamp('2026-11-26T09:00:00+01:00'), Date.parse('2026-11-26T08:00:00Z'));
  assert.ok(Number.isNaN(parseTimestamp(undefined)));
});

test('counts, outcomes, ages', () => {
  assert.equal(formatCount(1234567), '1,234,567');
  assert.equal(formatCount(12), '12');
  assert.equal(describeOutcome({ exit_code: 3, signal: null }), 'exit code 3');
  assert.equal(describeOutcome({ exit_code: null, signal: 9, signal_name: 'SIGKILL' }), 'signal SIGKILL (9)');
  assert.equal(describeOutcome({ exit_code: null, signal: null, error: 'could not start' }), 'could not start');
  assert.equal(formatAgo(0, 10_000), 'just now');
  assert.equal(formatAgo(0, 5 * 60_000), '5 min ago');
  assert.ok(isFinal('timed_out'));
  assert.ok(!isFinal('running'));
});

test('audit verdicts name the failing check', () => {
  assert.equal(auditVerdict({ ok: false, broken_at: 3, reason: 'it was edited', records: 2 }), 'Broken at record 3: it was edited');
  assert.equal(
    auditVerdict({ ok: false, broken_at: null, reason: 'records were deleted from its end', records: 5, keyed: true }),
    'Broken: records were deleted from its end (5 records, every hash matches).',
  );
  assert.match(auditVerdict({ ok: true, broken_at: null, records: 7, keyed: true, head: 'ab' }), /signed head matches.*Head: ab\./);
  assert.match(auditVerdict({ ok: true, broken_at: null, records: 7, keyed: false, head: 'ab' }), /no audit key/);
});
