// Decrypts a compact JWE produced by fapi-as (src/jwe.rs) with panva/jose, an independent JOSE
// implementation: the interop proof of tests/jwe_interop.rs.
//
// stdin: {"jwk": <recipient's private JWK>, "jwe": "<compact JWE>", "verifyJwk": <optional public JWK>}
// stdout: {"protectedHeader": {...}, "plaintext": "<utf-8>", "claims": <nested JWT's claims, when verifyJwk>}
// Exit status 1 with jose's error code on stderr when decryption (or the nested JWT's check) fails.
import { compactDecrypt, importJWK, jwtVerify } from 'jose';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

try {
  const key = await importJWK(input.jwk, 'ECDH-ES');
  const { plaintext, protectedHeader } = await compactDecrypt(input.jwe, key, {
    keyManagementAlgorithms: ['ECDH-ES'],
    contentEncryptionAlgorithms: ['A256GCM', 'A128GCM'],
  });
  const out = { protectedHeader, plaintext: new TextDecoder().decode(plaintext) };
  if (input.verifyJwk) {
    const verifyKey = await importJWK(input.verifyJwk, input.verifyJwk.alg);
    const { payload } = await jwtVerify(out.plaintext, verifyKey, { algorithms: [input.verifyJwk.alg] });
    out.claims = payload;
  }
  process.stdout.write(JSON.stringify(out));
} catch (e) {
  process.stderr.write(`${e.code ?? 'ERROR'}: ${e.message}\n`);
  process.exit(1);
}
