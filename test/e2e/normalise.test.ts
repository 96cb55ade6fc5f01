/**
 * What the proxy forwards is serialised from what it parsed, never a copy of
 * the sender's framing bytes (STYLE.md, "Framing is the proxy's own"), in
 * every mode (sequential and workers=2):
 *
 *  - Content-Length goes out as one canonical line (RFC 9110 §8.6);
 *  - a chunked body goes out re-chunked canonically: lowercase hex sizes, no
 *    leading zeros, no chunk extensions (RFC 9112 §7.1.1: extensions are
 *    hop-by-hop to a proxy that does not understand them);
 *  - a request Transfer-Encoding other than exactly chunked is a 501 (RFC
 *    9112 §6.1: a server that receives a transfer coding it does not
 *    understand SHOULD respond 501); grammar violations are a 400;
 *  - request trailers pass, except fields that must never be trailers
 *    (RFC 9110 §6.5.1: framing, routing, authentication, caching controls);
 *  - a chunked response to an HTTP/1.0 client is de-chunked and
 *    close-delimited (RFC 9112 §6.1), to HTTP/1.1 clients re-chunked;
 *  - a response Transfer-Encoding other than chunked is a 502.
 *
 * The upstream records the exact bytes it receives (framed by a test-side
 * parser independent of the proxy's) and answers with exact bytes.
 */
import { describe, test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { once } from 'node:events'
import { MODES, startLb, type RunningLb } from './harness'
import { startRawServer, rawExchange, waitFor, type TestServer } from '../helpers'

// ---- test-side HTTP/1.1 framing (the same as in smuggling.test.ts) -------------------------

interface Message {
  startLine: string
  status: number
  head: string
  fields: Array<[string, string]>
  body: Buffer
  data: Buffer
  chunkSizeLines: string[]
  trailers: Array<[string, string]>
}

function parseFields (lines: string[]): Array<[string, string]> {
  return lines.map((line) => { const c = line.indexOf(':'); return [line.slice(0, c), line.slice(c + 1).trim()] })
}

function values (fields: Array<[string, string]>, name: string): string[] {
  return fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
}

/** The field lines of a head named `name` (case-insensitive), exactly as sent. */
function lines (m: Message, name: string): string[] {
  return m.head.split('\r\n').slice(1).filter((l) => l.toLowerCase().startsWith(name + ':'))
}

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

function frame (buf: Buffer, opts: { response: boolean, closed?: boolean }): { message: Message, length: number } | string | null {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd === -1) return null
  const head = buf.toString('latin1', 0, headEnd)
  const headLines = head.split('\r\n')
  const fields = parseFields(headLines.slice(1))
  const status = opts.response ? Number(headLines[0].split(' ')[1]) : 0
  const bodyStart = headEnd + 4
  const message: Message = { startLine: headLines[0], status, head, fields, body: Buffer.alloc(0), data: Buffer.alloc(0), chunkSizeLines: [], trailers: [] }
  const done = (end: number): { message: Message, length: number } => {
    if (message.chunkSizeLines.length === 0) message.data = buf.subarray(bodyStart, end)
    message.body = buf.subarray(bodyStart, end)
    return { message, length: end }
  }
  if (opts.response && (status < 200 || status === 204 || status === 304)) return done(bodyStart)
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
  return opts.closed === true ? done(buf.length) : null
}

const delay = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const SETTLE_MS = 150

/** Canonical chunked framing: sizes in lowercase hex without leading zeros or extensions, ending with a 0 line. */
function assertCanonicalChunks (m: Message): void {
  assert.ok(m.chunkSizeLines.length >= 1, 'chunked')
  for (const line of m.chunkSizeLines) assert.match(line, /^(0|[1-9a-f][0-9a-f]*)$/, `chunk-size line ${JSON.stringify(line)} in ${JSON.stringify(m.body.toString('latin1'))}`)
  assert.equal(m.chunkSizeLines[m.chunkSizeLines.length - 1], '0')
}

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

/** Every default answer closes the upstream connection: each test starts on fresh upstream connections. */
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'
type Responder = (req: Message) => string

/** A TCP upstream that records every request (exact bytes, test-side framing) and answers through `respond`. */
class RecordingUpstream {
  requests: Message[] = []
  connections = 0
  garbage: string[] = []
  respond: Responder = () => OK
  private server: TestServer | null = null

  get address (): string { return this.server?.address ?? '' }

  async start (): Promise<void> {
    this.server = await startRawServer((socket) => {
      this.connections++
      let buf = Buffer.alloc(0)
      let broken = false
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk])
        while (!broken) {
          const got = frame(buf, { response: false })
          if (got === null) return
          if (typeof got === 'string') { broken = true; this.garbage.push(`${got}: ${buf.toString('latin1')}`); return }
          buf = buf.subarray(got.length)
          this.requests.push(got.message)
          if (!socket.writable) continue
          const answer = this.respond(got.message)
          socket.write(answer)
          if (/\r\nconnection: *close\r\n/i.test(answer.slice(0, answer.indexOf('\r\n\r\n') + 2))) socket.end()
        }
      })
    })
  }

  use (t: TestContext, respond: Responder = () => OK): void {
    this.respond = respond
    this.requests = []
    this.garbage = []
    this.connections = 0
    t.after(() => { this.respond = () => OK })
  }

  /** The one request this test sent, framed cleanly. */
  only (): Message {
    assert.deepEqual(this.garbage, [], 'the upstream received bytes that are not HTTP/1.1 framing')
    assert.equal(this.requests.length, 1, `requests upstream: ${JSON.stringify(this.requests.map((r) => r.startLine))}`)
    return this.requests[0]
  }

  async close (): Promise<void> { await this.server?.close() }
}

const H = 'Host: a\r\n'

/**
 * Shared proxies tolerate upstream failures: a test that fails against a broken proxy (an upstream
 * left waiting, a 502) must not get the shared upstream ejected by passive health and fail the tests after it.
 */
const TOLERANT = { healthCheck: { passive: { maxFailures: 1000, cooldownMs: 1 } } }

for (const mode of MODES) {
  describe(`what is forwarded is the proxy's own framing (${mode.name})`, () => {
    const up = new RecordingUpstream()
    let lb: RunningLb
    before(async () => {
      await up.start()
      lb = await startLb({ upstreams: [{ address: up.address }], ...TOLERANT }, mode.workers)
    })
    after(async () => {
      await lb.stop()
      await up.close()
    })

    /** One request on a fresh client connection; its response. */
    async function send (payload: string | Buffer): Promise<Message> {
      const client = await RawClient.open(lb.port)
      try {
        client.send(payload)
        return await client.response()
      } finally {
        client.close()
      }
    }

    /** A request the proxy must refuse with `status` and close, sending nothing upstream. */
    async function expectRefused (payload: string | Buffer, status: number): Promise<void> {
      const r = await rawExchange(lb.port, payload, { timeoutMs: 3000 })
      assert.match(r.text, new RegExp(`^HTTP/1\\.1 ${status} `), `response: ${JSON.stringify(r.text.slice(0, 120))}`)
      assert.equal(r.timedOut, false, 'the proxy closed the connection')
      await delay(SETTLE_MS)
      assert.equal(up.connections, 0, 'no connection to the upstream')
      assert.equal(up.requests.length, 0)
    }

    describe('Content-Length', () => {
      test('Content-Length: 00042 goes upstream as exactly one line Content-Length: 42', async (t) => {
        up.use(t)
        const body = 'x'.repeat(42)
        assert.equal((await send(`POST /cl HTTP/1.1\r\n${H}Content-Length: 00042\r\n\r\n${body}`)).status, 200)
        const got = up.only()
        assert.deepEqual(lines(got, 'content-length'), ['Content-Length: 42'])
        assert.equal(got.body.toString('latin1'), body)
      })

      test('two identical Content-Length lines go upstream as one', async (t) => {
        up.use(t)
        assert.equal((await send(`POST /cl2 HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`)).status, 200)
        const got = up.only()
        assert.deepEqual(lines(got, 'content-length'), ['Content-Length: 5'])
        assert.equal(got.body.toString('latin1'), 'hello')
      })
    })

    describe('chunked request bodies are re-chunked canonically', () => {
      const cases: Array<[string, string, string]> = [
        ['leading zeros and an extension', '0005;ext=1\r\nhello\r\n000\r\n\r\n', 'hello'],
        ['BWS and a quoted extension', '5 ; a="b"\r\nhello\r\n0\r\n\r\n', 'hello'],
        ['uppercase hex, extensions on every line', '00A;x\r\n0123456789\r\n0B;y=z\r\nabcdefghijk\r\n0;last=1\r\n\r\n', '0123456789abcdefghijk'],
      ]
      for (const [name, body, data] of cases) {
        test(`${name}: ${JSON.stringify(body)}`, async (t) => {
          up.use(t)
          assert.equal((await send(`POST /chunked HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${body}`)).status, 200)
          const got = up.only()
          assert.deepEqual(lines(got, 'transfer-encoding'), ['Transfer-Encoding: chunked'])
          assertCanonicalChunks(got)
          assert.equal(got.data.toString('latin1'), data)
          assert.ok(got.body.toString('latin1').endsWith('0\r\n\r\n'))
        })
      }
    })

    describe('request Transfer-Encoding', () => {
      const body = '5\r\nhello\r\n0\r\n\r\n'
      for (const [name, fieldLines] of [
        ['gzip, chunked', 'Transfer-Encoding: gzip, chunked\r\n'],
        ['cow, chunked', 'Transfer-Encoding: cow, chunked\r\n'],
        ['two lines: gzip, then chunked', 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n'],
      ]) {
        test(`${name} -> 501, closed, nothing upstream`, async (t) => {
          up.use(t)
          await expectRefused(`POST /te HTTP/1.1\r\n${H}${fieldLines}\r\n${body}`, 501)
        })
      }

      for (const value of [',chunked', 'chunked ,', 'Chunked']) {
        test(`${JSON.stringify(value)} is chunked: upstream sees exactly Transfer-Encoding: chunked`, async (t) => {
          up.use(t)
          assert.equal((await send(`POST /te HTTP/1.1\r\n${H}Transfer-Encoding: ${value}\r\n\r\n${body}`)).status, 200)
          const got = up.only()
          assert.deepEqual(lines(got, 'transfer-encoding'), ['Transfer-Encoding: chunked'])
          assert.equal(got.data.toString('latin1'), 'hello')
        })
      }

      for (const value of ['chun=ked, chunked', 'cow chunked, chunked', 'gz\xe9p, chunked']) {
        test(`${JSON.stringify(value)} breaks the grammar -> 400, nothing upstream`, async (t) => {
          up.use(t)
          await expectRefused(Buffer.from(`POST /te HTTP/1.1\r\n${H}Transfer-Encoding: ${value}\r\n\r\n${body}`, 'latin1'), 400)
        })
      }
    })

    test('request trailers: X-Checksum is forwarded; Host, Content-Length, Transfer-Encoding, Connection, Authorization, Cache-Control are dropped', async (t) => {
      up.use(t)
      const trailers = 'X-Checksum: abc\r\nHost: evil.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n' +
        'Connection: close\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\nCache-Control: no-store\r\n'
      assert.equal((await send(`POST /trailers HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n${trailers}\r\n`)).status, 200)
      const got = up.only()
      assert.equal(got.data.toString('latin1'), 'hello')
      assert.deepEqual(got.trailers, [['X-Checksum', 'abc']])
      assert.deepEqual(values(got.fields, 'host'), ['a'])
    })

    describe('chunked responses', () => {
      test('to an HTTP/1.0 client: de-chunked, no Transfer-Encoding, then the proxy closes (RFC 9112 §6.1)', async (t) => {
        up.use(t, () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n006\r\n world\r\n0\r\nX-T: 1\r\n\r\n')
        const r = await rawExchange(lb.port, `GET /ten HTTP/1.0\r\n${H}\r\n`, { timeoutMs: 3000 })
        assert.equal(r.timedOut, false, `the proxy closed the connection after the body; got ${JSON.stringify(r.text)}`)
        const headEnd = r.text.indexOf('\r\n\r\n')
        const head = r.text.slice(0, headEnd)
        assert.match(head, /^HTTP\/1\.[01] 200 /)
        assert.doesNotMatch(head, /\r\ntransfer-encoding:/i)
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head)
        if (cl !== null) assert.equal(Number(cl[1]), 11)
        assert.equal(r.text.slice(headEnd + 4), 'hello world')
      })

      test('to an HTTP/1.1 client: re-chunked canonically (no extension, no leading zeros), trailer kept', async (t) => {
        up.use(t, () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n000a;x=y\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n')
        const res = await send(`GET /eleven HTTP/1.1\r\n${H}TE: trailers\r\n\r\n`)
        assert.equal(res.status, 200)
        assert.deepEqual(lines(res, 'transfer-encoding'), ['Transfer-Encoding: chunked'])
        assertCanonicalChunks(res)
        assert.equal(res.data.toString('latin1'), '0123456789')
        assert.deepEqual(res.trailers, [['X-T', '1']])
      })

      test('a response Transfer-Encoding other than chunked (gzip, chunked) -> 502', async (t) => {
        // a proxy of its own: the 502 counts as an upstream failure, and passive health would eject a shared upstream
        const rec = new RecordingUpstream()
        await rec.start()
        t.after(async () => await rec.close())
        rec.use(t, () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
        const own = await startLb({ upstreams: [{ address: rec.address }] }, mode.workers)
        t.after(async () => await own.stop())
        const r = await rawExchange(own.port, `GET /gz HTTP/1.1\r\n${H}\r\n`, { until: (b) => b.includes('\r\n\r\n'), timeoutMs: 3000 })
        assert.match(r.text, /^HTTP\/1\.1 502 /, `response: ${JSON.stringify(r.text.slice(0, 120))}`)
      })
    })
  })
}
