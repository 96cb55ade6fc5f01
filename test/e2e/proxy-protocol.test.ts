/**
 * PROXY protocol on listeners, in both modes: the header's source address is
 * the client for X-Forwarded-For, the rate limit and the firewall; v1 and v2,
 * split across writes, in front of TLS; an untrusted peer, a missing header
 * and a malformed one close the connection and are counted. Upstream side:
 * upstreams[].proxyProtocol sends the header on every new connection.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, waitFor, type TestServer } from '../helpers'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { encodeProxyHeader } from '../../src/net/proxy-protocol'
import { L_PROXY_REJECTED } from '../../src/shared/layout'

/** Write `pieces` one after another on a new connection; collect until the peer closes or a response is complete. */
async function exchange (port: number, pieces: Buffer[]): Promise<{ text: string, closed: boolean }> {
  return await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    let done = false
    const finish = (closed: boolean): void => { if (!done) { done = true; socket.destroy(); resolve({ text, closed }) } }
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1')
      const m = /content-length: (\d+)\r\n/i.exec(text)
      const end = text.indexOf('\r\n\r\n')
      if (m !== null && end !== -1 && text.length >= end + 4 + Number(m[1])) finish(false)
    })
    socket.on('error', () => {})
    socket.on('close', () => finish(true))
    socket.on('connect', async () => {
      for (const piece of pieces) {
        socket.write(piece)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })
  })
}

const GET = (path: string): Buffer => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)

for (const mode of MODES) {
  describe(`PROXY protocol (${mode.name})`, () => {
    let ca: TestCa
    let upstream: TestServer
    let run: RunningLb
    let tlsPort = 0
    let untrustedPort = 0

    before(async () => {
      ca = makeTestCa()
      const cert = ca.leaf('pp', ['localhost'])
      upstream = await startEchoUpstream('u1')
      run = await startLb({
        listen: [
          { address: '127.0.0.1:0', proxyProtocol: { trustedCidrs: ['127.0.0.0/8'] } },
          { address: '127.0.0.1:0', proxyProtocol: { trustedCidrs: ['127.0.0.1/32'] }, tls: { certificates: [{ certFile: cert.certFile, keyFile: cert.keyFile }] } },
          { address: '127.0.0.1:0', proxyProtocol: { trustedCidrs: ['10.0.0.0/8'] } },
        ],
        upstreams: [{ address: upstream.address }],
        // a token bucket, not the wall-clock-aligned fixed window: two requests a second apart across a minute
        // boundary would land in two windows and both pass
        rateLimit: { maxRequests: 1, windowMs: 60_000, algorithm: 'token-bucket' },
        firewall: { rules: [{ name: 'blocked-client', action: 'deny', clientCidr: ['198.51.100.66/32'] }] },
        timeouts: { clientHeaderMs: 400 },
      }, mode.workers)
      tlsPort = run.lb.addresses[1].port
      untrustedPort = run.lb.addresses[2].port
    })

    after(async () => {
      await run.stop()
      await upstream.close()
      ca.remove()
    })

    test('v1 and v2 headers (split across writes) make their source the client: X-Forwarded-For, rate limit', async () => {
      const v1 = encodeProxyHeader('v1', '192.0.2.10', '10.0.0.1', 40000, 80)
      const first = await exchange(run.port, [v1.subarray(0, 7), v1.subarray(7), GET('/v1')])
      assert.match(first.text, /^HTTP\/1\.1 200 /)
      assert.equal(JSON.parse(first.text.slice(first.text.indexOf('\r\n\r\n') + 4)).headers['x-forwarded-for'], '192.0.2.10')
      const v2 = encodeProxyHeader('v2', '2001:db8::7', '2001:db8::1', 40001, 80)
      const pieces = [...v2].map((b) => Buffer.from([b])) // one byte at a time
      const second = await exchange(run.port, [...pieces, GET('/v2')])
      assert.equal(JSON.parse(second.text.slice(second.text.indexOf('\r\n\r\n') + 4)).headers['x-forwarded-for'], '2001:db8::7')
      // the rate limit (1 per window) counts the PROXY source, not the socket peer (the same for all)
      const again = await exchange(run.port, [encodeProxyHeader('v1', '192.0.2.10', '10.0.0.1', 40002, 80), GET('/v1-again')])
      assert.match(again.text, /^HTTP\/1\.1 429 /)
      const other = await exchange(run.port, [encodeProxyHeader('v1', '192.0.2.11', '10.0.0.1', 40003, 80), GET('/other')])
      assert.match(other.text, /^HTTP\/1\.1 200 /)
    })

    test('the firewall sees the PROXY source', async () => {
      const denied = await exchange(run.port, [encodeProxyHeader('v2', '198.51.100.66', '10.0.0.1', 1, 80), GET('/x')])
      assert.match(denied.text, /^HTTP\/1\.1 403 /)
    })

    test('a PROXY header in front of TLS', async () => {
      const raw = net.connect(tlsPort, '127.0.0.1')
      await new Promise<void>((resolve) => raw.once('connect', () => resolve()))
      raw.write(encodeProxyHeader('v2', '203.0.113.5', '10.0.0.1', 5555, 443))
      const secure = tls.connect({ socket: raw, ca: ca.ca, servername: 'localhost' })
      await new Promise<void>((resolve, reject) => { secure.once('secureConnect', () => resolve()); secure.once('error', reject) })
      secure.write(GET('/tls'))
      let text = ''
      secure.on('data', (c: Buffer) => { text += c.toString() })
      await new Promise<void>((resolve) => secure.once('close', () => resolve()))
      assert.match(text, /^HTTP\/1\.1 200 /)
      const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
      assert.equal(body.headers['x-forwarded-for'], '203.0.113.5')
      assert.equal(body.headers['x-forwarded-proto'], 'https')
    })

    test('an untrusted peer, a missing header, a malformed one and a stalled one close the connection and are counted', async () => {
      const rejected = (listener: number): number => run.lb.state.listener(listener, L_PROXY_REJECTED)
      const before0 = rejected(0)
      const before2 = rejected(2)
      const untrusted = await exchange(untrustedPort, [encodeProxyHeader('v1', '192.0.2.1', '10.0.0.1', 1, 80), GET('/u')])
      assert.deepEqual(untrusted, { text: '', closed: true })
      const missing = await exchange(run.port, [GET('/no-header')])
      assert.deepEqual(missing, { text: '', closed: true })
      const malformed = await exchange(run.port, [Buffer.from('PROXY TCP4 1.2.3.4 nope 1 2\r\n'), GET('/bad')])
      assert.deepEqual(malformed, { text: '', closed: true })
      const started = Date.now()
      const stalled = await exchange(run.port, [Buffer.from('PROXY TCP4 1.2.')])
      assert.equal(stalled.closed, true)
      assert.ok(Date.now() - started >= 350, 'closed by timeouts.clientHeaderMs')
      await waitFor(() => rejected(0) - before0 === 3 && rejected(2) - before2 === 1, 2000, 'rejections counted')
    })
  })
}
