// The token and audit pages, as an administrator signed in with an API token against a
// server that knows who is who (`anonymous = false`): create a token (shown once), a token
// made with it (its child), revoke the parent (both go); the audit trail as a table whose
// dates stay on one line, filtered by actor, action, job and time, with a details view
// whose JSON is shown as text (never as HTML); both pages readable on a phone.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { JOBS, openPage, useServerAndBrowser, waitFor, waitForText } from './support.js';

const HOSTILE = '<img src=x onerror="window.__pwned = 1">';

const fixture = useServerAndBrowser({ before, after }, {
  auth: 'anonymous = false\nadmins = { users = ["root"] }',
  tokens: [{ name: 'root-cli', user: 'root' }, { name: 'carol-cli', user: 'carol' }],
  jobs: `${JOBS}
[[job]]
name = "say"
description = "Echoes any text"
command = ["echo", "{text}"]
allow_run = { users = ["root"] }

[[job.param]]
name = "text"
type = "string"
required = true
`,
});

// Chromium logs the 403 of carol's refused request and similar as console errors.
const EXPECTED = [/status of 40[13]/];

/** A page whose tab holds `token` (as the sign-in form would leave it). */
async function openAs(browser, token, options = {}) {
  const opened = await openPage(browser, { allow: EXPECTED, ...options });
  await opened.context.addInitScript((secret) => sessionStorage.setItem('oneoff.token', secret), token);
  return opened;
}

/** A request to the server with `token` as the caller; resolves with {status, body}. */
async function as(token, method, path, body) {
  const response = await fetch(fixture.server.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

/** The tokens table's row of the token named `name`. */
function tokenRow(page, name) {
  return page.locator('tbody tr').filter({ has: page.locator('td[data-label="Name"] strong', { hasText: new RegExp(`^${name}$`) }) });
}

/** Whether every `time` in the table's cells is laid out on one line. */
function datesOnOneLine(page) {
  return page.evaluate(() => [...document.querySelectorAll('.data-table tbody time')].map((node) => ({
    text: node.textContent,
    lines: node.getClientRects().length,
    height: node.getBoundingClientRect().height,
    lineHeight: parseFloat(getComputedStyle(node).lineHeight) || 21,
  })).filter((box) => box.lines !== 1 || box.height > box.lineHeight * 1.5));
}

/** The page does not scroll sideways (nothing sticks out of a narrow window). */
function pageOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

test('tokens are created, shown once, listed with state, expiry, last use and parent, and revoked with their children', async () => {
  const { server, browser } = fixture;
  const root = server.tokens['root-cli'];
  const { page, close } = await openAs(browser, root);
  await page.goto(`${server.url}/tokens`);
  await page.getByLabel('Name').fill('laptop');
  await page.getByLabel('Expires in').selectOption('90d');
  await page.getByRole('button', { name: 'Create token' }).click();
  const shown = page.locator('.notice', { hasText: 'shown only now' });
  const secret = (await waitForText(shown, /oneoff_[0-9a-f]{64}/)).match(/oneoff_[0-9a-f]{64}/)[0];
  const laptop = tokenRow(page, 'laptop');
  await waitForText(laptop, /Active/);
  assert.match(await laptop.locator('td[data-label="Expires"]').textContent(), /in (89|90) days/);
  assert.match(await laptop.locator('td[data-label="Last used"]').textContent(), /never used/);

  // A token made with the laptop token is its child; the laptop token is then used.
  const made = await as(secret, 'POST', '/api/v1/tokens', { name: 'ci-child' });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  await page.reload();
  const child = tokenRow(page, 'ci-child');
  await waitForText(child.locator('td[data-label="Made with"]'), /laptop #\d+/);
  assert.match(await laptop.locator('td[data-label="Last used"]').textContent(), /just now/);
  assert.match(await laptop.locator('td[data-label="Made with"]').textContent(), /root-cli #\d+/,
    'made on this page with the root-cli token, so its child too');
  assert.deepEqual(await datesOnOneLine(page), [], 'every date in the table is on one line');

  // Revoking the parent revokes the child; the button says so.
  const revoke = laptop.getByRole('button', { name: /Revoke laptop and the 1 token made with it/ });
  await revoke.click();
  await waitForText(laptop.locator('td[data-label="State"]'), /Revoked/);
  await waitForText(child.locator('td[data-label="State"]'), /Revoked/);
  assert.equal(await laptop.getByRole('button', { name: /Revoke/ }).count(), 0, 'a revoked token has no Revoke button');
  assert.ok(await page.locator('table').evaluate((table) => table.getBoundingClientRect().width <= table.parentElement.clientWidth + 1),
    'the table fits the page at 1280 px');
  await close();

  // On a phone: one card per token, nothing sticks out sideways.
  const phone = await openAs(browser, root, { viewport: { width: 390, height: 844 } });
  await phone.page.goto(`${server.url}/tokens`);
  await phone.page.locator('tbody tr', { hasText: 'ci-child' }).waitFor();
  assert.equal(await pageOverflow(phone.page), 0, 'the tokens page does not scroll sideways at 390 px');
  assert.equal(await phone.page.locator('thead').evaluate((node) => node.getBoundingClientRect().height <= 1), true,
    'the header row is only for screen readers on a phone: each cell names its column');
  await phone.close();
});

test('the audit trail is a table with one-line dates, filters by actor, action, job and time, and shows details as text', async () => {
  const { server, browser } = fixture;
  const root = server.tokens['root-cli'];
  const carol = server.tokens['carol-cli'];
  // Root runs `say` with a hostile text (it reaches the record's detail); carol may not run it.
  assert.equal((await as(root, 'POST', '/api/v1/runs', { job: 'say', params: { text: HOSTILE } })).status, 201);
  assert.equal((await as(root, 'POST', '/api/v1/runs', { job: 'greet', params: { name: 'ann' } })).status, 201);
  assert.equal((await as(carol, 'POST', '/api/v1/runs', { job: 'say', params: { text: 'hi' } })).status, 403);

  const { page, close } = await openAs(browser, root);
  await page.goto(`${server.url}/audit`);
  const rows = page.locator('.audit-table tbody tr:not(.audit-detail)');
  await rows.first().waitFor();
  assert.deepEqual(await datesOnOneLine(page), [], 'every date is on one line');
  assert.ok(await rows.count() >= 3);

  // Actor.
  await page.getByLabel('Actor', { exact: true }).fill('carol');
  await page.getByRole('button', { name: 'Apply' }).click();
  await waitFor(async () => new URL(page.url()).searchParams.get('actor') === 'carol', { message: 'actor=carol in the URL' });
  await waitFor(async () => {
    const actors = await page.locator('.audit-table tbody td[data-label="Actor"]').allTextContents();
    return actors.length > 0 && actors.every((name) => name === 'carol');
  }, { message: "only carol's records" });
  assert.match(await page.locator('.audit-table tbody').textContent(), /denied\.run/);
  assert.match(await page.locator('.audit-table tbody').textContent(), /carol may not run job `say`/);

  // Action (the select applies at once) and job, from a clean page.
  await page.goto(`${server.url}/audit`);
  await page.getByLabel('Action', { exact: true }).selectOption('run.start');
  await waitFor(async () => new URL(page.url()).searchParams.get('action') === 'run.start', { message: 'action=run.start in the URL' });
  await waitFor(async () => {
    const actions = await page.locator('.audit-table tbody td[data-label="Action"]').allTextContents();
    return actions.length === 2 && actions.every((code) => code === 'run.start');
  }, { message: 'the two run.start records only' });
  await page.getByLabel('Job', { exact: true }).fill('say');
  await page.getByRole('button', { name: 'Apply' }).click();
  await waitFor(async () => (await page.locator('.audit-table tbody td[data-label="Job"]').allTextContents()).join() === 'say',
    { message: 'the one run.start of job say' });

  // Details: every field, and the detail JSON indented, as text: the hostile text is not an element.
  const toggle = page.getByRole('button', { name: 'Details' });
  await toggle.click();
  const detail = page.locator('.audit-detail:not([hidden]) pre.record-detail');
  await detail.waitFor();
  const json = await detail.textContent();
  assert.deepEqual(JSON.parse(json).params, { text: HOSTILE }, 'the detail is the record\'s JSON');
  assert.match(json, /\n {2}"params": \{\n {4}"text": /, 'indented, one field a line');
  assert.equal(await page.locator('.audit-detail img').count(), 0, 'the hostile text did not become an element');
  assert.equal(await page.evaluate(() => window.__pwned ?? null), null);
  assert.match(await page.locator('.audit-detail:not([hidden]) .record-fields').textContent(), /Hash[0-9a-f]{64}/);
  await page.getByRole('button', { name: 'Hide' }).click();
  await detail.waitFor({ state: 'hidden' });

  // Time: a window that ended before these records holds none; one that starts before holds them.
  const local = (ms) => {
    const date = new Date(ms);
    const pad = (n) => String(n).padStart(2, '0');
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  };
  await page.goto(`${server.url}/audit?action=run.start`);
  await rows.first().waitFor();
  await page.getByLabel('To', { exact: true }).fill(local(Date.now() - 10 * 60_000));
  await page.getByRole('button', { name: 'Apply' }).click();
  await waitForText(page.locator('main .empty'), 'No record matches these filters.');
  const until = new URL(page.url()).searchParams.get('until');
  assert.match(until, /^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/, `until is RFC 3339 in the URL: ${until}`);
  assert.equal(await page.getByLabel('To', { exact: true }).inputValue(), local(Date.now() - 10 * 60_000), 'the form shows the minute picked');
  // A From after the To is refused on the page, naming the fields.
  await page.getByLabel('From', { exact: true }).fill(local(Date.now()));
  await page.getByRole('button', { name: 'Apply' }).click();
  await waitForText(page.locator('main .notice.error'), '“From” must be before “To”');
  assert.equal(new URL(page.url()).searchParams.get('since'), null, 'not applied');
  await page.getByLabel('To', { exact: true }).fill('');
  await page.getByLabel('From', { exact: true }).fill(local(Date.now() - 10 * 60_000));
  await page.getByRole('button', { name: 'Apply' }).click();
  await waitFor(async () => (await page.locator('.audit-table tbody td[data-label="Action"]').count()) === 2,
    { message: 'both run.start records since ten minutes ago' });
  await page.getByRole('link', { name: 'Clear' }).click();
  await waitFor(async () => new URL(page.url()).search === '', { message: 'Clear drops every filter' });
  await close();

  // On a phone: one card per record, no sideways scroll, details still open.
  const phone = await openAs(browser, root, { viewport: { width: 390, height: 844 } });
  await phone.page.goto(`${server.url}/audit`);
  await phone.page.locator('.audit-table tbody tr').first().waitFor();
  assert.equal(await pageOverflow(phone.page), 0, 'the audit page does not scroll sideways at 390 px');
  await phone.page.getByRole('button', { name: 'Details' }).first().click();
  await phone.page.locator('.audit-detail:not([hidden])').waitFor();
  assert.equal(await pageOverflow(phone.page), 0, 'nor with a record\'s details open');
  await phone.close();
});

test('the chain verifies from the audit page', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openAs(browser, server.tokens['root-cli']);
  await page.goto(`${server.url}/audit`);
  await page.locator('.audit-table').waitFor();
  await page.getByRole('button', { name: 'Verify the chain' }).click();
  await waitForText(page.locator('.notice'), /Intact: \d+ records/);
  assert.match(await page.locator('.audit-table tbody').textContent(), /token\.revoke|run\.start/);
  await close();
});
