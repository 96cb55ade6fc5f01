/**
 * The core data path, end to end with real sockets, in every mode (sequential
 * and workers=2): what reaches the upstream byte for byte, what comes back,
 * body framing both ways (Content-Length, chunked, trailers, 5 MB and 200 MB
 * streams), keep-alive and pipelining, bodiless responses and 1xx, gateway
 * errors (502/504, cut connections), RFC 9112 rejections and request
 * smuggling payloads that must never reach an upstream, and client aborts
 * that must leave the shared state clean.
 *
 * Upstreams are either Node's http server (startEchoUpstream, for what a real
 * server parses) or a recording TCP server that sees the exact bytes the
 * proxy sent and answers with exact bytes (framing tests).
 */
import { describe, test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { MODES, startLb, openClientConnections, type RunningLb } from './harness'
import { waitFor, startEchoUpstream, startRawServer, refusedPort, rawExchange, splitResponses, httpRequest } from '../helpers'
import { U_ACTIVE_REQUESTS, U_OPEN_SOCKETS } from '../../src/shared/layout'

// ---- test-side HTTP framing (independent of the proxy's parser) ---------------------------

/** Field lines of a head (after the start line) as [name, value] with the value trimmed. */
function fieldLines (head: string): Array<[string, string]> {
  return head.split('\r\n').slice(1).map((line) => {
    const c = line.indexOf(':')
    return [line.slice(0, c), line.slice(c + 1).trim()]
  })
}

/** Index just past a chunked body starting at `pos`, or -1 when more bytes are needed. */
function chunkedEnd (buf: Buffer, pos: number): number {
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos)
    if (lineEnd === -1) return -1
    const size = parseInt(buf.toString('latin1', pos, lineEnd).split(';')[0].trim(), 16)
    if (Number.isNaN(size)) throw new Error(`test side: bad chunk size line ${JSON.stringify(buf.toString('latin1', pos, lineEnd))}`)
    pos = lineEnd + 2
    if (size === 0) {
      for (;;) {
        const end = buf.indexOf('\r\n', pos)
        if (end === -1) return -1
        if (end === pos) return pos + 2
        pos = end + 2
      }
    }
    pos += size + 2
    if (pos > buf.length) return -1
  }
}

/** Length of the complete message at the front of `buf`, or -1 when more bytes are needed. */
function messageLength (buf: Buffer, opts: { response: boolean, noBody?: boolean, closed?: boolean }): number {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd === -1) return -1
  const bodyStart = headEnd + 4
  const head = buf.toString('latin1', 0, headEnd)
  if (opts.response) {
    const status = Number(head.split(' ')[1])
    if (status < 200 || status === 204 || status === 304 || opts.noBody === true) return bodyStart
  }
  const fields = fieldLines(head)
  const te = fields.filter(([n]) => n.toLowerCase() === 'transfer-encoding').map(([, v]) => v).join(',')
  if (/chunked\s*$/i.test(te)) return chunkedEnd(buf, bodyStart)
  const cl = fields.find(([n]) => n.toLowerCase() === 'content-length')
  if (cl !== undefined) {
    const end = bodyStart + Number(cl[1])
    return buf.length >= end ? end : -1
  }
  if (!opts.response) return bodyStart
  return opts.closed === true ? buf.length : -1
}

interface Message {
  startLine: string
  status: number
  /** The head exactly as received, without the final CRLFCRLF. */
  head: string
  fields: Array<[string, string]>
  /** lower-case name -> values joined with ", " */
  headers: Record<string, string>
  body: Buffer
}

function parseMessage (buf: Buffer): Message {
  const headEnd = buf.indexOf('\r\n\r\n')
  const head = buf.toString('latin1', 0, headEnd)
  const startLine = head.split('\r\n')[0]
  const fields = fieldLines(head)
  const headers: Record<string, string> = {}
  for (const [n, v] of fields) {
    const k = n.toLowerCase()
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`
  }
  return { startLine, status: Number(startLine.split(' ')[1]), head, fields, headers, body: buf.subarray(headEnd + 4) }
}

/** The payload of a message: dechunked when it is chunked (Node's echo upstream answers chunked). */
function payload (m: Message): string {
  return (/chunked\s*$/i.test(m.headers['transfer-encoding'] ?? '') ? dechunk(m.body) : m.body).toString('latin1')
}

/** Every complete response in `buf`. */
function allResponses (buf: Buffer): Message[] {
  const out: Message[] = []
  let rest = buf
  for (;;) {
    const len = messageLength(rest, { response: true })
    if (len === -1) return out
    out.push(parseMessage(rest.subarray(0, len)))
    rest = rest.subarray(len)
  }
}

function dechunk (body: Buffer): Buffer {
  const out: Buffer[] = []
  let pos = 0
  for (;;) {
    const lineEnd = body.indexOf('\r\n', pos)
    const size = parseInt(body.toString('latin1', pos, lineEnd).split(';')[0], 16)
    if (size === 0) return Buffer.concat(out)
    out.push(body.subarray(lineEnd + 2, lineEnd + 2 + size))
    pos = lineEnd + 2 + size + 2
  }
}

/** One client connection we drive by hand: write exact bytes, read one response at a time. */
class RawClient {
  private buf = Buffer.alloc(0)
  closed = false
  readonly socket: net.Socket

  private constructor (socket: net.Socket) {
    this.socket = socket
    socket.on('data', (c: Buffer) => { this.buf = Buffer.concat([this.buf, c]) })
    socket.on('end', () => { this.closed = true })
    socket.on('close', () => { this.closed = true })
    socket.on('error', () => { this.closed = true })
  }

  static async open (port: number): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    return new RawClient(socket)
  }

  send (data: string | Buffer): void { this.socket.write(data) }

  /** The next complete response (1xx count as one); `noBody` for the answer to HEAD. */
  async response (opts: { noBody?: boolean, timeoutMs?: number } = {}): Promise<Message> {
    let n = -1
    await waitFor(() => {
      n = messageLength(this.buf, { response: true, noBody: opts.noBody, closed: this.closed })
      return n !== -1 || this.closed
    }, opts.timeoutMs ?? 5000, 'a complete response')
    if (n === -1) throw new Error(`connection closed before a complete response; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)
    const message = parseMessage(this.buf.subarray(0, n))
    this.buf = this.buf.subarray(n)
    return message
  }

  get unread (): Buffer { return this.buf }

  close (): void { this.socket.destroy() }
}

type Responder = (socket: net.Socket, request: Message, raw: Buffer) => void
type EchoHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean
const defaultRespond: Responder = (socket) => { socket.write(okResponse()) }

interface RecordingUpstream {
  port: number
  address: string
  /** connections accepted */
  readonly connections: number
  /** every complete request, exact bytes */
  requests: Buffer[]
  /** the proxy-side port of the connection each request came on */
  ports: number[]
  close (): Promise<void>
}

/**
 * A TCP upstream that records each complete request's exact bytes and answers
 * through `respond` (which writes raw bytes, or nothing at all).
 */
async function startRecordingUpstream (respond: Responder): Promise<RecordingUpstream> {
  const requests: Buffer[] = []
  const ports: number[] = []
  const server = await startRawServer((socket) => {
    let buf = Buffer.alloc(0)
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      for (;;) {
        const n = messageLength(buf, { response: false })
        if (n === -1) return
        const raw = buf.subarray(0, n)
        buf = buf.subarray(n)
        requests.push(raw)
        ports.push(socket.remotePort ?? -1)
        respond(socket, parseMessage(raw), raw)
      }
    })
  })
  return {
    port: server.port,
    address: server.address,
    get connections () { return server.count },
    requests,
    ports,
    close: async () => await server.close(),
  }
}

function okResponse (body = 'ok', extra = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`
}

function get (path: string, extraLines: string[] = []): string {
  return `GET ${path} HTTP/1.1\r\nHost: example.test\r\n${extraLines.map((l) => l + '\r\n').join('')}\r\n`
}

function sha256 (data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

function activeRequests (r: RunningLb, index = 0): number {
  return r.lb.state.upstream(r.lb.table[index].slot, U_ACTIVE_REQUESTS)
}

function openSockets (r: RunningLb, index = 0): number {
  return r.lb.state.upstream(r.lb.table[index].slot, U_OPEN_SOCKETS)
}

/** Nothing is left for the upstream: no request in flight, no socket open (failed ones are not pooled). */
async function upstreamSettled (r: RunningLb): Promise<void> {
  await waitFor(() => activeRequests(r) === 0 && openSockets(r) === 0, 3000, 'U_ACTIVE_REQUESTS and U_OPEN_SOCKETS back to 0')
}

const delay = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/**
 * A client that streams a request body without waiting for an answer (as curl
 * -T does) and reads only later: writes `head`, then `pieces` x 16 KB paced by
 * `paceMs`, with reading paused; then reads. Stops writing if the connection fails.
 */
async function streamingClient (port: number, head: string, pieces: number, paceMs: number): Promise<{ socket: net.Socket, text: () => string, error: () => string | null, ended: () => boolean }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  let error: string | null = null
  let ended = false
  socket.pause()
  socket.on('data', (c: Buffer) => { text += c.toString('latin1') })
  socket.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message })
  socket.on('end', () => { ended = true })
  socket.write(head)
  const piece = Buffer.alloc(16 * 1024, 0x78)
  for (let i = 0; i < pieces && error === null && !socket.destroyed; i++) {
    socket.write(piece)
    await delay(paceMs)
  }
  socket.resume()
  return { socket, text: () => text, error: () => error, ended: () => ended }
}

/** Reject if `promise` takes longer than `ms` (so a proxy that hangs fails the test with a message). */
async function within<T> (ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

const upstreamsOf = (...addresses: string[]): Record<string, unknown> => ({ upstreams: addresses.map((address) => ({ address })) })

for (const mode of MODES) {
  describe(`proxy data path (${mode.name})`, () => {
    // Success-path tests share two proxies, one in front of Node's echo upstream and one in
    // front of a recording upstream; each test installs its own answer. Tests where an upstream
    // fails get a proxy of their own (passive health would eject a shared upstream).
    let echo: Awaited<ReturnType<typeof startEchoUpstream>>
    let echoLb: RunningLb
    let echoOverride: EchoHandler | null = null
    let raw: RecordingUpstream
    let rawLb: RunningLb
    let rawRespond: Responder = defaultRespond
    before(async () => {
      echo = await startEchoUpstream('echo', (req, res, body) => echoOverride !== null && echoOverride(req, res, body))
      echoLb = await startLb(upstreamsOf(echo.address), mode.workers)
      raw = await startRecordingUpstream((socket, request, bytes) => rawRespond(socket, request, bytes))
      rawLb = await startLb(upstreamsOf(raw.address), mode.workers)
    })
    after(async () => {
      await echoLb.stop()
      await rawLb.stop()
      await echo.close()
      await raw.close()
    })

    /** The shared recording upstream answers with `respond` for this test; its logs start empty. */
    function answerWith (t: TestContext, respond: Responder): { requests: Buffer[], ports: number[], readonly connections: number } {
      rawRespond = respond
      raw.requests.length = 0
      raw.ports.length = 0
      const connectionsBefore = raw.connections
      t.after(() => { rawRespond = defaultRespond })
      return { requests: raw.requests, ports: raw.ports, get connections () { return raw.connections - connectionsBefore } }
    }

    /** The shared echo upstream (`handler` answers first when given) for this test; counts start at 0. */
    function useEcho (t: TestContext, handler: EchoHandler | null = null): { readonly count: number, readonly connections: number } {
      echoOverride = handler
      const requestsBefore = echo.count
      let connections = 0
      const onConnection = (): void => { connections++ }
      echo.server.on('connection', onConnection)
      t.after(() => { echoOverride = null; echo.server.off('connection', onConnection) })
      return { get count () { return echo.count - requestsBefore }, get connections () { return connections } }
    }

    // ---- relaying -----------------------------------------------------------------------

    describe('relaying a request and its response', () => {
      test('request line and end-to-end fields reach the upstream byte for byte; hop-by-hop fields are dropped; forwarding fields are appended', async (t) => {
        const up = answerWith(t, (socket) => socket.write(okResponse()))
        const lb = rawLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(
          'GET /path/a%20b?x=1&y=%2F HTTP/1.1\r\n' +
          'Host: example.test:8080\r\n' +
          'X-Mixed-Case: Some Value\r\n' +
          'Connection: keep-alive, X-Hop-Named\r\n' +
          'x-lower:   padded  value  \r\n' +
          'X-Hop-Named: secret\r\n' +
          'Keep-Alive: timeout=5\r\n' +
          'X-Dup: one\r\n' +
          'Proxy-Connection: keep-alive\r\n' +
          'TE: trailers\r\n' +
          'Trailer: X-Checksum\r\n' +
          'Upgrade: websocket\r\n' +
          'X-Dup: two\r\n' +
          'Accept: */*\r\n' +
          '\r\n')
        const res = await client.response()
        assert.equal(res.status, 200)
        assert.equal(up.requests.length, 1)
        const got = up.requests[0].toString('latin1')
        const kept =
          'GET /path/a%20b?x=1&y=%2F HTTP/1.1\r\n' +
          'Host: example.test:8080\r\n' +
          'X-Mixed-Case: Some Value\r\n' +
          'x-lower:   padded  value  \r\n' +
          'X-Dup: one\r\n' +
          'X-Dup: two\r\n' +
          'Accept: */*\r\n'
        assert.ok(got.startsWith(kept), `upstream got:\n${got}\nexpected it to start with:\n${kept}`)
        assert.ok(got.endsWith('\r\n\r\n'), 'no body after a GET head')
        const added = fieldLines(got.slice(0, -4)).slice(fieldLines(kept.slice(0, -2)).length)
        const addedFields = Object.fromEntries(added.map(([n, v]) => [n.toLowerCase(), v]))
        // requestId is on by default: a new X-Request-Id (thread prefix + counter) goes up too
        assert.match(addedFields['x-request-id'], /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/)
        assert.deepEqual(
          addedFields,
          {
            'x-request-id': addedFields['x-request-id'],
            'x-forwarded-for': '127.0.0.1',
            'x-forwarded-proto': 'http',
            forwarded: 'for=127.0.0.1;proto=http',
            via: '1.1 switchyard',
          },
          `fields appended after the client's: ${JSON.stringify(added)}`)
        assert.equal(added.length, 5)
      })

      test('Node upstream sees the fields in order and case (rawHeaders); X-Forwarded-For, Forwarded and Via append to incoming ones', async (t) => {
        useEcho(t)
        const lb = echoLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(
          'GET /echo?q=1 HTTP/1.1\r\n' +
          'Host: example.test\r\n' +
          'X-First: 1\r\n' +
          'x-second: Two\r\n' +
          'X-Forwarded-For: 1.2.3.4\r\n' +
          'Forwarded: for=1.2.3.4\r\n' +
          'Via: 1.0 edge\r\n' +
          'X-Forwarded-Proto: https\r\n' +
          'X-LAST: last\r\n' +
          '\r\n')
        const res = await client.response()
        assert.equal(res.status, 200)
        const seen = JSON.parse(payload(res)) as { method: string, url: string, headers: Record<string, string>, rawHeaders: string[] }
        assert.equal(seen.method, 'GET')
        assert.equal(seen.url, '/echo?q=1')
        // the fields the proxy adds: forwarding ones and the request ID (requestId, on by default)
        const forwarding = new Set(['x-forwarded-for', 'x-forwarded-proto', 'forwarded', 'via', 'x-request-id'])
        const pairs: Array<[string, string]> = []
        for (let i = 0; i < seen.rawHeaders.length; i += 2) pairs.push([seen.rawHeaders[i], seen.rawHeaders[i + 1]])
        assert.deepEqual(pairs.filter(([n]) => !forwarding.has(n.toLowerCase())), [
          ['Host', 'example.test'],
          ['X-First', '1'],
          ['x-second', 'Two'],
          ['X-LAST', 'last'],
        ])
        assert.equal(seen.headers['x-forwarded-for'], '1.2.3.4, 127.0.0.1')
        assert.equal(seen.headers.forwarded, 'for=1.2.3.4, for=127.0.0.1;proto=http')
        assert.equal(seen.headers.via, '1.0 edge, 1.1 switchyard')
        assert.match(seen.headers['x-request-id'], /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/)
        // this hop speaks plain http: a client-supplied X-Forwarded-Proto must not survive
        assert.equal(seen.headers['x-forwarded-proto'], 'http')
        assert.equal(res.headers.via, '1.1 switchyard')
        assert.equal(res.headers['x-upstream'], 'echo')
      })

      test('response: status line, end-to-end fields byte for byte, Via added, hop-by-hop fields dropped', async (t) => {
        answerWith(t, (socket) => socket.write(
          'HTTP/1.1 200 OK\r\n' +
          'Server: raw-upstream\r\n' +
          'X-Resp-Mixed:  KeepMe \r\n' +
          'Connection: keep-alive, X-Resp-Hop\r\n' +
          'X-Resp-Hop: drop\r\n' +
          'Keep-Alive: timeout=5, max=100\r\n' +
          'Set-Cookie: a=1; Path=/\r\n' +
          'Proxy-Connection: keep-alive\r\n' +
          'TE: trailers\r\n' +
          'Trailer: X-Nothing\r\n' +
          'Upgrade: h2c\r\n' +
          'Set-Cookie: b=2\r\n' +
          'Content-Length: 5\r\n' +
          '\r\n' +
          'hello'))
        const lb = rawLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(get('/resp'))
        const res = await client.response()
        assert.equal(res.startLine, 'HTTP/1.1 200 OK')
        const keptPrefix =
          'HTTP/1.1 200 OK\r\n' +
          'Server: raw-upstream\r\n' +
          'X-Resp-Mixed:  KeepMe \r\n' +
          'Set-Cookie: a=1; Path=/\r\n' +
          'Set-Cookie: b=2\r\n' +
          'Content-Length: 5\r\n'
        assert.ok((res.head + '\r\n').startsWith(keptPrefix), `client got:\n${res.head}`)
        assert.equal(res.headers.via, '1.1 switchyard')
        const names = res.fields.map(([n]) => n.toLowerCase())
        for (const hop of ['x-resp-hop', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
          assert.ok(!names.includes(hop), `${hop} must not reach the client:\n${res.head}`)
        }
        assert.ok(!/x-resp-hop/i.test(res.headers.connection ?? ''), 'Connection options of the upstream are not the client\'s')
        assert.equal(res.body.toString(), 'hello')
      })

      test('POST with a Content-Length body', async (t) => {
        useEcho(t)
        const lb = echoLb

        const body = 'field=value&other=' + 'x'.repeat(3000)
        const res = await httpRequest(lb.port, { method: 'POST', path: '/form', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(body.length) }, body })
        assert.equal(res.status, 200)
        const seen = JSON.parse(res.body) as { method: string, url: string, body: string, headers: Record<string, string> }
        assert.equal(seen.method, 'POST')
        assert.equal(seen.url, '/form')
        assert.equal(seen.body, body)
        assert.equal(seen.headers['content-length'], String(body.length))
      })

      test('POST with a chunked body arriving in pieces: the upstream gets the same data and trailer, re-chunked canonically', async (t) => {
        const up = answerWith(t, (socket) => socket.write(okResponse('got it')))
        const lb = rawLb

        const head = 'POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n'
        const pieces = ['5;ext=1\r\nhel', 'lo\r\n', '7\r\n, world\r\n', '1a\r\n' + 'abcdefghijklmnopqrstuvwxyz' + '\r\n', '0\r\nX-Trailer: t\r\n\r\n']
        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(head)
        for (const piece of pieces) {
          await delay(15)
          client.send(piece)
        }
        const res = await client.response()
        assert.equal(res.status, 200)
        assert.equal(res.body.toString(), 'got it')
        assert.equal(up.requests.length, 1)
        const got = parseMessage(up.requests[0])
        assert.equal(got.startLine, 'POST /upload HTTP/1.1')
        assert.equal(got.headers['transfer-encoding'], 'chunked')
        assert.equal(got.headers['content-length'], undefined)
        // RFC 9112 §7.1: switchyard re-emits the chunk lines itself (no extensions, no leading zeros)
        const wire = got.body.toString('latin1')
        let data = ''
        let pos = 0
        for (;;) {
          const lineEnd = wire.indexOf('\r\n', pos)
          const line = wire.slice(pos, lineEnd)
          assert.match(line, /^(0|[1-9a-f][0-9a-f]*)$/, `canonical chunk-size line: ${JSON.stringify(line)}`)
          const size = parseInt(line, 16)
          pos = lineEnd + 2
          if (size === 0) break
          data += wire.slice(pos, pos + size)
          assert.equal(wire.slice(pos + size, pos + size + 2), '\r\n')
          pos += size + 2
        }
        assert.equal(data, 'hello, world' + 'abcdefghijklmnopqrstuvwxyz')
        assert.equal(wire.slice(pos), 'X-Trailer: t\r\n\r\n')
      })

      test('chunked response with trailers is relayed (Node client reads body and trailers)', async (t) => {
        answerWith(t, (socket) => {
          socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n')
          setTimeout(() => socket.write('6\r\n world\r\n0\r\nX-Checksum: abc123\r\n\r\n'), 20)
        })
        const lb = rawLb

        const result = await within(5000, 'chunked response', new Promise<{ status: number, body: string, trailers: NodeJS.Dict<string>, headers: http.IncomingHttpHeaders }>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port: lb.port, path: '/chunked', agent: false }, (res) => {
            let body = ''
            res.setEncoding('latin1')
            res.on('data', (c: string) => { body += c })
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, trailers: res.trailers, headers: res.headers }))
            res.on('error', reject)
          })
          req.on('error', reject)
        }))
        assert.equal(result.status, 200)
        assert.equal(result.headers['transfer-encoding'], 'chunked')
        assert.equal(result.body, 'hello world')
        assert.equal(result.trailers['x-checksum'], 'abc123')
      })

      for (const framing of ['content-length', 'chunked'] as const) {
        test(`5 MB each way streams intact (upload framed by ${framing}, chunked download)`, async (t) => {
          const download = randomBytes(5 * 1024 * 1024)
          useEcho(t, (req, res, body) => {
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-received-sha256': sha256(body), 'x-received-length': String(body.length), 'x-received-te': String(req.headers['transfer-encoding'] ?? '') })
            for (let o = 0; o < download.length; o += 256 * 1024) res.write(download.subarray(o, o + 256 * 1024))
            res.end()
            return true
          })
          const lb = echoLb

          const upload = randomBytes(5 * 1024 * 1024)
          const result = await within(20_000, '5 MB exchange', new Promise<{ status: number, headers: http.IncomingHttpHeaders, hash: string, length: number }>((resolve, reject) => {
            const headers: http.OutgoingHttpHeaders = framing === 'content-length' ? { 'content-length': upload.length } : { 'transfer-encoding': 'chunked' }
            const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'POST', path: '/big', agent: false, headers }, (res) => {
              const hash = createHash('sha256')
              let length = 0
              res.on('data', (c: Buffer) => { hash.update(c); length += c.length })
              res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, hash: hash.digest('hex'), length }))
              res.on('error', reject)
            })
            req.on('error', reject)
            for (let o = 0; o < upload.length; o += 100_000) req.write(upload.subarray(o, o + 100_000))
            req.end()
          }))
          assert.equal(result.status, 200)
          assert.equal(result.headers['x-received-length'], String(upload.length))
          assert.equal(result.headers['x-received-sha256'], sha256(upload))
          if (framing === 'chunked') assert.equal(result.headers['x-received-te'], 'chunked')
          assert.equal(result.length, download.length)
          assert.equal(result.hash, sha256(download))
        })
      }
    })

    describe('connection handling', () => {
      test('GET with a Content-Length body: line, headers and body relayed', async (t) => {
        useEcho(t)
        const lb = echoLb
        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send('GET /search?q=x HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"query":"x"}')
        const res = await client.response()
        assert.equal(res.status, 200)
        const seen = JSON.parse(payload(res)) as { method: string, url: string, body: string, headers: Record<string, string> }
        assert.equal(seen.method, 'GET')
        assert.equal(seen.url, '/search?q=x')
        assert.equal(seen.body, '{"query":"x"}')
        assert.equal(seen.headers['content-type'], 'application/json')
        assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
      })

      test('close-delimited upstream response: the body is relayed and the client connection closes with Connection: close', async (t) => {
        answerWith(t, (socket) => { socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the upstream closes') })
        const lb = rawLb
        const result = await rawExchange(lb.port, get('/eof'), { timeoutMs: 3000 })
        assert.equal(result.timedOut, false)
        assert.equal(result.closed, true)
        const res = parseMessage(result.data)
        assert.equal(res.status, 200)
        assert.equal(res.headers.connection, 'close')
        assert.equal(res.body.toString(), 'until the upstream closes')
      })

      test('Connection: close from the client: answered with Connection: close, then closed', async (t) => {
        useEcho(t)
        const lb = echoLb
        const result = await rawExchange(lb.port, get('/bye', ['Connection: close']), { timeoutMs: 3000 })
        assert.equal(result.timedOut, false, 'the proxy closed the connection')
        const res = parseMessage(result.data)
        assert.equal(res.status, 200)
        assert.equal(res.headers.connection, 'close')
        assert.equal((JSON.parse(payload(res)) as { url: string }).url, '/bye')
      })

      test('a client that half-closes after its request still gets the response', async (t) => {
        useEcho(t)
        const lb = echoLb
        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.socket.end(get('/half-closed'))
        const res = await client.response({ timeoutMs: 3000 })
        assert.equal(res.status, 200)
        assert.equal((JSON.parse(payload(res)) as { url: string }).url, '/half-closed')
      })

      test('an idle pooled connection the upstream closed is dropped from the pool, and the next request succeeds', async (t) => {
        // answers keep-alive, then closes the idle connection 20 ms later (an upstream's idle timeout)
        const up = await startRecordingUpstream((socket) => {
          socket.write(okResponse('pooled'))
          setTimeout(() => socket.end(), 20)
        })
        t.after(async () => await up.close())
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())
        assert.equal((await httpRequest(lb.port, { path: '/first' })).status, 200)
        await waitFor(() => openSockets(lb) === 0, 3000, 'the proxy to notice the upstream closed its idle connection')
        const res = await httpRequest(lb.port, { path: '/second' })
        assert.equal(res.status, 200)
        assert.equal(res.body, 'pooled')
        assert.equal(up.connections, 2)
      })
    })

    // ---- connection reuse -----------------------------------------------------------------

    describe('keep-alive and pipelining', () => {
      test('20 requests on one client connection are served over one upstream connection', async (t) => {
        const upstreamPorts = new Set<number>()
        const up = useEcho(t, (req) => { upstreamPorts.add(req.socket.remotePort ?? -1); return false })
        const lb = echoLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        for (let i = 0; i < 20; i++) {
          client.send(get(`/ka/${i}`))
          const res = await client.response()
          assert.equal(res.status, 200)
          assert.equal((JSON.parse(payload(res)) as { url: string }).url, `/ka/${i}`)
          assert.equal(res.headers.connection, undefined, 'a keep-alive response to HTTP/1.1 needs no Connection field')
        }
        assert.equal(client.closed, false, 'the proxy kept the client connection open')
        assert.equal(up.count, 20)
        assert.equal(upstreamPorts.size, 1, `upstream connections used: ${upstreamPorts.size}`)
        assert.ok(up.connections <= 1, 'at most one new upstream connection (an idle pooled one may be reused)')
      })

      test('3 pipelined requests in one write (GET, POST with body, GET) get 3 responses in order on one connection', async (t) => {
        // answers with Content-Length (Node's default here would be chunked), which splitResponses() frames
        const up = useEcho(t, (req, res, body) => {
          const json = JSON.stringify({ method: req.method, url: req.url, body: body.toString('latin1') })
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
          res.end(json)
          return true
        })
        const lb = echoLb

        const body = 'pipelined body'
        const requests =
          get('/p1') +
          `POST /p2 HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
          get('/p3')
        const result = await rawExchange(lb.port, requests, { until: (b) => allResponses(b).length >= 3, timeoutMs: 5000 })
        assert.equal(result.timedOut, false, `got only: ${result.text}`)
        const responses = splitResponses(result.text)
        assert.equal(responses.length, 3)
        const echoes = responses.map((r) => { assert.equal(r.status, 200); return JSON.parse(r.body) as { method: string, url: string, body: string } })
        assert.deepEqual(echoes.map((e) => `${e.method} ${e.url}`), ['GET /p1', 'POST /p2', 'GET /p3'])
        assert.equal(echoes[1].body, body)
        assert.equal(up.count, 3)
      })
    })

    // ---- bodiless responses and 1xx --------------------------------------------------------

    describe('responses without a body, and interim responses', () => {
      test('HEAD: Content-Length relayed, no body waited for or sent; the connection carries on', async (t) => {
        const up = answerWith(t, (socket, req) => {
          if (req.startLine.startsWith('HEAD ')) socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n')
          else socket.write(okResponse('hello'))
        })
        const lb = rawLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send('HEAD /h HTTP/1.1\r\nHost: example.test\r\n\r\n')
        const head = await client.response({ noBody: true, timeoutMs: 3000 })
        assert.equal(head.status, 200)
        assert.equal(head.headers['content-length'], '1234')
        client.send(get('/after-head'))
        const next = await client.response({ timeoutMs: 3000 })
        assert.equal(next.status, 200)
        assert.equal(next.body.toString(), 'hello')
        assert.equal(client.unread.length, 0)
        assert.equal(new Set(up.ports).size, 1, 'the upstream connection was reused after the HEAD')
      })

      test('204 and 304 (with a Content-Length) end at the head; the next response follows cleanly', async (t) => {
        answerWith(t, (socket, req) => {
          if (req.startLine.includes(' /204 ')) socket.write('HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n')
          else if (req.startLine.includes(' /304 ')) socket.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 99\r\n\r\n')
          else socket.write(okResponse('after'))
        })
        const lb = rawLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(get('/204'))
        const r204 = await client.response({ timeoutMs: 3000 })
        assert.equal(r204.status, 204)
        assert.equal(r204.headers['x-a'], '1')
        client.send(get('/304'))
        const r304 = await client.response({ timeoutMs: 3000 })
        assert.equal(r304.status, 304)
        assert.equal(r304.headers.etag, '"v1"')
        client.send(get('/200'))
        const r200 = await client.response({ timeoutMs: 3000 })
        assert.equal(r200.status, 200)
        assert.equal(r200.body.toString(), 'after')
        assert.equal(client.unread.length, 0)
        assert.equal(client.closed, false)
      })

      test('Expect: 100-continue works end to end (Node upstream sends 100 Continue)', async (t) => {
        useEcho(t)
        const lb = echoLb

        const body = 'sent only after 100 Continue'
        let sawContinue = false
        const result = await within(5000, 'the 100 Continue and the final response', new Promise<{ status: number, body: string }>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'POST', path: '/continue', agent: false, headers: { expect: '100-continue', 'content-length': body.length } }, (res) => {
            let text = ''
            res.setEncoding('utf8')
            res.on('data', (c: string) => { text += c })
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
          })
          req.on('continue', () => { sawContinue = true; req.end(body) })
          req.on('error', reject)
          t.after(() => req.destroy())
        }))
        assert.ok(sawContinue, 'the client saw 100 Continue')
        assert.equal(result.status, 200)
        const seen = JSON.parse(result.body) as { body: string, headers: Record<string, string> }
        assert.equal(seen.body, body)
        assert.equal(seen.headers.expect, '100-continue')
      })

      test('103 Early Hints is relayed before the final response', async (t) => {
        answerWith(t, (socket) => {
          socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n')
          setTimeout(() => socket.write(okResponse('final')), 20)
        })
        const lb = rawLb

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(get('/hints'))
        const hints = await client.response()
        assert.equal(hints.status, 103)
        assert.equal(hints.headers.link, '</style.css>; rel=preload')
        const final = await client.response()
        assert.equal(final.status, 200)
        assert.equal(final.body.toString(), 'final')
      })
    })

    // ---- upstream failures -----------------------------------------------------------------

    describe('upstream failures', () => {
      test('502 with a short text body when the upstream port is closed', async (t) => {
        const port = await refusedPort()
        const lb = await startLb(upstreamsOf(`127.0.0.1:${port}`), mode.workers)
        t.after(async () => await lb.stop())
        const res = await httpRequest(lb.port, { path: '/down' })
        assert.equal(res.status, 502)
        assert.match(String(res.headers['content-type']), /^text\/plain/)
        assert.ok(res.body.length > 0 && res.body.length < 512, `short body: ${JSON.stringify(res.body)}`)
        assert.ok(!res.body.includes(String(port)), 'the body does not leak the upstream address')
        await upstreamSettled(lb)
      })

      test('502 answered while the request body is still arriving: the client reads it, and its connection is released when it hangs up', async (t) => {
        const port = await refusedPort()
        const lb = await startLb(upstreamsOf(`127.0.0.1:${port}`), mode.workers)
        // a short drain: while this bug stands, a graceful stop would wait its full 2 s for the stuck connection
        t.after(async () => await lb.lb.stop(200))
        const client = await streamingClient(lb.port, 'POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 10000000\r\n\r\n', 40, 5)
        t.after(() => client.socket.destroy())
        await waitFor(() => client.text().includes('\r\n\r\n') || client.error() !== null, 3000, 'the 502')
        assert.match(client.text(), /^HTTP\/1\.1 502 /)
        assert.match(client.text(), /\r\nconnection: close\r\n/i)
        client.socket.destroy()
        await waitFor(() => openClientConnections(lb) === 0, 1500,
          'the proxy to release the client connection (it answered, half-closed and left the socket paused with unread body bytes, so it never sees the client hang up)')
      })

      test('502 when the upstream answers garbage', async (t) => {
        const up = await startRecordingUpstream((socket) => { socket.end('this is not http at all\r\n\r\n') })
        t.after(async () => await up.close())
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())
        const res = await httpRequest(lb.port, { path: '/garbage' })
        assert.equal(res.status, 502)
        assert.match(String(res.headers['content-type']), /^text\/plain/)
        await upstreamSettled(lb)
      })

      test('502 when a malformed chunked body comes in the same read as the head: no head of a response that cannot be relayed', async (t) => {
        const bodies = ['zz\r\nhello\r\n0\r\n\r\n', '5\nhello\r\n0\r\n\r\n', '5\r\nhelloXX0\r\n\r\n', 'FFFFFFFFFFFFFFFFFFFF\r\nx\r\n']
        let n = 0
        const up = await startRecordingUpstream((socket) => { socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + bodies[n++ % bodies.length]) })
        t.after(async () => await up.close())
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())
        for (let i = 0; i < bodies.length; i++) {
          const result = await rawExchange(lb.port, get(`/bad-chunk/${i}`), { timeoutMs: 5000, until: (b) => b.includes('\r\n\r\n') && b[b.length - 1] === 0x0a && !b.toString('latin1').endsWith('\r\n\r\n') })
          assert.match(result.text, /^HTTP\/1\.1 502 /, `${JSON.stringify(bodies[i])}: ${JSON.stringify(result.text.slice(0, 80))}`)
          assert.equal(result.text.indexOf('HTTP/1.1 200'), -1, 'nothing of the upstream\'s response')
        }
        await upstreamSettled(lb)
      })

      test('502 when the upstream closes in the middle of the response head', async (t) => {
        const up = await startRecordingUpstream((socket) => { socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/pl'); setTimeout(() => socket.destroy(), 20) })
        t.after(async () => await up.close())
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())
        const res = await httpRequest(lb.port, { path: '/half-head' })
        assert.equal(res.status, 502)
        await upstreamSettled(lb)
      })

      test('502 when the upstream closes without answering', async (t) => {
        const up = await startRecordingUpstream((socket) => { socket.destroy() })
        t.after(async () => await up.close())
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())
        const res = await httpRequest(lb.port, { path: '/silent-close' })
        assert.equal(res.status, 502)
        await upstreamSettled(lb)
      })

      test('504 when the upstream accepts and never answers (timeouts.responseMs 300)', async (t) => {
        const up = await startRecordingUpstream(() => { /* never answer */ })
        t.after(async () => await up.close())
        const lb = await startLb({ ...upstreamsOf(up.address), timeouts: { responseMs: 300 } }, mode.workers)
        t.after(async () => await lb.stop())
        const started = Date.now()
        const res = await within(4000, 'the 504 (default responseMs is 5000: was the config applied?)', httpRequest(lb.port, { path: '/never' }))
        assert.equal(res.status, 504)
        assert.equal(up.requests.length, 1, 'the request did reach the upstream')
        assert.ok(Date.now() - started >= 250, 'not before responseMs')
        await upstreamSettled(lb)
      })

      for (const framing of ['content-length', 'chunked'] as const) {
        test(`upstream dies mid-body (${framing}): the client sees the connection close before a complete body`, async (t) => {
          const up = await startRecordingUpstream((socket) => {
            if (framing === 'content-length') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n' + 'x'.repeat(1000))
            else socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n')
            setTimeout(() => socket.destroy(), 50)
          })
          t.after(async () => await up.close())
          const lb = await startLb(upstreamsOf(up.address), mode.workers)
          t.after(async () => await lb.stop())
          const result = await rawExchange(lb.port, get('/dies'), { timeoutMs: 5000 })
          assert.equal(result.timedOut, false, 'the proxy closed the client connection')
          assert.equal(result.closed, true)
          assert.match(result.text, /^HTTP\/1\.1 200 /)
          const bodyStart = result.text.indexOf('\r\n\r\n') + 4
          const body = result.text.slice(bodyStart)
          if (framing === 'content-length') {
            assert.ok(body.length < 10000, 'the body is short, so the client knows it is truncated')
          } else {
            assert.ok(!body.includes('0\r\n\r\n'), `the proxy must not end a broken chunked body cleanly: ${JSON.stringify(body)}`)
            assert.ok(body.startsWith('10\r\n0123456789abcdef\r\n'))
          }
          await upstreamSettled(lb)
          await waitFor(() => openClientConnections(lb) === 0, 3000, 'the client connection released')
        })
      }
    })

    // ---- rejections ------------------------------------------------------------------------

    describe('rejected requests never reach the upstream', () => {
      const H = 'Host: example.test\r\n'
      const cases: Array<[string, string, number]> = [
        ['Content-Length and Transfer-Encoding together', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
        ['differing duplicate Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400],
        ['Content-Length with a sign', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`, 400],
        ['Transfer-Encoding not ending in chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, 501],
        ['invalid chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, 400],
        ['chunk size overflow', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n`, 400],
        ['obs-fold', `GET / HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n`, 400],
        ['space before colon', `GET / HTTP/1.1\r\n${H}X-Space : a\r\n\r\n`, 400],
        ['bare LF line ends', 'GET / HTTP/1.1\nHost: example.test\n\n', 400],
        ['bare LF inside the head', `GET / HTTP/1.1\r\n${H}X-A: 1\nX-B: 2\r\n\r\n`, 400],
        ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-Nul: a\x00b\r\n\r\n`, 400],
        ['20 KB of headers', `GET / HTTP/1.1\r\n${H}${Array.from({ length: 40 }, (_, i) => `X-Filler-${i}: ${'f'.repeat(500)}\r\n`).join('')}\r\n`, 431],
        ['10 KB request target', `GET /${'a'.repeat(10 * 1024)} HTTP/1.1\r\n${H}\r\n`, 414],
        ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n', 400],
        ['HTTP/1.0 with Transfer-Encoding', `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
        // request smuggling (PortSwigger's classic families)
        ['CL.TE smuggling', `POST / HTTP/1.1\r\n${H}Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED`, 400],
        ['TE.CL smuggling', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`, 400],
        ['TE.TE: Transfer-Encoding: xchunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`, 501],
        ['TE.TE: xchunked next to Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n5c\r\n`, 400],
        ['TE.TE: Transfer-Encoding: chunked, identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`, 501],
        ['TE.TE: chunked then a second Transfer-Encoding: identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n`, 501],
        ['TE.TE: chunked applied twice', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, 400],
        ['TE.TE: tab before the value, with Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n5c\r\n`, 400],
        ['TE.TE: tab before the colon', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding\t: chunked\r\n\r\n5c\r\n`, 400],
        ['TE.TE: folded onto the previous line with a tab', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nX-Foo: bar\r\n\tTransfer-Encoding: chunked\r\n\r\n5c\r\n`, 400],
        ['TE.TE: name starting with a space', `POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n${H}Content-Length: 4\r\n\r\n5c\r\n`, 400],
        ['TE.TE: vertical tab after chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n`, 400],
      ]

      let up: RecordingUpstream
      let lb: RunningLb
      before(async () => {
        up = await startRecordingUpstream((socket) => socket.write(okResponse('reached')))
        lb = await startLb(upstreamsOf(up.address), mode.workers)
      })
      after(async () => {
        await lb.stop()
        await up.close()
      })

      for (const [name, payload, status] of cases) {
        test(`${name} -> ${status}, Connection: close, nothing sent upstream`, async () => {
          const result = await rawExchange(lb.port, payload, { timeoutMs: 3000 })
          const head = result.text.slice(0, Math.max(0, result.text.indexOf('\r\n\r\n')))
          assert.match(result.text, new RegExp(`^HTTP/1\\.1 ${status} `), `response: ${JSON.stringify(result.text.slice(0, 200))}`)
          assert.match(head, /\r\nconnection: close(\r\n|$)/i)
          assert.equal(result.timedOut, false, 'the proxy closed the connection')
          assert.equal(up.connections, 0, 'no connection to the upstream')
          assert.equal(up.requests.length, 0)
        })
      }

      test('after all of that, the upstream has seen nothing, and a valid request still reaches it', async () => {
        assert.equal(up.connections, 0)
        const res = await httpRequest(lb.port, { path: '/valid' })
        assert.equal(res.status, 200)
        assert.equal(res.body, 'reached')
        assert.equal(up.requests.length, 1)
        assert.equal(up.requests[0].toString('latin1').split('\r\n')[0], 'GET /valid HTTP/1.1')
      })

      test('a rejected request whose body is still arriving: the client still reads the 400 (lingering close, RFC 9112 §9.6)', async () => {
        const connectionsBefore = up.connections
        const requestsBefore = up.requests.length
        const client = await streamingClient(lb.port, `POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`, 20, 10)
        try {
          await waitFor(() => client.ended() || client.error() !== null, 3000, 'the proxy to close the connection')
          assert.match(client.text(), /^HTTP\/1\.1 400 /, `the client read ${JSON.stringify(client.text().slice(0, 60))} (socket error: ${String(client.error())}): ` +
            'closing with unread request bytes makes the kernel send RST, which discards the 400 before the client reads it')
          assert.equal(up.connections, connectionsBefore, 'no new connection to the upstream')
          assert.equal(up.requests.length, requestsBefore, 'nothing sent upstream')
        } finally {
          client.socket.destroy()
        }
      })

      test('an invalid chunk arriving after the head was forwarded: 400 and the connection closes', async (t) => {
        const rec = await startRecordingUpstream((socket) => socket.write(okResponse()))
        t.after(async () => await rec.close())
        const lb2 = await startLb(upstreamsOf(rec.address), mode.workers)
        t.after(async () => await lb2.stop())
        const result = await rawExchange(lb2.port, [
          `POST /late HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`,
          'zz\r\nmore\r\n0\r\n\r\n',
        ], { delayMs: 100, timeoutMs: 3000 })
        assert.match(result.text, /^HTTP\/1\.1 400 /, `response: ${JSON.stringify(result.text.slice(0, 200))}`)
        assert.equal(result.timedOut, false)
        assert.equal(rec.requests.length, 0, 'the upstream never saw a complete request')
      })
    })

    // ---- client aborts ---------------------------------------------------------------------

    describe('client aborts leave the proxy clean', () => {
      test('client disconnects mid-request-body: active requests back to 0, upstream connection closed, next request works', async (t) => {
        const up = await startEchoUpstream('abort-upload')
        t.after(async () => await up.close())
        let started = 0
        let upstreamSocketsClosed = 0
        up.server.on('request', (req: http.IncomingMessage) => {
          started++
          req.socket.once('close', () => { upstreamSocketsClosed++ })
        })
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send('POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1000000\r\n\r\n')
        client.send(Buffer.alloc(64 * 1024, 0x61))
        await waitFor(() => started === 1, 5000, 'the upstream to start receiving the request')
        assert.equal(activeRequests(lb), 1)
        client.close()
        await waitFor(() => activeRequests(lb) === 0, 5000, 'U_ACTIVE_REQUESTS back to 0')
        await waitFor(() => upstreamSocketsClosed === 1, 5000, 'the proxy to close the half-sent upstream request')
        await waitFor(() => openSockets(lb) === 0, 5000, 'U_OPEN_SOCKETS back to 0')
        await waitFor(() => openClientConnections(lb) === 0, 5000, 'no client connection left open')
        assert.equal(up.count, 0, 'the upstream never got a complete request')

        const res = await httpRequest(lb.port, { path: '/after-abort' })
        assert.equal(res.status, 200)
        // the counter drops just after the last response bytes are written (another thread in worker mode)
        await waitFor(() => activeRequests(lb) === 0, 5000, 'U_ACTIVE_REQUESTS back to 0 after the next request')
      })

      test('client disconnects mid-response (slow, large upstream response): active requests back to 0, upstream connection closed, next request works', async (t) => {
        let responsesClosed = 0
        const timers = new Set<NodeJS.Timeout>()
        const up = await startEchoUpstream('abort-download', (req, res) => {
          if (req.url !== '/slow') return false
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(512 * 1024 * 1024) })
          const piece = Buffer.alloc(64 * 1024, 0x62)
          const timer = setInterval(() => { res.write(piece) }, 10)
          timers.add(timer)
          res.on('close', () => { clearInterval(timer); timers.delete(timer); responsesClosed++ })
          return true
        })
        t.after(async () => { for (const timer of timers) clearInterval(timer); await up.close() })
        const lb = await startLb(upstreamsOf(up.address), mode.workers)
        t.after(async () => await lb.stop())

        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        let received = 0
        client.socket.on('data', (c: Buffer) => { received += c.length })
        client.send(get('/slow'))
        await waitFor(() => received > 100 * 1024, 5000, 'some of the response')
        assert.equal(activeRequests(lb), 1)
        client.close()
        await waitFor(() => activeRequests(lb) === 0, 5000, 'U_ACTIVE_REQUESTS back to 0')
        await waitFor(() => responsesClosed === 1, 5000, 'the proxy to close the upstream connection')
        await waitFor(() => openSockets(lb) === 0, 5000, 'U_OPEN_SOCKETS back to 0')
        await waitFor(() => openClientConnections(lb) === 0, 5000, 'no client connection left open')

        const res = await httpRequest(lb.port, { path: '/after-abort' })
        assert.equal(res.status, 200)
        assert.equal((JSON.parse(res.body) as { url: string }).url, '/after-abort')
      })
    })

    // ---- a large upload --------------------------------------------------------------------

    describe('streaming', () => {
      test('a 200 MB upload streams through: intact, and RSS grows by far less than the body', { timeout: 60_000 }, async (t) => {
        const total = 200 * 1024 * 1024
        const server = http.createServer((req, res) => {
          const hash = createHash('sha256')
          let length = 0
          req.on('data', (c: Buffer) => { hash.update(c); length += c.length })
          req.on('end', () => {
            res.writeHead(200, { 'content-type': 'application/json' })
            res.end(JSON.stringify({ length, sha256: hash.digest('hex') }))
          })
        })
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
        t.after(async () => { server.closeAllConnections(); await new Promise<void>((resolve) => server.close(() => resolve())) })
        const upPort = (server.address() as AddressInfo).port
        const lb = await startLb(upstreamsOf(`127.0.0.1:${upPort}`), mode.workers)
        t.after(async () => await lb.stop())

        const piece = randomBytes(64 * 1024)
        const sent = createHash('sha256')
        const baseline = process.memoryUsage.rss()
        let peak = baseline
        const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()) }, 25)
        t.after(() => clearInterval(sampler))
        const result = await new Promise<{ status: number, body: string }>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'PUT', path: '/huge', agent: false, headers: { 'content-length': total } }, (res) => {
            let body = ''
            res.setEncoding('utf8')
            res.on('data', (c: string) => { body += c })
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
          })
          req.on('error', reject)
          let written = 0
          const pump = (): void => {
            while (written < total) {
              sent.update(piece)
              written += piece.length
              if (!req.write(piece)) { req.once('drain', pump); return }
            }
            req.end()
          }
          pump()
        })
        clearInterval(sampler)
        peak = Math.max(peak, process.memoryUsage.rss())
        assert.equal(result.status, 200)
        const got = JSON.parse(result.body) as { length: number, sha256: string }
        assert.equal(got.length, total)
        assert.equal(got.sha256, sent.digest('hex'))
        const growthMb = (peak - baseline) / 1024 / 1024
        assert.ok(growthMb < 100, `RSS grew by ${growthMb.toFixed(1)} MB for a 200 MB body`)
      })
    })
  })
}
