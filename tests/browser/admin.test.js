// The token and audit pages: create a token (shown once), see it listed, revoke it, and
// find both in the audit trail, whose chain verifies.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { openPage, useServerAndBrowser, waitForText } from './support.js';

const fixture = useServerAndBrowser({ before, after });

test('tokens are created, shown once, revoked, and audited', async () => {
  const { server, browser } = fixture;
  const { page, close } = await openPage(browser);
  await page.goto(`${server.url}/tokens`);
  await page.getByLabel('Name').fill('laptop');
  await page.getByRole('button', { name: 'Create token' }).click();
  const shown = page.locator('.notice', { hasText: 'shown only now' });
  await waitForText(shown, /oneoff_[0-9a-f]{64}/);
  const row = page.locator('tbody tr', { hasText: 'laptop' });
  await waitForText(row, /active/);
  await row.getByRole('button', { name: 'Revoke' }).click();
  await waitForText(row, /revoked/);

  await page.getByRole('link', { name: 'Audit' }).click();
  await waitForText(page.locator('tbody'), /token\.revoke/);
  assert.match(await page.locator('tbody').textContent(), /token\.create/);
  await page.getByRole('button', { name: 'Verify the chain' }).click();
  await waitForText(page.locator('.notice'), /Intact: \d+ records/);
  await close();
});
