/**
 * Bytes an upstream sends beyond the response it framed, end to end in both modes: right behind a complete
 * response (in the same write), or later on a connection idle in the pool. Neither reaches a client; the
 * connection is closed; one log line says so; a response followed by such bytes is not stored in the cache
 * (its framing cannot be trusted).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MODES, spawnWithConfig, type SpawnedLb } from './harness'
import { httpRequest, startRawServer, waitFor } from '../helpers'

async function startCli (t: { after: (fn: () => Promise<void>) => void }, config: Record<string, unknown>): Promise<SpawnedLb> {
  return await spawnWithConfig(t, { log: { access: false }, ...config })
}

function warnings (lb: SpawnedLb, text: string): string[] {
  return lb.output().split('\n').filter((l) => l.includes('"code":"SWY_ERR_UPSTREAM_PROTOCOL"') && l.includes(text))
}

for (const mode of MODES) {
  test(`${mode.name}: a response with bytes behind it: relayed whole, not stored, the connection closed, one log line`, async (t) => {
    const upstream = await startRawServer((socket) => {
      socket.on('data', () => socket.write(
        'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 6\r\n\r\nfirst\n' +
        'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ninjected\n'))
    })
    t.after(async () => await upstream.close())
    const lb = await startCli(t, { workers: mode.workers, upstreams: [{ address: upstream.address }], cache: { maxBytes: 1024 * 1024 } })
    for (let i = 0; i < 3; i++) {
      const res = await httpRequest(lb.port, { path: '/trailing' })
      assert.equal(res.status, 200)
      assert.equal(res.body, 'first\n', `request ${i}`)
      assert.notEqual(res.headers['x-cache'], 'HIT', `request ${i}: not served from the cache`)
    }
    assert.equal(upstream.count, 3, 'a new upstream connection each time: none was pooled')
    await waitFor(() => warnings(lb, 'after a complete response').length === 3, 5000, 'one log line per response')
  })

  test(`${mode.name}: requests waiting for such a response's fill go upstream together, not one after another`, async (t) => {
    let inFlight = 0
    let most = 0
    const upstream = await startRawServer((socket) => {
      socket.on('data', () => {
        most = Math.max(most, ++inFlight)
        setTimeout(() => {
          inFlight--
          // cacheable, and a stray CRLF behind it: not stored
          socket.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\nok\n\r\n')
        }, 300)
      })
    })
    t.after(async () => await upstream.close())
    const lb = await startCli(t, { workers: mode.workers, upstreams: [{ address: upstream.address }], cache: { maxBytes: 1024 * 1024 } })
    const replies = await Promise.all([0, 1, 2, 3].map(async () => await httpRequest(lb.port, { path: '/collapsed' })))
    for (const r of replies) assert.equal(r.body, 'ok\n')
    assert.ok(most >= 2, `the upstream saw at most ${most} of the waiting requests at once: they went one after another`)
  })

  test(`${mode.name}: bytes on an idle pooled connection: it is closed with one log line, the next request gets its own response`, async (t) => {
    let n = 0
    const upstream = await startRawServer((socket) => {
      socket.on('data', () => {
        const body = `answer ${n++}\n`
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
        // a late, unsolicited response once this one has been taken
        setTimeout(() => { if (!socket.destroyed) socket.write('HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n') }, 100)
      })
    })
    t.after(async () => await upstream.close())
    const lb = await startCli(t, { workers: 0, upstreams: [{ address: upstream.address }] })
    assert.equal((await httpRequest(lb.port, { path: '/a' })).body, 'answer 0\n')
    await waitFor(() => warnings(lb, 'idle pooled connection').length === 1, 5000, 'the log line')
    const next = await httpRequest(lb.port, { path: '/b' })
    assert.equal(next.status, 200)
    assert.equal(next.body, 'answer 1\n')
    assert.equal(upstream.count, 2, 'the confused connection was not reused')
    void mode
  })
}
