/**
 * Request IDs end to end, through the real CLI: an ID on every request (the
 * client's when sane, else a new one from the thread's prefix and counter),
 * sent upstream, returned to the client (also on local answers), and in the
 * access-log line. Sequential and worker mode.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MODES, spawnWithConfig, type SpawnedLb } from './harness'
import { startEchoUpstream, httpRequest, rawExchange, waitFor, refusedPort, type EchoReply } from '../helpers'
import { RequestIds, saneRequestId } from '../../src/proxy/request-id'
import { HeadParser, KIND_REQUEST } from '../../src/http/head-parser'

const GENERATED = /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/

const startCli = spawnWithConfig

/** The access-log lines written so far, parsed. */
function accessLines (lb: SpawnedLb): Array<Record<string, unknown>> {
  return lb.output().split('\n').filter((l) => l.includes('"type":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** What assign() gives a request with these header lines: [requestId, requestIdLine]. */
function assigned (ids: RequestIds, fields: string): [string, string] {
  const p = new HeadParser(KIND_REQUEST, { maxHeaderBytes: 16_384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 })
  const head = Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\n${fields}\r\n`, 'latin1')
  assert.ok(p.execute(head, 0, head.length) > 0)
  const out = { requestId: '', requestIdLine: '' }
  ids.assign(p, out)
  return [out.requestId, out.requestIdLine]
}

describe('request IDs: unit', () => {
  test('what a kept ID may hold', () => {
    for (const id of ['abc', 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6', 'a.b:c+d/e=f@g_h', 'x'.repeat(128)]) assert.ok(saneRequestId(id), id)
    for (const id of ['', 'x'.repeat(129), 'a b', 'a"b', 'a\\b', 'a,b', 'é', 'a\tb', '<script>']) assert.ok(!saneRequestId(id), id)
  })

  test('new IDs: the thread prefix and a base-36 counter; a reload keeps counting', () => {
    const ids = new RequestIds({ enabled: true, header: 'x-request-id' }, 'PFX')
    assert.deepEqual([assigned(ids, ''), assigned(ids, '')], [['PFX-1', 'X-Request-Id: PFX-1\r\n'], ['PFX-2', 'X-Request-Id: PFX-2\r\n']])
    ids.configure({ enabled: true, header: 'X-Correlation-ID' })
    assert.equal(ids.header, 'x-correlation-id')
    assert.equal(ids.responseLine('z'), 'X-Correlation-ID: z\r\n')
    assert.deepEqual(assigned(ids, ''), ['PFX-3', 'X-Correlation-ID: PFX-3\r\n'])
  })

  test("a client's sane ID is kept and forwarded as received; an insane one is replaced", () => {
    const ids = new RequestIds({ enabled: true, header: 'x-request-id' }, 'a-longer-prefix')
    assert.deepEqual(assigned(ids, 'X-Request-ID: abc-123\r\n'), ['abc-123', ''])
    // an ID long enough to be a string V8 joins lazily: the same characters as the line carries
    for (let i = 0; i < 40; i++) {
      const [id, line] = assigned(ids, 'X-Request-Id: a b\r\n')
      assert.equal(id, `a-longer-prefix-${(i + 1).toString(36)}`)
      assert.equal(line, `X-Request-Id: ${id}\r\n`)
    }
  })
})

for (const mode of MODES) {
  describe(`request IDs (${mode.name})`, () => {
    test('a new ID goes upstream, back to the client and into the access log; each request its own', async (t) => {
      const up = await startEchoUpstream('ids')
      t.after(async () => await up.close())
      const lb = await startCli(t, { workers: mode.workers, upstreams: [{ address: up.address }] })
      const seen = new Set<string>()
      for (let i = 0; i < 4; i++) {
        const res = await httpRequest(lb.port, { path: `/r${i}` })
        assert.equal(res.status, 200)
        const sent = (JSON.parse(res.body) as EchoReply).headers['x-request-id']
        assert.match(sent, GENERATED)
        assert.equal(res.headers['x-request-id'], sent, 'the client gets the ID the upstream got')
        seen.add(sent)
      }
      assert.equal(seen.size, 4)
      await waitFor(() => accessLines(lb).length >= 4, 5000, 'four access-log lines')
      assert.deepEqual(new Set(accessLines(lb).map((l) => l.requestId)), seen)
    })

    test('a sane incoming ID is kept; an insane one (or two lines) is replaced, never forwarded', async (t) => {
      const up = await startEchoUpstream('keep')
      t.after(async () => await up.close())
      const lb = await startCli(t, { workers: mode.workers, upstreams: [{ address: up.address }] })
      const kept = await httpRequest(lb.port, { path: '/k', headers: { 'X-Request-ID': 'client-id.42' } })
      assert.equal((JSON.parse(kept.body) as EchoReply).headers['x-request-id'], 'client-id.42')
      assert.equal(kept.headers['x-request-id'], 'client-id.42')
      for (const bad of ['has space', 'q"uote', 'x'.repeat(200)]) {
        const res = await httpRequest(lb.port, { path: '/b', headers: { 'x-request-id': bad } })
        const sent = (JSON.parse(res.body) as EchoReply).headers['x-request-id']
        assert.match(sent, GENERATED, `replaced ${bad}`)
        assert.equal(res.headers['x-request-id'], sent)
      }
      const two = await rawExchange(lb.port, 'GET /two HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\nX-Request-Id: b\r\nConnection: close\r\n\r\n', { timeoutMs: 3000 })
      const body = two.text.slice(two.text.indexOf('\r\n\r\n') + 4)
      assert.match((JSON.parse(body) as EchoReply).headers['x-request-id'], GENERATED, 'two lines are one insane ID')
    })

    test('a local answer (502, no upstream) carries the ID too; the header name is configurable; off means none', async (t) => {
      const dead = await refusedPort()
      const lb = await startCli(t, { workers: mode.workers, upstreams: [{ address: `127.0.0.1:${dead}` }], requestId: { header: 'x-correlation-id' } })
      const res = await httpRequest(lb.port, { path: '/down', headers: { 'x-correlation-id': 'corr-7' } })
      assert.equal(res.status, 502)
      assert.equal(res.headers['x-correlation-id'], 'corr-7')
      assert.equal(res.headers['x-request-id'], undefined)
      const fresh = await httpRequest(lb.port, { path: '/down' })
      assert.match(String(fresh.headers['x-correlation-id']), GENERATED)
      await waitFor(() => accessLines(lb).some((l) => l.requestId === 'corr-7' && l.status === 502), 5000, 'the 502 logged with its ID')

      const up = await startEchoUpstream('off')
      t.after(async () => await up.close())
      const off = await startCli(t, { workers: mode.workers, upstreams: [{ address: up.address }], requestId: { enabled: false } })
      const plain = await httpRequest(off.port, { path: '/off' })
      assert.equal(plain.headers['x-request-id'], undefined)
      assert.equal((JSON.parse(plain.body) as EchoReply).headers['x-request-id'], undefined)
    })
  })
}
