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
 * parser independent of the proxy's, in wire.ts) and answers with exact bytes.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { MODES, startLb, type RunningLb } from './harness'
import { rawExchange } from '../helpers'
import { RawClient, RecordingUpstream, SETTLE_MS, TOLERANT, delay, lines, values, type Message } from './wire'

/** Canonical chunked framing: sizes in lowercase hex without leading zeros or extensions, ending with a 0 line. */
function assertCanonicalChunks (m: Message): void {
  assert.ok(m.chunkSizeLines.length >= 1, 'chunked')
  for (const line of m.chunkSizeLines) assert.match(line, /^(0|[1-9a-f][0-9a-f]*)$/, `chunk-size line ${JSON.stringify(line)} in ${JSON.stringify(m.body.toString('latin1'))}`)
  assert.equal(m.chunkSizeLines[m.chunkSizeLines.length - 1], '0')
}

const H = 'Host: a\r\n'

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

    describe('HTTP versions: the proxy sends its own (RFC 9110 §2.5), and takes 1.2 and up as 1.1 (RFC 9112 §2.3)', () => {
      const KEEP = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'

      test('HTTP/1.0 with Host goes upstream as HTTP/1.1 (Via says 1.0, Expect dropped)', async (t) => {
        up.use(t, () => KEEP)
        for (const path of ['/ten-a', '/ten-b']) {
          const r = await rawExchange(lb.port, `POST ${path} HTTP/1.0\r\n${H}Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi`, { timeoutMs: 3000 })
          assert.match(r.text, /^HTTP\/1\.1 200 /)
          assert.ok(r.text.endsWith('\r\n\r\nok'), JSON.stringify(r.text))
        }
        assert.deepEqual(up.requests.map((m) => m.startLine), ['POST /ten-a HTTP/1.1', 'POST /ten-b HTTP/1.1'])
        for (const got of up.requests) {
          assert.deepEqual(values(got.fields, 'host'), ['a'])
          assert.deepEqual(values(got.fields, 'expect'), [], 'the 1.0 expectation is ignored, not forwarded as a 1.1 one')
          assert.match(values(got.fields, 'via').join(), /^1\.0 /)
          assert.equal(got.body.toString('latin1'), 'hi')
        }
      })

      test('HTTP/1.0 without any Host stays HTTP/1.0 upstream (an HTTP/1.1 request without Host is refused)', async (t) => {
        up.use(t)
        const r = await rawExchange(lb.port, 'GET /no-host HTTP/1.0\r\n\r\n', { timeoutMs: 3000 })
        assert.match(r.text, /^HTTP\/1\.1 200 /)
        const got = up.only()
        assert.equal(got.startLine, 'GET /no-host HTTP/1.0')
        assert.deepEqual(values(got.fields, 'host'), [])
      })

      test('an HTTP/1.0 absolute-form request goes upstream as HTTP/1.1 with the target\'s authority as Host', async (t) => {
        up.use(t)
        const r = await rawExchange(lb.port, 'GET http://b.example/abs HTTP/1.0\r\n\r\n', { timeoutMs: 3000 })
        assert.match(r.text, /^HTTP\/1\.1 200 /)
        const got = up.only()
        assert.equal(got.startLine, 'GET /abs HTTP/1.1')
        assert.deepEqual(values(got.fields, 'host'), ['b.example'])
      })

      test('HTTP/1.2 and HTTP/1.9 requests are answered as HTTP/1.1 (keep-alive, chunked allowed) and go upstream as HTTP/1.1', async (t) => {
        up.use(t, () => KEEP)
        const client = await RawClient.open(lb.port)
        t.after(() => client.close())
        client.send(`POST /one-two HTTP/1.2\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`)
        const first = await client.response()
        assert.equal(first.status, 200)
        assert.match(first.startLine, /^HTTP\/1\.1 /)
        client.send(`GET /one-nine HTTP/1.9\r\n${H}\r\n`)
        assert.equal((await client.response()).status, 200, 'the connection stayed open, as an HTTP/1.1 one does')
        assert.deepEqual(up.requests.map((m) => m.startLine), ['POST /one-two HTTP/1.1', 'GET /one-nine HTTP/1.1'])
        assert.equal(up.requests[0].data.toString('latin1'), 'hi')
      })

      test('HTTP/2.0 and HTTP/0.9 request lines are still a 505', async (t) => {
        up.use(t)
        await expectRefused(`GET / HTTP/2.0\r\n${H}\r\n`, 505)
        await expectRefused(`GET / HTTP/0.9\r\n${H}\r\n`, 505)
      })

      test('an upstream answering HTTP/1.2 is relayed as HTTP/1.1', async (t) => {
        up.use(t, () => 'HTTP/1.2 200 OK\r\nContent-Length: 3\r\n\r\nabc')
        for (const path of ['/up-a', '/up-b']) {
          const res = await send(`GET ${path} HTTP/1.1\r\n${H}\r\n`)
          assert.equal(res.status, 200)
          assert.match(res.startLine, /^HTTP\/1\.1 200 /)
          assert.equal(res.body.toString('latin1'), 'abc')
        }
      })
    })
  })
}
