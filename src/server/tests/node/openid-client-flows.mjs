// fapi-as driven by openid-client 6 (panva/openid-client, on oauth4webapi), a certified FAPI 2.0
// client that nobody here wrote; run by tests/openid_client.rs.
//
// Input (JSON on stdin): { issuer, ca_pem, cert_pem, key_pem, redirect_uri, initial_access_token,
// user: {username, password, totp_secret}, clients: { dpop: {client_id, jwk}, mtls: {client_id,
// jwk}, self_signed: {client_id} } } — the PEM values are file paths; `jwk` is the client's private
// signing key.
// Output (JSON on stdout): per flow, what openid-client accepted (claims, token types, binding
// thumbprints, introspection results) or the error it raised. Never a whole token or key.
//
// Flows:
// - dpop: private_key_jwt (RFC 7523), PAR (RFC 9126) with a DPoP proof (dpop_jkt, RFC 9449 §10),
//   PKCE S256, sign-in + TOTP + consent through the real pages (fetch + cookie jar), the code grant
//   (openid-client checks iss per RFC 9207 and the id_token), userinfo, refresh, client_credentials,
//   introspection, revocation (RFC 7009) then introspection says inactive (RFC 7662). DPoP nonces
//   (RFC 9449 §8) are answered by openid-client's own use_dpop_nonce retry.
// - mtls: private_key_jwt over the mtls_endpoint_aliases (RFC 8705 §5) with the client certificate,
//   JARM (response_mode=jwt), certificate-bound tokens (cnf.x5t#S256), signed introspection
//   responses (RFC 9701), refresh, revocation.
// - self_signed: self_signed_tls_client_auth (RFC 8705 §2.2), client_credentials, revocation.
// - registered: dynamic client registration (RFC 7591) with an initial access token, a client that
//   asks for encrypted id_tokens (ECDH-ES, A256GCM), which openid-client decrypts and verifies.
// - rar: Rich Authorization Requests (RFC 9396): the mtls client pushes a transfer
//   (`authorization_details`, payment_initiation) in a signed request object (JAR, where
//   oauth4webapi puts it as a JSON array, §3) through PAR; `rar_user` (another demo user, so that
//   the TOTP code of `user` is not spent twice) signs in with TOTP, which transfers need, and picks
//   `rar_debtor` on the consent page; the token response (§7) and introspection (§9.2) carry the
//   transfer enriched with that debtor account.

import * as client from 'openid-client'
import { Agent, fetch as undiciFetch } from 'undici'
import { createHmac, webcrypto } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as jose from 'jose'

const input = JSON.parse(readFileSync(0, 'utf8'))
const ca = readFileSync(input.ca_pem)
// Trust the test CA for these connections only (TLS verification stays on).
const plainAgent = new Agent({ connect: { ca } })
const mtlsAgent = new Agent({
  connect: { ca, cert: readFileSync(input.cert_pem), key: readFileSync(input.key_pem) },
})

/** A fetch through `agent` that counts the server's DPoP nonce challenges (RFC 9449 §8, §9). */
function fetcher(agent, stats) {
  return async (url, options) => {
    const res = await undiciFetch(url, { ...options, dispatcher: agent })
    const path = new URL(url).pathname
    if (path === '/introspect') stats.introspection_content_types.push(res.headers.get('content-type'))
    if (res.status === 400 || res.status === 401) {
      const www = res.headers.get('www-authenticate') ?? ''
      let body = ''
      try {
        body = await res.clone().text()
      } catch {}
      if (www.includes('use_dpop_nonce') || body.includes('use_dpop_nonce')) {
        stats.nonce_challenges.push(path)
      }
    }
    return res
  }
}

const b64urlJson = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
/** The claims of a JWT (signature checked elsewhere: openid-client for id_tokens; here only read). */
const claimsOf = (jwt) => b64urlJson(jwt.split('.')[1])
const headerOf = (jwt) => b64urlJson(jwt.split('.')[0])

/** RFC 6238 TOTP (SHA-1, 30 s steps, 6 digits) from a base32 secret (RFC 4648 §6). */
function totp(secretB32, now = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = ''
  for (const c of secretB32.replace(/=+$/, '').toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, '0')
  }
  const bytes = []
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2))
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 1000 / 30)))
  const mac = createHmac('sha1', Buffer.from(bytes)).update(counter).digest()
  const off = mac[mac.length - 1] & 0x0f
  const bin = (mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000
  return String(bin).padStart(6, '0')
}

const decodeEntities = (s) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')

/**
 * A person in a browser: follows 303s, keeps cookies, fills the sign-in, TOTP and consent forms
 * (field names from src/frontchannel/pages.rs). Returns the redirect to the client's redirect URI.
 */
class Browser {
  /** `user`: who signs in (default input.user); `debtor`: the account chosen for a transfer. */
  constructor(base, { user, debtor } = {}) {
    this.base = base
    this.cookies = new Map()
    this.steps = []
    this.user = user ?? input.user
    this.debtor = debtor
  }

  async request(url, init = {}) {
    const headers = { 'accept-language': 'en', ...(init.headers ?? {}) }
    if (this.cookies.size) {
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    }
    const res = await undiciFetch(new URL(url, this.base), {
      ...init,
      headers,
      redirect: 'manual',
      dispatcher: plainAgent,
    })
    for (const sc of res.headers.getSetCookie()) {
      const [pair] = sc.split(';')
      const i = pair.indexOf('=')
      const [k, v] = [pair.slice(0, i).trim(), pair.slice(i + 1).trim()]
      if (!v || /max-age=0/i.test(sc)) this.cookies.delete(k)
      else this.cookies.set(k, v)
    }
    return res
  }

  /** Drives the pages from the authorization URL to the redirect back to the client. */
  async authorize(authorizationUrl, redirectUri) {
    let res = await this.request(authorizationUrl)
    for (let i = 0; i < 12; i++) {
      if (res.status === 303 || res.status === 302) {
        const location = res.headers.get('location')
        if (location.startsWith(redirectUri)) return new URL(location)
        this.steps.push(`redirect ${location}`)
        res = await this.request(location)
        continue
      }
      const html = await res.text()
      if (res.status !== 200) throw new Error(`page ${res.status}: ${pageText(html)}`)
      const form = [...html.matchAll(/<form method="post" action="([^"]+)">([\s\S]*?)<\/form>/g)].find(
        (m) => ['/login', '/login/totp', '/consent'].includes(m[1]),
      )
      if (!form) throw new Error(`no sign-in, TOTP or consent form: ${pageText(html)}`)
      const [, action, inner] = form
      const fields = new URLSearchParams()
      for (const m of inner.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
        fields.set(m[1], decodeEntities(m[2]))
      }
      if (action === '/login') {
        if (!inner.includes('id="username"') || !inner.includes('id="password"')) {
          throw new Error('sign-in form without username/password fields')
        }
        fields.set('username', this.user.username)
        fields.set('password', this.user.password)
      } else if (action === '/login/totp') {
        if (!inner.includes('name="code"')) throw new Error('TOTP form without a code field')
        fields.set('code', totp(this.user.totp_secret))
      } else {
        if (!inner.includes('id="approve"')) throw new Error('consent form without an approve button')
        this.steps.push(`consent shows ${JSON.stringify(scopeItems(html))}`)
        const transfers = [...html.matchAll(/<dd class="amount" data-testid="transfer-amount">([^<]*)<\/dd>/g)].map((m) => m[1])
        if (transfers.length) this.steps.push(`consent shows transfers ${JSON.stringify(transfers)}`)
        const debtors = [...inner.matchAll(/name="debtor_account" value="([^"]*)"/g)].map((m) => m[1])
        if (debtors.length) {
          this.steps.push(`consent offers debtor accounts ${JSON.stringify(debtors)}`)
          if (!debtors.includes(this.debtor)) throw new Error(`debtor ${this.debtor} not offered: ${debtors}`)
          fields.set('debtor_account', this.debtor)
        }
        fields.set('decision', 'approve')
      }
      this.steps.push(`post ${action}`)
      res = await this.request(action, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: fields.toString(),
      })
    }
    throw new Error(`no redirect to the client after: ${this.steps.join(', ')}`)
  }
}

/** The readable text of a page, for error messages. */
function pageText(html) {
  const body = html.replace(/<head>[\s\S]*?<\/head>/, '').replace(/<[^>]+>/g, ' ')
  return decodeEntities(body).replace(/\s+/g, ' ').trim().slice(0, 400)
}

function scopeItems(html) {
  const ul = html.match(/<ul id="scopes">([\s\S]*?)<\/ul>/)
  if (!ul) return []
  return [...ul[1].matchAll(/<li[^>]*>([\s\S]*?)<\/li>/g)].map((m) => m[1].replace(/<[^>]+>/g, '').trim())
}

async function privateKey(jwk) {
  const { d, x, y, crv, kty } = jwk
  const key = await webcrypto.subtle.importKey(
    'jwk',
    { kty, crv, x, y, d },
    { name: 'ECDSA', namedCurve: crv },
    false,
    ['sign'],
  )
  return { key, kid: jwk.kid }
}

/** What the step reveals of a token response: never the token itself. */
function describeTokens(tokens) {
  const out = {
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    has_refresh_token: typeof tokens.refresh_token === 'string',
    has_id_token: typeof tokens.id_token === 'string',
  }
  if (typeof tokens.access_token === 'string') {
    out.access_header = headerOf(tokens.access_token)
    out.access_claims = claimsOf(tokens.access_token)
  }
  return out
}

function describeError(err) {
  return {
    name: err?.name,
    message: err?.message,
    code: err?.code,
    error: err?.error ?? err?.cause?.error,
    error_description: err?.error_description ?? err?.cause?.error_description,
    status: err?.status ?? err?.cause?.status,
  }
}

/** Runs `fn`; when it throws, records the error openid-client raised under `name` and rethrows. */
async function step(out, name, fn) {
  try {
    return await fn()
  } catch (err) {
    out[name] = { failed: describeError(err) }
    throw err
  }
}

async function codeFlow(config, browser, out, { dpop, params }) {
  const verifier = client.randomPKCECodeVerifier()
  const challenge = await client.calculatePKCECodeChallenge(verifier)
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = await step(out, 'par', async () => {
    const u = await client.buildAuthorizationUrlWithPAR(
      config,
      {
        redirect_uri: input.redirect_uri,
        scope: 'openid accounts',
        code_challenge: challenge,
        code_challenge_method: 'S256',
        state,
        nonce,
        ui_locales: 'en',
        ...params,
      },
      dpop ? { DPoP: dpop } : undefined,
    )
    return u
  })
  out.par = {
    authorization_endpoint: `${url.origin}${url.pathname}`,
    query_keys: [...url.searchParams.keys()].sort(),
  }
  const callback = await step(out, 'browser', async () => {
    const cb = await browser.authorize(url, input.redirect_uri)
    return cb
  })
  out.browser = {
    steps: browser.steps,
    callback_keys: [...callback.searchParams.keys()].sort(),
    callback_iss: callback.searchParams.get('iss'),
  }
  if (callback.searchParams.has('response')) {
    const response = callback.searchParams.get('response')
    out.browser.jarm_header = headerOf(response)
    out.browser.jarm_parts = response.split('.').length
    // An encrypted JARM response (5 parts) has no readable claims: openid-client decrypts it.
    if (out.browser.jarm_parts === 3) {
      out.browser.jarm_claim_keys = Object.keys(claimsOf(response)).sort()
    }
  }
  const tokens = await step(out, 'code_grant', () =>
    client.authorizationCodeGrant(
      config,
      callback,
      { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
      undefined,
      dpop ? { DPoP: dpop } : undefined,
    ),
  )
  const idClaims = tokens.claims()
  out.code_grant = {
    ...describeTokens(tokens),
    id_token_header: headerOf(tokens.id_token),
    id_token: {
      iss: idClaims.iss,
      aud: idClaims.aud,
      sub: idClaims.sub,
      nonce_matches: idClaims.nonce === nonce,
      acr: idClaims.acr,
      amr: idClaims.amr,
      has_auth_time: typeof idClaims.auth_time === 'number',
    },
  }
  return tokens
}

async function introspect(config, token, hint) {
  const r = await client.tokenIntrospection(config, token, hint ? { token_type_hint: hint } : undefined)
  return {
    active: r.active,
    client_id: r.client_id,
    scope: r.scope,
    token_type: r.token_type,
    cnf: r.cnf,
    sub: r.sub,
  }
}

async function dpopFlow(out) {
  const c = input.clients.dpop
  const stats = { nonce_challenges: [], introspection_content_types: [] }
  out.stats = stats
  const auth = client.PrivateKeyJwt(await privateKey(c.jwk))
  const configured = await step(out, 'discovery', () =>
    client.discovery(new URL(input.issuer), c.client_id, undefined, auth, {
      [client.customFetch]: fetcher(plainAgent, stats),
    }),
  )
  out.discovery = {
    issuer: configured.serverMetadata().issuer,
    dpop_algs: configured.serverMetadata().dpop_signing_alg_values_supported,
    mtls_endpoint_aliases: Object.keys(configured.serverMetadata().mtls_endpoint_aliases ?? {}).sort(),
  }
  const keyPair = await client.randomDPoPKeyPair('ES256')
  const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey), 'sha256')
  out.dpop_jkt = jkt
  // Verify the id_token's signature against the AS's jwks_uri too (not only TLS-trusted).
  client.enableNonRepudiationChecks(configured)
  const dpop = client.getDPoPHandle(configured, keyPair)
  const browser = new Browser(input.issuer)
  const tokens = await codeFlow(configured, browser, out, {
    dpop,
    params: { acr_values: 'urn:bank:acr:totp' },
  })
  out.userinfo = await step(out, 'userinfo', async () => {
    const u = await client.fetchUserInfo(configured, tokens.access_token, tokens.claims().sub, { DPoP: dpop })
    return { sub: u.sub, name: u.name }
  })
  out.refresh = await step(out, 'refresh', async () =>
    describeTokens(await client.refreshTokenGrant(configured, tokens.refresh_token, undefined, { DPoP: dpop })),
  )
  // Without its DPoP key the refresh token is useless (RFC 9449 §5: bound refresh tokens).
  out.refresh_other_key = await (async () => {
    const other = client.getDPoPHandle(configured, await client.randomDPoPKeyPair('ES256'))
    try {
      await client.refreshTokenGrant(configured, tokens.refresh_token, undefined, { DPoP: other })
      return { refused: false }
    } catch (err) {
      return { refused: true, ...describeError(err) }
    }
  })()
  out.client_credentials = await step(out, 'client_credentials', async () =>
    describeTokens(await client.clientCredentialsGrant(configured, { scope: 'accounts' }, { DPoP: dpop })),
  )
  out.introspection_before = await step(out, 'introspection_before', () =>
    introspect(configured, tokens.access_token),
  )
  await step(out, 'revocation', () => client.tokenRevocation(configured, tokens.access_token))
  out.revocation = { ok: true }
  out.introspection_after = await step(out, 'introspection_after', () =>
    introspect(configured, tokens.access_token),
  )
  // Revoking the refresh token ends the grant: the next refresh is refused.
  await step(out, 'refresh_revocation', () =>
    client.tokenRevocation(configured, tokens.refresh_token, { token_type_hint: 'refresh_token' }),
  )
  out.refresh_revocation = { ok: true }
  out.refresh_after_revocation = await (async () => {
    try {
      await client.refreshTokenGrant(configured, tokens.refresh_token, undefined, { DPoP: dpop })
      return { refused: false }
    } catch (err) {
      return { refused: true, ...describeError(err) }
    }
  })()
}

async function mtlsFlow(out) {
  const c = input.clients.mtls
  const stats = { nonce_challenges: [], introspection_content_types: [] }
  out.stats = stats
  const config = await step(out, 'discovery', async () =>
    client.discovery(
      new URL(input.issuer),
      c.client_id,
      // RFC 8705 §5: PAR, token, userinfo, revocation and introspection through the aliases.
      { use_mtls_endpoint_aliases: true, introspection_signed_response_alg: 'ES256' },
      client.PrivateKeyJwt(await privateKey(c.jwk)),
      { [client.customFetch]: fetcher(mtlsAgent, stats) },
    ),
  )
  out.discovery = { issuer: config.serverMetadata().issuer }
  client.enableNonRepudiationChecks(config)
  client.useJwtResponseMode(config)
  // RFC 9701 signed introspection responses are checked against the AS's JWKS by oauth4webapi.
  const browser = new Browser(input.issuer)
  const tokens = await codeFlow(config, browser, out, { params: { scope: 'openid accounts payments' } })
  out.userinfo = await step(out, 'userinfo', async () => {
    const u = await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub)
    return { sub: u.sub, name: u.name }
  })
  out.refresh = await step(out, 'refresh', async () =>
    describeTokens(await client.refreshTokenGrant(config, tokens.refresh_token)),
  )
  out.client_credentials = await step(out, 'client_credentials', async () =>
    describeTokens(await client.clientCredentialsGrant(config, { scope: 'accounts' })),
  )
  out.introspection_before = await step(out, 'introspection_before', () => introspect(config, tokens.access_token))
  await step(out, 'revocation', () => client.tokenRevocation(config, tokens.access_token))
  out.revocation = { ok: true }
  out.introspection_after = await step(out, 'introspection_after', () => introspect(config, tokens.access_token))
}

async function selfSignedFlow(out) {
  const c = input.clients.self_signed
  const stats = { nonce_challenges: [], introspection_content_types: [] }
  out.stats = stats
  const config = await step(out, 'discovery', () =>
    client.discovery(new URL(input.issuer), c.client_id, { use_mtls_endpoint_aliases: true }, client.TlsClientAuth(), {
      [client.customFetch]: fetcher(mtlsAgent, stats),
    }),
  )
  const tokens = await step(out, 'client_credentials', () => client.clientCredentialsGrant(config, { scope: 'accounts' }))
  out.client_credentials = describeTokens(tokens)
  out.introspection_before = await step(out, 'introspection_before', () => introspect(config, tokens.access_token))
  await step(out, 'revocation', () => client.tokenRevocation(config, tokens.access_token))
  out.revocation = { ok: true }
  out.introspection_after = await step(out, 'introspection_after', () => introspect(config, tokens.access_token))
}

async function registeredFlow(out) {
  const stats = { nonce_challenges: [], introspection_content_types: [] }
  out.stats = stats
  // The client makes its own keys: a signing key (private_key_jwt) and an encryption key (JWE).
  const sig = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])
  const enc = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits'])
  const sigJwk = { ...(await jose.exportJWK(sig.publicKey)), kid: 'dcr-sig', use: 'sig', alg: 'ES256' }
  const encJwk = { ...(await jose.exportJWK(enc.publicKey)), kid: 'dcr-enc', use: 'enc', alg: 'ECDH-ES' }
  const auth = client.PrivateKeyJwt({ key: sig.privateKey, kid: 'dcr-sig' })
  const registered = await step(out, 'registration', () =>
    client.dynamicClientRegistration(
      new URL(input.issuer),
      {
        client_name: 'openid-client DCR',
        redirect_uris: [input.redirect_uri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        tls_client_certificate_bound_access_tokens: true,
        scope: 'openid accounts',
        jwks: { keys: [sigJwk, encJwk] },
        id_token_signed_response_alg: 'ES256',
        id_token_encrypted_response_alg: 'ECDH-ES',
        id_token_encrypted_response_enc: 'A256GCM',
        authorization_signed_response_alg: 'ES256',
        authorization_encrypted_response_alg: 'ECDH-ES',
        authorization_encrypted_response_enc: 'A256GCM',
        use_mtls_endpoint_aliases: true,
      },
      auth,
      { initialAccessToken: input.initial_access_token, [client.customFetch]: fetcher(mtlsAgent, stats) },
    ),
  )
  const meta = registered.clientMetadata()
  // use_mtls_endpoint_aliases is the client's own setting, not registered metadata: the server's
  // answer (RFC 7591 §3.2.1) does not echo it, so the configuration is made again with it.
  const config = new client.Configuration(
    registered.serverMetadata(),
    meta.client_id,
    { ...meta, use_mtls_endpoint_aliases: true },
    auth,
  )
  config[client.customFetch] = fetcher(mtlsAgent, stats)
  out.registration = {
    client_id_issued: typeof meta.client_id === 'string' && meta.client_id.length > 0,
    has_registration_access_token: typeof meta.registration_access_token === 'string',
    has_client_secret: 'client_secret' in meta,
    token_endpoint_auth_method: meta.token_endpoint_auth_method,
    tls_client_certificate_bound_access_tokens: meta.tls_client_certificate_bound_access_tokens,
    id_token_encrypted_response_alg: meta.id_token_encrypted_response_alg,
    authorization_encrypted_response_alg: meta.authorization_encrypted_response_alg,
    authorization_encrypted_response_enc: meta.authorization_encrypted_response_enc,
  }
  client.enableDecryptingResponses(config, ['A256GCM'], { key: enc.privateKey, kid: 'dcr-enc', alg: 'ECDH-ES' })
  client.enableNonRepudiationChecks(config)
  // JARM (response_mode=jwt), signed then encrypted to the client's key: openid-client decrypts it.
  client.useJwtResponseMode(config)
  const browser = new Browser(input.issuer)
  const tokens = await codeFlow(config, browser, out, { params: {} })
  const decrypted = client.getDecryptedResponses(tokens)
  const jwe = tokens.id_token.split('.')
  out.id_token_encryption = {
    compact_parts: jwe.length,
    header: b64urlJson(jwe[0]),
    inner_signed: typeof decrypted?.id_token?.token_endpoint === 'string'
      ? headerOf(decrypted.id_token.token_endpoint)
      : null,
  }
  out.code_grant.client_id = meta.client_id
}

async function rarFlow(out) {
  const c = input.clients.mtls
  const stats = { nonce_challenges: [], introspection_content_types: [] }
  const config = await step(out, 'discovery', async () =>
    client.discovery(
      new URL(input.issuer),
      c.client_id,
      { use_mtls_endpoint_aliases: true },
      client.PrivateKeyJwt(await privateKey(c.jwk)),
      { [client.customFetch]: fetcher(mtlsAgent, stats) },
    ),
  )
  out.discovery = {
    authorization_details_types_supported: config.serverMetadata().authorization_details_types_supported,
  }
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const params = {
    redirect_uri: input.redirect_uri,
    scope: 'payments',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    ui_locales: 'en',
    authorization_details: JSON.stringify(input.rar_details),
  }
  // JAR (RFC 9101) then PAR: the request object goes through the PAR endpoint.
  const url = await step(out, 'par', async () => {
    const jar = await client.buildAuthorizationUrlWithJAR(config, params, await privateKey(c.jwk))
    out.request_object_details = claimsOf(jar.searchParams.get('request')).authorization_details
    return client.buildAuthorizationUrlWithPAR(config, jar.searchParams)
  })
  const browser = new Browser(input.issuer, { user: input.rar_user, debtor: input.rar_debtor })
  const callback = await step(out, 'browser', () => browser.authorize(url, input.redirect_uri))
  out.browser = { steps: browser.steps, callback_keys: [...callback.searchParams.keys()].sort() }
  const tokens = await step(out, 'code_grant', () =>
    client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state }),
  )
  out.code_grant = { ...describeTokens(tokens), authorization_details: tokens.authorization_details }
  out.introspection = await step(out, 'introspection', async () => {
    const r = await client.tokenIntrospection(config, tokens.access_token)
    return { active: r.active, authorization_details: r.authorization_details }
  })
}

const result = {}
for (const [name, flow] of [
  ['rar', rarFlow],
  ['dpop', dpopFlow],
  ['mtls', mtlsFlow],
  ['self_signed', selfSignedFlow],
  ['registered', registeredFlow],
]) {
  const out = (result[name] = {})
  try {
    await flow(out)
  } catch (err) {
    out.error = describeError(err)
    out.stack = String(err?.stack ?? '').split('\n').slice(0, 4)
  }
}
process.stdout.write(JSON.stringify(result))
await plainAgent.close()
await mtlsAgent.close()
