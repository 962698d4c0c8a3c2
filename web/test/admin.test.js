// The Tokens and Audit pages' pure helpers: the time window's conversions, token states,
// the details view's JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUDIT_ACTIONS, activeChildren, formatIn, localInputValue, prettyDetail, tokenState, windowBound } from '../admin.js';

test('the action filter offers every stable code once', () => {
  const codes = AUDIT_ACTIONS.map(({ code }) => code);
  assert.equal(new Set(codes).size, codes.length);
  for (const code of ['run.start', 'run.cancel', 'token.create', 'token.revoke', 'audit.anchor', 'denied.cancel', 'denied.token.create_for_others']) {
    assert.ok(codes.includes(code), code);
  }
});

test('a picked local minute becomes the API bound and comes back as the same minute', () => {
  const since = windowBound('2026-12-01T10:05');
  assert.equal(Date.parse(since), new Date(2026, 11, 1, 10, 5).getTime(), 'local time');
  assert.match(since, /^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/);
  assert.equal(localInputValue(since), '2026-12-01T10:05');
  // "To 10:05" keeps the whole minute: the exclusive `until` is 10:06, shown as 10:05 again.
  const until = windowBound('2026-12-01T10:05', { end: true });
  assert.equal(Date.parse(until) - Date.parse(since), 60_000);
  assert.equal(localInputValue(until, { end: true }), '2026-12-01T10:05');
  assert.equal(windowBound(''), '');
  assert.equal(windowBound('not a time'), '');
  assert.equal(localInputValue(null), '');
  assert.equal(localInputValue('yesterday'), '');
});

test('token states: revoked wins, then expired, else active; children are the active tokens made with it', () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  assert.equal(tokenState({ revoked_at: '2026-11-01T00:00:00Z', expires_at: '2026-11-02T00:00:00Z' }, now).state, 'revoked');
  assert.equal(tokenState({ revoked_at: null, expires_at: '2026-12-01T09:59:59Z' }, now).state, 'expired');
  assert.equal(tokenState({ revoked_at: null, expires_at: '2026-12-01T10:00:01Z' }, now).label, 'Active');
  assert.equal(tokenState({ revoked_at: null, expires_at: null }, now).state, 'active');
  const tokens = [
    { id: 1, parent_id: null, revoked_at: null, expires_at: null },
    { id: 2, parent_id: 1, revoked_at: null, expires_at: null },
    { id: 3, parent_id: 1, revoked_at: '2026-11-01T00:00:00Z', expires_at: null },
    { id: 4, parent_id: 2, revoked_at: null, expires_at: null },
  ];
  assert.deepEqual(activeChildren(tokens[0], tokens, now).map((token) => token.id), [2]);
});

test('relative times ahead', () => {
  const now = 0;
  assert.equal(formatIn(30_000, now), 'in under a minute');
  assert.equal(formatIn(5 * 60_000, now), 'in 5 min');
  assert.equal(formatIn(3 * 3_600_000, now), 'in 3 h');
  assert.equal(formatIn(90 * 86_400_000, now), 'in 90 days');
  assert.equal(formatIn(86_400_000 * 1.6, now), 'in 2 days');
});

test('details are indented JSON; an empty detail is none', () => {
  assert.equal(prettyDetail({ params: { text: '<b>x</b>' } }), '{\n  "params": {\n    "text": "<b>x</b>"\n  }\n}');
  assert.equal(prettyDetail({}), null);
  assert.equal(prettyDetail(null), null);
  assert.equal(prettyDetail([1]), '[\n  1\n]');
});
