/**
 * ACME end to end against a real ACME server: Debian's pebble, started here on
 * free loopback ports with an HTTPS certificate this test makes, validating
 * HTTP-01 for real on the balancer's plain listener (PEBBLE_VA_NOSLEEP only
 * removes pebble's random wait; nothing is forced valid). In both modes: the
 * self-signed fallback first, then an issued certificate that a client
 * verifies with pebble's root (from pebble's management endpoint), stored with
 * mode 0600 and reused by the next start without a new order.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync, statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import * as https from 'node:https'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, waitFor, freePort, refusedPort, httpRequest, type TestServer } from '../helpers'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { TlsClient } from './tls-client'

async function fetchText (url: string, ca: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    https.get(url, { ca }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

describe('ACME against pebble', () => {
  let ca: TestCa
  let pebble: ChildProcess
  let pebbleOut = ''
  let upstream: TestServer
  let directoryUrl = ''
  let managementUrl = ''
  let httpPort = 0

  before(async () => {
    ca = makeTestCa('pebble https CA')
    const cert = ca.leaf('pebble', ['localhost'])
    const [listenPort, managementPort, tlsAlpnPort] = [await freePort(), await freePort(), await freePort()]
    httpPort = await freePort()
    const config = join(ca.dir, 'pebble.json')
    writeFileSync(config, JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listenPort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: cert.certFile,
        privateKey: cert.keyFile,
        httpPort,
        tlsPort: tlsAlpnPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }))
    directoryUrl = `https://localhost:${listenPort}/dir`
    managementUrl = `https://localhost:${managementPort}`
    pebble = spawn('/usr/bin/pebble', ['-config', config], {
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    pebble.stdout?.on('data', (c: Buffer) => { pebbleOut += c.toString() })
    pebble.stderr?.on('data', (c: Buffer) => { pebbleOut += c.toString() })
    await waitFor(async () => {
      try { return (await fetchText(directoryUrl, ca.ca)).status === 200 } catch { return false }
    }, 15_000, 'pebble to serve its directory')
    upstream = await startEchoUpstream('u1')
  })

  after(async () => {
    if (pebble.exitCode === null) {
      const exited = new Promise((resolve) => pebble.once('exit', resolve))
      pebble.kill('SIGTERM')
      await exited
    }
    await upstream.close()
    ca.remove()
  })

  for (const mode of MODES) {
    test(`${mode.name}: fallback, then a certificate issued over HTTP-01 that verifies with pebble's root, stored 0600 and reused after a restart`, async () => {
      const storageDir = join(ca.dir, `acme-${mode.workers}`)
      const config = {
        listen: [
          { address: '127.0.0.1:0', tls: { acme: { directoryUrl, email: 'ops@example.com', domains: ['localhost'], storageDir, caFile: ca.caFile } } },
          { address: `127.0.0.1:${httpPort}`, httpsRedirect: true },
        ],
        upstreams: [{ address: upstream.address }],
      }
      const ordersAtStart = (pebbleOut.match(/Added order/g) ?? []).length
      let run: RunningLb = await startLb(config, mode.workers)
      try {
        // at once: the self-signed fallback (or, if pebble was that fast, the real one)
        const first = await TlsClient.connect(run.port, { servername: 'localhost', rejectUnauthorized: false })
        const firstIssuer = String(first.certificate.issuer.O ?? first.certificate.issuer.CN)
        first.close()
        assert.ok(firstIssuer !== undefined)
        await waitFor(() => run.lb.certificateStatus().some((c) => c.source === 'acme'), 30_000, `issuance (pebble log:\n${pebbleOut.slice(-2000)})`)
        // every thread had the challenge before pebble looked: the first order succeeded (no retry)
        assert.equal((pebbleOut.match(/Added order/g) ?? []).length - ordersAtStart, 1, 'one order')
        const root = await fetchText(`${managementUrl}/roots/0`, ca.ca)
        assert.equal(root.status, 200)
        const verified = await TlsClient.connect(run.port, { servername: 'localhost', ca: root.body })
        assert.equal(verified.socket.authorized, true)
        assert.match(String(verified.certificate.issuer.CN), /Pebble/i)
        assert.equal((await verified.request('GET', '/secure')).status, 200)
        verified.close()
        for (const file of ['account.key', 'localhost.crt', 'localhost.key']) {
          assert.equal(statSync(join(storageDir, file)).mode & 0o777, 0o600, file)
        }
        assert.ok(pebbleOut.includes(`Attempting to validate w/ HTTP: http://localhost:${httpPort}/.well-known/acme-challenge/`), 'pebble validated over HTTP-01 on our plain listener')
        // a token nobody ordered: switchyard's own 404, with the request's ID as every local answer
        const unknown = await httpRequest(httpPort, { path: '/.well-known/acme-challenge/no-such-token', headers: { host: 'localhost', 'x-request-id': 'acme-404' } })
        assert.equal(unknown.status, 404)
        assert.equal(unknown.body, 'no such ACME challenge\n')
        assert.equal(unknown.headers['x-request-id'], 'acme-404')
        await run.stop()

        // a restart reuses the stored account and certificate: served at once, no new order
        const ordersBefore = (pebbleOut.match(/POST \/finalize-order/g) ?? []).length
        run = await startLb(config, mode.workers)
        const status = run.lb.certificateStatus()
        assert.equal(status[0].source, 'acme')
        const again = await TlsClient.connect(run.port, { servername: 'localhost', ca: root.body })
        assert.equal(again.socket.authorized, true)
        again.close()
        assert.equal((pebbleOut.match(/POST \/finalize-order/g) ?? []).length, ordersBefore)
        assert.ok(existsSync(join(storageDir, 'account.key')))
      } finally {
        await run.stop()
      }
    })
  }

  test('an unreachable ACME server: the fallback keeps serving, the order is retried', async () => {
    const deadPort = await refusedPort()
    const run = await startLb({
      listen: [
        { address: '127.0.0.1:0', tls: { acme: { directoryUrl: `https://localhost:${deadPort}/dir`, email: 'ops@example.com', domains: ['localhost'], storageDir: join(ca.dir, 'acme-dead'), caFile: ca.caFile } } },
        { address: '127.0.0.1:0' },
      ],
      upstreams: [{ address: upstream.address }],
    }, 0)
    try {
      const c = await TlsClient.connect(run.port, { servername: 'localhost', rejectUnauthorized: false })
      assert.match(String(c.certificate.subject.O), /self-signed fallback/)
      assert.equal((await c.request('GET', '/still-serving')).status, 200)
      c.close()
      // the first order fails at once; the retry comes after the first backoff step (2 s)
      await waitFor(() => run.lb.acme[0].failures >= 2, 8000, `a retried order (${run.lb.acme[0].failures}: ${run.lb.acme[0].lastError})`)
      assert.match(run.lb.acme[0].lastError, /ECONNREFUSED/)
      assert.equal(run.lb.certificateStatus()[0].source, 'self-signed')
    } finally { await run.stop() }
  })
})
