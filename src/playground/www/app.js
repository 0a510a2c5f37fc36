// The policy studio page. Every answer comes from fapi-core compiled to WebAssembly
// (fapi_playground.js, built by scripts/build-studio): lint, compile, evaluate and tests run here, in
// the browser; the page sends nothing anywhere.
import init, * as engine from './fapi_playground.js';

const $ = (id) => document.getElementById(id);

const TEXT = {
  ja: {
    title: 'ポリシースタジオ', runTests: 'テストをすべて実行', download: 'コンパイル済み設定をダウンロード', reset: '例に戻す',
    notice: '検査・コンパイル・判定はすべてこのブラウザ内（WebAssembly 版 fapi-core、Envoy プラグインと同じエンジン）で行われます。何も送信されません。',
    policy: 'ポリシー (YAML)', request: 'リクエスト', pickTest: 'ポリシーのテストから選ぶ', pickNone: '（選択しない）',
    method: 'メソッド', scheme: '認可スキーム', auto: '自動', clientCert: 'クライアント証明書', bound: 'トークンに紐付いたもの',
    other: '別のもの', none: 'なし', noProof: '証明なし', dpopKey: 'DPoP 証明の鍵', revoked: '失効済み (jti)',
    token: 'アクセストークンを送る', binding: 'バインディング', unbound: 'なし (Bearer)', authAge: '認証からの秒数 (auth_time)',
    expiresIn: '有効期限までの秒数 (exp)', extraClaims: '追加クレーム (JSON)', decision: '判定', rule: '一致したルール',
    error: 'エラー', why: '理由', forward: '転送ヘッダー', claimsShown: '判定に使ったトークンのクレーム', tests: 'テスト',
    footer: '判定はポリシーのテストと同じ経路 (Policy::decide_test → guard::decide_with_claims) で、時刻は 2024-01-01T00:00:00Z 固定。署名の検証以外は Envoy プラグインと同じコードです。',
    line: (l, c) => `${l}行 ${c}列`, noPosition: '位置なし', errorWord: 'エラー', warningWord: '警告',
    clean: '問題はありません', lintSummary: (e, w) => `エラー ${e} 件・警告 ${w} 件`,
    allowed: '許可', denied: '拒否', noRule: '（一致するルールなし）',
    failedTitle: '満たされなかった要件', fField: '要件', fWhere: '定義箇所', fRequired: '必要な条件', fPresented: '実際の値',
    fFrom: { rule: 'ルール', defaults: 'defaults', 'built-in default': '既定値', issuer: '発行者', issuers: '発行者一覧', rules: 'ルール一覧' },
    testsSummary: (p, f) => `${p} 件成功・${f} 件失敗`, testsNotRun: (n) => `ポリシーにエラーが ${n} 件あるため実行できません`,
    expected: '期待', got: '結果', pickedExpect: (e) => `テストの期待値: ${e}`,
    policyHasErrors: 'ポリシーにエラーがあるため判定できません', badClaims: '追加クレームが JSON のオブジェクトではありません',
    compileFailed: (n) => `エラーが ${n} 件あるためコンパイルできません`, downloaded: (f) => `${f} を保存しました`,
    ruleLink: (l) => `（${l}行）`,
    requestBody: 'リクエストボディ（書いたとおりに送信）', repeated: '同じリクエストの2回目',
    authzDetails: '利用者が同意した内容 (authorization_details, JSON)', badDetails: 'authorization_details が JSON ではありません',
    cmpTitle: (type) => `ボディと同意内容の比較 (${type})`, cmpBody: 'ボディ', cmpValue: 'ボディの値', cmpDetail: '同意内容',
    cmpConsented: '同意した値', cmpDetailN: (i) => `authorization_details[${i}]`, cmpNoDetails: '比較できません',
    cmpOnce: '1回限り', absent: '（なし）',
  },
  en: {
    title: 'Policy studio', runTests: 'Run all tests', download: 'Download compiled configuration', reset: 'Reset to example',
    notice: 'Lint, compile and decisions all run in this browser (fapi-core in WebAssembly, the engine of the Envoy plugin). Nothing is sent anywhere.',
    policy: 'Policy (YAML)', request: 'Request', pickTest: "Pick one of the policy's tests", pickNone: '(none)',
    method: 'Method', scheme: 'Authorization scheme', auto: 'automatic', clientCert: 'Client certificate', bound: 'the one the token is bound to',
    other: 'another one', none: 'none', noProof: 'no proof', dpopKey: 'DPoP proof key', revoked: 'revoked (jti)',
    token: 'Send an access token', binding: 'Binding', unbound: 'none (bearer)', authAge: 'Seconds since authentication (auth_time)',
    expiresIn: 'Seconds until expiry (exp)', extraClaims: 'Extra claims (JSON)', decision: 'Decision', rule: 'Matched rule',
    error: 'Error', why: 'Why', forward: 'forwarded headers', claimsShown: 'Token claims the decision used', tests: 'Tests',
    footer: "Decisions take the path of the policy's own tests (Policy::decide_test → guard::decide_with_claims) at the fixed time 2024-01-01T00:00:00Z: the Envoy plugin's code, except the signature checks.",
    line: (l, c) => `line ${l}, col ${c}`, noPosition: 'no position', errorWord: 'error', warningWord: 'warning',
    clean: 'No problems', lintSummary: (e, w) => `${e} error(s), ${w} warning(s)`,
    allowed: 'allowed', denied: 'denied', noRule: '(no rule matched)',
    failedTitle: 'Requirement not met', fField: 'Requirement', fWhere: 'Defined at', fRequired: 'Required', fPresented: 'Presented',
    fFrom: { rule: 'rule', defaults: 'defaults', 'built-in default': 'built-in default', issuer: 'issuer', issuers: 'issuers', rules: 'rules' },
    testsSummary: (p, f) => `${p} passed, ${f} failed`, testsNotRun: (n) => `not run: the policy has ${n} error(s)`,
    expected: 'expected', got: 'got', pickedExpect: (e) => `The test expects: ${e}`,
    policyHasErrors: 'The policy has errors: no decision', badClaims: 'Extra claims must be a JSON object',
    compileFailed: (n) => `Not compiled: ${n} error(s)`, downloaded: (f) => `Saved ${f}`,
    ruleLink: (l) => ` (line ${l})`,
    requestBody: 'Request body (sent as written)', repeated: 'second time the same request is sent',
    authzDetails: 'What the user consented to (authorization_details, JSON)', badDetails: 'authorization_details must be JSON',
    cmpTitle: (type) => `Body and consent compared (${type})`, cmpBody: 'Body field', cmpValue: 'Body holds', cmpDetail: 'Consent field',
    cmpConsented: 'User consented to', cmpDetailN: (i) => `authorization_details[${i}]`, cmpNoDetails: 'Nothing to compare',
    cmpOnce: 'once', absent: '(absent)',
  },
};

let lang = (navigator.language || 'ja').toLowerCase().startsWith('ja') ? 'ja' : 'en';
const t = (key) => TEXT[lang][key];

const state = { diags: [], focusLine: null, testCases: [], picked: null, lastTests: null };

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) {
    const v = TEXT[lang][el.dataset.i18n];
    if (typeof v === 'string') el.textContent = v;
  }
  for (const b of document.querySelectorAll('[data-lang]')) b.setAttribute('aria-pressed', String(b.dataset.lang === lang));
  document.title = `fapi-guard ${t('title')}`;
  renderProblems();
  renderPickedExpect();
  evaluateNow();
  if (state.lastTests) renderTests(state.lastTests);
}

// ---- editor: line numbers, highlighted lines, problems list ------------------------------------------

const yaml = $('yaml');

function renderGutter() {
  const n = yaml.value.split('\n').length;
  const sev = new Map();
  for (const d of state.diags) {
    if (d.line == null) continue;
    if (sev.get(d.line) !== 'error') sev.set(d.line, d.severity);
  }
  const gutter = $('gutter');
  const backdrop = $('backdrop');
  const g = document.createDocumentFragment();
  const b = document.createDocumentFragment();
  for (let i = 1; i <= n; i++) {
    const gl = document.createElement('div');
    gl.textContent = String(i);
    gl.dataset.line = String(i);
    const bl = document.createElement('div');
    const s = sev.get(i);
    if (s) { gl.classList.add(s); bl.classList.add(s); gl.title = state.diags.filter((d) => d.line === i).map((d) => d.message).join('\n'); }
    if (state.focusLine === i) { gl.classList.add('focus'); if (!s) bl.classList.add('focus'); }
    g.appendChild(gl);
    b.appendChild(bl);
  }
  gutter.replaceChildren(g);
  backdrop.replaceChildren(b);
  syncScroll();
}

function syncScroll() {
  $('gutter').scrollTop = yaml.scrollTop;
  $('backdrop').scrollTop = yaml.scrollTop;
  $('backdrop').scrollLeft = yaml.scrollLeft;
}

function goToLine(line, column = 1) {
  if (line == null) return;
  const lines = yaml.value.split('\n');
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, column - 1);
  yaml.focus();
  yaml.setSelectionRange(offset, offset);
  const lineHeight = parseFloat(getComputedStyle(yaml).lineHeight) || 19;
  yaml.scrollTop = Math.max(0, (line - 5) * lineHeight);
  state.focusLine = line;
  renderGutter();
}

function renderProblems() {
  const list = $('problems');
  const items = [];
  let errors = 0;
  let warnings = 0;
  for (const d of state.diags) {
    if (d.severity === 'error') errors++; else warnings++;
    const li = document.createElement('li');
    li.className = d.severity;
    if (d.line != null) li.dataset.line = String(d.line);
    const pos = document.createElement('span');
    pos.className = 'pos';
    pos.textContent = d.line != null ? t('line')(d.line, d.column) : t('noPosition');
    const sev = document.createElement('strong');
    sev.textContent = `${d.severity === 'error' ? t('errorWord') : t('warningWord')}: `;
    const msg = document.createElement('span');
    msg.className = 'message';
    msg.textContent = d.message;
    li.append(pos, sev, msg);
    if (d.path) {
      const p = document.createElement('span');
      p.className = 'path';
      p.textContent = d.path;
      li.append(p);
    }
    li.addEventListener('click', () => goToLine(d.line, d.column));
    items.push(li);
  }
  if (items.length === 0) {
    const li = document.createElement('li');
    li.className = 'clean';
    li.textContent = t('clean');
    items.push(li);
  }
  list.replaceChildren(...items);
  const summary = $('lint-summary');
  summary.textContent = t('lintSummary')(errors, warnings);
  summary.className = `summary ${errors ? 'bad' : warnings ? 'warn' : 'good'}`;
  document.body.dataset.lintErrors = String(errors);
}

function lintNow() {
  state.diags = JSON.parse(engine.lint(yaml.value));
  renderProblems();
  renderGutter();
  refreshTestPicker();
}

// ---- request builder ----------------------------------------------------------------------------------

function setValue(id, v) { $(id).value = v == null ? '' : String(v); }

function refreshTestPicker() {
  const cases = JSON.parse(engine.test_cases(yaml.value));
  state.testCases = cases;
  const sel = $('pick-test');
  const keep = sel.value;
  const opts = [sel.options[0]];
  cases.forEach((c, i) => {
    const o = document.createElement('option');
    o.value = String(i);
    o.textContent = c && c.name ? c.name : `#${i + 1}`;
    opts.push(o);
  });
  sel.replaceChildren(...opts);
  if (keep && Number(keep) < cases.length) sel.value = keep;
}

function pickTest(index) {
  const c = state.testCases[index];
  if (!c) { state.picked = null; renderPickedExpect(); return; }
  const r = c.request || {};
  setValue('method', r.method || 'GET');
  setValue('url', r.url);
  setValue('scheme', r.scheme);
  setValue('client-cert', r.client_cert);
  setValue('dpop-key', r.dpop_key);
  $('revoked').checked = !!r.revoked;
  setValue('request-body', r.body == null ? '' : (typeof r.body === 'string' ? r.body : JSON.stringify(r.body)));
  $('repeated').checked = !!r.repeated;
  const tok = c.token;
  $('has-token').checked = !!tok;
  const tk = tok || {};
  setValue('binding', tk.binding || 'mtls');
  setValue('scope', tk.scope);
  setValue('acr', tk.acr);
  setValue('auth-age', tk.auth_age);
  setValue('expires-in', tk.expires_in);
  setValue('claims', tk.claims ? JSON.stringify(tk.claims) : '');
  setValue('authz-details', tk.authorization_details ? JSON.stringify(tk.authorization_details) : '');
  state.picked = c;
  renderPickedExpect();
  tokenFieldsEnabled();
  evaluateNow();
}

function renderPickedExpect() {
  const e = state.picked && state.picked.expect;
  if (!e) { $('picked-expect').textContent = ''; return; }
  const parts = [e.status, e.error, e.reason && `(${e.reason})`, e.rule && `rule ${e.rule}`].filter(Boolean);
  $('picked-expect').textContent = t('pickedExpect')(parts.join(' '));
}

function tokenFieldsEnabled() {
  $('token-fields').classList.toggle('off', !$('has-token').checked);
}

function buildInput() {
  const request = { method: $('method').value, url: $('url').value.trim() };
  if ($('scheme').value) request.scheme = $('scheme').value;
  if ($('client-cert').value) request.client_cert = $('client-cert').value;
  if ($('dpop-key').value) request.dpop_key = $('dpop-key').value;
  if ($('revoked').checked) request.revoked = true;
  // The body is sent exactly as typed (a string body is never re-serialized).
  if ($('request-body').value !== '') request.body = $('request-body').value;
  if ($('repeated').checked) request.repeated = true;
  if (!$('has-token').checked) return { request, token: null };
  const token = { binding: $('binding').value };
  if ($('scope').value.trim()) token.scope = $('scope').value.trim();
  if ($('acr').value.trim()) token.acr = $('acr').value.trim();
  for (const [id, key] of [['auth-age', 'auth_age'], ['expires-in', 'expires_in']]) {
    const v = $(id).value.trim();
    if (v !== '') token[key] = Math.trunc(Number(v));
  }
  const details = $('authz-details').value.trim();
  if (details) {
    try { token.authorization_details = JSON.parse(details); } catch { throw new Error(t('badDetails')); }
  }
  const extra = $('claims').value.trim();
  if (extra) {
    let parsed;
    try { parsed = JSON.parse(extra); } catch { parsed = undefined; }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(t('badClaims'));
    token.claims = parsed;
  }
  return { request, token };
}

// ---- decision -----------------------------------------------------------------------------------------

function ruleLink(name, line) {
  const frag = document.createDocumentFragment();
  const code = document.createElement('span');
  code.textContent = name;
  frag.append(code);
  if (line != null) {
    const a = document.createElement('a');
    a.className = 'line';
    a.textContent = t('ruleLink')(line);
    a.addEventListener('click', () => goToLine(line));
    frag.append(a);
  }
  return frag;
}

function clearDecision(message) {
  $('decision-status').textContent = '—';
  $('decision-status').className = 'status';
  $('decision-reason').textContent = '';
  $('decision-rule').replaceChildren();
  $('decision-error').textContent = '';
  $('decision-description').textContent = '';
  $('failed-requirement').replaceChildren();
  $('details-comparison').replaceChildren();
  $('decision-headers').textContent = '';
  $('decision-claims').textContent = '';
  $('input-error').textContent = message || '';
  document.body.dataset.decision = '';
}

function evaluateNow() {
  let input;
  try { input = buildInput(); } catch (e) { clearDecision(e.message); return; }
  const out = JSON.parse(engine.evaluate(yaml.value, JSON.stringify(input.request), JSON.stringify(input.token)));
  if (out.errors) {
    const lintErrors = Number(document.body.dataset.lintErrors || 0);
    clearDecision(lintErrors ? t('policyHasErrors') : out.errors.map((e) => `${e.path}: ${e.message}`).join('; '));
    return;
  }
  $('input-error').textContent = '';
  const st = $('decision-status');
  st.textContent = String(out.status);
  st.className = `status ${out.allowed ? 'allow' : 'deny'}`;
  $('decision-reason').textContent = `${out.allowed ? t('allowed') : t('denied')} · ${out.reason}`;
  $('decision-rule').replaceChildren(out.rule ? ruleLink(out.rule, out.rule_line) : document.createTextNode(t('noRule')));
  $('decision-error').textContent = out.error || '—';
  $('decision-description').textContent = out.description || '';
  renderFailed(out.failed_requirement);
  renderComparison(out.authorization_details);
  const headers = [];
  for (const h of out.www_authenticate || []) headers.push(`WWW-Authenticate: ${h}`);
  for (const [k, v] of out.forward || []) headers.push(`${k}: ${v}`);
  $('decision-headers').textContent = headers.join('\n') || '—';
  $('decision-claims').textContent = out.claims ? JSON.stringify(out.claims, null, 2) : '—';
  document.body.dataset.decision = `${out.status} ${out.reason}`;
}

function renderFailed(f) {
  const box = $('failed-requirement');
  if (!f) { box.replaceChildren(); return; }
  const title = document.createElement('strong');
  title.textContent = t('failedTitle');
  const table = document.createElement('table');
  const row = (label, content) => {
    const tr = document.createElement('tr');
    const a = document.createElement('td');
    a.textContent = label;
    const b = document.createElement('td');
    if (typeof content === 'string') b.textContent = content; else b.append(content);
    tr.append(a, b);
    table.append(tr);
  };
  const field = document.createElement('code');
  field.textContent = f.field;
  row(t('fField'), field);
  const where = document.createDocumentFragment();
  const path = document.createElement('code');
  path.textContent = `${f.path} (${t('fFrom')[f.from] || f.from})`;
  where.append(path);
  if (f.line != null) {
    const a = document.createElement('a');
    a.className = 'line';
    a.textContent = ` ${t('line')(f.line, f.column)}`;
    a.addEventListener('click', () => goToLine(f.line, f.column));
    where.append(a);
  }
  row(t('fWhere'), where);
  row(t('fRequired'), f.required);
  row(t('fPresented'), f.presented);
  row(t('why'), f.why);
  box.replaceChildren(title, table);
  box.dataset.field = f.field;
  box.dataset.line = f.line == null ? '' : String(f.line);
}

// RFC 9396: field by field, what the body holds and what the user consented to, per detail of the
// rule's type (the same comparison the plugin makes).
function renderComparison(v) {
  const box = $('details-comparison');
  if (!v) { box.replaceChildren(); delete box.dataset.matches; return; }
  const title = document.createElement('strong');
  title.textContent = `${t('cmpTitle')(v.type)}${v.once ? ` · ${t('cmpOnce')}` : ''}`;
  const parts = [title];
  const show = (x) => (x === null || x === undefined ? t('absent') : JSON.stringify(x));
  if (!v.details.length) {
    const p = document.createElement('p');
    p.textContent = `${t('cmpNoDetails')}: ${v.refusal || ''}`;
    parts.push(p);
  }
  for (const d of v.details) {
    const table = document.createElement('table');
    table.className = 'cmp';
    table.dataset.index = String(d.index);
    const head = document.createElement('tr');
    for (const h of [t('cmpBody'), t('cmpValue'), t('cmpDetailN')(d.index), t('cmpConsented'), '']) {
      const th = document.createElement('th');
      th.textContent = h;
      head.append(th);
    }
    table.append(head);
    for (const f of d.fields) {
      const tr = document.createElement('tr');
      tr.className = f.matches ? 'match' : 'mismatch';
      tr.dataset.field = f.body_field;
      for (const text of [f.body_field, show(f.body_value), f.detail_field, show(f.detail_value), f.matches ? '✓' : '✗']) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      table.append(tr);
    }
    parts.push(table);
  }
  box.replaceChildren(...parts);
  box.dataset.matches = v.matches ? '1' : '0';
}

// ---- tests and compile --------------------------------------------------------------------------------

function runTests() {
  const out = JSON.parse(engine.tests(yaml.value));
  state.lastTests = out;
  renderTests(out);
}

function renderTests(out) {
  const summary = $('tests-summary');
  const body = $('test-results').tBodies[0];
  if (!Array.isArray(out)) {
    const n = (out.errors || []).length;
    summary.textContent = t('testsNotRun')(n);
    summary.className = 'summary bad';
    body.replaceChildren();
    document.body.dataset.tests = `not run`;
    return;
  }
  const passed = out.filter((o) => o.passed).length;
  const failed = out.length - passed;
  summary.textContent = t('testsSummary')(passed, failed);
  summary.className = `summary ${failed ? 'bad' : 'good'}`;
  const rows = out.map((o) => {
    const tr = document.createElement('tr');
    tr.className = o.passed ? 'pass' : 'fail';
    const mark = document.createElement('td');
    mark.className = 'mark';
    mark.textContent = o.passed ? '✓' : '✗';
    const name = document.createElement('td');
    name.textContent = o.name;
    const detail = document.createElement('td');
    detail.className = 'detail';
    detail.textContent = o.passed ? o.got : `${t('expected')} ${o.expected} · ${t('got')} ${o.got}`;
    tr.append(mark, name, detail);
    tr.addEventListener('click', () => {
      const i = state.testCases.findIndex((c) => c && c.name === o.name);
      if (i >= 0) { $('pick-test').value = String(i); pickTest(i); }
    });
    return tr;
  });
  body.replaceChildren(...rows);
  document.body.dataset.tests = `${passed} passed, ${failed} failed`;
}

function download() {
  const out = JSON.parse(engine.compile(yaml.value));
  if (!out.ok) {
    $('tests-summary').textContent = t('compileFailed')(out.errors.length);
    $('tests-summary').className = 'summary bad';
    return;
  }
  const m = /^name:\s*["']?([A-Za-z0-9._-]+)/m.exec(yaml.value);
  const file = `${m ? m[1] : 'policy'}.compiled.json`;
  const url = URL.createObjectURL(new Blob([`${out.json}\n`], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = file;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- wiring -------------------------------------------------------------------------------------------

function debounce(fn, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

async function main() {
  await init();
  yaml.value = engine.initial_policy();
  const onEdit = debounce(() => { state.focusLine = null; lintNow(); evaluateNow(); }, 120);
  yaml.addEventListener('input', onEdit);
  yaml.addEventListener('scroll', syncScroll);
  yaml.addEventListener('keydown', (e) => {
    if (e.key === 'Tab' && !e.shiftKey) {
      e.preventDefault();
      yaml.setRangeText('  ', yaml.selectionStart, yaml.selectionEnd, 'end');
      onEdit();
    }
  });
  // Editing the request by hand leaves the picked test: its expectation no longer applies.
  const unpick = () => { if (state.picked) { $('pick-test').value = ''; state.picked = null; renderPickedExpect(); } };
  for (const id of ['method', 'url', 'scheme', 'client-cert', 'dpop-key', 'revoked', 'request-body', 'repeated', 'binding', 'scope', 'acr', 'auth-age', 'expires-in', 'authz-details', 'claims']) {
    const later = debounce(evaluateNow, 80);
    $(id).addEventListener('input', () => { unpick(); later(); });
    $(id).addEventListener('change', () => { unpick(); evaluateNow(); });
  }
  $('has-token').addEventListener('change', () => { unpick(); tokenFieldsEnabled(); evaluateNow(); });
  $('pick-test').addEventListener('change', (e) => pickTest(e.target.value === '' ? -1 : Number(e.target.value)));
  $('run-tests').addEventListener('click', runTests);
  $('download').addEventListener('click', download);
  $('reset').addEventListener('click', () => { yaml.value = engine.initial_policy(); lintNow(); evaluateNow(); });
  for (const b of document.querySelectorAll('[data-lang]')) b.addEventListener('click', () => { lang = b.dataset.lang; applyLanguage(); });
  lintNow();
  applyLanguage();
  document.body.dataset.ready = '1';
}

main().catch((e) => {
  document.body.dataset.ready = 'failed';
  $('input-error').textContent = `the studio could not start: ${e}`;
});
