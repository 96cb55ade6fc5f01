/**
 * The retry and blame decisions as tables: every failure code against what
 * was sent, the connection's history and the method (Pingora-style: a
 * decision is a pure function of the failure's cause, never of its message).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decideRetry, blamesUpstream, isIdempotent, type RetryAction } from '../../src/proxy/retry'
import { upgradeAllowed } from '../../src/proxy/upgrade'
import type { UpstreamFailure } from '../../src/proxy/upstream'

type Row = [UpstreamFailure, boolean /* staleReuse */, boolean /* bodySent */, string /* method */, number /* retriesLeft */, RetryAction]

const rows: Row[] = [
  // nothing was sent: any request goes elsewhere, and it costs no retry
  ['SWY_ERR_UPSTREAM_CONNECT', false, false, 'GET', 0, 'nextFree'],
  ['SWY_ERR_UPSTREAM_CONNECT', false, false, 'POST', 0, 'nextFree'],
  // a pooled connection the upstream had closed: the same upstream again, on a fresh connection
  ['SWY_ERR_UPSTREAM_RESET', true, false, 'GET', 0, 'reconnect'],
  ['SWY_ERR_UPSTREAM_RESET', true, false, 'DELETE', 0, 'reconnect'],
  // ... but never a request that may not be repeated, or whose body is half gone
  ['SWY_ERR_UPSTREAM_RESET', true, false, 'POST', 1, 'fail'],
  ['SWY_ERR_UPSTREAM_RESET', true, true, 'PUT', 1, 'fail'],
  // a fresh connection reset: another upstream while retries last
  ['SWY_ERR_UPSTREAM_RESET', false, false, 'GET', 1, 'next'],
  ['SWY_ERR_UPSTREAM_RESET', false, false, 'GET', 0, 'fail'],
  ['SWY_ERR_UPSTREAM_RESET', false, false, 'PATCH', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_RESET', false, true, 'PUT', 3, 'fail'],
  // the upstream may still be working on it, or it answered nonsense: never replayed
  ['SWY_ERR_UPSTREAM_TIMEOUT', false, false, 'GET', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_TIMEOUT', true, false, 'GET', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_PROTOCOL', false, false, 'GET', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_IDLE', false, true, 'PUT', 3, 'fail'],
  ['SWY_ERR_CLIENT_TIMEOUT', false, true, 'POST', 3, 'fail'],
]

test('decideRetry: table', () => {
  for (const [code, staleReuse, bodySent, method, retriesLeft, expected] of rows) {
    assert.equal(decideRetry(code, staleReuse, bodySent, method, retriesLeft), expected, `${code} staleReuse=${staleReuse} bodySent=${bodySent} ${method} retries=${retriesLeft}`)
  }
})

test('blamesUpstream: a stale pooled connection and the client\'s own stall blame nobody', () => {
  assert.equal(blamesUpstream('SWY_ERR_UPSTREAM_RESET', true), false)
  assert.equal(blamesUpstream('SWY_ERR_UPSTREAM_RESET', false), true)
  assert.equal(blamesUpstream('SWY_ERR_CLIENT_TIMEOUT', false), false)
  for (const code of ['SWY_ERR_UPSTREAM_CONNECT', 'SWY_ERR_UPSTREAM_TIMEOUT', 'SWY_ERR_UPSTREAM_PROTOCOL', 'SWY_ERR_UPSTREAM_IDLE'] as const) {
    assert.equal(blamesUpstream(code, false), true, code)
    assert.equal(blamesUpstream(code, true), true, code)
  }
})

test('isIdempotent: RFC 9110 §9.2.2', () => {
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) assert.equal(isIdempotent(m), true, m)
  for (const m of ['POST', 'PATCH', 'CONNECT', 'PURGE', 'get']) assert.equal(isIdempotent(m), false, m)
})

test('upgradeAllowed: only listed protocols, every one of them', () => {
  const ws = ['websocket']
  assert.equal(upgradeAllowed('websocket', ws), true)
  assert.equal(upgradeAllowed('WebSocket', ws), true)
  assert.equal(upgradeAllowed('websocket/13', ws), true)
  assert.equal(upgradeAllowed('h2c', ws), false)
  assert.equal(upgradeAllowed('h2c, websocket', ws), false)
  assert.equal(upgradeAllowed('websocket, h2c', ws), false)
  assert.equal(upgradeAllowed(' , ', ws), false)
  assert.equal(upgradeAllowed(null, ws), false)
  assert.equal(upgradeAllowed('websocket', []), false)
  assert.equal(upgradeAllowed('foo/2', ['foo/1']), false)
  assert.equal(upgradeAllowed('foo/1', ['foo/1']), true)
})
