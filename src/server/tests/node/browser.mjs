// Drives fapi-as's real pages in headless Chromium (Debian's /usr/bin/chromium, through playwright-core)
// for tests/browser.rs: a person's sign-in, TOTP and consent, and a passkey sign-in with Chromium's
// virtual authenticator (CDP WebAuthn domain).
//
// stdin: {
//   "scenario": "totp" | "passkey" | "transfer",
//   "authorizeUrl": "https://localhost:PORT/authorize?client_id=..&request_uri=..",
//   "authorizeUrl2": "..",            // passkey: the second authorization, signed in with the passkey alone
//   "redirectPrefix": "https://localhost:PORT2/cb",   // served by nothing: the navigation is intercepted
//   "serverCertPem": "<PEM path>",   // its SPKI is the only certificate error Chromium ignores
//   "clientName": "...", "username": "taro", "password": "...", "totpSecret": "<base32>",
//   "screenshots": "<dir>"            // where PNGs go (sign-in.png, totp.png, consent.png, consent-en.png,
//                                     // passkey-registered.png, passkey-sign-in.png, consent-transfer.png,
//                                     // consent-transfer-en.png; failure-<scenario>.png)
//   "debtor": "taro-1"                // transfer: the account chosen on the consent page
//   "chromium": "/usr/bin/chromium", "certMode": "spki" (default) | "ignore-all"
// }
// stdout: {"redirect": "<the URL the browser was sent to>", "query": {code, state, iss, ...}, "notes": [...]}
//   (passkey: {"first": <that, for the password sign-in that registered the passkey>,
//              "second": <that, for the passkey sign-in>, "credentials": <count>, "notes": [...]})
// Exit status 1 with the reason on stderr (and a failure-<scenario>.png) when anything is not as expected.
import { chromium } from 'playwright-core';
import { createHash, createHmac, X509Certificate } from 'node:crypto';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const DEADLINE_MS = 50_000;
const STEP_MS = 10_000;

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const notes = [];

const timer = setTimeout(() => {
  console.error(`browser.mjs: gave up after ${DEADLINE_MS / 1000} s (scenario ${input.scenario})`);
  process.exit(1);
}, DEADLINE_MS);

function fail(msg) {
  throw new Error(msg);
}

function expect(cond, msg) {
  if (!cond) fail(msg);
}

/// RFC 4648 base32 (no padding needed) to bytes.
function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) fail(`bad base32 character ${c}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/// RFC 6238 TOTP: HMAC-SHA-1, 30-second steps from the Unix epoch, 6 digits (RFC 4226 §5.3 truncation).
export function totp(secretBase32, unixSeconds) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const mac = createHmac('sha1', base32Decode(secretBase32)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(bin).padStart(6, '0');
}

/// base64 of SHA-256 over the certificate's SubjectPublicKeyInfo: what
/// --ignore-certificate-errors-spki-list takes.
function spkiHash(pemPath) {
  const cert = new X509Certificate(readFileSync(pemPath));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

async function launch() {
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
  if ((input.certMode ?? 'spki') === 'spki') {
    args.push(`--ignore-certificate-errors-spki-list=${spkiHash(input.serverCertPem)}`);
  } else {
    args.push('--ignore-certificate-errors');
  }
  // playwright-core gives every launch a new empty --user-data-dir of its own.
  return chromium.launch({
    executablePath: input.chromium ?? '/usr/bin/chromium',
    headless: true,
    args,
    timeout: 20_000,
  });
}

async function shot(page, name) {
  if (!input.screenshots) return;
  mkdirSync(input.screenshots, { recursive: true });
  await page.screenshot({ path: join(input.screenshots, name), fullPage: true });
}

/// A fresh context (no cookies) whose Accept-Language is `locale`, with the client's redirect URI
/// intercepted: the returned promise resolves to the URL the browser was redirected to.
async function newContext(browser, locale) {
  const context = await browser.newContext({ locale, viewport: { width: 800, height: 900 } });
  let resolveRedirect;
  const redirected = new Promise((r) => (resolveRedirect = r));
  await context.route(`${input.redirectPrefix}**`, async (route) => {
    resolveRedirect(route.request().url());
    await route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>client</title><p>client callback</p>' });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  return { context, page, redirected };
}

async function text(page, selector) {
  return (await page.locator(selector).first().innerText()).trim();
}

async function signInWithPassword(page, lang) {
  await page.waitForSelector('[data-testid="password"]');
  const h1 = await text(page, 'h1');
  expect(h1 === (lang === 'ja' ? 'サインイン' : 'Sign in'), `sign-in page heading: ${h1}`);
  const body = await text(page, 'main');
  expect(body.includes(input.clientName), `the sign-in page names the client ${input.clientName}: ${body}`);
  await page.fill('[data-testid="username"]', input.username);
  await page.fill('[data-testid="password"]', input.password);
  await Promise.all([page.waitForNavigation(), page.click('[data-testid="sign-in"]')]);
}

async function enterTotp(page) {
  await page.waitForSelector('[data-testid="totp-code"]');
  const h1 = await text(page, 'h1');
  expect(h1 === '確認コード', `TOTP page heading: ${h1}`);
  // A code near the end of its 30 s step may expire in flight: wait for the next step then.
  let now = Date.now() / 1000;
  if (now % 30 > 26) {
    await page.waitForTimeout((30 - (now % 30) + 0.5) * 1000);
    now = Date.now() / 1000;
  }
  await page.fill('[data-testid="totp-code"]', totp(input.totpSecret, now));
  await Promise.all([page.waitForNavigation(), page.click('[data-testid="totp-submit"]')]);
}

const SCOPES = {
  ja: ['あなたが誰であるかの確認', '口座情報・残高・入出金明細の参照'],
  en: ['confirm who you are', 'view your accounts, balances and transactions'],
};

async function checkConsent(page, lang) {
  await page.waitForSelector('[data-testid="approve"]');
  const h1 = await text(page, 'h1');
  expect(h1 === (lang === 'ja' ? 'アクセスの許可' : 'Allow access'), `consent heading (${lang}): ${h1}`);
  expect((await page.getAttribute('html', 'lang')) === lang, `html lang is ${lang}`);
  const asks = await text(page, 'main p strong');
  expect(asks === input.clientName, `consent names the client: ${asks}`);
  const scopes = await page.locator('#scopes li').allInnerTexts();
  expect(scopes.length === SCOPES[lang].length, `scopes listed (${lang}): ${JSON.stringify(scopes)}`);
  for (const words of SCOPES[lang]) {
    expect(scopes.some((s) => s.includes(words)), `scope "${words}" in ${JSON.stringify(scopes)}`);
  }
  const approve = await text(page, '[data-testid="approve"]');
  expect(approve === (lang === 'ja' ? '許可する' : 'Approve'), `approve button (${lang}): ${approve}`);
}

async function approve(page, redirected) {
  await page.click('[data-testid="approve"]');
  const url = await Promise.race([
    redirected,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no redirect to the client after approve')), STEP_MS)),
  ]);
  expect(url.startsWith(`${input.redirectPrefix}?`), `redirect to the client: ${url}`);
  return url;
}

function result(url) {
  const query = Object.fromEntries(new URL(url).searchParams);
  return { redirect: url, query, notes };
}

/// Password, TOTP and consent in Japanese (Accept-Language: ja), the language switch to English, approve.
async function totpScenario(browser) {
  const { page, redirected } = await newContext(browser, 'ja-JP');
  current = page;
  await page.goto(input.authorizeUrl);
  expect(new URL(page.url()).pathname === '/login', `authorize sends the browser to /login: ${page.url()}`);
  await shot(page, 'sign-in.png');
  await signInWithPassword(page, 'ja');
  await page.waitForSelector('[data-testid="totp-code"]');
  await shot(page, 'totp.png');
  await enterTotp(page);
  await checkConsent(page, 'ja');
  await shot(page, 'consent.png');
  // The switch link to English, then approve there.
  await Promise.all([page.waitForNavigation(), page.click('a.lang[hreflang=en]')]);
  await checkConsent(page, 'en');
  await shot(page, 'consent-en.png');
  return result(await approve(page, redirected));
}

/// A transfer (RFC 9396 payment_initiation) on the consent page: password and TOTP (a transfer needs
/// it), the transfer in Japanese (5,000円) with the debtor-account choice; Approve without a choice is
/// held back by the form (nothing is sent); the account chosen, the page in English (5,000 JPY),
/// approve.
async function transferScenario(browser) {
  const { page, redirected } = await newContext(browser, 'ja-JP');
  current = page;
  await page.goto(input.authorizeUrl);
  await signInWithPassword(page, 'ja');
  await enterTotp(page);
  await page.waitForSelector('[data-testid="transfer"]');
  const amount = await text(page, '[data-testid="transfer-amount"]');
  expect(amount === '5,000円', `amount in Japanese: ${amount}`);
  const payee = await text(page, '[data-testid="transfer-payee"]');
  expect(payee === 'Hanako Yamada', `payee: ${payee}`);
  const account = await text(page, '[data-testid="transfer-payee-account"]');
  expect(account === 'hanako-1', `payee account: ${account}`);
  const offered = await page.locator('[data-testid="debtor-account"]').evaluateAll((els) => els.map((e) => e.value));
  expect(offered.includes(input.debtor), `debtor ${input.debtor} offered: ${offered}`);
  notes.push(`debtor accounts offered: ${offered.join(', ')}`);
  await shot(page, 'consent-transfer.png');
  // Approve with no account chosen: the browser's form validation keeps the form from being sent.
  const before = page.url();
  await page.click('[data-testid="approve"]');
  await page.waitForTimeout(500);
  const valid = await page.locator('form[action="/consent"]').evaluate((f) => f.checkValidity());
  expect(!valid && page.url() === before, `approve without an account must not submit (valid=${valid}, url=${page.url()})`);
  await Promise.all([page.waitForNavigation(), page.click('a.lang[hreflang=en]')]);
  const en = await text(page, '[data-testid="transfer-amount"]');
  expect(en === '5,000 JPY', `amount in English: ${en}`);
  await page.check(`[data-testid="debtor-account"][value="${input.debtor}"]`);
  await shot(page, 'consent-transfer-en.png');
  return result(await approve(page, redirected));
}

/// A CTAP2 platform authenticator with resident keys and user verification (a passkey provider),
/// holding `credentials` (from WebAuthn.getCredentials of another one) when given.
async function virtualAuthenticator(context, page, credentials = []) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  for (const credential of credentials) {
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
  }
  return { cdp, authenticatorId };
}

async function credentialsOf({ cdp, authenticatorId }) {
  return (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
}

async function passkeyError(page) {
  const box = page.locator('[data-testid="passkey-error"]:visible');
  return (await box.count()) > 0 ? await box.first().innerText() : '';
}

/// A password sign-in that registers a passkey on the consent page and approves; then, in a fresh
/// browser context (no cookies) whose authenticator holds only that passkey, a second authorization
/// signed in with the passkey alone, approved.
async function passkeyScenario(browser) {
  // 1. Password sign-in (English), register a passkey from the consent page, approve.
  const first = await newContext(browser, 'en-US');
  current = first.page;
  const auth1 = await virtualAuthenticator(first.context, first.page);
  await first.page.goto(input.authorizeUrl);
  await first.page.waitForSelector('[data-testid="passkey-sign-in"]');
  await signInWithPassword(first.page, 'en');
  await checkConsent(first.page, 'en');
  expect(await first.page.locator('[data-testid="passkey-register"]').count() === 1, 'consent offers "Register a passkey"');
  await Promise.all([
    first.page.waitForURL(/done=passkey_/, { timeout: STEP_MS }),
    first.page.click('[data-testid="passkey-register"]'),
  ]).catch(async (e) => fail(`registration did not come back: ${e.message.split('\n')[0]}; ${await passkeyError(first.page)}`));
  expect(/[?&]done=passkey_registered/.test(first.page.url()), `registration result: ${first.page.url()}`);
  const notice = await text(first.page, '[data-testid="notice"]');
  notes.push(`registration notice: ${notice}`);
  await shot(first.page, 'passkey-registered.png');
  const credentials = await credentialsOf(auth1);
  expect(credentials.length === 1, `one credential in the authenticator: ${credentials.length}`);
  expect(credentials[0].isResidentCredential === true, 'a discoverable credential (passkey)');
  expect(credentials[0].rpId === new URL(input.authorizeUrl).hostname, `RP ID ${credentials[0].rpId}`);
  await checkConsent(first.page, 'en');
  const firstResult = result(await approve(first.page, first.redirected));
  await first.context.close();

  // 2. A fresh context: no session cookie; the same passkey in a new authenticator.
  const second = await newContext(browser, 'en-US');
  current = second.page;
  const auth2 = await virtualAuthenticator(second.context, second.page, credentials);
  await second.page.goto(input.authorizeUrl2);
  await second.page.waitForSelector('[data-testid="passkey-sign-in"]');
  await shot(second.page, 'passkey-sign-in.png');
  await Promise.all([
    second.page.waitForSelector('[data-testid="approve"]', { timeout: STEP_MS }),
    second.page.click('[data-testid="passkey-sign-in"]'),
  ]).catch(async (e) => fail(`passkey sign-in did not reach consent: ${e.message.split('\n')[0]}; ${await passkeyError(second.page)}; at ${second.page.url()}: ${(await text(second.page, 'main').catch(() => '')).slice(0, 500)}`));
  await checkConsent(second.page, 'en');
  const after = await credentialsOf(auth2);
  expect(after.length === 1 && after[0].signCount > credentials[0].signCount, `the sign-in used the passkey (signCount ${credentials[0].signCount} -> ${after[0]?.signCount})`);
  const secondResult = result(await approve(second.page, second.redirected));
  return { first: firstResult, second: secondResult, credentials: credentials.length, notes };
}

let current = null;
let browser = null;
try {
  browser = await launch();
  notes.push(`chromium ${browser.version()}`);
  let out;
  switch (input.scenario) {
    case 'totp':
      out = await totpScenario(browser);
      break;
    case 'passkey':
      out = await passkeyScenario(browser);
      break;
    case 'transfer':
      out = await transferScenario(browser);
      break;
    default:
      fail(`unknown scenario ${input.scenario}`);
  }
  process.stdout.write(JSON.stringify(out));
  await browser.close();
  clearTimeout(timer);
} catch (e) {
  if (current && input.screenshots) {
    try {
      await shot(current, `failure-${input.scenario}.png`);
      console.error(`url at failure: ${current.url()}\n${(await current.locator('main').innerText().catch(() => '')).slice(0, 2000)}`);
    } catch {}
  }
  console.error(`browser.mjs (${input.scenario}): ${e && e.stack ? e.stack : e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
