/**
 * Retry-After as a health signal (issue #14 item 6) and Proxy-Status (item 7),
 * end to end in both modes:
 *   - `503` + `Retry-After: 2` takes the upstream out of rotation on every
 *     thread for about 2 s (the 503 itself is relayed), then it comes back;
 *   - Proxy-Status names the failure for a refused connection, a response
 *     timeout and a malformed response, with `details` only when
 *     proxy.statusDetails is on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { U_HEALTHY } from '../../src/shared/layout'
import { refusedPort, startRawServer, waitFor } from '../helpers'
import { MODES, startLb, type RunningLb } from './harness'
import { startScripted, send } from './resilience-util'

function healthy (run: RunningLb, address: string): boolean {
  const entry = run.lb.table.find((e) => e.address === address)
  assert.ok(entry !== undefined)
  return run.lb.state.upstream(entry.slot, U_HEALTHY) === 1
}

for (const mode of MODES) {
  test(`${mode.name}: 503 with Retry-After: 2 takes the upstream out for ~2 s, then it is back`, async () => {
    let busy = true
    const tired = await startScripted('tired', () => busy ? { status: 503, headers: { 'retry-after': '2' } } : { status: 200 })
    const fresh = await startScripted('fresh')
    const run = await startLb({ upstreams: [{ address: tired.address }, { address: fresh.address }] }, mode.workers)
    try {
      let first = await send(run.port)
      while (first.upstream !== 'tired') first = await send(run.port)
      const ejectedAt = Date.now()
      assert.equal(first.status, 503, 'the 503 itself is relayed (retryOn does not list it)')
      assert.equal(first.headers['retry-after'], '2')
      assert.equal(healthy(run, tired.address), false, 'out of rotation at once, for every thread')
      busy = false
      const seen: string[] = []
      while (Date.now() - ejectedAt < 1500) seen.push((await send(run.port)).upstream)
      assert.ok(seen.length > 5 && seen.every((u) => u === 'fresh'), `nothing to it while held (${seen.length} requests)`)
      await waitFor(() => healthy(run, tired.address), 3000, 'back after its Retry-After')
      const heldMs = Date.now() - ejectedAt
      console.log(`${mode.name}: held out for ${heldMs} ms after Retry-After: 2`)
      assert.ok(heldMs >= 1800 && heldMs <= 3000, `held ${heldMs} ms`)
      const after: string[] = []
      for (let i = 0; i < 8; i++) after.push((await send(run.port)).upstream)
      assert.ok(after.includes('tired'), `it takes traffic again (${after.join(' ')})`)
    } finally {
      await run.stop()
      await Promise.all([tired.close(), fresh.close()])
    }
  })

  test(`${mode.name}: Retry-After is capped by maxRetryAfterMs and ignored with honorRetryAfter off`, async () => {
    const tired = await startScripted('tired', () => ({ status: 429, headers: { 'retry-after': '3600' } }))
    const fresh = await startScripted('fresh')
    const run = await startLb({ upstreams: [{ address: tired.address }, { address: fresh.address }], healthCheck: { passive: { maxRetryAfterMs: 300 } } }, mode.workers)
    try {
      let r = await send(run.port)
      while (r.upstream !== 'tired') r = await send(run.port)
      assert.equal(r.status, 429)
      assert.equal(healthy(run, tired.address), false)
      await waitFor(() => healthy(run, tired.address), 2000, 'back after the cap, not after an hour')
    } finally {
      await run.stop()
    }
    const off = await startLb({ upstreams: [{ address: tired.address }, { address: fresh.address }], healthCheck: { passive: { honorRetryAfter: false } } }, mode.workers)
    try {
      let r = await send(off.port)
      while (r.upstream !== 'tired') r = await send(off.port)
      assert.equal(healthy(off, tired.address), true, 'honorRetryAfter false: no ejection')
    } finally {
      await off.stop()
      await Promise.all([tired.close(), fresh.close()])
    }
  })

  test(`${mode.name}: Proxy-Status for refused, timeout and protocol error; details only with statusDetails`, async () => {
    const dead = `127.0.0.1:${await refusedPort()}`
    const hung = await startRawServer(() => { /* reads, never answers */ })
    const garbage = await startRawServer((socket) => { socket.on('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok')) })
    const cases = [
      { upstream: dead, status: 502, error: 'connection_refused' },
      { upstream: hung.address, status: 504, error: 'http_response_timeout' },
      { upstream: garbage.address, status: 502, error: 'http_protocol_error' },
    ]
    try {
      for (const details of [false, true]) {
        for (const c of cases) {
          const run = await startLb({
            upstreams: [{ address: c.upstream }],
            timeouts: { responseMs: 300 },
            retries: 0,
            proxy: { statusDetails: details },
          }, mode.workers)
          try {
            const r = await send(run.port)
            assert.equal(r.status, c.status, c.error)
            const field = String(r.headers['proxy-status'])
            if (details) {
              assert.match(field, new RegExp(`^switchyard; error=${c.error}; details="[^"]+"$`), field)
            } else {
              assert.equal(field, `switchyard; error=${c.error}`, 'no details unless statusDetails')
            }
          } finally {
            await run.stop()
          }
        }
      }
    } finally {
      await Promise.all([hung.close(), garbage.close()])
    }
  })
}
