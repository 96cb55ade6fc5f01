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
 * test-side parser (independent of the proxy's; in wire.ts), so a request smuggled at a
 * request boundary shows up as a second recorded request. Normalisation of
 * what is forwarded (Content-Length, chunked, Transfer-Encoding, trailers) is
 * in normalise.test.ts.
 */
import { describe, test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { MODES, startLb, type RunningLb } from './harness'
import { rawExchange, waitFor } from '../helpers'
import { RawClient, RecordingUpstream, SETTLE_MS, TOLERANT, delay, values, type Message, type Responder } from './wire'

/** A request that fills exactly `length` bytes: used as a body that looks like a request. */
function requestOfLength (path: string, length: number): string {
  const bare = `GET ${path} HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n`
  assert.ok(bare.length <= length, `test side: ${path} does not fit in ${length} bytes`)
  return `GET ${path} HTTP/1.1\r\nHost: a\r\nX: ${'p'.repeat(length - bare.length)}\r\n\r\n`
}

function chunk (data: string): string { return `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n` }

/** The same smuggled request as a chunked body, whole in one chunk (so a desync shows it in a head). */
function chunkedBodyOf (data: string): string { return chunk(data) + '0\r\n\r\n' }

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
