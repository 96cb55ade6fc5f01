/**
 * TLS termination on one thread (a worker, or the primary in sequential
 * mode): one `tls.Server` per TLS listener that never listens. The thread is
 * handed a connected TCP socket and gives it to that server ('connection'),
 * which wraps it in a server-side TLSSocket with the listener's contexts and
 * runs the handshake on this thread (OpenSSL work scales with the workers).
 * The decrypted stream then goes to the unchanged request path.
 *
 * Certificates and the session-ticket keys come from the primary as data
 * (TlsListenerMaterial): every thread builds identical contexts with the same
 * ticket keys, so a ticket issued by one worker resumes on any other
 * (RFC 8446 §2.2, RFC 5077). New material replaces the contexts for new
 * handshakes only: connections already up keep theirs.
 */
import * as tls from 'node:tls'
import type { CertificateMaterial } from './certificates'
import { nameCovers } from './certificates'
import type { TlsVersion } from '../config/types'

/** A TLS listener's settings and certificates as a thread needs them (plain data: crosses postMessage). */
export interface TlsListenerMaterial {
  /** The first is the default (no SNI, or a name no certificate covers). */
  readonly certificates: readonly CertificateMaterial[]
  readonly minVersion: TlsVersion
  readonly ciphers: string | null
  readonly alpn: readonly string[]
}

/** Everything TLS the threads need: per listener (null = plain), and the shared ticket keys (48 bytes). */
export interface TlsMaterial {
  readonly listeners: ReadonlyArray<TlsListenerMaterial | null>
  readonly ticketKeys: Uint8Array
}

export type HandshakeDone = (socket: tls.TLSSocket) => void
export type HandshakeFailed = (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => void

export class TlsTerminator {
  readonly server: tls.Server
  private exact = new Map<string, tls.SecureContext>()
  private wildcard = new Map<string, tls.SecureContext>()
  private fallback: tls.SecureContext

  constructor (material: TlsListenerMaterial, ticketKeys: Uint8Array, handshakeTimeoutMs: number, onSecure: HandshakeDone, onFailure: HandshakeFailed) {
    this.fallback = this.build(material, ticketKeys)
    this.server = tls.createServer({
      ...serverOptions(material, ticketKeys),
      handshakeTimeout: handshakeTimeoutMs,
      SNICallback: (servername, cb) => { cb(null, this.select(servername)) },
    })
    this.server.on('secureConnection', onSecure)
    // with a listener here the TLSSocket is not destroyed for us (node's _tls_wrap): onFailure must
    this.server.on('tlsClientError', onFailure)
  }

  /** New certificates or ticket keys: new handshakes use them, open connections keep theirs. */
  update (material: TlsListenerMaterial, ticketKeys: Uint8Array): void {
    this.fallback = this.build(material, ticketKeys)
    this.server.setSecureContext(serverOptions(material, ticketKeys))
  }

  /** Start the handshake on a connected socket (unread bytes already in it are the ClientHello's start). */
  accept (socket: import('node:net').Socket): void {
    this.server.emit('connection', socket)
  }

  /** SNI (RFC 6066 §3): an exact name, then a wildcard for the first label, then the default. */
  select (servername: string): tls.SecureContext {
    const name = servername.toLowerCase()
    const exact = this.exact.get(name)
    if (exact !== undefined) return exact
    const dot = name.indexOf('.')
    if (dot > 0) {
      const wild = this.wildcard.get(name.slice(dot + 1))
      if (wild !== undefined) return wild
    }
    return this.fallback
  }

  private build (material: TlsListenerMaterial, ticketKeys: Uint8Array): tls.SecureContext {
    const exact = new Map<string, tls.SecureContext>()
    const wildcard = new Map<string, tls.SecureContext>()
    let first: tls.SecureContext | null = null
    for (const cert of material.certificates) {
      const context = tls.createSecureContext(contextOptions(material, cert))
      setTicketKeys(context, ticketKeys)
      if (first === null) first = context
      for (const name of cert.names) {
        // the first certificate to claim a name keeps it
        if (name.startsWith('*.')) { if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), context) } else if (!exact.has(name)) exact.set(name, context)
      }
    }
    this.exact = exact
    this.wildcard = wildcard
    return first as tls.SecureContext
  }
}

function contextOptions (material: TlsListenerMaterial, cert: CertificateMaterial): tls.SecureContextOptions {
  return {
    cert: cert.certPem,
    key: cert.keyPem,
    minVersion: material.minVersion,
    ...(material.ciphers !== null ? { ciphers: material.ciphers } : {}),
    // the same on every thread: a session (ticket) is only accepted in the context it was issued for
    sessionIdContext: 'switchyard',
  }
}

function serverOptions (material: TlsListenerMaterial, ticketKeys: Uint8Array): tls.TlsOptions {
  const first = material.certificates[0]
  return {
    ...contextOptions(material, first),
    ALPNProtocols: [...material.alpn],
    ticketKeys: Buffer.from(ticketKeys.buffer, ticketKeys.byteOffset, ticketKeys.byteLength),
  }
}

function setTicketKeys (context: tls.SecureContext, keys: Uint8Array): void {
  (context as unknown as { context: { setTicketKeys (k: Buffer): void } }).context.setTicketKeys(Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength))
}

/** Does any certificate of the list cover `host`? (status and warnings) */
export function covered (certificates: readonly CertificateMaterial[], host: string): boolean {
  return certificates.some((c) => c.names.some((n) => nameCovers(n, host)))
}
