/**
 * Certificates as every thread uses them: read from PEM files (or made by
 * ACME / the self-signed fallback) on the primary, checked once, and sent to
 * the threads as plain data (PEM strings cross postMessage; SecureContexts do not).
 */
import { readFileSync } from 'node:fs'
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import { SwitchyardError } from '../errors'
import type { CertificateFileConfig } from '../config/types'

/** One certificate with its key, as the primary sends it to the threads. */
export interface CertificateMaterial {
  /** The DNS names it covers, lower case: SAN dNSNames (the subject CN only when there is no SAN). */
  readonly names: readonly string[]
  /** Leaf first; a chain in the file is sent whole. */
  readonly certPem: string
  readonly keyPem: string
  readonly subject: string
  readonly issuer: string
  readonly notAfterMs: number
  /** Where it came from: the certFile path, 'acme', or 'self-signed'. */
  readonly source: string
}

/** A certificate that cannot be used: names the file and says why. */
export class CertificateError extends SwitchyardError {
  readonly file: string
  constructor (file: string, reason: string) {
    super('SWY_ERR_TLS_CERTIFICATE', `${file}: ${reason}`)
    this.name = 'CertificateError'
    this.file = file
  }
}

function readPem (file: string, what: string): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new CertificateError(file, `cannot read the ${what} (${e.code ?? e.message})`)
  }
  if (!text.includes('-----BEGIN ')) throw new CertificateError(file, `the ${what} is not PEM (no -----BEGIN line)`)
  return text
}

/** Read and check a certFile/keyFile pair. Throws CertificateError naming the file at fault. */
export function loadCertificateFiles (files: CertificateFileConfig): CertificateMaterial {
  const certPem = readPem(files.certFile, 'certificate')
  const keyPem = readPem(files.keyFile, 'private key')
  return describeCertificate(certPem, keyPem, files.certFile, files.keyFile)
}

/** Check a PEM pair (parse, key matches, OpenSSL accepts it) and describe it. */
export function describeCertificate (certPem: string, keyPem: string, certSource: string, keySource = certSource): CertificateMaterial {
  let leaf: X509Certificate
  try {
    leaf = new X509Certificate(certPem)
  } catch (err) {
    throw new CertificateError(certSource, `not a valid certificate (${(err as Error).message})`)
  }
  let key: KeyObject
  try {
    key = createPrivateKey(keyPem)
  } catch (err) {
    throw new CertificateError(keySource, `not a valid private key (${(err as Error).message})`)
  }
  if (!leaf.checkPrivateKey(key)) throw new CertificateError(keySource, `the private key does not match the certificate in ${certSource}`)
  try {
    createSecureContext({ cert: certPem, key: keyPem })
  } catch (err) {
    throw new CertificateError(certSource, `rejected by OpenSSL (${(err as Error).message})`)
  }
  return {
    names: certificateNames(leaf),
    certPem,
    keyPem,
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    notAfterMs: Date.parse(leaf.validTo),
    source: certSource,
  }
}

/** RFC 6125 §6.4.4: the CN is only a fallback when the certificate has no DNS SAN. */
function certificateNames (leaf: X509Certificate): string[] {
  const names: string[] = []
  const san = leaf.subjectAltName
  if (san !== undefined) {
    for (const part of san.split(', ')) if (part.startsWith('DNS:')) names.push(part.slice(4).toLowerCase())
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(leaf.subject)
    if (cn !== null) names.push(cn[1].toLowerCase())
  }
  return names
}

/** Does a certificate name cover `host`? Exact, or `*.example.com` for exactly one more label (RFC 6125 §6.4.3). */
export function nameCovers (name: string, host: string): boolean {
  if (name === host) return true
  if (!name.startsWith('*.')) return false
  const dot = host.indexOf('.')
  return dot > 0 && host.slice(dot + 1) === name.slice(2)
}
