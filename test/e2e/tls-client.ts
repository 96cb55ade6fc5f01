/**
 * A small HTTPS client over one tls.connect socket: requests written by hand
 * (keep-alive under the test's control), responses framed by Content-Length.
 */
import * as tls from 'node:tls'

export interface TlsResponse { status: number, headers: Record<string, string>, body: string }

export class TlsClient {
  readonly socket: tls.TLSSocket
  session: Buffer | null = null
  private buffered = Buffer.alloc(0)
  private waiter: (() => void) | null = null
  closed = false

  private constructor (socket: tls.TLSSocket) {
    this.socket = socket
    socket.on('session', (s: Buffer) => { this.session = s })
    socket.on('data', (c: Buffer) => { this.buffered = Buffer.concat([this.buffered, c]); this.wake() })
    socket.on('close', () => { this.closed = true; this.wake() })
    socket.on('error', () => {})
  }

  private wake (): void { const w = this.waiter; this.waiter = null; if (w !== null) w() }

  static async connect (port: number, options: tls.ConnectionOptions = {}): Promise<TlsClient> {
    return await new Promise<TlsClient>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...options })
      const client = new TlsClient(socket)
      socket.once('secureConnect', () => resolve(client))
      socket.once('error', reject)
    })
  }

  get certificate (): tls.PeerCertificate { return this.socket.getPeerCertificate() }

  async request (method: string, path: string, headers: Record<string, string> = {}, body = ''): Promise<TlsResponse> {
    const lines = [`${method} ${path} HTTP/1.1`, `Host: ${headers.host ?? 'localhost'}`]
    for (const [k, v] of Object.entries(headers)) if (k !== 'host') lines.push(`${k}: ${v}`)
    if (body !== '') lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
    this.socket.write(lines.join('\r\n') + '\r\n\r\n' + body)
    const deadline = Date.now() + 5000
    for (;;) {
      const parsed = parseResponse(this.buffered)
      if (parsed !== null) { this.buffered = this.buffered.subarray(parsed.length); return parsed.response }
      if (this.closed || Date.now() > deadline) throw new Error(`no complete response (closed=${this.closed}): ${this.buffered.toString('latin1')}`)
      await new Promise<void>((resolve) => { this.waiter = resolve; setTimeout(resolve, 100) })
    }
  }

  /** Wait until the session ticket arrived (TLS 1.3 sends it after the handshake). */
  async ticket (): Promise<Buffer> {
    const deadline = Date.now() + 5000
    while (this.session === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    if (this.session === null) throw new Error('no session ticket')
    return this.session
  }

  close (): void { this.socket.destroy() }
}

function parseResponse (buf: Buffer): { response: TlsResponse, length: number } | null {
  const end = buf.indexOf('\r\n\r\n')
  if (end === -1) return null
  const head = buf.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(head[0].split(' ')[1])
  const headers: Record<string, string> = {}
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  const length = Number(headers['content-length'] ?? 0)
  if (buf.length < end + 4 + length) return null
  return { response: { status, headers, body: buf.subarray(end + 4, end + 4 + length).toString('utf8') }, length: end + 4 + length }
}
