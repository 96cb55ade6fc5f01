/**
 * Active health checks against real servers on loopback: status handling,
 * thresholds, refused / hung upstreams, and clean shutdown. Intervals are
 * 50 ms so the whole file runs in a couple of seconds.
 */
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import type * as net from 'node:net'
import { ActiveHealthChecker } from '../../src/health/active'
import { compileExpectStatus, isExpectedStatus } from '../../src/health/expect'
import { readFinalStatus, STATUS_INVALID, STATUS_NEED_MORE } from '../../src/health/status-line'
import { upstreamStatus } from '../../src/health/status'
import type { ActiveHealthConfig } from '../../src/config/types'
import { ConfigError } from '../../src/errors'
import {
  CHECK_BAD_RESPONSE, CHECK_REFUSED, CHECK_TIMEOUT, U_CONSECUTIVE_FAILURES, U_HEALTH_TRANSITIONS, U_HEALTHY,
  U_LAST_CHECK_AT, U_LAST_CHECK_LATENCY_US, U_LAST_CHECK_STATUS,
} from '../../src/shared/layout'
import { SharedState, type UpstreamEntry } from '../../src/shared/state'
import { refusedPort, startEchoUpstream, startRawServer, waitFor, type TestServer } from '../helpers'
import { recorder } from './health-log'

function entries (ports: number[]): UpstreamEntry[] {
  return ports.map((port, index) => ({ slot: index, index, pool: 'default', poolSlot: 0, address: `127.0.0.1:${port}`, host: '127.0.0.1', port, weight: 1, id: `u${index}` }))
}

function freshState (table: readonly UpstreamEntry[]): SharedState {
  const state = SharedState.create(0)
  for (const entry of table) state.initUpstreamSlot(entry.slot)
  return state
}

function activeConfig (overrides: Partial<ActiveHealthConfig> = {}): ActiveHealthConfig {
  return { path: '/healthz', intervalMs: 50, timeoutMs: 500, expectStatus: [200], healthyThreshold: 1, unhealthyThreshold: 1, ...overrides }
}

/** An upstream whose answer status comes from `statusFor(requestNumber)` (1-based). */
async function statusUpstream (statusFor: (n: number) => number): Promise<TestServer> {
  let n = 0
  return await startEchoUpstream('status', (_req, res) => {
    res.writeHead(statusFor(++n), { 'content-length': '2' })
    res.end('ok')
    return true
  })
}

// Each test's checkers and servers are closed when it ends, pass or fail, so
// no probe traffic leaks into the next test.
const servers: TestServer[] = []
const checkers: ActiveHealthChecker[] = []
afterEach(async () => {
  await Promise.all(checkers.splice(0).map(async (c) => await c.stop()))
  await Promise.all(servers.splice(0).map(async (s) => await s.close()))
})

function track<T extends TestServer> (server: T): T { servers.push(server); return server }
function run (checker: ActiveHealthChecker): ActiveHealthChecker { checkers.push(checker); checker.start(); return checker }

describe('expectStatus', () => {
  test('numbers match exactly, "Nxx" a whole class', () => {
    const table = compileExpectStatus(['2xx', 301])
    for (const s of [200, 204, 299, 301]) assert.equal(isExpectedStatus(table, s), true, String(s))
    for (const s of [199, 300, 302, 404, 500, 0, -1, 600, 999]) assert.equal(isExpectedStatus(table, s), false, String(s))
  })

  test('rejects values the schema would have rejected', () => {
    assert.throws(() => compileExpectStatus([]), ConfigError)
    assert.throws(() => compileExpectStatus([99]), ConfigError)
    assert.throws(() => compileExpectStatus(['6xx']), ConfigError)
    assert.throws(() => compileExpectStatus(['2XX']), ConfigError)
  })
})

describe('status line', () => {
  const final = (text: string): number => readFinalStatus(Buffer.from(text, 'latin1'))

  test('reads the code and nothing else', () => {
    assert.equal(final('HTTP/1.1 200 OK\r\n'), 200)
    assert.equal(final('HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'), 503)
    assert.equal(final('HTTP/1.1 204\r\n'), 204)
  })

  test('waits for more bytes while the prefix still fits', () => {
    assert.equal(final(''), STATUS_NEED_MORE)
    assert.equal(final('HTT'), STATUS_NEED_MORE)
    assert.equal(final('HTTP/1.1 20'), STATUS_NEED_MORE)
    assert.equal(final('HTTP/1.1 200'), STATUS_NEED_MORE)
  })

  test('rejects what is not HTTP/1.x as soon as it shows', () => {
    assert.equal(final('SSH-2.0-OpenSSH'), STATUS_INVALID)
    assert.equal(final('http/1.1 200 OK\r\n'), STATUS_INVALID)
    assert.equal(final('HTTP/1.1 2000 OK\r\n'), STATUS_INVALID)
    assert.equal(final('HTTP/1.1 600 Nope\r\n'), STATUS_INVALID)
    assert.equal(final('HTTP/1.1 099 Nope\r\n'), STATUS_INVALID)
  })

  test('skips interim 1xx responses; 101 is final', () => {
    assert.equal(final('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n'), 200)
    assert.equal(final('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 x\r\n'), 500)
    assert.equal(final('HTTP/1.1 100 Continue\r\n'), STATUS_NEED_MORE)
    assert.equal(final('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1'), STATUS_NEED_MORE)
    assert.equal(final('HTTP/1.1 101 Switching Protocols\r\n'), 101)
  })
})

describe('ActiveHealthChecker', () => {
  test('an upstream answering 200 stays healthy; the probe request is as documented', async () => {
    const seen: Array<{ method?: string, url?: string, headers: Record<string, unknown> }> = []
    const server = track(await startEchoUpstream('ok', (req, res) => {
      seen.push({ method: req.method, url: req.url, headers: req.headers })
      res.writeHead(200, { 'content-length': '2' })
      res.end('ok')
      return true
    }))
    const table = entries([server.port])
    const state = freshState(table)
    const { log, lines } = recorder()
    run(new ActiveHealthChecker(activeConfig(), state, table, log))
    await waitFor(() => server.count >= 4 && state.upstream(0, U_LAST_CHECK_STATUS) === 200, 3000, 'four checks')
    assert.equal(state.upstream(0, U_HEALTHY), 1)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 0)
    assert.ok(state.upstream(0, U_LAST_CHECK_LATENCY_US) > 0)
    assert.deepEqual(lines, [])
    assert.equal(seen[0].method, 'GET')
    assert.equal(seen[0].url, '/healthz')
    assert.equal(seen[0].headers.host, server.address)
    assert.equal(seen[0].headers.connection, 'close')
    assert.equal(seen[0].headers['user-agent'], 'switchyard-health-check')

    const [status] = upstreamStatus(state, table)
    assert.equal(status.healthy, true)
    assert.equal(status.lastCheck?.status, 200)
    assert.equal(status.lastCheck?.reason, 'status 200')
    assert.ok((status.lastCheck?.ageMs ?? -1) >= 0)
  })

  test('the first round goes out at start(), not one interval later', async () => {
    const server = track(await startEchoUpstream('ok'))
    const table = entries([server.port])
    const state = freshState(table)
    run(new ActiveHealthChecker(activeConfig({ intervalMs: 60_000 }), state, table, recorder().log))
    await waitFor(() => state.upstream(0, U_LAST_CHECK_STATUS) === 200, 3000, 'the first check')
  })

  test('500 marks unhealthy within ~2 intervals with reason "status 500"; 200 brings it back', async () => {
    let answer = 500
    const server = track(await statusUpstream(() => answer))
    const table = entries([server.port])
    const state = freshState(table)
    state.storeUpstream(0, U_CONSECUTIVE_FAILURES, 7) // as if passively counted
    const { log, lines } = recorder()
    const startedAt = Date.now()
    run(new ActiveHealthChecker(activeConfig(), state, table, log))
    await waitFor(() => state.upstream(0, U_HEALTHY) === 0, 3000, 'unhealthy')
    assert.ok(Date.now() - startedAt < 1000, 'marked down promptly')
    assert.equal(state.upstream(0, U_LAST_CHECK_STATUS), 500)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 1)
    assert.equal(lines.length, 1)
    assert.equal(lines[0].level, 'warn')
    assert.equal(lines[0].bindings.upstream, server.address)
    assert.equal(lines[0].bindings.reason, 'status 500')

    // Further failures do not log again: a transition is logged once.
    const checksSoFar = server.count
    await waitFor(() => server.count >= checksSoFar + 2, 3000, 'more failing checks')
    assert.equal(lines.length, 1)

    answer = 200
    await waitFor(() => state.upstream(0, U_HEALTHY) === 1, 3000, 'healthy again')
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 2)
    assert.equal(state.upstream(0, U_CONSECUTIVE_FAILURES), 0, 'revival resets the passive streak')
    assert.equal(lines.length, 2)
    assert.equal(lines[1].level, 'info')
    assert.equal(lines[1].bindings.reason, 'status 200')
  })

  test('a refused connection is CHECK_REFUSED, "connection refused"', async () => {
    const table = entries([await refusedPort()])
    const state = freshState(table)
    const { log, lines } = recorder()
    run(new ActiveHealthChecker(activeConfig(), state, table, log))
    await waitFor(() => state.upstream(0, U_HEALTHY) === 0, 3000, 'unhealthy')
    assert.equal(state.upstream(0, U_LAST_CHECK_STATUS), CHECK_REFUSED)
    assert.equal(lines[0].bindings.reason, 'connection refused')
    const [status] = upstreamStatus(state, table)
    assert.equal(status.healthy, false)
    assert.deepEqual({ status: status.lastCheck?.status, reason: status.lastCheck?.reason }, { status: null, reason: 'connection refused' })
  })

  test('garbage instead of a status line is CHECK_BAD_RESPONSE', async () => {
    const server = track(await startRawServer((socket) => { socket.end('SSH-2.0-OpenSSH_9.6\r\n') }))
    const table = entries([server.port])
    const state = freshState(table)
    const { log } = recorder()
    run(new ActiveHealthChecker(activeConfig(), state, table, log))
    await waitFor(() => state.upstream(0, U_LAST_CHECK_STATUS) === CHECK_BAD_RESPONSE, 3000, 'bad response')
    assert.equal(state.upstream(0, U_HEALTHY), 0)
  })

  test('a hung upstream times out without delaying checks of the others, and is not probed twice at once', async () => {
    const hung = track(await startRawServer(() => { /* accept, never answer */ }))
    const healthy = track(await startEchoUpstream('ok'))
    const table = entries([hung.port, healthy.port])
    const state = freshState(table)
    const { log, lines } = recorder()
    const timeoutMs = 600
    run(new ActiveHealthChecker(activeConfig({ timeoutMs }), state, table, log))

    // While the hung probe waits out its timeout, the healthy upstream keeps
    // being checked on schedule and its U_LAST_CHECK_AT keeps moving.
    const checkTimes = new Set<number>()
    let hungConnectionsWhileInFlight = 0
    await waitFor(() => {
      checkTimes.add(state.upstream(1, U_LAST_CHECK_AT))
      if (state.upstream(0, U_LAST_CHECK_STATUS) !== 0) return true
      hungConnectionsWhileInFlight = hung.count
      return false
    }, 3000, 'the hung upstream to time out')
    assert.equal(state.upstream(0, U_LAST_CHECK_STATUS), CHECK_TIMEOUT)
    assert.equal(state.upstream(0, U_HEALTHY), 0)
    assert.ok(state.upstream(0, U_LAST_CHECK_LATENCY_US) >= (timeoutMs - 5) * 1000)
    assert.ok(healthy.count >= 4, `healthy upstream checked ${healthy.count} times during the hang`)
    assert.ok(checkTimes.size >= 4, `U_LAST_CHECK_AT advanced ${checkTimes.size} times`)
    assert.equal(state.upstream(1, U_HEALTHY), 1)
    // Eleven intervals passed while the first probe hung: still one connection.
    assert.equal(hungConnectionsWhileInFlight, 1)
    const down = lines.find((l) => l.level === 'warn')
    assert.equal(down?.bindings.reason, `timeout after ${timeoutMs} ms`)
    assert.equal(down?.bindings.upstream, hung.address)
  })

  test('unhealthyThreshold 3 needs three failures in a row; healthyThreshold 2 two successes', async () => {
    // Failures never three in a row: 500, 500, 200, 500, 500, 200, ...
    const flaky = track(await statusUpstream((n) => n % 3 === 0 ? 200 : 500))
    let answer = 500
    const down = track(await statusUpstream(() => answer))
    const table = entries([flaky.port, down.port])
    const state = freshState(table)
    const { log, lines } = recorder()
    run(new ActiveHealthChecker(activeConfig({ unhealthyThreshold: 3, healthyThreshold: 2 }), state, table, log))

    await waitFor(() => state.upstream(1, U_HEALTHY) === 0, 3000, 'three failures to eject')
    const ejection = lines.find((l) => l.level === 'warn')
    assert.equal(ejection?.bindings.upstream, down.address)
    assert.equal(ejection?.bindings.consecutiveFailures, 3)
    assert.ok(down.count >= 3)

    answer = 200
    await waitFor(() => state.upstream(1, U_HEALTHY) === 1, 3000, 'two successes to revive')
    const revival = lines.find((l) => l.level === 'info')
    assert.equal(revival?.bindings.consecutiveSuccesses, 2)

    await waitFor(() => flaky.count >= 7 && state.upstream(0, U_LAST_CHECK_AT) !== 0, 3000, 'seven flaky checks')
    assert.equal(state.upstream(0, U_HEALTHY), 1)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 0)
  })

  test('expectStatus ["2xx", 301]', async () => {
    const noContent = track(await statusUpstream(() => 204))
    const moved = track(await statusUpstream(() => 301))
    const found = track(await statusUpstream(() => 302))
    const table = entries([noContent.port, moved.port, found.port])
    const state = freshState(table)
    const { log } = recorder()
    run(new ActiveHealthChecker(activeConfig({ expectStatus: ['2xx', 301] }), state, table, log))
    await waitFor(() => table.every((e) => state.upstream(e.slot, U_LAST_CHECK_STATUS) !== 0) && found.count >= 2 && noContent.count >= 2 && moved.count >= 2, 3000, 'checks of all three')
    assert.deepEqual(table.map((e) => state.upstream(e.slot, U_HEALTHY)), [1, 1, 0])
  })

  test('setTable drops removed upstreams and probes new ones; setConfig changes the path', async () => {
    const first = track(await startEchoUpstream('first'))
    const paths: string[] = []
    const second = track(await startEchoUpstream('second', (req, res) => {
      paths.push(req.url ?? '')
      res.writeHead(200, { 'content-length': '0' })
      res.end()
      return true
    }))
    const [a, b] = entries([first.port, second.port])
    const state = freshState([a, b])
    const { log } = recorder()
    const checker = run(new ActiveHealthChecker(activeConfig(), state, [a], log))
    await waitFor(() => first.count >= 2, 3000, 'first checked')
    checker.setTable([{ ...b, slot: 1 }])
    checker.setConfig(activeConfig({ path: '/ready' }))
    await waitFor(() => paths.includes('/ready'), 3000, 'second checked on the new path')
    const firstCount = first.count
    await waitFor(() => second.count >= paths.length && paths.filter((p) => p === '/ready').length >= 3, 3000, 'a few more rounds')
    assert.ok(first.count <= firstCount + 1, 'a removed upstream is no longer probed')
  })

  test('stop() cancels the loop and destroys probes in flight', async () => {
    let serverSocketsOpen = 0
    const hung = track(await startRawServer((socket: net.Socket) => {
      serverSocketsOpen++
      socket.on('close', () => { serverSocketsOpen-- })
      socket.resume() // read, so the probe's FIN is seen and this side closes too
    }))
    const healthy = track(await startEchoUpstream('ok'))
    const table = entries([hung.port, healthy.port])
    const state = freshState(table)
    const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
    const socketsBefore = sockets()
    const { log } = recorder()
    const checker = new ActiveHealthChecker(activeConfig({ timeoutMs: 5000 }), state, table, log)
    checkers.push(checker) // stopped again by afterEach if an assertion fails first
    checker.start()
    await waitFor(() => serverSocketsOpen === 1 && healthy.count >= 2, 3000, 'a probe hanging in flight')
    await checker.stop()
    await waitFor(() => serverSocketsOpen === 0, 1000, 'the hung probe socket to close')
    await waitFor(() => sockets() === socketsBefore, 1000, 'no probe sockets left')
    const countAfterStop = healthy.count
    // Proving that nothing more happens takes a wait: four intervals.
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(healthy.count, countAfterStop, 'no checks after stop()')
    assert.equal(hung.count, 1)
    assert.equal(state.upstream(0, U_LAST_CHECK_STATUS), 0, 'a cancelled probe records nothing')

    // A stopped checker can be started again.
    checker.start()
    await waitFor(() => healthy.count > countAfterStop && hung.count === 2, 3000, 'checks after a restart')
  })
})
