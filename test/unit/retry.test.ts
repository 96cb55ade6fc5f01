/**
 * The retry and blame decisions as tables: every reason against what was
 * sent, the connection's history, the method and the budget (Pingora-style: a
 * decision is a pure function of the failure's cause, never of its message),
 * plus properties over every combination.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  decideRetry, blamesUpstream, isIdempotent, isReplaySafe, compileRetryPolicy, failureReason, statusReason, budgetAllows,
  MIN_RETRY_BUDGET, type RetryAction, type RetryReason,
} from '../../src/proxy/retry'
import { RETRY_REASONS } from '../../src/health/pool-status'
import { upgradeAllowed } from '../../src/proxy/upgrade'
import type { UpstreamFailure } from '../../src/proxy/upstream'

const DEFAULTS = { retries: 1, retryOn: ['connect-failure', 'reset'] as RetryReason[], retriableStatuses: [], retryIdempotencyKey: false, retryBodyMaxBytes: 65536, retryBudgetPercent: 20 }
const defaults = compileRetryPolicy(DEFAULTS)
const everything = compileRetryPolicy({ ...DEFAULTS, retryOn: [...RETRY_REASONS], retriableStatuses: [409, 503] })

type Row = [UpstreamFailure, boolean /* staleReuse */, boolean /* bodySent, not kept */, string /* method */, number /* retriesLeft */, RetryAction]

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
  // default retryOn: a timeout is not retried (the upstream may still be working on it); nonsense never is
  ['SWY_ERR_UPSTREAM_TIMEOUT', false, false, 'GET', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_TIMEOUT', true, false, 'GET', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_PROTOCOL', false, false, 'GET', 3, 'fail'],
  ['SWY_ERR_UPSTREAM_IDLE', false, true, 'PUT', 3, 'fail'],
  ['SWY_ERR_CLIENT_TIMEOUT', false, true, 'POST', 3, 'fail'],
]

test('decideRetry with the default retryOn: table', () => {
  for (const [code, staleReuse, bodySent, method, retriesLeft, expected] of rows) {
    const got = decideRetry(defaults, failureReason(code), { staleReuse, replayable: !bodySent, safe: isIdempotent(method), retriesLeft, budgetLeft: true })
    assert.equal(got, expected, `${code} staleReuse=${staleReuse} bodySent=${bodySent} ${method} retries=${retriesLeft}`)
  }
})

test('decideRetry: reasons, body state, method, Idempotency-Key and budget', () => {
  type R = [string, RetryReason | null, { replayable?: boolean, safe?: boolean, retriesLeft?: number, budgetLeft?: boolean }, RetryAction]
  const table: R[] = [
    ['timeout retried when listed', 'timeout', {}, 'next'],
    ['503 retried with gateway-error', statusReason(everything, 502), {}, 'next'],
    ['a kept body is replayed', '5xx', { replayable: true }, 'next'],
    ['a streamed (too large) body is not', '5xx', { replayable: false }, 'fail'],
    ['POST without Idempotency-Key: never', 'gateway-error', { safe: false }, 'fail'],
    ['out of retries', 'gateway-error', { retriesLeft: 0 }, 'fail'],
    ['budget spent', 'gateway-error', { budgetLeft: false }, 'budget'],
    ['budget spent does not stop a free connect failover', 'connect-failure', { budgetLeft: false, retriesLeft: 0, safe: false }, 'nextFree'],
    ['no reason: never', null, {}, 'fail'],
  ]
  for (const [name, reason, over, expected] of table) {
    const got = decideRetry(everything, reason, { staleReuse: false, replayable: true, safe: true, retriesLeft: 2, budgetLeft: true, ...over })
    assert.equal(got, expected, name)
  }
  const postKey = compileRetryPolicy({ ...DEFAULTS, retryIdempotencyKey: true })
  assert.equal(isReplaySafe(postKey, 'POST', () => true), true, 'POST with Idempotency-Key and retryIdempotencyKey')
  assert.equal(isReplaySafe(postKey, 'POST', () => false), false, 'POST without the key')
  assert.equal(isReplaySafe(defaults, 'POST', () => true), false, 'the key without retryIdempotencyKey')
  let asked = false
  assert.equal(isReplaySafe(postKey, 'GET', () => { asked = true; return false }), true)
  assert.equal(asked, false, 'the header is read only for a method that is not idempotent')
})

test('statusReason: the most specific listed reason, null when none', () => {
  assert.equal(statusReason(defaults, 503), null)
  assert.equal(statusReason(everything, 503), 'retriable-status')
  assert.equal(statusReason(everything, 409), 'retriable-status')
  assert.equal(statusReason(everything, 504), 'gateway-error')
  assert.equal(statusReason(everything, 500), '5xx')
  assert.equal(statusReason(everything, 404), null)
  const gw = compileRetryPolicy({ ...DEFAULTS, retryOn: ['gateway-error'] })
  assert.equal(statusReason(gw, 500), null)
  assert.equal(statusReason(gw, 502), 'gateway-error')
})

test('property: over every combination, a retry is never unsafe, never beyond retries, never over budget', () => {
  const reasons: Array<RetryReason | null> = [...RETRY_REASONS, null]
  const policies = [defaults, everything, compileRetryPolicy({ ...DEFAULTS, retryOn: [] })]
  let n = 0
  for (const policy of policies) {
    for (const reason of reasons) {
      for (const staleReuse of [false, true]) {
        for (const replayable of [false, true]) {
          for (const safe of [false, true]) {
            for (const retriesLeft of [0, 1, 3]) {
              for (const budgetLeft of [false, true]) {
                n++
                const a = decideRetry(policy, reason, { staleReuse, replayable, safe, retriesLeft, budgetLeft })
                const where = `${String(reason)} stale=${staleReuse} replayable=${replayable} safe=${safe} left=${retriesLeft} budget=${budgetLeft}`
                if (reason === 'connect-failure') { assert.equal(a, 'nextFree', where); continue }
                if (a === 'next' || a === 'reconnect') assert.ok(safe && replayable, `replayed an unsafe request: ${where}`)
                if (a === 'next') assert.ok(retriesLeft > 0 && budgetLeft, where)
                if (a === 'reconnect') assert.ok(staleReuse && reason === 'reset', where)
                if (reason === null) assert.equal(a, 'fail', where)
              }
            }
          }
        }
      }
    }
  }
  assert.ok(n > 500)
})

test('budgetAllows: a share of requests in flight, never fewer than the minimum', () => {
  assert.equal(budgetAllows(20, MIN_RETRY_BUDGET - 1, 0), true)
  assert.equal(budgetAllows(20, MIN_RETRY_BUDGET, 0), false)
  assert.equal(budgetAllows(20, 19, 100), true)
  assert.equal(budgetAllows(20, 20, 100), false)
  assert.equal(budgetAllows(0, 2, 1000), true, 'percent 0 still allows the minimum')
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
