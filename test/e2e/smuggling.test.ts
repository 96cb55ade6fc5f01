/**
 * Request smuggling through the proxy's own header handling, end to end with
 * real sockets, in every mode (sequential and workers=2):
 *
 *  - a Connection option never removes framing or Host (RFC 9110 §7.6.1 lets
 *    a sender name hop-by-hop fields; Content-Length, Transfer-Encoding and
 *    Host are the proxy's to compute, RFC 9112 §6.1-§6.3, §3.2), in requests
 *    and in responses, so a body that looks like a request stays a body and a
 *    firewall deny cannot be walked around;
 *  - an absolute-form target's authority wins over Host (RFC 9112 §3.2.2): it
 *    goes upstream as origin-form with that authority as the only Host, and
 *    the cache cannot be poisoned by a Host that disagrees with the target;
 *  - only the Upgrade protocols in proxy.allowedUpgrades are forwarded
 *    (RFC 9110 §7.8): h2c would carry requests past the firewall.
 *
 * Upstreams record the exact bytes they receive and frame requests with a
 * test-side parser (independent of the proxy's), so a request smuggled at a
 * request boundary shows up as a second recorded request. Normalisation of
 * what is forwarded (Content-Length, chunked, Transfer-Encoding, trailers) is
 * in normalise.test.ts.
 */
import { describe, test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { MODES, startLb, type RunningLb } from './harness'
import { startRawServer, rawExchange, waitFor, type TestServer } from '../helpers'

// ---- test-side HTTP/1.1 framing (independent of the proxy's parser) -----------------------

interface Message {
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

function parseFields (lines: string[]): Array<[string, string]> {
  return lines.map((line) => { const c = line.indexOf(':'); return [line.slice(0, c), line.slice(c + 1).trim()] })
}

/** Every value of field `name` (case-insensitive), one per field line. */
function values (fields: Array<[string, string]>, name: string): string[] {
  return fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
}

/** A chunked body from `pos`: null when more bytes are needed; a string says what is malformed. */
function readChunked (buf: Buffer, pos: number): { end: number, data: Buffer, sizeLines: string[], trailers: Array<[string, string]> } | string | null {
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
function frame (buf: Buffer, opts: { response: boolean, noBody?: boolean, closed?: boolean }): { message: Message, length: number } | string | null {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd === -1) return null
  const head = buf.toString('latin1', 0, headEnd)
  const lines = head.split('\r\n')
  const fields = parseFields(lines.slice(1))
  const startLine = lines[0]
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

const delay = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** How long to let bytes that must NOT arrive have their chance to arrive. */
const SETTLE_MS = 150

// ---- a client we drive by hand -------------------------------------------------------------

class RawClient {
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

interface UpstreamConn { socket: net.Socket, switched: boolean, echo: boolean, broken: string }
/** What the upstream writes for a request (null: nothing). An answer with `Connection: close` ends the connection. */
type Responder = (req: Message, conn: UpstreamConn) => string | null

/** The default answer closes the upstream connection, so every test starts on fresh upstream connections. */
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'
const okResponder: Responder = () => OK

/**
 * A TCP upstream that frames requests with the test-side parser and records
 * each one, answering through `respond`. After it has sent a 101 on a
 * connection, what follows is still parsed as requests (that is what a
 * tunnelled smuggled request looks like) and flagged `afterSwitch`, unless the
 * responder set `echo`: then bytes are echoed upper-cased (a websocket stand-in).
 */
class RecordingUpstream {
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

  /** Every head the upstream framed (start line and fields), and any unparsed bytes: nothing may mention `needle`. */
  assertNeverSaw (needle: string): void {
    for (const r of this.requests) assert.ok(!r.head.includes(needle), `${needle} reached the upstream outside a body, in a head: ${JSON.stringify(r.head.slice(0, 200))}`)
    for (const g of this.garbage) assert.ok(!g.includes(needle), `unframed bytes mentioning ${needle} reached the upstream: ${JSON.stringify(g.slice(0, 200))}`)
  }

  async close (): Promise<void> { await this.server?.close() }
}

/** A request that fills exactly `length` bytes: used as a body that looks like a request. */
function requestOfLength (path: string, length: number): string {
  const bare = `GET ${path} HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n`
  assert.ok(bare.length <= length, `test side: ${path} does not fit in ${length} bytes`)
  return `GET ${path} HTTP/1.1\r\nHost: a\r\nX: ${'p'.repeat(length - bare.length)}\r\n\r\n`
}

function chunk (data: string): string { return `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n` }

/** The same smuggled request as a chunked body, whole in one chunk (so a desync shows it in a head). */
function chunkedBodyOf (data: string): string { return chunk(data) + '0\r\n\r\n' }

/**
 * Shared proxies tolerate upstream failures: a test that fails against a broken proxy (an upstream
 * left waiting, a 502) must not get the shared upstream ejected by passive health and fail the tests after it.
 */
const TOLERANT = { healthCheck: { passive: { maxFailures: 1000, cooldownMs: 1 } } }

const DENY_ADMIN = { firewall: { rules: [{ name: 'deny-admin', action: 'deny', path: { prefix: '/admin' } }] } }

for (const mode of MODES) {
  describe(`request smuggling through header handling (${mode.name})`, () => {
    const up = new RecordingUpstream()
    const fwUp = new RecordingUpstream()
    let lb: RunningLb
    let fwLb: RunningLb
    before(async () => {
      await up.start()
      await fwUp.start()
      lb = await startLb({ upstreams: [{ address: up.address }], ...TOLERANT }, mode.workers)
      fwLb = await startLb({ upstreams: [{ address: fwUp.address }], ...DENY_ADMIN, ...TOLERANT }, mode.workers)
    })
    after(async () => {
      await lb.stop()
      await fwLb.stop()
      await up.close()
      await fwUp.close()
    })

    // ---- 1. Connection options cannot remove framing or Host (requests) --------------------

    describe('a Connection option naming Content-Length, Transfer-Encoding or Host is ignored; other named fields are dropped', () => {
      const BODY = requestOfLength('/smuggled', 42)
      const cases: Array<{ connection: string, framing: 'length' | 'chunked' | 'none' }> = [
        { connection: 'Content-Length', framing: 'length' },
        { connection: 'close, Content-Length', framing: 'length' },
        { connection: 'content-LENGTH', framing: 'length' },
        { connection: 'Content-Length, X-Hop', framing: 'length' },
        { connection: 'Transfer-Encoding', framing: 'chunked' },
        { connection: 'close, TRANSFER-encoding', framing: 'chunked' },
        { connection: 'X-Hop, transfer-encoding', framing: 'chunked' },
        { connection: 'Host', framing: 'none' },
        { connection: 'close, HOST', framing: 'none' },
        { connection: 'Host, Content-Length, X-Hop', framing: 'length' },
        { connection: 'host, Transfer-Encoding', framing: 'chunked' },
      ]
      for (const { connection, framing } of cases) {
        test(`Connection: ${connection} (${framing === 'none' ? 'no body' : `${framing} body that looks like GET /smuggled`})`, async (t) => {
          up.use(t)
          const client = await RawClient.open(lb.port)
          t.after(() => client.close())
          const framingLine = framing === 'length' ? 'Content-Length: 42\r\n' : framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n' : ''
          const body = framing === 'length' ? BODY : framing === 'chunked' ? chunkedBodyOf(BODY) : ''
          client.send(`POST /hop HTTP/1.1\r\nHost: a\r\nConnection: ${connection}\r\nX-Hop: secret\r\n${framingLine}\r\n${body}`)
          const res = await client.response()
          assert.equal(res.status, 200)
          await delay(SETTLE_MS)
          up.assertNeverSaw('/smuggled')
          assert.deepEqual(up.requests.map((r) => r.startLine), ['POST /hop HTTP/1.1'], 'exactly one request upstream')
          const got = up.requests[0]
          assert.deepEqual(values(got.fields, 'host'), ['a'], 'exactly one Host, as received')
          if (framing === 'length') {
            assert.deepEqual(values(got.fields, 'content-length'), ['42'])
            assert.deepEqual(values(got.fields, 'transfer-encoding'), [])
            assert.equal(got.body.toString('latin1'), BODY)
          } else if (framing === 'chunked') {
            assert.deepEqual(values(got.fields, 'transfer-encoding'), ['chunked'])
            assert.deepEqual(values(got.fields, 'content-length'), [])
            assert.equal(got.data.toString('latin1'), BODY)
          } else {
            assert.equal(got.body.length, 0)
          }
          assert.deepEqual(values(got.fields, 'x-hop'), /x-hop/i.test(connection) ? [] : ['secret'], 'X-Hop goes only when Connection names it')
          assert.deepEqual(values(got.fields, 'connection').filter((v) => /content-length|transfer-encoding|host/i.test(v)), [])
          if (/close/i.test(connection)) return
          // the client connection is still in step: its next request gets its own answer
          client.send('GET /after HTTP/1.1\r\nHost: a\r\n\r\n')
          const next = await client.response()
          assert.equal(next.status, 200)
          await delay(SETTLE_MS)
          assert.deepEqual(up.requests.map((r) => r.startLine), ['POST /hop HTTP/1.1', 'GET /after HTTP/1.1'])
        })
      }
    })

    describe('a firewall deny cannot be bypassed with a body that looks like a request', () => {
      const BODY = requestOfLength('/admin/panel', 64)

      test('direct GET /admin/panel is denied (403) and never reaches the upstream', async (t) => {
        fwUp.use(t)
        const r = await rawExchange(fwLb.port, 'GET /admin/panel HTTP/1.1\r\nHost: a\r\n\r\n', { until: (b) => b.includes('\r\n\r\n'), timeoutMs: 3000 })
        assert.match(r.text, /^HTTP\/1\.1 403 /)
        assert.equal(fwUp.requests.length, 0)
      })

      for (const [connection, framingLine, body] of [
        ['Content-Length', 'Content-Length: 64\r\n', BODY],
        ['keep-alive, content-length', 'Content-Length: 64\r\n', BODY],
        ['Transfer-Encoding', 'Transfer-Encoding: chunked\r\n', chunkedBodyOf(BODY)],
      ]) {
        test(`Connection: ${connection}: GET /admin/panel in the body never reaches the upstream as a request`, async (t) => {
          fwUp.use(t)
          const client = await RawClient.open(fwLb.port)
          t.after(() => client.close())
          client.send(`POST /public HTTP/1.1\r\nHost: a\r\nConnection: ${connection}\r\n${framingLine}\r\n${body}`)
          const res = await client.response()
          assert.equal(res.status, 200)
          // a second request on the same client connection, so a desynchronised upstream answer would show
          client.send('GET /public2 HTTP/1.1\r\nHost: a\r\n\r\n')
          await client.response()
          await delay(SETTLE_MS)
          fwUp.assertNeverSaw('/admin')
          assert.deepEqual(fwUp.requests.map((r) => r.startLine), ['POST /public HTTP/1.1', 'GET /public2 HTTP/1.1'])
          assert.equal(fwUp.requests[0].data.toString('latin1'), BODY, 'the would-be request arrived as the body')
        })
      }
    })

    // ---- 1b. ... nor in responses -------------------------------------------------------------

    describe('a response Connection option cannot remove its framing', () => {
      const variants: Array<[string, string, string]> = [
        ['Content-Length', 'HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello', 'length'],
        ['Transfer-Encoding', 'HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'chunked'],
        ['keep-alive, CONTENT-LENGTH', 'HTTP/1.1 200 OK\r\nConnection: keep-alive, CONTENT-LENGTH\r\nContent-Length: 5\r\n\r\nhello', 'length'],
      ]
      for (const [connection, answer, framing] of variants) {
        test(`upstream answers with Connection: ${connection}: the client gets a framed response on a kept-alive connection, and its next request its own answer`, async (t) => {
          up.use(t, (req) => req.startLine.startsWith('GET /first ') ? answer : 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond')
          const client = await RawClient.open(lb.port)
          t.after(() => client.close())
          client.send('GET /first HTTP/1.1\r\nHost: a\r\n\r\n')
          const first = await client.response()
          assert.equal(first.status, 200)
          if (framing === 'length') {
            assert.deepEqual(values(first.fields, 'content-length'), ['5'])
            assert.deepEqual(values(first.fields, 'transfer-encoding'), [])
          } else {
            assert.deepEqual(values(first.fields, 'transfer-encoding'), ['chunked'])
            assert.deepEqual(values(first.fields, 'content-length'), [])
          }
          assert.equal(first.data.toString('latin1'), 'hello')
          assert.ok(!values(first.fields, 'connection').some((v) => /close/i.test(v)), 'kept alive')
          client.send('GET /second HTTP/1.1\r\nHost: a\r\n\r\n')
          const second = await client.response()
          assert.equal(second.status, 200)
          assert.equal(second.data.toString('latin1'), 'second')
          assert.equal(client.closed, false)
        })
      }
    })

    // ---- 2. absolute-form targets ----------------------------------------------------------

    describe('absolute-form: the target\'s authority wins over Host (RFC 9112 §3.2.2)', () => {
      const valid: Array<[string, string, string]> = [
        ['http://good.test/page', 'GET /page HTTP/1.1', 'good.test'],
        ['https://good.test/page', 'GET /page HTTP/1.1', 'good.test'],
        ['http://good.test:8080/p', 'GET /p HTTP/1.1', 'good.test:8080'],
        ['http://good.test', 'GET / HTTP/1.1', 'good.test'],
        ['http://good.test?q=1', 'GET /?q=1 HTTP/1.1', 'good.test'],
        ['http://[::1]:81/x', 'GET /x HTTP/1.1', '[::1]:81'],
        ['http://good.test:/x', 'GET /x HTTP/1.1', 'good.test'],
        ['HTTP://good.test/x', 'GET /x HTTP/1.1', 'good.test'],
      ]
      for (const [target, line, host] of valid) {
        test(`GET ${target} with Host: evil.test -> upstream gets "${line}" and only Host: ${host}`, async (t) => {
          up.use(t)
          const client = await RawClient.open(lb.port)
          t.after(() => client.close())
          client.send(`GET ${target} HTTP/1.1\r\nHost: evil.test\r\n\r\n`)
          const res = await client.response()
          assert.equal(res.status, 200)
          assert.equal(up.requests.length, 1)
          assert.equal(up.requests[0].startLine, line)
          assert.deepEqual(values(up.requests[0].fields, 'host'), [host])
        })
      }

      for (const target of ['http://good.test:8a/x', 'http://user@good.test/x', 'http:///x', 'http://[::1/x']) {
        test(`GET ${target} -> 400, nothing reaches the upstream`, async (t) => {
          up.use(t)
          const r = await rawExchange(lb.port, `GET ${target} HTTP/1.1\r\nHost: evil.test\r\n\r\n`, { until: (b) => b.includes('\r\n\r\n'), timeoutMs: 3000 })
          assert.match(r.text, /^HTTP\/1\.1 400 /, `response: ${JSON.stringify(r.text.slice(0, 100))}`)
          await delay(SETTLE_MS)
          assert.equal(up.connections, 0)
          assert.equal(up.requests.length, 0)
        })
      }
    })

    // ---- 3. upgrades -----------------------------------------------------------------------

    describe('only protocols in proxy.allowedUpgrades are upgraded (RFC 9110 §7.8)', () => {
      const H2C = 'GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'
      const SECRET = 'GET /admin/secret HTTP/1.1\r\nHost: a\r\n\r\n'
      /** 101 to /h2c whatever was asked (a misbehaving upstream); websocket upgrades get 101 and an echo tunnel. */
      const upgradeResponder: Responder = (req, conn) => {
        if (req.afterSwitch) return 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ntunnelled'
        if (req.startLine.startsWith('GET /h2c ')) { conn.switched = true; return 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n' }
        if (values(req.fields, 'upgrade').some((v) => /websocket/i.test(v))) { conn.echo = true; return 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n' }
        return 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain'
      }

      /** A proxy of its own (a 502 counts as an upstream failure and passive health would eject a shared upstream). */
      async function ownProxy (t: TestContext, extra: Record<string, unknown> = {}): Promise<{ rec: RecordingUpstream, port: number }> {
        const rec = new RecordingUpstream()
        await rec.start()
        t.after(async () => await rec.close())
        rec.use(t, upgradeResponder)
        const run = await startLb({ upstreams: [{ address: rec.address }], ...extra }, mode.workers)
        t.after(async () => await run.stop())
        return { rec, port: run.port }
      }

      /** Stop reading once a second response has started (the client's pipelined request was answered). */
      const twoAnswers = (b: Buffer): boolean => (b.toString('latin1').match(/HTTP\/1\.1 \d{3} /g) ?? []).length >= 2

      function assertNoUpgradeForwarded (req: Message): void {
        assert.deepEqual(values(req.fields, 'upgrade'), [], 'no Upgrade upstream')
        assert.deepEqual(values(req.fields, 'http2-settings'), [], 'no HTTP2-Settings upstream')
        assert.ok(!values(req.fields, 'connection').some((v) => /upgrade|http2-settings/i.test(v)), `Connection upstream: ${JSON.stringify(values(req.fields, 'connection'))}`)
      }

      /** Nothing was tunnelled: no request followed a 101 on any upstream connection, and /admin/secret never arrived raw. */
      function assertNothingTunnelled (rec: RecordingUpstream): void {
        assert.deepEqual(rec.requests.filter((r) => r.afterSwitch).map((r) => r.startLine), [], 'requests tunnelled after a 101')
        for (const r of rec.requests.filter((r) => r.startLine.includes('/admin/secret'))) {
          assert.ok(values(r.fields, 'via').some((v) => v.includes('switchyard')), '/admin/secret arrived without the proxy\'s Via: it was not proxied')
        }
      }

      test('h2c: Upgrade and HTTP2-Settings are not forwarded; a 101 anyway is a 502; GET /admin/secret written after it is not tunnelled', async (t) => {
        const { rec, port } = await ownProxy(t)
        const client = await RawClient.open(port)
        t.after(() => client.close())
        client.send(H2C)
        const res = await client.response()
        assert.equal(rec.requests.length >= 1, true)
        assertNoUpgradeForwarded(rec.requests[0])
        assert.equal(res.status, 502)
        client.send(SECRET)
        await waitFor(() => client.closed || rec.requests.length > 1, 1000, 'the follow-up handled').catch(() => {})
        await delay(SETTLE_MS)
        assertNothingTunnelled(rec)
      })

      test('h2c with GET /admin/secret pipelined in the same write: nothing is tunnelled', async (t) => {
        const { rec, port } = await ownProxy(t)
        const r = await rawExchange(port, H2C + SECRET, { until: twoAnswers, timeoutMs: 1500 })
        await delay(SETTLE_MS)
        assert.ok(rec.requests.length >= 1)
        assertNoUpgradeForwarded(rec.requests[0])
        assert.match(r.text, /^HTTP\/1\.1 502 /)
        assert.ok(!r.text.includes('tunnelled'), 'the client got an answer from inside a tunnel')
        assertNothingTunnelled(rec)
      })

      test('h2c with a deny rule for /admin: /admin/secret never reaches the upstream (written after the answer, or pipelined)', async (t) => {
        const { rec, port } = await ownProxy(t, DENY_ADMIN)
        const client = await RawClient.open(port)
        t.after(() => client.close())
        client.send(H2C)
        const res = await client.response()
        assertNoUpgradeForwarded(rec.requests[0])
        assert.equal(res.status, 502)
        client.send(SECRET)
        await waitFor(() => client.closed || rec.requests.length > 1, 1000, 'the follow-up handled').catch(() => {})
        const r = await rawExchange(port, H2C + SECRET, { until: twoAnswers, timeoutMs: 1500 })
        assert.ok(!r.text.includes('tunnelled'), 'the client got an answer from inside a tunnel')
        await delay(SETTLE_MS)
        for (const req of rec.requests) assertNoUpgradeForwarded(req)
        rec.assertNeverSaw('/admin')
      })

      test('websocket still tunnels with the default allowedUpgrades: 101 both ways, bytes both ways', async (t) => {
        up.use(t, upgradeResponder)
        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send('GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
        const res = await client.response()
        assert.equal(res.status, 101)
        assert.deepEqual(values(up.requests[0].fields, 'upgrade'), ['websocket'])
        assert.ok(values(up.requests[0].fields, 'connection').some((v) => /upgrade/i.test(v)))
        let echoed = ''
        client.socket.on('data', (c: Buffer) => { echoed += c.toString('latin1') })
        client.send('hello tunnel')
        await waitFor(() => echoed.endsWith('HELLO TUNNEL'), 3000, 'the echo through the tunnel')
      })

      test('allowedUpgrades: [] -> websocket is not upgraded either (upstream sees no Upgrade, client gets the plain answer)', async (t) => {
        const { rec, port } = await ownProxy(t, { proxy: { allowedUpgrades: [] } })
        const client = await RawClient.open(port)
        t.after(() => client.close())
        client.send('GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
        const res = await client.response()
        assert.equal(rec.requests.length, 1)
        assertNoUpgradeForwarded(rec.requests[0])
        assert.equal(res.status, 200)
        assert.equal(res.data.toString('latin1'), 'plain')
      })
    })
  })

  // ---- 2b. cache poisoning through absolute-form --------------------------------------------

  describe(`absolute-form and the cache: no poisoning by a disagreeing Host (${mode.name})`, () => {
    let origin: http.Server
    let lb: RunningLb
    const seenHosts: Array<string | undefined> = []
    before(async () => {
      // a Host-based upstream: every page names the host it was asked for
      origin = http.createServer((req, res) => {
        seenHosts.push(req.headers.host)
        const body = `page ${req.url ?? ''} of ${req.headers.host ?? '(none)'}`
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
      await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
      lb = await startLb({ upstreams: [{ address: `127.0.0.1:${(origin.address() as AddressInfo).port}` }], cache: { maxBytes: 8_388_608 }, ...TOLERANT }, mode.workers)
    })
    after(async () => {
      await lb.stop()
      origin.closeAllConnections()
      await new Promise<void>((resolve) => origin.close(() => resolve()))
    })

    async function get (target: string, host: string): Promise<string> {
      const client = await RawClient.open(lb.port)
      try {
        client.send(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
        const res = await client.response()
        assert.equal(res.status, 200)
        return res.data.toString('latin1')
      } finally {
        client.close()
      }
    }

    test('absolute-form good.test with Host: evil.test first, then origin-form for each host', async () => {
      assert.equal(await get('http://good.test/poison-a', 'evil.test'), 'page /poison-a of good.test')
      assert.equal(await get('/poison-a', 'good.test'), 'page /poison-a of good.test')
      assert.equal(await get('/poison-a', 'evil.test'), 'page /poison-a of evil.test')
      assert.equal(await get('/poison-a', 'good.test'), 'page /poison-a of good.test', 'good.test still gets its own page')
    })

    test('origin-form evil.test cached first: absolute-form good.test with Host: evil.test still gets good.test\'s page', async () => {
      assert.equal(await get('/poison-b', 'evil.test'), 'page /poison-b of evil.test')
      assert.equal(await get('http://good.test/poison-b', 'evil.test'), 'page /poison-b of good.test')
      assert.equal(await get('/poison-b', 'good.test'), 'page /poison-b of good.test')
      assert.equal(await get('/poison-b', 'evil.test'), 'page /poison-b of evil.test')
    })
  })
}
