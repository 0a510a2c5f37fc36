// Drives the policy studio in headless Chromium (Debian's /usr/bin/chromium, through playwright-core)
// for tests/studio_browser.rs: load the page served by `fapictl policy studio`, break the policy and see
// the error at its line, fix it, evaluate requests, run the policy's tests, download the compiled
// configuration, switch the language; and check that the page never asks anything of another origin
// and makes no request at all once loaded (every decision is made in the page).
//
// stdin: {"url": "http://127.0.0.1:PORT/", "chromium": "/usr/bin/chromium",
//         "playwrightFrom": "<a package.json whose node_modules has playwright-core>",
//         "screenshots": "<dir>"}
// stdout: {"notes": [...], "errorLine": N, "tests": "38 passed, 0 failed", "compiled": {...}, ...}
// Exit status 1 with the reason on stderr (and failure-studio.png) when anything is not as expected.
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const { chromium } = createRequire(input.playwrightFrom)('playwright-core');

const DEADLINE_MS = 60_000;
const STEP_MS = 10_000;
const timer = setTimeout(() => {
  console.error(`studio.mjs: gave up after ${DEADLINE_MS / 1000} s`);
  process.exit(1);
}, DEADLINE_MS);

const notes = [];
const result = { notes };
function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

const origin = new URL(input.url).origin;
const browser = await chromium.launch({
  executablePath: input.chromium ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 20_000,
});
const context = await browser.newContext({ viewport: { width: 1500, height: 960 }, locale: 'ja-JP', acceptDownloads: true });
const page = await context.newPage();
page.setDefaultTimeout(STEP_MS);

const requests = [];
const consoleErrors = [];
page.on('request', (r) => requests.push(r.url()));
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

async function shot(name, fullPage = false) {
  if (!input.screenshots) return;
  mkdirSync(input.screenshots, { recursive: true });
  await page.screenshot({ path: join(input.screenshots, name), fullPage });
}

const body = page.locator('body');
const dataset = (key) => page.evaluate((k) => document.body.dataset[k] ?? '', key);

try {
  await page.goto(input.url);
  await page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'failed');
  expect(await dataset('ready') === '1', `the studio did not start: ${await page.locator('#input-error').textContent()}`);
  const loadedRequests = requests.length;
  const original = await page.locator('#yaml').inputValue();
  expect(original.includes('name: open-banking-jp'), 'the initial policy is not policies/open-banking-jp.yaml');
  expect(await dataset('lintErrors') === '0', 'the shipped policy shows errors');
  expect((await page.locator('#problems li.clean').count()) === 1, 'no "no problems" line for the shipped policy');
  notes.push(`loaded; ${loadedRequests} requests (${requests.map((u) => new URL(u).pathname).join(' ')})`);

  // 1. An unknown field: `scope:` for `scopes:` in the accounts-list rule, typed into the editor.
  const lines = original.split('\n');
  const errorLine = lines.findIndex((l) => l.includes('scopes: [accounts]')) + 1;
  expect(errorLine > 0, 'no scopes line in the policy');
  result.errorLine = errorLine;
  const column = lines[errorLine - 1].indexOf('scopes') + 'scope'.length;
  await page.locator('#yaml').click();
  await page.evaluate(([line, col]) => {
    const ta = document.getElementById('yaml');
    const ls = ta.value.split('\n');
    let offset = 0;
    for (let i = 0; i < line - 1; i++) offset += ls[i].length + 1;
    ta.setSelectionRange(offset + col, offset + col + 1);
  }, [errorLine, column]);
  await page.keyboard.press('Delete'); // removes the "s" of "scopes"
  await page.waitForFunction(() => document.body.dataset.lintErrors === '1');
  const problem = page.locator('#problems li.error');
  expect((await problem.count()) === 1, `expected one problem, got ${await problem.count()}`);
  expect(await problem.getAttribute('data-line') === String(errorLine), `the error is at line ${await problem.getAttribute('data-line')}, not ${errorLine}`);
  const message = await problem.textContent();
  expect(message.includes('unknown field `scope`') && message.includes(`${errorLine}行`), `error text: ${message}`);
  expect(await page.locator(`#gutter div[data-line="${errorLine}"]`).getAttribute('class') === 'error', 'the gutter does not mark the line');
  expect((await page.locator('#gutter div.error').count()) === 1, 'more than one line marked');
  expect(await dataset('decision') === '', 'a decision was shown for a policy with errors');
  result.errorText = message;
  notes.push(`error shown at line ${errorLine}: ${message}`);
  await shot('studio-error.png');

  // 2. Fix it (type the "s" back): no problem, a decision again.
  await page.keyboard.type('s');
  await page.waitForFunction(() => document.body.dataset.lintErrors === '0');
  expect(await page.locator('#yaml').inputValue() === original, 'the fixed text differs from the original');

  // 3. A request built by hand: a transfer with passkey authentication a minute ago → allowed.
  await page.selectOption('#method', 'POST');
  await page.fill('#url', 'https://api.bank.example/transfers');
  await page.selectOption('#binding', 'mtls');
  await page.fill('#scope', 'accounts payments');
  await page.fill('#acr', 'urn:bank:acr:passkey');
  await page.fill('#auth-age', '60');
  // transfer-create binds the body to the consented transfer (RFC 9396): no consent in the token → 403.
  await page.waitForFunction(() => document.body.dataset.decision === '403 authorization_details_missing');
  const transfer = (amount) => JSON.stringify({ from_account: 'taro-1', to_account: 'hanako-1', amount, currency: 'JPY', reference: 'dinner' });
  await page.fill('#authz-details', JSON.stringify([{
    type: 'payment_initiation', instructedAmount: { currency: 'JPY', amount: '5000' }, creditorName: 'Hanako Yamada',
    creditorAccount: { accountId: 'hanako-1' }, remittanceInformationUnstructured: 'dinner', debtorAccount: { accountId: 'taro-1' },
  }]));
  // The consent, but no body yet.
  await page.waitForFunction(() => document.body.dataset.decision === '403 body_not_json');
  await page.fill('#request-body', transfer(5000));
  await page.waitForFunction(() => document.body.dataset.decision === '200 allowed');
  expect((await page.locator('#decision-rule').textContent()).includes('transfer-create'), 'not the transfer-create rule');
  const cmp = page.locator('#details-comparison');
  expect(await cmp.getAttribute('data-matches') === '1', 'the comparison does not show a match');
  expect((await cmp.locator('tr.match').count()) === 4, `expected 4 matching fields, got ${await cmp.locator('tr.match').count()}`);
  notes.push('hand-built transfer with its consent: 200 allowed, rule transfer-create, 4 fields match');

  // Field by field: 500,000 JPY against a consent to 5,000 → refused, the amount row marked.
  await page.fill('#request-body', transfer(500000));
  await page.waitForFunction(() => document.body.dataset.decision === '403 authorization_details_mismatch');
  expect(await cmp.getAttribute('data-matches') === '0', 'the comparison still shows a match');
  const amountRow = cmp.locator('tr[data-field="/amount"]');
  expect(await amountRow.getAttribute('class') === 'mismatch', 'the amount row is not marked');
  const amountText = await amountRow.textContent();
  expect(amountText.includes('500000') && amountText.includes('"5000"'), `amount row: ${amountText}`);
  expect((await cmp.locator('tr.mismatch').count()) === 1, 'more than the amount differs');
  expect(await page.locator('#failed-requirement').getAttribute('data-field') === 'authorization_details', 'the failed requirement is not authorization_details');
  expect((await page.locator('#decision-error').textContent()) === 'insufficient_authorization_details', 'wrong error code');
  result.rarDecision = await dataset('decision');
  notes.push(`500,000 JPY: ${result.rarDecision}, row /amount: ${amountText}`);
  await shot('studio-transfer.png', true);
  await page.fill('#request-body', transfer(5000));
  await page.waitForFunction(() => document.body.dataset.decision === '200 allowed');

  // The same with a password login: refused by the rule's acr requirement, shown at its line.
  await page.fill('#acr', 'urn:bank:acr:password');
  await page.waitForFunction(() => document.body.dataset.decision === '401 acr_not_accepted');
  const acrLine = lines.findIndex((l) => l.includes('acr: [urn:bank:acr:totp, urn:bank:acr:passkey]')) + 1;
  const failed = page.locator('#failed-requirement');
  expect(await failed.getAttribute('data-field') === 'acr', 'the failed requirement is not acr');
  expect(await failed.getAttribute('data-line') === String(acrLine), `the acr requirement is not shown at line ${acrLine}`);
  expect((await page.locator('#decision-error').textContent()) === 'insufficient_user_authentication', 'wrong error code');
  notes.push(`password login: 401 acr_not_accepted, requirement acr at line ${acrLine}`);

  // 4. One of the policy's tests, picked from the list.
  await page.selectOption('#pick-test', { label: 'DPoP-bound token on the mTLS-only transfer route' });
  await page.waitForFunction(() => document.body.dataset.decision === '401 binding_not_allowed');
  expect(await failed.getAttribute('data-field') === 'sender_constraint', 'the failed requirement is not sender_constraint');
  expect((await page.locator('#picked-expect').textContent()).includes('binding_not_allowed'), 'the expectation is not shown');
  result.pickedDecision = await dataset('decision');

  // 5. Run all tests.
  await page.click('#run-tests');
  await page.waitForFunction(() => /passed/.test(document.body.dataset.tests ?? ''));
  result.tests = await dataset('tests');
  result.testRows = await page.locator('#test-results tr').count();
  result.failedRows = await page.locator('#test-results tr.fail').count();
  expect(result.failedRows === 0 && result.testRows > 0, `tests: ${result.tests}`);
  notes.push(`tests: ${result.tests}`);

  // 6. Download the compiled plugin configuration.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  result.downloadName = download.suggestedFilename();
  const compiled = JSON.parse(readFileSync(await download.path(), 'utf8'));
  result.compiled = { format: compiled.format, rules: compiled.rules.length, tests: compiled.tests ?? null };

  // The screenshot for the docs: a refusal explained, its requirement highlighted in the editor
  // (the line link), the tests run (Japanese).
  await page.click('#failed-requirement a.line');
  const focused = await page.locator('#gutter div.focus').getAttribute('data-line');
  expect(focused === await failed.getAttribute('data-line'), `the line link focused line ${focused}`);
  await shot('studio.png', true);

  // 7. English labels.
  await page.click('button[data-lang="en"]');
  expect((await page.locator('#run-tests').textContent()) === 'Run all tests', 'no English label');
  expect(await page.evaluate(() => document.documentElement.lang) === 'en', 'lang not switched');
  expect((await page.locator('#tests-summary').textContent()).includes('passed'), 'tests summary not in English');
  expect((await page.locator('#picked-expect').textContent()).startsWith('The test expects'), 'the expectation is not in English');
  expect((await page.locator('#failed-requirement').textContent()).includes('Requirement not met'), 'the refusal is not in English');
  await shot('studio-en.png', true);
  await page.click('button[data-lang="ja"]');
  expect((await page.locator('#run-tests').textContent()) === 'テストをすべて実行', 'no Japanese label');

  // Nothing left the page: every request was this origin's, and none after loading.
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'));
  expect(foreign.length === 0, `requests to other origins: ${foreign.join(' ')}`);
  const after = requests.slice(loadedRequests).filter((u) => !u.startsWith('blob:'));
  expect(after.length === 0, `requests after loading: ${after.join(' ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
  result.requests = requests.length;
  process.stdout.write(JSON.stringify(result));
} catch (e) {
  console.error(`studio.mjs: ${e.message}\nnotes: ${notes.join(' / ')}`);
  try { await shot('failure-studio.png'); } catch { /* best effort */ }
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  await browser.close();
}
