/**
 * TLS termination end to end, in both modes: HTTPS through the balancer with
 * a CA made by openssl, SNI, session resumption across workers, certificate
 * rotation on reload without dropping a keep-alive connection, httpsRedirect,
 * bad handshakes (each closes only its connection, is counted and leaks no
 * descriptor), and start-up failures for unusable certificate files.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { readdirSync, writeFileSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { MODES, startLb, CLI, type RunningLb } from './harness'
import { startEchoUpstream, waitFor, httpRequest, type TestServer } from '../helpers'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { TlsClient } from './tls-client'
import { startAdmin } from '../../src/admin/server'
import { L_HANDSHAKE_ERRORS, L_HANDSHAKES_OK, L_HANDSHAKES_RESUMED, L_OPEN_CONNECTIONS, TLS_ERROR_REASONS, MAX_WORKER_SLOTS, W_THREAD_ID, W_OPEN_CONNECTIONS, W_RESPONSES, SOURCE_LOCAL } from '../../src/shared/layout'

function handshakeErrors (run: RunningLb, reason: typeof TLS_ERROR_REASONS[number]): number {
  return run.lb.state.listener(0, L_HANDSHAKE_ERRORS + TLS_ERROR_REASONS.indexOf(reason))
}

function openDescriptors (): number {
  return readdirSync('/proc/self/fd').length
}

/** Connect, send `bytes` (or nothing), optionally reset; resolves when the balancer closes the connection. */
async function rawTls (port: number, bytes: Buffer | null, mode: 'wait' | 'end' | 'reset'): Promise<{ closedByPeer: boolean, received: Buffer }> {
  return await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => {})
    socket.on('connect', () => {
      if (bytes !== null) socket.write(bytes)
      if (mode === 'end') socket.end()
      if (mode === 'reset') setTimeout(() => socket.resetAndDestroy(), 30)
    })
    socket.on('close', () => resolve({ closedByPeer: mode === 'wait', received: Buffer.concat(chunks) }))
  })
}

/** The first bytes of a real ClientHello. */
async function clientHelloPrefix (): Promise<Buffer> {
  const capture = net.createServer()
  await new Promise<void>((resolve) => capture.listen(0, '127.0.0.1', resolve))
  const port = (capture.address() as net.AddressInfo).port
  const got = new Promise<Buffer>((resolve) => capture.once('connection', (s) => s.once('data', (d: Buffer) => { resolve(d); s.destroy() })))
  const tlsMod = await import('node:tls')
  const c = tlsMod.connect({ host: '127.0.0.1', port, servername: 'localhost' })
  c.on('error', () => {})
  const hello = await got
  c.destroy()
  capture.close()
  return hello
}

for (const mode of MODES) {
  describe(`TLS termination (${mode.name})`, () => {
    let ca: TestCa
    let upstream: TestServer & { server: unknown }
    let run: RunningLb
    let certA: { certFile: string, keyFile: string, cert: string }
    let certB: { certFile: string, keyFile: string, cert: string }
    let config: Record<string, unknown>

    before(async () => {
      ca = makeTestCa()
      certA = ca.leaf('a', ['localhost', 'a.test'])
      certB = ca.leaf('b', ['*.b.test'], 2) // expires within 14 days: the dashboard warns
      upstream = await startEchoUpstream('u1')
      config = {
        listen: [
          { address: '127.0.0.1:0', tls: { certificates: [{ certFile: certA.certFile, keyFile: certA.keyFile }, { certFile: certB.certFile, keyFile: certB.keyFile }] } },
          { address: '127.0.0.1:0', httpsRedirect: true },
        ],
        upstreams: [{ address: upstream.address }],
        timeouts: { clientHeaderMs: 400 },
        admin: { listen: '127.0.0.1:0' },
      }
      run = await startLb(config, mode.workers)
    })

    after(async () => {
      await run.stop()
      await upstream.close()
      ca.remove()
    })

    test('HTTPS GET and POST reach the upstream, which is told the scheme was https', async () => {
      const c = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal(c.socket.alpnProtocol, false) // the client offered none
      const get = await c.request('GET', '/hello?x=1')
      assert.equal(get.status, 200)
      const seen = JSON.parse(get.body)
      assert.equal(seen.url, '/hello?x=1')
      assert.equal(seen.headers['x-forwarded-proto'], 'https')
      assert.match(seen.headers.forwarded, /for=127\.0\.0\.1;proto=https$/)
      const post = await c.request('POST', '/submit', { 'content-type': 'text/plain' }, 'payload over tls')
      assert.equal(JSON.parse(post.body).body, 'payload over tls')
      c.close()
      // a client that half-closes after its request still gets the response (RFC 9112 §9.6)
      const half = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      half.socket.end('GET /half HTTP/1.1\r\nHost: localhost\r\n\r\n')
      await waitFor(() => half.closed, 3000, 'the balancer closes after answering')
      assert.match((half as unknown as { buffered: Buffer }).buffered.toString('latin1'), /^HTTP\/1\.1 200 /)
      const h2 = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] })
      assert.equal(h2.socket.alpnProtocol, 'http/1.1', 'ALPN picks http/1.1, never h2')
      h2.close()
    })

    test('SNI picks the certificate: exact name, wildcard, and the first one as default', async () => {
      const exact = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'a.test' })
      assert.equal(exact.certificate.subject.CN, 'localhost')
      exact.close()
      const wild = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'x.b.test' })
      assert.equal(wild.certificate.subject.CN, '*.b.test')
      wild.close()
      const unknown = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'other.test', rejectUnauthorized: false })
      assert.equal(unknown.certificate.subject.CN, 'localhost')
      unknown.close()
      const deep = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'y.x.b.test', rejectUnauthorized: false })
      assert.equal(deep.certificate.subject.CN, 'localhost', 'a wildcard covers one label only')
      deep.close()
      const noSni = await TlsClient.connect(run.port, { ca: ca.ca, rejectUnauthorized: false })
      assert.equal(noSni.certificate.subject.CN, 'localhost')
      noSni.close()
    })

    test('a session resumes on a second connection, which lands on another worker', async () => {
      const resumedBefore = run.lb.state.listener(0, L_HANDSHAKES_RESUMED)
      const first = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal((await first.request('GET', '/one')).status, 200)
      const session = await first.ticket()
      assert.equal(first.socket.isSessionReused(), false)
      // keep the first open: the hand-off gives the second to the worker with fewer connections
      const second = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost', session })
      assert.equal(second.socket.isSessionReused(), true, 'resumed, not a full handshake')
      assert.equal((await second.request('GET', '/two')).status, 200)
      if (mode.workers > 0) {
        const perWorker: number[] = []
        for (let slot = 0; slot < MAX_WORKER_SLOTS; slot++) if (run.lb.state.worker(slot, W_THREAD_ID) !== 0) perWorker.push(run.lb.state.worker(slot, W_OPEN_CONNECTIONS))
        assert.deepEqual(perWorker.sort(), [1, 1], 'one connection on each worker')
      }
      assert.equal(run.lb.state.listener(0, L_HANDSHAKES_RESUMED) - resumedBefore, 1)
      first.close()
      second.close()
    })

    test('/api/status lists listeners and certificates; /metrics has the listener and TLS families', async () => {
      const c = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal((await c.request('GET', '/counted')).status, 200)
      c.close()
      const admin = run.lb.admin?.url as string
      const status = JSON.parse((await httpRequest(Number(new URL(admin).port), { path: '/api/status' })).body)
      assert.deepEqual(status.listeners.map((l: { tls: boolean, httpsRedirect: boolean }) => [l.tls, l.httpsRedirect]), [[true, false], [false, true]])
      assert.ok(status.listeners[0].handshakes.ok >= 1)
      assert.equal(status.listeners[0].address, `127.0.0.1:${run.port}`)
      const certs = status.certificates as Array<{ names: string[], source: string, daysLeft: number, issuer: string }>
      assert.deepEqual(certs.map((x) => x.names), [['localhost', 'a.test'], ['*.b.test']])
      assert.equal(certs[0].source, certA.certFile)
      assert.match(certs[0].issuer, /switchyard test CA/)
      assert.ok(certs[1].daysLeft < 14 && certs[0].daysLeft >= 1)
      const metrics = (await httpRequest(Number(new URL(admin).port), { path: '/metrics' })).body
      const listener = '127.0.0.1:0'
      assert.match(metrics, new RegExp(`switchyard_tls_handshakes_total\\{listener="${listener}",result="full"\\} [1-9]`))
      assert.match(metrics, /switchyard_tls_handshake_errors_total\{listener="127\.0\.0\.1:0",reason="timeout"\} \d+/)
      assert.match(metrics, /switchyard_tls_certificate_expiry_timestamp_seconds\{name="\*\.b\.test",listener="127\.0\.0\.1:0",source="[^"]+"\} \d{10}/)
      assert.match(metrics, /switchyard_listener_open_connections\{listener="127\.0\.0\.1:0"\} \d+/)
      const page = (await httpRequest(Number(new URL(admin).port), { path: '/' })).body
      assert.match(page, /c\.daysLeft < 14/, 'the dashboard marks certificates expiring within 14 days')
    })

    test('httpsRedirect answers 308 to the TLS listener with host and target', async () => {
      const plainPort = run.lb.addresses[1].port
      // switchyard's own answers: counted as local 3xx (switchyard_requests_total{source="local",class="3xx"})
      const local3xx = (): number => {
        let n = 0
        for (let slot = 0; slot < MAX_WORKER_SLOTS; slot++) n += run.lb.state.worker(slot, W_RESPONSES + SOURCE_LOCAL * 5 + 2)
        return n
      }
      const before = local3xx()
      const res = await httpRequest(plainPort, { path: '/a/b?c=d', headers: { host: 'localhost:' + plainPort } })
      assert.equal(res.status, 308)
      assert.equal(res.headers.location, `https://localhost:${run.port}/a/b?c=d`)
      assert.match(String(res.headers['x-request-id']), /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/, 'a new request ID, as on every local answer')
      const kept = await httpRequest(plainPort, { path: '/', headers: { host: 'localhost', 'x-request-id': 'redirect-1' } })
      assert.equal(kept.status, 308)
      assert.equal(kept.headers['x-request-id'], 'redirect-1')
      await waitFor(() => local3xx() - before === 2, 3000, 'both 308s counted as local answers')
    })

    test('bad handshakes close only their connection, are counted by reason, and leak no descriptor', async () => {
      const keep = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal((await keep.request('GET', '/before')).status, 200)
      const fdsBefore = openDescriptors()
      const before = Object.fromEntries(TLS_ERROR_REASONS.map((r) => [r, handshakeErrors(run, r)]))
      const hello = await clientHelloPrefix()
      const plain = await rawTls(run.port, Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'), 'wait')
      assert.ok(plain.closedByPeer)
      // a plain HTTP client is told, in plain HTTP, what went wrong (as nginx and Caddy do)
      const said = plain.received.toString('latin1')
      assert.match(said, /^HTTP\/1\.1 400 Bad Request\r\n/)
      assert.match(said, /\r\nConnection: close\r\n/)
      assert.ok(said.endsWith('\r\n\r\n400 Bad Request: Plain HTTP request sent to an HTTPS port\n'), JSON.stringify(said))
      // anything else that is not TLS gets no answer: it speaks neither
      const garbage = await rawTls(run.port, Buffer.from('\x00\x01\x02\x03 more garbage'), 'wait')
      assert.equal(garbage.received.length, 0)
      await rawTls(run.port, Buffer.from('\x16\x03\x01\xff\xff garbage that is no TLS record at all'), 'wait')
      await rawTls(run.port, Buffer.from('\x00\x01\x02\x03 garbage'), 'wait')
      await rawTls(run.port, hello.subarray(0, 20), 'end') // truncated ClientHello, then EOF
      const stalledAt = Date.now()
      await rawTls(run.port, hello.subarray(0, 20), 'wait') // truncated and stalled: timeouts.clientHeaderMs
      assert.ok(Date.now() - stalledAt >= 350, 'closed by the handshake deadline')
      await rawTls(run.port, null, 'wait') // nothing at all
      await rawTls(run.port, hello.subarray(0, 30), 'reset')
      const counts = (): string => JSON.stringify(Object.fromEntries(TLS_ERROR_REASONS.map((r) => [r, handshakeErrors(run, r) - before[r]])))
      await waitFor(() => handshakeErrors(run, 'timeout') - before.timeout >= 2 && handshakeErrors(run, 'reset') - before.reset >= 2, 3000, `counted: ${counts()}`)
      assert.equal(handshakeErrors(run, 'plain_http') - before.plain_http, 1)
      assert.ok(handshakeErrors(run, 'protocol') - before.protocol >= 2)
      // the good connection is untouched
      assert.equal((await keep.request('GET', '/after')).status, 200)
      keep.close()
      await waitFor(() => run.lb.state.listener(0, L_OPEN_CONNECTIONS) === 0, 3000, 'no connection left open on the listener')
      await waitFor(() => openDescriptors() <= fdsBefore, 3000, `descriptors back to ${fdsBefore}`)
    })

    test('a rotated certificate is used for new handshakes after reload; an open keep-alive connection survives', async () => {
      const old = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal((await old.request('GET', '/old')).status, 200)
      const oldSerial = old.certificate.serialNumber
      const rotated = ca.leaf('a-rotated', ['localhost', 'a.test'])
      copyFileSync(rotated.certFile, certA.certFile)
      copyFileSync(rotated.keyFile, certA.keyFile)
      const result = run.lb.reload(run.lb.config)
      assert.deepEqual(result.warnings, [])
      const fresh = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.notEqual(fresh.certificate.serialNumber, oldSerial)
      assert.equal((await fresh.request('GET', '/new')).status, 200)
      const freshSerial = fresh.certificate.serialNumber
      assert.equal((await old.request('GET', '/old-again')).status, 200, 'the open connection still serves')
      fresh.close()

      // a broken file on reload: the previous certificates stay, and the answer says why (POST /api/reload's too)
      writeFileSync(certA.keyFile, 'not a key')
      const broken = run.lb.reload(run.lb.config)
      assert.equal(broken.warnings?.length, 1)
      assert.match(broken.warnings?.[0] ?? '', /a\.key.*not PEM.*keeping the previous certificates/)
      run.lb.configSource = () => run.lb.config
      const admin = await startAdmin(run.lb, { listen: '127.0.0.1:0' })
      try {
        const answer = await httpRequest(admin.address.port, { path: '/api/reload', method: 'POST' })
        assert.equal(answer.status, 200)
        const body = JSON.parse(answer.body) as { applied: boolean, warnings: string[] }
        assert.equal(body.applied, true)
        assert.equal(body.warnings.length, 1)
        assert.match(body.warnings[0], /a\.key.*not PEM.*keeping the previous certificates/)
      } finally {
        run.lb.configSource = null
        await admin.close()
      }
      const still = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal(still.certificate.serialNumber, freshSerial)
      still.close()
      old.close()
      copyFileSync(rotated.keyFile, certA.keyFile)
      assert.ok(run.lb.state.listener(0, L_HANDSHAKES_OK) > 0)
    })
  })
}

describe('TLS certificate files at start', () => {
  let ca: TestCa
  before(() => { ca = makeTestCa() })
  after(() => { ca.remove() })

  async function startFails (files: { certFile: string, keyFile: string }): Promise<{ code: number | null, output: string }> {
    const path = join(ca.dir, 'lb.json')
    const config = { listen: [{ address: '127.0.0.1:0', tls: { certificates: [files] } }], upstreams: [{ address: '127.0.0.1:9' }], workers: 0 }
    writeFileSync(path, JSON.stringify(config))
    const child = spawn(process.execPath, [CLI, '--config', path], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (c: Buffer) => { output += c.toString() })
    child.stderr.on('data', (c: Buffer) => { output += c.toString() })
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
    return { code, output }
  }

  test('a missing file, a file that is not PEM, and a key of another certificate each exit 1 naming the file and why', async () => {
    const good = ca.leaf('good', ['localhost'])
    const other = ca.leaf('other', ['localhost'])
    const missing = await startFails({ certFile: join(ca.dir, 'nope.pem'), keyFile: good.keyFile })
    assert.equal(missing.code, 1)
    assert.match(missing.output, /nope\.pem: (cannot read the certificate \(ENOENT\)|no such file)/)
    writeFileSync(join(ca.dir, 'junk.pem'), 'hello')
    const junk = await startFails({ certFile: good.certFile, keyFile: join(ca.dir, 'junk.pem') })
    assert.equal(junk.code, 1)
    assert.match(junk.output, /junk\.pem: the private key is not PEM/)
    const mismatched = await startFails({ certFile: good.certFile, keyFile: other.keyFile })
    assert.equal(mismatched.code, 1)
    assert.match(mismatched.output, /other\.key: the private key does not match the certificate in .*good\.pem/)
  })
})
