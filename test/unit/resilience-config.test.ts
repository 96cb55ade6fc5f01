/**
 * The resilience settings' bad input, each error with its JSON path; the
 * Retry-After parser; Proxy-Status formatting.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { resolveConfig } from '../../src/config/load'
import { ConfigError } from '../../src/errors'
import { parseRetryAfter, isBackOffStatus } from '../../src/health/retry-after'
import { proxyErrorType, proxyStatusLine, receivedStatusLine, sfString } from '../../src/http/proxy-status'

const BASE = { listen: '127.0.0.1:0', upstreams: [{ address: '127.0.0.1:8001' }, { address: '127.0.0.1:8002' }] }

function errorsOf (raw: Record<string, unknown>): readonly string[] {
  try {
    resolveConfig(raw)
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    return err.errors
  }
  return []
}

test('config: every upstream a backup, maxConnections 0, an unknown retryOn, retriable-status without statuses', () => {
  assert.deepEqual(errorsOf({ ...BASE, upstreams: [{ address: '127.0.0.1:8001', backup: true }, { address: '127.0.0.1:8002', backup: true }] }),
    ['/upstreams: every upstream is a backup; a backup only takes traffic while no primary is healthy, so at least one must not be'])
  assert.deepEqual(errorsOf({ ...BASE, upstreams: [{ address: '127.0.0.1:8001', maxConnections: 0 }] }), ['/upstreams/0/maxConnections: must be >= 1'])
  const unknown = errorsOf({ ...BASE, retryOn: ['reset', 'teapot'] })
  assert.equal(unknown.length, 1)
  assert.match(unknown[0], /^\/retryOn\/1: must be one of "connect-failure", "reset", "timeout", "5xx", "gateway-error", "retriable-status"$/)
  assert.deepEqual(errorsOf({ ...BASE, retryOn: ['retriable-status'] }), ['/retriableStatuses: must list at least one status when /retryOn has "retriable-status"'])
  assert.deepEqual(errorsOf({ ...BASE, healthCheck: { panicThresholdPercent: 101 } }), ['/healthCheck/panicThresholdPercent: must be <= 100'])
  assert.deepEqual(errorsOf({ ...BASE, queue: { maxSize: -1 } }), ['/queue/maxSize: must be >= 0'])
  // schema errors all at once, in one pass
  assert.equal(errorsOf({ ...BASE, upstreams: [{ address: '127.0.0.1:8001', maxConnections: 0 }], retryOn: ['nope'] }).length, 2)
  // and a good one loads, with the defaults
  const ok = resolveConfig({ ...BASE, upstreams: [{ address: '127.0.0.1:8001' }, { address: '127.0.0.1:8002', backup: true, maxConnections: 5, slowStartMs: 100 }] })
  assert.deepEqual(ok.retryOn, ['connect-failure', 'reset'])
  assert.equal(ok.retryBudgetPercent, 20)
  assert.equal(ok.retryBodyMaxBytes, 65536)
  assert.equal(ok.healthCheck.panicThresholdPercent, 50)
  assert.equal(ok.queue, undefined)
})

test('parseRetryAfter: delay-seconds and HTTP-date (RFC 9110 §10.2.3), -1 for anything else', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0)
  assert.equal(parseRetryAfter('2', now), 2000)
  assert.equal(parseRetryAfter(' 120 ', now), 120_000)
  assert.equal(parseRetryAfter('0', now), 0)
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 12:00:30 GMT', now), 30_000)
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 11:00:00 GMT', now), 0, 'a date in the past')
  for (const bad of ['', '-1', '1.5', '2s', 'soon', 'Thu, 01 Jan 2026']) assert.equal(parseRetryAfter(bad, now), -1, JSON.stringify(bad))
  assert.ok(parseRetryAfter('99999999999999', now) > 0, 'huge values saturate (then maxRetryAfterMs caps them)')
  assert.equal(isBackOffStatus(503), true)
  assert.equal(isBackOffStatus(429), true)
  assert.equal(isBackOffStatus(500), false)
})

test('Proxy-Status: RFC 9209 error types, sf-string details, received-status', () => {
  assert.equal(proxyErrorType('SWY_ERR_UPSTREAM_CONNECT'), 'connection_refused')
  assert.equal(proxyErrorType('SWY_ERR_UPSTREAM_CONNECT', true), 'connection_timeout')
  assert.equal(proxyErrorType('SWY_ERR_UPSTREAM_TIMEOUT'), 'http_response_timeout')
  assert.equal(proxyErrorType('SWY_ERR_UPSTREAM_PROTOCOL'), 'http_protocol_error')
  assert.equal(proxyErrorType('SWY_ERR_NO_HEALTHY_UPSTREAM'), 'destination_unavailable')
  assert.equal(proxyErrorType('SWY_ERR_QUEUE_TIMEOUT'), 'connection_limit_reached')
  assert.equal(proxyErrorType('SWY_ERR_BAD_HEADER'), 'http_request_error')
  assert.equal(proxyStatusLine('connection_refused', null), 'Proxy-Status: switchyard; error=connection_refused\r\n')
  assert.equal(sfString('a "q" \\ b\r\n\u00e9'), '"a \\"q\\" \\\\ b???"')
  assert.equal(receivedStatusLine(503, 2, false), 'Proxy-Status: switchyard; received-status=503\r\n')
  assert.equal(receivedStatusLine(200, 1, true), 'Proxy-Status: switchyard; received-status=200; details="after 1 retries"\r\n')
})
