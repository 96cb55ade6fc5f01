/**
 * Passive health must judge upstreams, not requests: one client whose requests
 * are slow by design (a report that takes longer than responseMs) gets its 504s
 * but cannot eject every upstream and turn everybody else's requests into 502s.
 * A genuinely dead upstream (connection refused) is still ejected, after the
 * default 5 consecutive failures, while every request succeeds on the live one.
 *
 * The default passive check is used throughout (no healthCheck section:
 * maxFailures 5, cooldownMs 10 s), with timeouts.responseMs 300. Clients are
 * told apart by source address (127.0.0.2, ...: all of 127/8 is loopback on
 * Linux), so "one client" and "other clients" are different peers to the proxy.
 * Every case runs in sequential and worker mode.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { U_HEALTHY, U_REQUESTS } from '../../src/shared/layout'
import { waitFor, refusedPort } from '../helpers'
import { MODES, startLb, type RunningLb } from './harness'

// ---- helpers -----------------------------------------------------------------

const SLOW_MS = 2000
const RESPONSE_MS = 300
const SLOW_CLIENT = '127.0.0.10'
const OTHER_CLIENTS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']

interface Upstream { address: string, count: number, close: () => Promise<void> }

/** node:http upstream: `/slow` answers after 2 s, anything else at once, naming itself. */
async function startUpstream (name: string): Promise<Upstream> {
  const timers = new Set<NodeJS.Timeout>()
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      result.count++
      const answer = (): void => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name, 'content-length': name.length })
        res.end(name)
      }
      // request content that breaks the app: it resets the connection, or answers malformed framing
      if (req.url === '/kill') { req.socket.destroy(); return }
      if (req.url === '/bad') { req.socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'); return }
      if (req.url !== '/slow') { answer(); return }
      const timer = setTimeout(() => { timers.delete(timer); if (!res.destroyed) answer() }, SLOW_MS)
      timers.add(timer)
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const result: Upstream = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: 0,
    close: async () => {
      for (const t of timers) clearTimeout(t)
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return result
}

/** One GET on a new connection from `localAddress`; status 0 with the error on failure or timeout. */
async function get (port: number, path: string, localAddress: string, timeoutMs = 5000): Promise<{ status: number, upstream: string, body: string, error: string }> {
  return await new Promise((resolve) => {
    let settled = false
    const finish = (r: { status: number, upstream: string, body: string, error: string }): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(r)
    }
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, localAddress }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => finish({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream'] ?? ''), body: Buffer.concat(chunks).toString(), error: '' }))
      res.on('error', (err) => finish({ status: 0, upstream: '', body: '', error: err.message }))
    })
    const timer = setTimeout(() => { req.destroy(); finish({ status: 0, upstream: '', body: '', error: `no response in ${timeoutMs} ms` }) }, timeoutMs)
    req.on('error', (err) => finish({ status: 0, upstream: '', body: '', error: err.message }))
    req.end()
  })
}

function describeReply (r: { status: number, upstream: string, body: string, error: string }): string {
  return `${r.status}${r.upstream !== '' ? ` from ${r.upstream}` : ''}${r.error !== '' ? ` (${r.error})` : ''}${r.status >= 500 ? `: ${r.body.trim()}` : ''}`
}

function slotOf (run: RunningLb, address: string): number {
  const entry = run.lb.table.find((e) => e.address === address)
  assert.ok(entry !== undefined, `${address} is in the table`)
  return entry.slot
}

function health (run: RunningLb, addresses: string[]): string {
  return addresses.map((a) => `${a}=${run.lb.state.upstream(slotOf(run, a), U_HEALTHY) === 1 ? 'healthy' : 'ejected'}`).join(' ')
}

/** Two upstreams `a` and `b` behind a balancer with responseMs RESPONSE_MS and the default passive check; all stopped after `body`. */
async function withTwoUpstreams (workers: number, body: (run: RunningLb, addresses: string[]) => Promise<void>): Promise<void> {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  let run: RunningLb | null = null
  try {
    run = await startLb({ upstreams: [{ address: a.address }, { address: b.address }], timeouts: { responseMs: RESPONSE_MS } }, workers)
    await body(run, [a.address, b.address])
  } finally {
    if (run !== null) await run.stop()
    await Promise.all([a.close(), b.close()])
  }
}

// ---- cases -------------------------------------------------------------------

for (const mode of MODES) {
  test(`${mode.name}: one client's two slow requests get 504 and do not eject every upstream; 5 other clients get 200`, async () => {
    await withTwoUpstreams(mode.workers, async (run, addresses) => {
      const slow = [await get(run.port, '/slow', SLOW_CLIENT), await get(run.port, '/slow', SLOW_CLIENT)]
      const afterSlow = health(run, addresses)
      const others = []
      for (const ip of OTHER_CLIENTS) others.push(await get(run.port, '/', ip))
      console.log(`${mode.name}: slow client got ${slow.map(describeReply).join(', ')}; then ${afterSlow}; other clients got ${others.map(describeReply).join(', ')}`)
      assert.deepEqual(slow.map((r) => r.status), [504, 504], 'the slow requests time out')
      assert.deepEqual(others.map((r) => r.status), OTHER_CLIENTS.map(() => 200), 'other clients are served')
    })
  })

  test(`${mode.name}: one client's burst of requests that make the upstreams reset or answer malformed ejects neither; 5 other clients get 200`, async () => {
    await withTwoUpstreams(mode.workers, async (run, addresses) => {
      const port = run.port
      // concurrently (all sent before any answer), then sequentially
      const burst = await Promise.all(Array.from({ length: 12 }, async (_, i) => await get(port, i % 2 === 0 ? '/kill' : '/bad', SLOW_CLIENT)))
      for (let i = 0; i < 12; i++) burst.push(await get(port, i % 2 === 0 ? '/kill' : '/bad', SLOW_CLIENT))
      const afterBurst = health(run, addresses)
      const others = []
      for (const ip of OTHER_CLIENTS) others.push(await get(port, '/', ip))
      console.log(`${mode.name}: the breaking client got ${[...new Set(burst.map((r) => r.status))].join('/')}; then ${afterBurst}; other clients got ${others.map(describeReply).join(', ')}`)
      assert.ok(burst.every((r) => r.status === 502), 'every breaking request gets 502')
      assert.doesNotMatch(afterBurst, /ejected/, 'both upstreams stay in rotation')
      assert.deepEqual(others.map((r) => r.status), OTHER_CLIENTS.map(() => 200), 'other clients are served')
    })
  })

  test(`${mode.name}: one client's 6 sequential slow requests, interleaved with other clients' traffic, cause no 502 for anybody`, async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const addresses = [a.address, b.address]
    let run: RunningLb | null = null
    let stop = false
    let background: Promise<void> = Promise.resolve()
    try {
      run = await startLb({ upstreams: [{ address: a.address }, { address: b.address }], timeouts: { responseMs: RESPONSE_MS } }, mode.workers)
      const port = run.port
      // other clients, one request at a time each, round the clock
      const othersBad: string[] = []
      let othersOk = 0
      background = (async () => {
        for (let i = 0; !stop; i++) {
          const r = await get(port, '/', OTHER_CLIENTS[i % OTHER_CLIENTS.length])
          if (r.status === 200) othersOk++
          else othersBad.push(`#${i} from ${OTHER_CLIENTS[i % OTHER_CLIENTS.length]}: ${describeReply(r)}`)
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      })()
      const slow: string[] = []
      const slowStatuses: number[] = []
      for (let i = 0; i < 6; i++) {
        const r = await get(port, '/slow', SLOW_CLIENT)
        slowStatuses.push(r.status)
        slow.push(describeReply(r))
        // and one from another client in lockstep, right after each slow one
        const other = await get(port, '/', OTHER_CLIENTS[i % OTHER_CLIENTS.length])
        if (other.status === 200) othersOk++
        else othersBad.push(`after slow #${i}: ${describeReply(other)}`)
      }
      stop = true
      await background
      console.log(`${mode.name}: slow client got ${slow.join(', ')}; ${health(run, addresses)}; other clients: ${othersOk} x 200, others: ${othersBad.length > 0 ? othersBad.slice(0, 5).join('; ') : 'none'}`)
      assert.deepEqual(slowStatuses, [504, 504, 504, 504, 504, 504], 'every slow request times out (504, never 502)')
      assert.deepEqual(othersBad, [], 'every other client got 200')
      assert.ok(othersOk >= 6)
    } finally {
      stop = true
      await background
      if (run !== null) await run.stop()
      await Promise.all([a.close(), b.close()])
    }
  })

  test(`${mode.name}: a dead upstream (connection refused) is still ejected; requests keep succeeding on the live one`, async () => {
    const dead = `127.0.0.1:${await refusedPort()}`
    const live = await startUpstream('live')
    let run: RunningLb | null = null
    try {
      run = await startLb({ upstreams: [{ address: dead }, { address: live.address }], timeouts: { responseMs: RESPONSE_MS } }, mode.workers)
      // round-robin sends every other request to the dead one first: 12 requests make 6 connect failures
      const replies = []
      for (let i = 0; i < 12; i++) replies.push(await get(run.port, `/r/${i}`, OTHER_CLIENTS[i % OTHER_CLIENTS.length]))
      assert.deepEqual(replies.map((r) => r.status), replies.map(() => 200), replies.map(describeReply).join(', '))
      const deadSlot = slotOf(run, dead)
      const state = run.lb.state
      await waitFor(() => state.upstream(deadSlot, U_HEALTHY) === 0, 2000, 'the dead upstream ejected')
      const attempts = state.upstream(deadSlot, U_REQUESTS)
      for (let i = 12; i < 28; i++) {
        const r = await get(run.port, `/r/${i}`, OTHER_CLIENTS[i % OTHER_CLIENTS.length])
        assert.equal(r.status, 200, `request ${i}: ${describeReply(r)}`)
        assert.equal(r.upstream, 'live')
      }
      assert.equal(state.upstream(deadSlot, U_HEALTHY), 0, 'still ejected (cooldown 10 s)')
      assert.equal(state.upstream(slotOf(run, live.address), U_HEALTHY), 1, 'the live one is not ejected')
      assert.equal(state.upstream(deadSlot, U_REQUESTS), attempts, 'no request tried the ejected upstream')
      assert.equal(run.lb.upstreamStatus().find((u) => u.address === dead)?.healthy, false, 'the status view agrees')
    } finally {
      if (run !== null) await run.stop()
      await live.close()
    }
  })
}
