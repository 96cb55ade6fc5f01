/**
 * Raw HTTP/1.1 on the wire for the end-to-end tests that look at exact bytes
 * (smuggling.test.ts, normalise.test.ts): a test-side framing parser
 * independent of the proxy's, a client driven by hand, and an upstream that
 * records every request it receives and answers with exact bytes.
 */
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { once } from 'node:events'
import type { TestContext } from 'node:test'
import { startRawServer, waitFor, type TestServer } from '../helpers'

// ---- test-side HTTP/1.1 framing (independent of the proxy's parser) -----------------------

export interface Message {
  startLine: string
  status: number
  head: string
  fields: Array<[string, string]>
  /** the body bytes as on the wire */
  body: Buffer
  /** the payload: de-chunked when chunked */
  data: Buffer
  chunkSizeLines: string[]
  trailers: Array<[string, string]>
  /** set on upstream requests that arrived after the upstream had sent a 101 on that connection */
  afterSwitch: boolean
}

export function parseFields (lines: string[]): Array<[string, string]> {
  return lines.map((line) => { const c = line.indexOf(':'); return [line.slice(0, c), line.slice(c + 1).trim()] })
}

/** Every value of field `name` (case-insensitive), one per field line. */
export function values (fields: Array<[string, string]>, name: string): string[] {
  return fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
}

/** The field lines of a head named `name` (case-insensitive), exactly as sent. */
export function lines (m: Message, name: string): string[] {
  return m.head.split('\r\n').slice(1).filter((l) => l.toLowerCase().startsWith(name + ':'))
}

/** A chunked body from `pos`: null when more bytes are needed; a string says what is malformed. */
export function readChunked (buf: Buffer, pos: number): { end: number, data: Buffer, sizeLines: string[], trailers: Array<[string, string]> } | string | null {
  const data: Buffer[] = []
  const sizeLines: string[] = []
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos)
    if (lineEnd === -1) return null
    const line = buf.toString('latin1', pos, lineEnd)
    sizeLines.push(line)
    const size = parseInt(line, 16)
    if (!/^[0-9a-fA-F]+/.test(line)) return `bad chunk-size line ${JSON.stringify(line)}`
    pos = lineEnd + 2
    if (size === 0) {
      const trailerLines: string[] = []
      for (;;) {
        const end = buf.indexOf('\r\n', pos)
        if (end === -1) return null
        if (end === pos) return { end: pos + 2, data: Buffer.concat(data), sizeLines, trailers: parseFields(trailerLines) }
        trailerLines.push(buf.toString('latin1', pos, end))
        pos = end + 2
      }
    }
    if (buf.length < pos + size + 2) return null
    data.push(buf.subarray(pos, pos + size))
    if (buf.toString('latin1', pos + size, pos + size + 2) !== '\r\n') return 'chunk data not followed by CRLF'
    pos += size + 2
  }
}

/** The message at the front of `buf` and its length; null when incomplete; a string when malformed. */
export function frame (buf: Buffer, opts: { response: boolean, noBody?: boolean, closed?: boolean }): { message: Message, length: number } | string | null {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd === -1) return null
  const head = buf.toString('latin1', 0, headEnd)
  const headLines = head.split('\r\n')
  const fields = parseFields(headLines.slice(1))
  const startLine = headLines[0]
  const status = opts.response ? Number(startLine.split(' ')[1]) : 0
  const bodyStart = headEnd + 4
  const message: Message = { startLine, status, head, fields, body: Buffer.alloc(0), data: Buffer.alloc(0), chunkSizeLines: [], trailers: [], afterSwitch: false }
  const done = (end: number): { message: Message, length: number } => {
    if (message.chunkSizeLines.length === 0) message.data = buf.subarray(bodyStart, end)
    message.body = buf.subarray(bodyStart, end)
    return { message, length: end }
  }
  if (opts.response && (status < 200 || status === 204 || status === 304 || opts.noBody === true)) return done(bodyStart)
  // the last non-empty list element decides (RFC 9110 §5.6.1: empty elements do not count)
  const codings = values(fields, 'transfer-encoding').join(',').split(',').map((c) => c.trim()).filter((c) => c !== '')
  const te = codings.join(',')
  if (codings.length > 0 && codings[codings.length - 1].toLowerCase() === 'chunked') {
    const c = readChunked(buf, bodyStart)
    if (c === null || typeof c === 'string') return c
    message.chunkSizeLines = c.sizeLines
    message.trailers = c.trailers
    message.data = c.data
    return done(c.end)
  }
  const cl = values(fields, 'content-length')
  if (te === '' && cl.length > 0) {
    const end = bodyStart + Number(cl[0])
    return buf.length >= end ? done(end) : null
  }
  if (!opts.response && te === '') return done(bodyStart)
  return opts.closed === true ? done(buf.length) : null // read until close
}

export const delay = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** How long to let bytes that must NOT arrive have their chance to arrive. */
export const SETTLE_MS = 150

// ---- a client we drive by hand -------------------------------------------------------------

export class RawClient {
  private buf = Buffer.alloc(0)
  closed = false
  private constructor (readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => { this.buf = Buffer.concat([this.buf, c]) })
    for (const e of ['end', 'close', 'error']) socket.on(e, () => { this.closed = true })
  }

  static async open (port: number): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    return new RawClient(socket)
  }

  send (data: string | Buffer): void { if (!this.socket.destroyed) this.socket.write(data) }

  /** The next complete response, within `timeoutMs`. */
  async response (timeoutMs = 3000): Promise<Message> {
    let got: ReturnType<typeof frame> = null
    try {
      await waitFor(() => {
        got = frame(this.buf, { response: true, closed: this.closed })
        return got !== null || this.closed
      }, timeoutMs, 'a complete response')
    } catch (err) {
      throw new Error(`${(err as Error).message}; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)
    }
    if (got === null) throw new Error(`closed before a complete response; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)
    if (typeof got === 'string') throw new Error(`malformed response (${got as string}): ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)
    const { message, length } = got as { message: Message, length: number }
    this.buf = this.buf.subarray(length)
    return message
  }

  close (): void { this.socket.destroy() }
}

// ---- a recording upstream ------------------------------------------------------------------

export interface UpstreamConn { socket: net.Socket, switched: boolean, echo: boolean, broken: string }
/** What the upstream writes for a request (null: nothing). An answer with `Connection: close` ends the connection. */
export type Responder = (req: Message, conn: UpstreamConn) => string | null

/** The default answer closes the upstream connection, so every test starts on fresh upstream connections. */
export const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'
const okResponder: Responder = () => OK

/**
 * A TCP upstream that frames requests with the test-side parser and records
 * each one, answering through `respond`. After it has sent a 101 on a
 * connection, what follows is still parsed as requests (that is what a
 * tunnelled smuggled request looks like) and flagged `afterSwitch`, unless the
 * responder set `echo`: then bytes are echoed upper-cased (a websocket stand-in).
 */
export class RecordingUpstream {
  requests: Message[] = []
  /** connections accepted since `use` */
  connections = 0
  /** bytes left unparsed on connections whose stream stopped being HTTP */
  garbage: string[] = []
  respond: Responder = okResponder
  private server: TestServer | null = null

  get address (): string { return this.server?.address ?? '' }

  async start (): Promise<void> {
    this.server = await startRawServer((socket) => {
      this.connections++
      const conn: UpstreamConn = { socket, switched: false, echo: false, broken: '' }
      let buf = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        if (conn.echo) { socket.write(chunk.toString('latin1').toUpperCase()); return }
        buf = Buffer.concat([buf, chunk])
        while (!conn.echo && conn.broken === '') {
          const got = frame(buf, { response: false })
          if (got === null) return
          if (typeof got === 'string') { conn.broken = got; this.garbage.push(buf.toString('latin1')); return }
          buf = buf.subarray(got.length)
          got.message.afterSwitch = conn.switched
          this.requests.push(got.message)
          const answer = socket.writable ? this.respond(got.message, conn) : null
          if (answer !== null) {
            socket.write(answer)
            if (/\r\nconnection: *close\r\n/i.test(answer.slice(0, answer.indexOf('\r\n\r\n') + 2))) socket.end()
          }
        }
        if (conn.echo && buf.length > 0) socket.write(buf.toString('latin1').toUpperCase())
      })
    })
  }

  /** This test's responder; logs start empty. */
  use (t: TestContext, respond: Responder = okResponder): void {
    this.respond = respond
    this.requests = []
    this.garbage = []
    this.connections = 0
    t.after(() => { this.respond = okResponder })
  }

  /** The one request this test sent, framed cleanly. */
  only (): Message {
    assert.deepEqual(this.garbage, [], 'the upstream received bytes that are not HTTP/1.1 framing')
    assert.equal(this.requests.length, 1, `requests upstream: ${JSON.stringify(this.requests.map((r) => r.startLine))}`)
    return this.requests[0]
  }

  /** Every head the upstream framed (start line and fields), and any unparsed bytes: nothing may mention `needle`. */
  assertNeverSaw (needle: string): void {
    for (const r of this.requests) assert.ok(!r.head.includes(needle), `${needle} reached the upstream outside a body, in a head: ${JSON.stringify(r.head.slice(0, 200))}`)
    for (const g of this.garbage) assert.ok(!g.includes(needle), `unframed bytes mentioning ${needle} reached the upstream: ${JSON.stringify(g.slice(0, 200))}`)
  }

  async close (): Promise<void> { await this.server?.close() }
}

/**
 * Shared proxies tolerate upstream failures: a test that fails against a broken proxy (an upstream
 * left waiting, a 502) must not get the shared upstream ejected by passive health and fail the tests after it.
 */
export const TOLERANT = { healthCheck: { passive: { maxFailures: 1000, cooldownMs: 1 } } }
