// node-oidc-provider (v9) set to the profile scripts/bench-as measures on fapi-as: the token endpoint
// with client_credentials, private_key_jwt (ES256, jti replay refused), access tokens bound to the
// TLS client certificate (RFC 8705 cnf."x5t#S256") and issued as RFC 9068 JWTs (ES256), FAPI 2.0
// profile on. Served by node's https with requestCert (any certificate; the binding, not a CA, is
// what counts, as on fapi-as's mTLS listener). Storage: the provider's default in-memory adapter
// (client-assertion jti). Loopback only.
//
// Usage: node server.js CONFIG.json
//   CONFIG: { issuer, port, cert, key (server TLS PEM files), serverJwk (private ES256 JWK),
//             clientId, clientJwks (public JWKS), scope, resource }
import { readFileSync } from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// The client certificate of a connection, read once per TLS socket (keep-alive connections carry
// many requests; the certificate cannot change on a connection).
const peerCertificates = new WeakMap();
function getCertificate(ctx) {
  const { socket } = ctx;
  let cert = peerCertificates.get(socket);
  if (cert === undefined) {
    cert = typeof socket.getPeerX509Certificate === 'function'
      ? socket.getPeerX509Certificate() || null
      : null;
    peerCertificates.set(socket, cert);
  }
  return cert || undefined;
}

const provider = new Provider(config.issuer, {
  clients: [{
    client_id: config.clientId,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    id_token_signed_response_alg: 'ES256',
    jwks: config.clientJwks,
    tls_client_certificate_bound_access_tokens: true,
    scope: config.scope,
  }],
  jwks: { keys: [config.serverJwk] },
  scopes: config.scope.split(' '),
  clientAuthMethods: ['private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['ES256', 'PS256', 'EdDSA'],
  },
  ttl: { ClientCredentials: 300 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    fapi: { enabled: true, profile: '2.0' },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (resourceIndicator !== config.resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: config.scope,
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

provider.on('server_error', (ctx, err) => {
  console.error('server_error', err?.message);
});

const server = https.createServer({
  cert: readFileSync(config.cert),
  key: readFileSync(config.key),
  requestCert: true,
  rejectUnauthorized: false,
}, provider.callback());

server.listen(config.port, '127.0.0.1', () => {
  console.log(`node-oidc-provider listening on ${config.issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
