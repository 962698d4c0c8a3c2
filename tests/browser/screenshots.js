// Writes the README's screenshots to docs/screenshots/ (1280x800 unless named, light theme):
//   catalog.png      the job catalog of examples/oneoff.toml
//   launch-form.png  the launch form of its `backfill` job, with a per-field error
//   run-live.png     a run page with a coloured log, taken while the run is live
//   tokens.png       the API tokens page of an administrator: states, expiry, last use, parents
//   audit.png        the audit trail, with one record's details open
//   audit-phone.png  the audit trail at 390x844 (one card per record)
//
// Run: tests/browser/run.sh --screenshots   (or `node tests/browser/screenshots.js` once
// the binary is built and tests/browser/node_modules is installed). Not part of the suite:
// the PNGs change on every run (timestamps), so they are regenerated only when wanted.

import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { ROOT, launchBrowser, logLine, openPage, startServer, waitForText, transportBadge } from './support.js';

const OUT = path.join(ROOT, 'docs', 'screenshots');

/** A deploy-like job whose log shows what the viewer renders: colours, bold, dim, stderr, a progress bar. */
const DEMO_JOBS = String.raw`
[[job]]
name = "deploy"
description = "Roll out a release to one environment"
command = ["sh", "-c", '''
env="$1"; version="$2"
step() { sleep 0.15; }
printf '\033[1mDeploying oneoff %s to %s\033[0m\n' "$version" "$env"; step
printf '\033[2m[1/4]\033[0m Resolving image \033[36mregistry.internal/oneoff:%s\033[0m\n' "$version"; step
printf '      digest \033[2msha256:4f2c1e9a7b0d51c3e8\033[0m\n'; step
printf '\033[2m[2/4]\033[0m Running database migrations\n'; step
printf '      \033[32m✓\033[0m 0042_add_log_chunks          \033[2m(312 ms)\033[0m\n'; step
printf '      \033[32m✓\033[0m 0043_index_runs_by_job       \033[2m(48 ms)\033[0m\n'; step
printf '\033[2m[3/4]\033[0m Uploading assets\n'
for p in 10 30 50 70 90; do
  bar=$(printf '%*s' $((p / 5)) '' | tr ' ' '#')
  printf '\r      [%-20s] %3d%%' "$bar" "$p"; sleep 0.25
done
printf '\r      [####################] 100%%\n'
printf '\033[2m[4/4]\033[0m Rolling out to 3 zones\n'; step
printf '      \033[32m✓\033[0m %s-a  \033[1m12/12\033[0m healthy\n' "$env"; step
printf '      \033[38;5;208m!\033[0m %s-b  draining old pods took 41 s (threshold 30 s)\n' "$env"; step
printf '\033[31merror:\033[0m %s-c: readiness probe failed: connection reset by peer\n' "$env" >&2; step
printf '      \033[33mretrying\033[0m %s-c in 5 s \033[2m(attempt 2 of 3)\033[0m\n' "$env"; step
printf '      \033[38;2;130;80;223m◆\033[0m waiting for health checks on %s-c …\n' "$env"
sleep 600
''', "deploy", "{environment}", "{version}"]
timeout = "30m"
grace = "5s"

[[job.param]]
name = "environment"
type = "choice"
choices = ["staging", "production"]
required = true

[[job.param]]
name = "version"
type = "string"
required = true
pattern = '^v?\d+\.\d+\.\d+$'
`;

/** The example catalog's jobs, without its [server] and [debug] tables (the test server sets its own). */
async function exampleJobs() {
  const text = await readFile(path.join(ROOT, 'examples', 'oneoff.toml'), 'utf8');
  const start = text.indexOf('[[job]]');
  if (start < 0) throw new Error('examples/oneoff.toml has no [[job]]');
  return text.slice(start);
}

/** A server where `root` administers and `alice` works, with a little history to show. */
async function adminServer() {
  const server = await startServer({
    jobs: await exampleJobs(),
    auth: 'anonymous = false\nadmins = { users = ["root"] }',
    tokens: [{ name: 'root-cli', user: 'root' }, { name: 'alice-laptop', user: 'alice', groups: ['eng'] }],
  });
  const as = async (who, method, pathname, body) => {
    const response = await fetch(server.url + pathname, {
      method,
      headers: { authorization: `Bearer ${server.tokens[who]}`, 'content-type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
    return response.json().catch(() => null);
  };
  await as('root-cli', 'POST', '/api/v1/runs', { job: 'greet', params: { name: 'world' } });
  await as('root-cli', 'POST', '/api/v1/runs', { job: 'rotate-key', params: { service: 'billing', token: 'hunter2-hunter2' } });
  const countdown = await as('alice-laptop', 'POST', '/api/v1/runs', { job: 'countdown', params: { seconds: 3 } });
  await as('alice-laptop', 'GET', '/api/v1/audit');
  if (countdown?.id) await as('root-cli', 'POST', `/api/v1/runs/${countdown.id}/cancel`);
  const bot = await as('root-cli', 'POST', '/api/v1/tokens', { name: 'deploy-bot', user: 'deploy', groups: ['ops'], expires_in: '90d' });
  server.tokens['deploy-bot'] = bot.token;
  await as('deploy-bot', 'POST', '/api/v1/tokens', { name: 'deploy-ci', expires_in: '30d' });
  const old = await as('root-cli', 'POST', '/api/v1/tokens', { name: 'old-script', expires_in: '30d' });
  await as('root-cli', 'DELETE', `/api/v1/tokens/${old.info.id}`);
  return server;
}

async function main() {
  await mkdir(OUT, { recursive: true });
  const [catalogServer, demoServer, admin, browser] = await Promise.all([
    startServer({ jobs: await exampleJobs() }),
    startServer({ jobs: DEMO_JOBS }),
    adminServer(),
    launchBrowser(),
  ]);
  const written = [];
  try {
    // 1. The job catalog.
    {
      const { page, close } = await openPage(browser);
      await page.goto(`${catalogServer.url}/`);
      await page.locator('.job-card').first().waitFor();
      await waitForText(page.locator('#job-count'), /jobs?$/);
      await page.mouse.move(0, 0);
      written.push(await shoot(page, 'catalog.png'));
      await close();
    }

    // 2. The launch form, with the client-side check of one field showing.
    {
      const { page, close } = await openPage(browser);
      await page.goto(`${catalogServer.url}/jobs/backfill`);
      const since = page.getByRole('textbox', { name: /^since/ });
      await since.waitFor();
      await since.fill('last monday');
      await page.locator('select[name="table"]').selectOption('orders');
      await page.locator('input[name="batch_size"]').fill('500');
      await page.locator('input[name="batch_size"]').focus();
      await page.locator('.field-error').first().waitFor({ state: 'visible' });
      written.push(await shoot(page, 'launch-form.png'));
      await close();
    }

    // 3. A run page with a coloured log, while the run is live.
    {
      const id = await demoServer.createRun('deploy', { environment: 'production', version: 'v2.14.0' });
      const { page, close } = await openPage(browser);
      await page.goto(`${demoServer.url}/runs/${id}`);
      await page.locator('.log-text', { hasText: 'waiting for health checks' }).waitFor({ timeout: 30000 });
      await waitForText(transportBadge(page), /WebSocket · live/);
      await waitForText(page.locator('.status-slot .badge'), /^running$/);
      await logLine(page, '      [####################] 100%').waitFor();
      await page.mouse.move(0, 0);
      await page.waitForTimeout(1200); // let the duration tick past the first second
      written.push(await shoot(page, 'run-live.png'));
      await close();
    }

    // 4. The tokens page, 5. the audit trail with one record's details, 6. the same on a phone.
    const asRoot = async (options) => {
      const opened = await openPage(browser, options);
      await opened.context.addInitScript((secret) => sessionStorage.setItem('oneoff.token', secret), admin.tokens['root-cli']);
      return opened;
    };
    {
      const { page, close } = await asRoot();
      await page.goto(`${admin.url}/tokens`);
      await page.locator('.tokens-table tbody tr').first().waitFor();
      await page.mouse.move(0, 0);
      written.push(await shoot(page, 'tokens.png'));
      await close();
    }
    const shots = [
      ['audit.png', undefined, 'deploy created an API token'],
      ['audit-phone.png', { width: 390, height: 844 }, 'rotate-key'],
    ];
    for (const [name, viewport, record] of shots) {
      const { page, close } = await asRoot({ viewport });
      await page.goto(`${admin.url}/audit`);
      const start = page.locator('.audit-table tbody tr', { hasText: record }).first();
      await start.waitFor();
      await start.getByRole('button', { name: 'Details' }).click();
      await page.locator('.audit-detail:not([hidden]) pre').waitFor();
      if (viewport) await start.scrollIntoViewIfNeeded();
      await page.mouse.move(0, 0);
      written.push(await shoot(page, name));
      await close();
    }
  } finally {
    await browser.close();
    await Promise.all([catalogServer.stop(), demoServer.stop(), admin.stop()]);
  }
  for (const file of written) console.log(`wrote ${path.relative(ROOT, file)}`);
}

async function shoot(page, name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file });
  return file;
}

await main();
