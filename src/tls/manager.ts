/**
 * The primary's TLS state: the certificates of every TLS listener (checked
 * here once, then sent to the threads as data) and the session-ticket keys
 * (generated here, shared by every thread so a session resumes on any
 * worker, rotated on a schedule).
 *
 * Start: a certificate that cannot be used throws CertificateError (the
 * caller exits 1 naming the file). Reload: such a listener keeps its previous
 * certificates and the reason is returned for the log and the admin answer.
 */
import { randomBytes } from 'node:crypto'
import type { Config, ListenerConfig } from '../config/types'
import { listenersOf, listenerName } from '../config/listeners'
import { loadCertificateFiles, CertificateError, type CertificateMaterial } from './certificates'
import type { TlsListenerMaterial, TlsMaterial } from './terminator'

/**
 * How long one ticket key encrypts new tickets. Node's contexts hold one key,
 * so a rotation also ends resumption of tickets issued under the previous key
 * (those clients do one full handshake): 12 h bounds how long a stolen key
 * decrypts recorded TLS 1.2 sessions (RFC 5077 §5.5) at the cost of two full
 * handshakes a day per client.
 */
export const TICKET_KEY_ROTATION_MS = 12 * 60 * 60 * 1000

/** One certificate in /api/status and the metrics. */
export interface CertificateStatus {
  listener: string
  names: readonly string[]
  subject: string
  issuer: string
  notAfter: string
  notAfterMs: number
  source: string
  expired: boolean
}

export class TlsManager {
  private listeners: Array<TlsListenerMaterial | null>
  /** Per listener: the files' certificates, and the ACME one (first, the default) when it has one. */
  private files: Array<readonly CertificateMaterial[]>
  private acme: Array<CertificateMaterial | null>
  private ticketKeys: Uint8Array
  private names: string[]

  /** Throws CertificateError (the first unusable file) when a TLS listener's certificates cannot be loaded. */
  constructor (config: Config) {
    const list = listenersOf(config)
    this.names = list.map(listenerName)
    this.listeners = list.map((l) => l.tls === undefined ? null : loadListener(l))
    this.files = this.listeners.map((m) => m === null ? [] : m.certificates)
    this.acme = list.map(() => null)
    this.ticketKeys = randomBytes(48)
  }

  static needed (config: Config): boolean {
    return listenersOf(config).some((l) => l.tls !== undefined)
  }

  get material (): TlsMaterial {
    return { listeners: this.listeners, ticketKeys: this.ticketKeys }
  }

  /**
   * Re-read every TLS listener's files (SIGHUP, POST /api/reload). A listener
   * whose files fail keeps what it had; the returned strings say which and why.
   */
  reload (config: Config): string[] {
    const problems: string[] = []
    const list = listenersOf(config)
    this.listeners = this.listeners.map((previous, i) => {
      const l = list[i]
      if (l === undefined || l.tls === undefined || previous === null) return previous
      try {
        const next = loadListener(l)
        this.files[i] = next.certificates
        return withAcme(next, this.acme[i])
      } catch (err) {
        problems.push(`${this.names[i]}: ${(err as Error).message}; keeping the previous certificates`)
        return previous
      }
    })
    return problems
  }

  /** A fresh ticket key (the schedule, or an operator). */
  rotateTicketKeys (): void {
    this.ticketKeys = randomBytes(48)
  }

  /** A listener's ACME certificate (issued, stored, or the self-signed fallback): first, before the files' ones. */
  setAcmeCertificate (listener: number, certificate: CertificateMaterial): void {
    const previous = this.listeners[listener]
    if (previous === null || previous === undefined) return
    this.acme[listener] = certificate
    this.listeners[listener] = withAcme({ ...previous, certificates: this.files[listener] }, certificate)
  }

  status (): CertificateStatus[] {
    const now = Date.now()
    const out: CertificateStatus[] = []
    this.listeners.forEach((m, i) => {
      if (m === null) return
      for (const c of m.certificates) {
        out.push({ listener: this.names[i], names: c.names, subject: c.subject, issuer: c.issuer, notAfter: new Date(c.notAfterMs).toISOString(), notAfterMs: c.notAfterMs, source: c.source, expired: c.notAfterMs <= now })
      }
    })
    return out
  }
}

function withAcme (m: TlsListenerMaterial, acme: CertificateMaterial | null): TlsListenerMaterial {
  return acme === null ? m : { ...m, certificates: [acme, ...m.certificates] }
}

function loadListener (l: ListenerConfig): TlsListenerMaterial {
  const tls = l.tls as NonNullable<ListenerConfig['tls']>
  const certificates = (tls.certificates ?? []).map(loadCertificateFiles)
  return { certificates, minVersion: tls.minVersion, ciphers: tls.ciphers ?? null, alpn: tls.alpn }
}

export { CertificateError }
