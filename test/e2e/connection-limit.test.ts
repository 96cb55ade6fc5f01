/**
 * limits.maxConnections end to end, in both modes: with the cap's worth of client connections open, a new
 * one is closed at once without an answer and counted on its listener; once one closes, new connections are
 * served again; a reload that lifts the cap applies to new connections; the count returns to 0 when every
 * client has gone. limits.maxConnectionsPerClient the same per client address (two loopback addresses).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, rawExchange, waitFor, httpRequest } from '../helpers'
import { resolveConfig } from '../../src/config/load'
import { L_REFUSED, L_REFUSED_PER_CLIENT } from '../../src/shared/layout'
import { encodeProxyHeader } from '../../src/net/proxy-protocol'

/** A kept-alive client connection that has had one answer (so the balancer certainly holds it). */
async function openServed (port: number, from = '127.0.0.1'): Promise<net.Socket> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: from })
  await new Promise<void>((resolve, reject) => {
    let got = ''
    socket.on('data', (c: Buffer) => { got += c.toString('latin1'); if (got.includes('\r\n\r\n')) resolve() })
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('closed before an answer')))
    socket.write('GET /held HTTP/1.1\r\nHost: a.test\r\n\r\n')
  })
  return socket
}

function refused (run: RunningLb): number { return run.lb.state.listener(0, L_REFUSED) }
function refusedPerClient (run: RunningLb): number { return run.lb.state.listener(0, L_REFUSED_PER_CLIENT) }

for (const mode of MODES) {
  test(`${mode.name}: at limits.maxConnections a new connection is closed unanswered; served again once one closes; a reload lifts the cap`, async (t) => {
    const upstream = await startEchoUpstream('u')
    t.after(async () => await upstream.close())
    const config = { upstreams: [{ address: upstream.address }], limits: { maxConnections: 3 } }
    const run = await startLb(config, mode.workers)
    t.after(async () => await run.stop())
    const held: net.Socket[] = []
    t.after(() => { for (const s of held) s.destroy() })
    for (let i = 0; i < 3; i++) held.push(await openServed(run.port))
    await waitFor(() => run.lb.state.acceptedOpen() === 3, 3000, 'three connections counted')

    const beyond = await rawExchange(run.port, 'GET /beyond HTTP/1.1\r\nHost: a.test\r\n\r\n', { timeoutMs: 3000 })
    assert.equal(beyond.timedOut, false, 'closed at once, not left waiting')
    assert.equal(beyond.data.length, 0, `nothing answered: ${JSON.stringify(beyond.text)}`)
    await waitFor(() => refused(run) === 1, 3000, 'counted on the listener')
    assert.equal(run.lb.state.acceptedOpen(), 3, 'the refused one was never counted as open')

    held.pop()?.destroy()
    await waitFor(() => run.lb.state.acceptedOpen() === 2, 3000, 'the closed connection given back')
    assert.equal((await httpRequest(run.port, { path: '/again' })).status, 200)

    const lifted = run.lb.reload(resolveConfig({ ...config, listen: run.lb.config.listen, workers: mode.workers, log: { level: 'silent', access: false }, limits: { maxConnections: 0 } }))
    assert.deepEqual(lifted.restartNeeded, [])
    for (let i = 0; i < 4; i++) held.push(await openServed(run.port))
    await waitFor(() => run.lb.state.acceptedOpen() === 6, 3000, 'six open under no cap')
    assert.equal(refused(run), 1)

    for (const s of held.splice(0)) s.destroy()
    await waitFor(() => run.lb.state.acceptedOpen() === 0, 3000, 'every connection given back')
  })
}

for (const mode of MODES) {
  test(`${mode.name}: at limits.maxConnectionsPerClient that client's next connection is closed unanswered, another client's is served`, async (t) => {
    const upstream = await startEchoUpstream('u')
    t.after(async () => await upstream.close())
    const run = await startLb({ upstreams: [{ address: upstream.address }], limits: { maxConnectionsPerClient: 2 } }, mode.workers)
    t.after(async () => await run.stop())
    const held: net.Socket[] = []
    t.after(() => { for (const s of held) s.destroy() })
    held.push(await openServed(run.port), await openServed(run.port))

    const third = await rawExchange(run.port, 'GET /third HTTP/1.1\r\nHost: a.test\r\n\r\n', { timeoutMs: 3000 })
    assert.equal(third.timedOut, false, 'closed at once')
    assert.equal(third.data.length, 0, `nothing answered: ${JSON.stringify(third.text)}`)
    await waitFor(() => refusedPerClient(run) === 1, 3000, 'counted on the listener')
    assert.equal(refused(run), 0, 'not the total cap')

    // another address is another client: served, up to its own two
    held.push(await openServed(run.port, '127.0.0.2'), await openServed(run.port, '127.0.0.2'))
    assert.equal(refusedPerClient(run), 1)

    held.shift()?.destroy()
    await waitFor(async () => await openServed(run.port).then((s) => { held.push(s); return true }, () => false), 3000, 'room again for 127.0.0.1 once one of its connections closed')
    assert.equal(run.lb.state.acceptedOpen(), 4)
    for (const s of held.splice(0)) s.destroy()
    await waitFor(() => run.lb.state.acceptedOpen() === 0, 3000, 'every connection given back')
  })
}

for (const mode of MODES) {
  test(`${mode.name}: behind a PROXY protocol peer the header's address is the client, in one spelling however it is written`, async (t) => {
    const upstream = await startEchoUpstream('u')
    t.after(async () => await upstream.close())
    const run = await startLb({ listen: [{ address: '127.0.0.1:0', proxyProtocol: { trustedCidrs: ['127.0.0.0/8'] } }], upstreams: [{ address: upstream.address }], limits: { maxConnectionsPerClient: 1 } }, mode.workers)
    t.after(async () => await run.stop())
    const request = 'GET /pp HTTP/1.1\r\nHost: a.test\r\n\r\n'
    const held = net.connect(run.port, '127.0.0.1')
    t.after(() => held.destroy())
    await new Promise<void>((resolve, reject) => {
      held.on('data', (c: Buffer) => { if (c.toString('latin1').includes('\r\n\r\n')) resolve() })
      held.once('error', reject)
      held.write(Buffer.concat([encodeProxyHeader('v2', '::1', '::1', 40000, 80), Buffer.from(request)]))
    })
    // the same client, spelled out in a v1 header: over its cap
    const same = await rawExchange(run.port, 'PROXY TCP6 0:0:0::1 ::1 40001 80\r\n' + request, { timeoutMs: 3000 })
    assert.equal(same.data.length, 0, `nothing answered: ${JSON.stringify(same.text)}`)
    await waitFor(() => refusedPerClient(run) === 1, 3000, 'counted on the listener')
    // another client through the same peer: served
    const other = await rawExchange(run.port, 'PROXY TCP4 192.0.2.9 10.0.0.1 40002 80\r\n' + request, { timeoutMs: 3000, until: (b) => b.includes('\r\n\r\n') })
    assert.match(other.text, /^HTTP\/1\.1 200 /)
    assert.equal(refusedPerClient(run), 1)
  })
}
