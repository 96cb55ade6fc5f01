/**
 * Connections to upstreams: plain TCP, or TLS for `upstreams[].tls`
 * (verification on by default against the system CAs or `caFile`). One place
 * opens them for the request path and the active health checks alike, so
 * both speak to an upstream the same way.
 */
import * as net from 'node:net'
import * as tls from 'node:tls'
import { readFileSync } from 'node:fs'
import type { UpstreamConfig } from '../config/types'

/** What a thread needs to open TLS to an upstream (plain data: crosses postMessage). */
export interface UpstreamTls {
  /** SNI and the name verified; null = the address's host when it is a name (RFC 6066 §3: never an IP literal). */
  readonly serverName: string | null
  /** PEM of the CA(s) to trust instead of the system store; null = system store. */
  readonly ca: string | null
  readonly verify: boolean
}

/** The TLS settings of a configured upstream (reads caFile: throws naming it when it cannot). */
export function upstreamTlsOf (u: UpstreamConfig): UpstreamTls | null {
  const t = u.tls
  if (t === undefined || t === false) return null
  if (t === true) return { serverName: null, ca: null, verify: true }
  let ca: string | null = null
  if (t.caFile !== undefined) {
    try {
      ca = readFileSync(t.caFile, 'utf8')
    } catch (err) {
      throw new Error(`upstream ${u.address}: cannot read caFile ${t.caFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    }
  }
  return { serverName: t.serverName ?? null, ca, verify: t.verify }
}

interface Endpoint { host: string, port: number, tls?: UpstreamTls | null }

/**
 * Open a connection; listen for `connectEvent(entry)` before writing.
 * `prefix` (a PROXY protocol header) is written first on the TCP stream,
 * before the TLS handshake when there is one: a write made while connecting
 * is sent on 'connect' ahead of everything registered later.
 */
export function openUpstreamSocket (entry: Endpoint, prefix: Buffer | null = null, onread: net.OnReadOpts | null = null): net.Socket {
  const t = entry.tls ?? null
  // `onread` (a reused read buffer, src/net/read-arena.ts) on plain TCP only: TLS reads the raw socket itself
  const raw = t === null && onread !== null
    ? net.connect({ host: entry.host, port: entry.port, noDelay: true, onread })
    : net.connect({ host: entry.host, port: entry.port, noDelay: true })
  if (prefix !== null) raw.write(prefix)
  if (t === null) return raw
  const servername = t.serverName ?? (net.isIP(entry.host) === 0 ? entry.host : undefined)
  const socket = tls.connect({
    socket: raw,
    host: entry.host,
    servername,
    ...(t.ca !== null ? { ca: t.ca } : {}),
    rejectUnauthorized: t.verify,
    ALPNProtocols: ['http/1.1'],
    // the upstream's certificate names the configured serverName when the address is an IP
    ...(t.serverName !== null ? { checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(t.serverName as string, cert) } : {}),
  })
  socket.setNoDelay(true)
  return socket
}

/** 'secureConnect' for TLS (the request must wait for the handshake), 'connect' for TCP. */
export function connectEvent (entry: Endpoint): 'connect' | 'secureConnect' {
  return (entry.tls ?? null) === null ? 'connect' : 'secureConnect'
}
