/**
 * Tracing against a real OTLP/HTTP receiver on loopback (the JSON encoding a
 * collector accepts at /v1/traces): a sampled request's server span is the
 * child of the client's traceparent, each upstream attempt is a client span
 * under it (a retry is a second one), the upstream gets a traceparent naming
 * its attempt's span; a request that is not sampled passes its
 * traceparent/tracestate through unchanged and exports nothing; a collector
 * that is down costs no request anything and its spans are counted as
 * dropped. Sequential and worker mode.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, httpRequest, waitFor, refusedPort, type EchoReply } from '../helpers'
import { T_SPANS_DROPPED, T_SPANS_EXPORTED } from '../../src/shared/layout'
import { parseTraceParent, sampledByRatio, TraceParent } from '../../src/tracing/trace-context'

interface OtlpValue { stringValue?: string, intValue?: string | number, boolValue?: boolean, arrayValue?: { values: OtlpValue[] } }
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: Array<{ key: string, value: OtlpValue }>
  status?: { code?: number }
}
interface Span { traceId: string, spanId: string, parentSpanId: string, name: string, kind: number, attrs: Record<string, unknown>, status: number, service: string }

const SERVER = 2
const CLIENT = 3

/** OTLP/JSON encodes IDs as hex (the spec), some encoders as base64: accept both. */
function hexId (id: string | undefined): string {
  if (id === undefined || id === '') return ''
  return /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex')
}

function valueOf (v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.boolValue !== undefined) return v.boolValue
  if (v.arrayValue !== undefined) return v.arrayValue.values.map(valueOf)
  return undefined
}

/** A minimal OTLP/HTTP traces receiver: collects every span it is sent. */
async function startReceiver (): Promise<{ url: string, spans: Span[], requests: number, close: () => Promise<void> }> {
  const spans: Span[] = []
  const receiver = { url: '', spans, requests: 0, close: async () => {} }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      receiver.requests++
      assert.equal(req.url, '/v1/traces')
      assert.match(String(req.headers['content-type']), /application\/json/)
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }, scopeSpans: Array<{ spans: OtlpSpan[] }> }> }
      for (const rs of body.resourceSpans) {
        const service = String(valueOf(rs.resource.attributes.find((a) => a.key === 'service.name')?.value ?? {}))
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            spans.push({
              traceId: hexId(s.traceId),
              spanId: hexId(s.spanId),
              parentSpanId: hexId(s.parentSpanId),
              name: s.name,
              kind: s.kind,
              attrs: Object.fromEntries(s.attributes.map((a) => [a.key, valueOf(a.value)])),
              status: s.status?.code ?? 0,
              service,
            })
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`
  receiver.close = async () => { server.closeAllConnections(); await new Promise<void>((resolve) => server.close(() => resolve())) }
  return receiver
}

const INCOMING_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const INCOMING_PARENT = '00f067aa0ba902b7'

describe('tracing: W3C traceparent and the ratio', () => {
  test('traceparent parsing follows the spec', () => {
    const p = new TraceParent()
    assert.ok(parseTraceParent(`00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`, p))
    assert.deepEqual([p.traceId, p.parentId, p.sampled], [INCOMING_TRACE, INCOMING_PARENT, true])
    assert.ok(parseTraceParent(`00-${INCOMING_TRACE}-${INCOMING_PARENT}-00`, p) && !p.sampled)
    assert.ok(parseTraceParent(`01-${INCOMING_TRACE}-${INCOMING_PARENT}-01-future`, p), 'a later version: the known fields')
    for (const bad of [null, '', `00-${INCOMING_TRACE.toUpperCase()}-${INCOMING_PARENT}-01`, `00-${'0'.repeat(32)}-${INCOMING_PARENT}-01`,
      `00-${INCOMING_TRACE}-${'0'.repeat(16)}-01`, `ff-${INCOMING_TRACE}-${INCOMING_PARENT}-01`, `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01-x`,
      `00-${INCOMING_TRACE}-${INCOMING_PARENT}-0g`, `00_${INCOMING_TRACE}-${INCOMING_PARENT}-01`]) {
      assert.equal(parseTraceParent(bad, p), false, String(bad))
      assert.equal(p.valid, false)
    }
  })

  test('the ratio decision is deterministic in the trace ID and close to the ratio', () => {
    let n = 0
    for (let i = 0; i < 10_000; i++) {
      const id = (i * 2654435761 % 2 ** 32).toString(16).padStart(16, '0') + ((i * 40503) % 2 ** 32).toString(16).padStart(8, '0') + (i * 97).toString(16).padStart(8, '0')
      if (sampledByRatio(id, 0.25)) n++
      assert.equal(sampledByRatio(id, 0.25), sampledByRatio(id, 0.25))
      assert.ok(sampledByRatio(id, 1) && !sampledByRatio(id, 0))
    }
    assert.ok(n > 2000 && n < 3000, `${n} of 10000 at 0.25`)
  })
})

for (const mode of MODES) {
  describe(`tracing (${mode.name})`, () => {
    const start = async (t: { after: (fn: () => Promise<void>) => void }, config: Record<string, unknown>): Promise<RunningLb> => {
      const run = await startLb(config, mode.workers)
      t.after(async () => await run.stop())
      return run
    }

    test('sampled: server span under the incoming parent, client span under it, upstream told the client span', async (t) => {
      const receiver = await startReceiver()
      t.after(async () => await receiver.close())
      const up = await startEchoUpstream('traced')
      t.after(async () => await up.close())
      const run = await start(t, { upstreams: [{ address: up.address }], tracing: { otlpEndpoint: receiver.url, sampleRatio: 1, serviceName: 'edge-test' } })

      const res = await httpRequest(run.port, {
        path: '/orders/7?full=1',
        headers: { traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`, tracestate: 'vendor=abc', 'user-agent': 'trace-test/1', 'x-request-id': 'rid-1' },
      })
      assert.equal(res.status, 200)
      const seen = (JSON.parse(res.body) as EchoReply).headers
      assert.match(seen.traceparent, new RegExp(`^00-${INCOMING_TRACE}-[0-9a-f]{16}-01$`), 'same trace, our span as parent')
      assert.notEqual(seen.traceparent.slice(36, 52), INCOMING_PARENT)
      assert.equal(seen.tracestate, 'vendor=abc', 'tracestate forwarded as received')

      await waitFor(() => receiver.spans.length >= 2, 10_000, 'two spans at the receiver')
      const server = receiver.spans.find((s) => s.kind === SERVER)
      const client = receiver.spans.find((s) => s.kind === CLIENT)
      assert.ok(server !== undefined && client !== undefined, JSON.stringify(receiver.spans))
      assert.equal(server.traceId, INCOMING_TRACE)
      assert.equal(server.parentSpanId, INCOMING_PARENT)
      assert.equal(client.traceId, INCOMING_TRACE)
      assert.equal(client.parentSpanId, server.spanId)
      assert.equal(seen.traceparent.slice(36, 52), client.spanId, 'the upstream names the client span as its parent')
      assert.equal(server.service, 'edge-test')
      assert.equal(server.name, 'GET')
      assert.equal(server.attrs['http.request.method'], 'GET')
      assert.equal(server.attrs['url.path'], '/orders/7')
      assert.equal(server.attrs['url.query'], 'full=1')
      assert.equal(server.attrs['url.scheme'], 'http')
      assert.equal(server.attrs['http.response.status_code'], 200)
      assert.equal(server.attrs['client.address'], '127.0.0.1')
      assert.equal(server.attrs['user_agent.original'], 'trace-test/1')
      assert.equal(server.attrs['network.protocol.version'], '1.1')
      assert.deepEqual(server.attrs['http.request.header.x-request-id'], ['rid-1'])
      const [host, port] = up.address.split(':')
      assert.equal(client.attrs['server.address'], host)
      assert.equal(client.attrs['server.port'], Number(port))
      assert.equal(client.attrs['url.full'], `http://${up.address}/orders/7?full=1`)
      assert.equal(client.attrs['http.response.status_code'], 200)
      assert.equal(client.attrs['http.request.resend_count'], undefined)
      // counted when the exporter's answer is back (after the receiver has the spans)
      await waitFor(() => run.lb.state.tracing(T_SPANS_EXPORTED) === 2, 5000, 'two spans counted as exported')

      // no incoming traceparent: a new trace, still propagated
      const fresh = await httpRequest(run.port, { path: '/new' })
      const sent = parseTraceParent((JSON.parse(fresh.body) as EchoReply).headers.traceparent, new TraceParent())
      assert.ok(sent)
      await waitFor(() => receiver.spans.filter((s) => s.parentSpanId === '' && s.kind === SERVER).length === 1, 10_000, 'a root server span')
    })

    test('a retry is a second client span (resend_count 1), the failed one an error', async (t) => {
      const receiver = await startReceiver()
      t.after(async () => await receiver.close())
      const up = await startEchoUpstream('second')
      t.after(async () => await up.close())
      const dead = await refusedPort()
      // round-robin starts with the first: the dead one, then the retry goes to the live one
      const run = await start(t, { upstreams: [{ address: `127.0.0.1:${dead}` }, { address: up.address }], tracing: { otlpEndpoint: receiver.url, sampleRatio: 1 } })
      const res = await httpRequest(run.port, { path: '/retry' })
      assert.equal(res.status, 200)
      const seen = (JSON.parse(res.body) as EchoReply).headers
      await waitFor(() => receiver.spans.length >= 3, 10_000, 'three spans')
      const server = receiver.spans.find((s) => s.kind === SERVER)
      assert.ok(server !== undefined)
      const clients = receiver.spans.filter((s) => s.kind === CLIENT && s.traceId === server.traceId)
      assert.equal(clients.length, 2, JSON.stringify(receiver.spans))
      for (const c of clients) assert.equal(c.parentSpanId, server.spanId)
      const failed = clients.find((c) => c.attrs['server.port'] === dead)
      const second = clients.find((c) => c.attrs['server.port'] !== dead)
      assert.ok(failed !== undefined && second !== undefined)
      assert.equal(failed.attrs['error.type'], 'SWY_ERR_UPSTREAM_CONNECT')
      assert.equal(failed.status, 2, 'status ERROR')
      assert.equal(second.attrs['http.request.resend_count'], 1)
      assert.equal(second.attrs['http.response.status_code'], 200)
      assert.equal(seen.traceparent.slice(36, 52), second.spanId, 'the upstream that answered got its own attempt\'s span')
    })

    test('not sampled: traceparent and tracestate pass unchanged, nothing is exported', async (t) => {
      const receiver = await startReceiver()
      t.after(async () => await receiver.close())
      const up = await startEchoUpstream('unsampled')
      t.after(async () => await up.close())
      const run = await start(t, { upstreams: [{ address: up.address }], tracing: { otlpEndpoint: receiver.url, sampleRatio: 0 } })
      const incoming = `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`
      const res = await httpRequest(run.port, { path: '/quiet', headers: { traceparent: incoming, tracestate: 'a=1,b=2' } })
      const seen = (JSON.parse(res.body) as EchoReply).headers
      assert.equal(seen.traceparent, incoming)
      assert.equal(seen.tracestate, 'a=1,b=2')
      const none = await httpRequest(run.port, { path: '/quiet2' })
      assert.equal((JSON.parse(none.body) as EchoReply).headers.traceparent, undefined, 'nothing invented for an unsampled request')
      // two export periods: had anything been sampled, it would have arrived
      await new Promise((resolve) => setTimeout(resolve, 1500))
      assert.equal(receiver.requests, 0)
    })

    test('collector down: requests are not slowed, spans are dropped and counted', async (t) => {
      const dead = await refusedPort()
      const up = await startEchoUpstream('nocollector')
      t.after(async () => await up.close())
      const run = await start(t, { upstreams: [{ address: up.address }], admin: { listen: '127.0.0.1:0' }, tracing: { otlpEndpoint: `http://127.0.0.1:${dead}/v1/traces`, sampleRatio: 1 } })
      const started = performance.now()
      for (let i = 0; i < 20; i++) assert.equal((await httpRequest(run.port, { path: `/d${i}` })).status, 200)
      const ms = performance.now() - started
      console.log(`${mode.name}: 20 traced requests with the collector down took ${ms.toFixed(0)} ms`)
      assert.ok(ms < 5000, `${ms} ms`)
      await waitFor(() => run.lb.state.tracing(T_SPANS_DROPPED) >= 40, 15_000, '40 spans counted as dropped')
      assert.equal(run.lb.state.tracing(T_SPANS_EXPORTED), 0)
      const metrics = await httpRequest((run.lb.admin as { address: { port: number } }).address.port, { path: '/metrics' })
      const dropped = /^switchyard_tracing_spans_total\{outcome="dropped"\} (\d+)$/m.exec(metrics.body)
      assert.ok(dropped !== null && Number(dropped[1]) >= 40, metrics.body.slice(-600))
      assert.match(metrics.body, /^switchyard_tracing_spans_total\{outcome="exported"\} 0$/m)
    })
  })
}
