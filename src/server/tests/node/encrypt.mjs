// Encrypts with panva/jose to a public JWK, for the reverse direction of tests/jwe_interop.rs
// (fapi-as's decrypt_with must open what an independent implementation produced).
//
// stdin: {"jwk": <recipient's public JWK>, "enc": "A256GCM", "plaintext": "<utf-8>", "cty": <optional>}
// stdout: the compact JWE.
import { CompactEncrypt, importJWK } from 'jose';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const key = await importJWK(input.jwk, 'ECDH-ES');
const header = { alg: 'ECDH-ES', enc: input.enc };
if (input.jwk.kid) header.kid = input.jwk.kid;
if (input.cty) header.cty = input.cty;
const jwe = await new CompactEncrypt(new TextEncoder().encode(input.plaintext))
  .setProtectedHeader(header)
  .encrypt(key);
process.stdout.write(jwe);
