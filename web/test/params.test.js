// The client-side checks mirror crates/oneoff-core/src/params.rs (same cases, same messages).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkParam, checkParams, compilePattern, paramsSummary, rerunQuery, initialValue } from '../params.js';

const name = { name: 'name', type: 'string', required: true, pattern: '^[a-z]+$', max_length: 5 };
const count = { name: 'count', type: 'integer', required: true, min: 1, max: 10 };
const env = { name: 'env', type: 'choice', required: false, choices: ['dev', 'prod'] };

test('reports every problem with the server messages', () => {
  const { params, errors } = checkParams([name, count, env], { name: 'Bob', env: 'qa' });
  assert.deepEqual(params, {});
  assert.deepEqual(errors, {
    name: 'must match the pattern ^[a-z]+$',
    count: 'is required',
    env: 'must be one of: dev, prod',
  });
});

test('integers from text, with bounds', () => {
  assert.deepEqual(checkParam(count, '7'), { value: 7 });
  assert.deepEqual(checkParam(count, ' 7 '), { value: 7 });
  assert.deepEqual(checkParam(count, '+7'), { value: 7 });
  assert.deepEqual(checkParam(count, '11'), { error: 'must be at most 10' });
  assert.deepEqual(checkParam(count, '0'), { error: 'must be at least 1' });
  assert.deepEqual(checkParam(count, 'seven'), { error: 'must be an integer, not "seven"' });
  assert.deepEqual(checkParam(count, '1.5'), { error: 'must be an integer, not "1.5"' });
  const big = { name: 'n', type: 'integer', required: true };
  assert.deepEqual(checkParam(big, '9223372036854775807'), { value: '9223372036854775807' });
  assert.ok(checkParam(big, '9223372036854775808').error.startsWith('must be an integer'));
});

test('booleans', () => {
  const flag = { name: 'dry_run', type: 'boolean', required: false };
  assert.deepEqual(checkParam(flag, true), { value: true });
  assert.deepEqual(checkParam(flag, false), { value: false });
  assert.deepEqual(checkParam(flag, 'yes'), { value: true });
  assert.deepEqual(checkParam(flag, 'off'), { value: false });
  assert.deepEqual(checkParam(flag, 'maybe'), { error: 'must be true or false, not "maybe"' });
});

test('defaults and optional values: empty means not given', () => {
  const batch = { name: 'batch', type: 'integer', required: false, default: 100 };
  const note = { name: 'note', type: 'string', required: false, max_length: 10 };
  assert.deepEqual(checkParams([batch, note], { batch: '', note: '' }), { params: {}, errors: {} });
  const requiredWithDefault = { name: 'table', type: 'choice', required: true, default: 'events', choices: ['events'] };
  assert.deepEqual(checkParam(requiredWithDefault, ''), { value: undefined });
});

test('hostile strings are values; NUL and length are refused', () => {
  const any = { name: 'x', type: 'string', required: true, max_length: 100 };
  for (const hostile of ['; rm -rf /', '$(id)', '`id`', 'a\nb', "' OR 1=1 --"]) {
    assert.deepEqual(checkParam(any, hostile), { value: hostile });
  }
  assert.deepEqual(checkParam(any, 'a\0b'), { error: 'must not contain a NUL character' });
  assert.deepEqual(checkParam(any, 'x'.repeat(101)), { error: 'must be at most 100 characters (got 101)' });
  // Length counts characters, not UTF-16 units.
  assert.deepEqual(checkParam({ ...any, max_length: 2 }, '🎉🎉'), { value: '🎉🎉' });
  const secret = { name: 'token', type: 'secret', required: true, max_length: 3 };
  assert.deepEqual(checkParam(secret, 'abcd'), { error: 'must be at most 3 characters (got 4)' });
  assert.deepEqual(checkParam(secret, ''), { error: 'is required' });
  const token = { name: 'token', type: 'secret', required: true, max_length: 100 };
  assert.deepEqual(checkParam(token, 's3cr'), { value: 's3cr' });
  assert.equal(
    checkParam(token, 'abc').error,
    'must be at least 4 characters (got 3): a shorter secret would be masked wherever those characters occur in the log',
  );
  assert.equal(checkParam(token, '*****').error, 'must not be only `*` characters: the log shows masked secrets as `********`');
  const unbounded = { name: 'y', type: 'string', required: false };
  assert.ok(checkParam(unbounded, 'x'.repeat(4097)).error.includes('at most 4096'));
});

test('patterns: a search like Rust is_match; Rust-only syntax translated or skipped', () => {
  const date = { name: 'since', type: 'string', required: true, pattern: '^\\d{4}-\\d{2}-\\d{2}$' };
  assert.deepEqual(checkParam(date, '2026-01-01'), { value: '2026-01-01' });
  assert.equal(checkParam(date, '2026-1-1').error, 'must match the pattern ^\\d{4}-\\d{2}-\\d{2}$');
  const unanchored = { name: 'x', type: 'string', required: true, pattern: 'ab' };
  assert.deepEqual(checkParam(unanchored, 'xxabxx'), { value: 'xxabxx' });
  assert.ok(compilePattern('(?i)^abc$').test('ABC'));
  assert.ok(compilePattern('(?P<year>\\d{4})').test('2026'));
  assert.ok(compilePattern('\\Aab\\z').test('ab'));
  assert.equal(compilePattern('[[:alpha:]'), null, 'an uncompilable pattern is left to the server');
  const odd = { name: 'x', type: 'string', required: true, pattern: '[[:alpha:]' };
  assert.deepEqual(checkParam(odd, '123'), { value: '123' });
});

test('summary, rerun query and initial values', () => {
  assert.equal(paramsSummary([{ name: 'since', required: true }, { name: 'batch_size', required: false }]), 'since*, batch_size');
  assert.equal(paramsSummary([]), 'no parameters');
  const schema = [
    { name: 'service', type: 'choice', choices: ['billing'] },
    { name: 'token', type: 'secret' },
    { name: 'dry_run', type: 'boolean', default: true },
  ];
  assert.equal(rerunQuery(schema, { service: 'billing', token: '********', dry_run: false, gone: null }), 'service=billing&dry_run=false');
  const query = new URLSearchParams('service=billing&dry_run=false&token=leak');
  assert.equal(initialValue(schema[0], query), 'billing');
  assert.equal(initialValue(schema[1], query), '', 'secrets are never prefilled');
  assert.equal(initialValue(schema[2], query), false);
  assert.equal(initialValue(schema[2], new URLSearchParams()), true);
  assert.equal(initialValue({ name: 'n', type: 'integer', default: 1000 }, new URLSearchParams()), '1000');
});

test('POSIX classes are translated, unknown syntax is left to the server', () => {
  assert.ok(compilePattern('^[[:alpha:]_]+$').test('abc_DEF'));
  assert.ok(!compilePattern('^[[:alpha:]_]+$').test('abc1'));
  assert.ok(compilePattern('^[[:digit:][:upper:]]+$').test('A1'));
  assert.equal(compilePattern('^[[:^alpha:]]$'), null);
  assert.equal(compilePattern('(?x) a b c'), null, 'verbose mode is not JS');
  assert.equal(compilePattern('a(?i:b)c'), null, 'inline groups are not JS');
  assert.equal(compilePattern('\\pL+'), null, 'one-letter Unicode classes are not JS');
  assert.ok(compilePattern('^\\p{L}+$').test('héllo'));
  assert.equal(compilePattern('a\\#b'), null, 'escapes JS refuses in Unicode mode');
  assert.ok(compilePattern('(?s)a.b').test('a\nb'));
  assert.ok(compilePattern('^(?:ab)+$').test('abab'), 'non-capturing groups are JS too');
});
