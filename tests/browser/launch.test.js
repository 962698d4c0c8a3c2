// The launch form and the history page, in a real Chromium against a real server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { logLine, openPage, statusBadge, useServerAndBrowser, waitForText } from './support.js';

const fixture = useServerAndBrowser({ before, after });

test('the launch form shows a per-field error for an invalid value, then a valid submit opens the run and its output', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/jobs/greet`);

  // The field is labelled (found by its accessible name) and marked required.
  const input = page.getByRole('textbox', { name: /^name/ });
  await input.waitFor();
  assert.equal(await input.getAttribute('aria-required'), 'true');
  const field = page.locator('.field', { has: input });
  const error = field.locator('.field-error');
  assert.equal(await error.isVisible(), false, 'no error before anything was typed');

  // Invalid: the message appears next to the field and nothing is submitted.
  await input.fill('Bob1');
  await input.press('Enter');
  await error.waitFor({ state: 'visible' });
  assert.equal(await error.textContent(), 'name must match the pattern ^[a-z]+$');
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  assert.match(await input.getAttribute('aria-describedby'), new RegExp(await error.getAttribute('id')),
    'the error is announced with the field');
  assert.equal(await page.evaluate(() => document.activeElement?.name), 'name', 'focus goes to the invalid field');
  assert.equal(new URL(page.url()).pathname, '/jobs/greet');
  assert.deepEqual((await server.api('/api/v1/runs?job=greet')).runs, [], 'no run was created');

  // Correcting the value clears the message as you type.
  await input.fill('alice');
  await error.waitFor({ state: 'hidden' });
  assert.equal(await input.getAttribute('aria-invalid'), null);

  // Valid: the run page opens and shows the job's output.
  await page.getByRole('button', { name: 'Run greet' }).click();
  await page.waitForURL(/\/runs\/[0-9]+$/);
  const id = Number(new URL(page.url()).pathname.split('/').pop());
  await logLine(page, 'hello alice').waitFor();
  await waitForText(statusBadge(page), /^succeeded$/);
  await waitForText(page.locator('h1'), `Run #${id}`);
  const run = await server.run(id);
  assert.equal(run.job, 'greet');
  assert.deepEqual(run.params, { name: 'alice' });
  await close();
});

test('clicking Run right after typing an invalid value submits the form (the error shown on blur must not move the button from under the pointer)', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/jobs/greet`);
  const input = page.getByRole('textbox', { name: /^name/ });
  await input.fill('Bob1');
  await page.evaluate(() => {
    window.__submits = 0;
    document.querySelector('form.launch-form').addEventListener('submit', () => { window.__submits += 1; });
  });
  await page.getByRole('button', { name: 'Run greet' }).click();
  await page.locator('.field-error').waitFor({ state: 'visible' });
  try {
    assert.equal(await page.evaluate(() => window.__submits), 1, 'the click submitted the form');
    assert.equal(await page.evaluate(() => document.activeElement?.id), await input.getAttribute('id'),
      'focus is back on the invalid field');
  } finally {
    await close();
  }
});

test("the server's 422 message is shown next to the field when only the server can check the pattern", async () => {
  const { server, browser } = fixture;
  // The browser logs the 422 response itself as a console error: that one is expected.
  const { page, close, allowed } = await openPage(browser, { allow: [/status of 422/] });
  await page.goto(`${server.url}/jobs/tag`);
  const input = page.getByRole('textbox', { name: /^label/ });
  await input.waitFor();
  await waitForText(page.locator('.field .hint'), '(checked by the server)');

  await input.fill('Not Valid');
  await page.getByRole('button', { name: 'Run tag' }).click();
  const error = page.locator('.field', { has: input }).locator('.field-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /^label must match the pattern/);
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('.launch-form .notice.error').isVisible(), false, 'no form-level error: the field has it');
  assert.equal(new URL(page.url()).pathname, '/jobs/tag');
  assert.equal(allowed.length, 1, 'exactly one refused request');

  await input.fill('fine');
  await page.getByRole('button', { name: 'Run tag' }).click();
  await page.waitForURL(/\/runs\/[0-9]+$/);
  await logLine(page, 'tag fine').waitFor();
  await close();
});

test('the history page lists a run with a link to its page, and filters by job and status', async () => {
  const { server, browser } = fixture;
  const id = await server.createRun('greet', { name: 'history' });
  await server.waitForStatus(id, 'succeeded');
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/runs`);

  const link = page.locator(`.runs-table a[href="/runs/${id}"]`);
  await link.waitFor();
  assert.equal(await link.textContent(), `#${id}`);
  const row = page.locator('.runs-table tbody tr').filter({ has: page.locator(`a[href="/runs/${id}"]`) });
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[1], 'greet');
  assert.equal(cells[2], 'succeeded');
  assert.equal(cells[6], 'exit code 0');

  // Filters are in the URL and narrow the list.
  await page.locator('#filter-job').selectOption('greet');
  await page.waitForURL(/\/runs\?job=greet$/);
  await page.locator(`.runs-table a[href="/runs/${id}"]`).waitFor();
  await page.locator('#filter-status').selectOption('failed');
  await page.waitForURL(/\/runs\?job=greet&status=failed$/);
  await waitForText(page.locator('.empty'), 'No run matches these filters.');
  await page.locator('#filter-status').selectOption('succeeded');
  await page.waitForURL(/status=succeeded/);

  // The link opens the run page (client-side navigation, same document).
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  await page.locator(`.runs-table a[href="/runs/${id}"]`).click();
  await page.waitForURL(new RegExp(`/runs/${id}$`));
  await waitForText(page.locator('h1'), `Run #${id}`);
  await logLine(page, 'hello history').waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'navigated without a full reload');
  await close();
});
