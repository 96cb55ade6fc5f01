/**
 * Certificates for TLS tests, made by the real `openssl` in a temp directory:
 * a CA, and leaves it signs with the SAN names a test asks for.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCa {
  dir: string
  caFile: string
  ca: string
  /** A leaf for `names` (DNS SANs) signed by this CA: paths of its PEM files. */
  leaf (file: string, names: string[], days?: number): { certFile: string, keyFile: string, cert: string }
  remove (): void
}

function openssl (args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

export function makeTestCa (subject = 'switchyard test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'swy-tls-'))
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3', '-subj', `/CN=${subject}`], dir)
  const caFile = join(dir, 'ca.pem')
  return {
    dir,
    caFile,
    ca: readFileSync(caFile, 'utf8'),
    leaf (file, names, days = 3) {
      writeFileSync(join(dir, `${file}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`)
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${file}.key`, '-out', `${file}.csr`, '-subj', `/CN=${names[0]}`], dir)
      openssl(['x509', '-req', '-in', `${file}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${file}.pem`, '-days', String(days), '-extfile', `${file}.ext`], dir)
      const certFile = join(dir, `${file}.pem`)
      return { certFile, keyFile: join(dir, `${file}.key`), cert: readFileSync(certFile, 'utf8') }
    },
    remove () { rmSync(dir, { recursive: true, force: true }) },
  }
}
