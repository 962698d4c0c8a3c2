// The UI's path prefix: found from the script's URL, added to the app's paths where they
// meet the browser, removed where the browser's location is read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appPath, basePathOf, withBase } from '../paths.js';

test('the prefix is where the server put the assets', () => {
  assert.equal(basePathOf('https://tools.example.com/assets/paths.js'), '');
  assert.equal(basePathOf('https://tools.example.com/oneoff/assets/paths.js'), '/oneoff');
  assert.equal(basePathOf('http://127.0.0.1:8080/a/b/assets/paths.js?v=1'), '/a/b');
});

test('app paths get the prefix; other URLs are left alone', () => {
  assert.equal(withBase('/runs/5', '/oneoff'), '/oneoff/runs/5');
  assert.equal(withBase('/', '/oneoff'), '/oneoff/');
  assert.equal(withBase('/api/v1/runs?limit=5', ''), '/api/v1/runs?limit=5');
  for (const other of ['#L12', 'https://example.com/x', '//evil.example/x', '?q=1', 'mailto:a@b']) {
    assert.equal(withBase(other, '/oneoff'), other);
  }
});

test('browser paths lose the prefix; paths outside it are no page of ours', () => {
  assert.equal(appPath('/oneoff/runs/5', '/oneoff'), '/runs/5');
  assert.equal(appPath('/oneoff/', '/oneoff'), '/');
  assert.equal(appPath('/oneoff', '/oneoff'), '/');
  assert.equal(appPath('/oneoffx/runs', '/oneoff'), null);
  assert.equal(appPath('/runs/5', '/oneoff'), null);
  assert.equal(appPath('/runs/5', ''), '/runs/5');
  assert.equal(appPath(withBase('/jobs/a%20b', '/x/y'), '/x/y'), '/jobs/a%20b');
});
