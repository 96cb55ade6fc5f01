/**
 * A self-signed certificate for names that have no real one yet (an ACME
 * listener before its first issuance): TLS keeps working, clients are told
 * the truth by the certificate's issuer, and the log says so.
 */
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import { describeCertificate, type CertificateMaterial } from './certificates'

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }

export async function selfSignedCertificate (names: readonly string[], days = 7): Promise<CertificateMaterial> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${names[0]}, O=switchyard self-signed fallback`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + days * 86_400_000),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value })))],
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${(pkcs8.toString('base64').match(/.{1,64}/g) as string[]).join('\n')}\n-----END PRIVATE KEY-----\n`
  return describeCertificate(cert.toString('pem') + '\n', keyPem, 'self-signed')
}
