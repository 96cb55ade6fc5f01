/**
 * Several instances sharing rate limits, drains and health through a REAL
 * redis-server (started here on a free loopback port, stopped by PID). Every
 * cluster runs 3 instances with mixed modes: workers 0, 2 and 0, so both
 * request paths (a worker's channel to the primary, the primary's own call)
 * take part in every test.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { startLb, type RunningLb } from './harness'
import { RedisServer, redisTimeMs } from './redis-server'
import { refusedPort, httpRequest, startEchoUpstream, waitFor, type TestServer } from '../helpers'
import { ASK_MARGIN_MS } from '../../src/cluster/global-limiter'
import { BREAKER_BACKOFF_MS } from '../../src/cluster/redis-link'

const MIX = [0, 2, 0]
const HEARTBEAT_MS = 200
/**
 * cluster.redis.timeoutMs in these tests. Not the default 20: the suite shares a
 * loaded 2-core machine, and an answer later than timeoutMs (a busy primary
 * counts too) puts the request into the failure mode, which may admit beyond the
 * global count. The exactness tests give Redis all the time it needs
 * (EXACT_TIMEOUT_MS); the failure tests a bound their latency checks use.
 */
const TIMEOUT_MS = 400
const EXACT_TIMEOUT_MS = 3000
/** Scheduling slack on a shared, noisy machine. */
const SLACK_MS = 400

interface Cluster { lbs: RunningLb[], stop (): Promise<void> }

async function startCluster (redis: RedisServer, upstreams: TestServer[], extra: Record<string, unknown>, cluster: Record<string, unknown> = {}, timeoutMs = TIMEOUT_MS, modes = MIX): Promise<Cluster> {
  const lbs: RunningLb[] = []
  try {
    for (let i = 0; i < modes.length; i++) {
      lbs.push(await startLb({
        upstreams: upstreams.map((u) => ({ address: u.address })),
        admin: { listen: '127.0.0.1:0' },
        ...extra,
        cluster: { redis: { url: redis.url, keyPrefix: `t${process.pid}:`, timeoutMs }, instanceId: `inst-${i}`, heartbeatMs: HEARTBEAT_MS, ...cluster },
      }, modes[i]))
    }
    await waitFor(() => lbs.every((r) => r.lb.cluster?.status().instances.length === modes.length && r.lb.cluster.status().redisUp), 10_000, 'every instance sees the others')
  } catch (err) {
    for (const r of lbs) await r.stop()
    throw err
  }
  return { lbs, stop: async () => { for (const r of lbs) await r.stop() } }
}

const TRUSTED = ['127.0.0.1/32']

function adminPort (r: RunningLb): number {
  return r.lb.admin?.address.port as number
}

async function hit (port: number, client: string): Promise<{ status: number, ms: number, headers: http.IncomingHttpHeaders }> {
  const started = performance.now()
  const reply = await httpRequest(port, { path: '/', headers: { 'x-forwarded-for': client } })
  return { status: reply.status, ms: performance.now() - started, headers: reply.headers }
}

/** `total` requests from `client`, spread round-robin over the instances, `concurrency` at a time. */
async function burst (lbs: RunningLb[], client: string, total: number, concurrency = 6): Promise<{ ok: number, limited: number, other: number, maxMs: number, retryAfter: string[] }> {
  const result = { ok: 0, limited: 0, other: 0, maxMs: 0, retryAfter: [] as string[] }
  let next = 0
  const runner = async (): Promise<void> => {
    for (;;) {
      const n = next++
      if (n >= total) return
      const r = await hit(lbs[n % lbs.length].port, client)
      if (r.status === 200) result.ok++
      else if (r.status === 429) { result.limited++; result.retryAfter.push(String(r.headers['retry-after'])) } else result.other++
      result.maxMs = Math.max(result.maxMs, r.ms)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, runner))
  return result
}

/**
 * burst() from a client new to the current fixed window of `windowMs` (aligned to the clock, as the
 * limiter's are): when the burst straddles a window boundary (both windows would admit), it runs again
 * from another client address (`198.51.100.${octet + 100 * attempt}`).
 */
async function burstInOneWindow (lbs: RunningLb[], octet: number, total: number, windowMs: number): Promise<Awaited<ReturnType<typeof burst>>> {
  for (let attempt = 0; ; attempt++) {
    const window = Math.floor(Date.now() / windowMs)
    const result = await burst(lbs, `198.51.100.${octet + 100 * attempt}`, total)
    if (Math.floor(Date.now() / windowMs) === window || attempt === 2) return result
  }
}

/** Wait until a fresh window of `windowMs` (on Redis's clock) has just begun; returns its end. */
async function windowStart (redis: RedisServer, windowMs: number): Promise<number> {
  const now = await redisTimeMs(redis.port)
  const start = (Math.floor(now / windowMs) + 1) * windowMs
  await new Promise((resolve) => setTimeout(resolve, start - now + 20))
  return start + windowMs
}

describe('cluster: 3 instances (workers 0, 2, 0) over a real redis-server', () => {
  let redis: RedisServer
  let upstream: TestServer

  before(async () => {
    redis = await RedisServer.start()
    upstream = await startEchoUpstream('u1')
  })
  after(async () => {
    await upstream.close()
    await redis.stop()
  })

  test('fixed window: 3x the limit spread over the instances admits exactly maxRequests, per client', async () => {
    const windowMs = 4000
    const c = await startCluster(redis, [upstream], { rateLimit: { maxRequests: 20, windowMs, trustProxy: TRUSTED } }, {}, EXACT_TIMEOUT_MS)
    try {
      for (let attempt = 0; ; attempt++) {
        const end = await windowStart(redis, windowMs)
        const [a, b] = await Promise.all([burst(c.lbs, '198.51.100.1', 60), burst(c.lbs, '198.51.100.2', 60)])
        if (await redisTimeMs(redis.port) >= end && attempt < 2) continue // the burst crossed a window boundary: again
        assert.equal(a.ok, 20, `client A admitted ${a.ok} of 60 (limit 20)`)
        assert.equal(b.ok, 20, `client B admitted ${b.ok} of 60 (limit 20): clients are independent`)
        assert.equal(a.limited + b.limited, 80)
        // refused with the window's end: Retry-After within the window
        for (const value of a.retryAfter) assert.ok(Number(value) >= 1 && Number(value) <= windowMs / 1000, `Retry-After ${value}`)
        break
      }
      // the next window admits exactly maxRequests again
      await windowStart(redis, windowMs)
      const again = await burst(c.lbs, '198.51.100.1', 45)
      assert.equal(again.ok, 20)
    } finally {
      await c.stop()
    }
  })

  test('sliding window and token bucket: never more than the limit across instances', async () => {
    const sliding = await startCluster(redis, [upstream], { rateLimit: { algorithm: 'sliding-window', maxRequests: 20, windowMs: 4000, trustProxy: TRUSTED } }, {}, EXACT_TIMEOUT_MS)
    try {
      await windowStart(redis, 4000)
      const r = await burst(sliding.lbs, '198.51.100.3', 60)
      assert.ok(r.ok <= 20, `sliding window admitted ${r.ok} > 20`)
      assert.ok(r.ok >= 19, `sliding window admitted only ${r.ok} of its 20`)
    } finally {
      await sliding.stop()
    }
    // 20 tokens, refilled at 1 per second
    const bucket = await startCluster(redis, [upstream], { rateLimit: { algorithm: 'token-bucket', maxRequests: 10, windowMs: 10_000, burst: 20, trustProxy: TRUSTED } }, {}, EXACT_TIMEOUT_MS)
    try {
      const started = Date.now()
      const r = await burst(bucket.lbs, '198.51.100.4', 60)
      const refill = Math.floor((Date.now() - started) / 1000) + 1
      assert.ok(r.ok <= 20 + refill, `token bucket admitted ${r.ok} > 20 + ${refill} refilled`)
      assert.ok(r.ok >= 20, `token bucket admitted only ${r.ok} of its 20 tokens`)
    } finally {
      await bucket.stop()
    }
  })

  test('Redis killed mid-window: local-share at once, no request slower than timeoutMs, global again when it returns', async () => {
    const c = await startCluster(redis, [upstream], { rateLimit: { maxRequests: 30, windowMs: 60_000, trustProxy: TRUSTED } })
    try {
      const before = await burst(c.lbs, '198.51.100.5', 6)
      assert.equal(before.ok, 6)
      await redis.kill()
      const killedAt = Date.now()
      await waitFor(() => c.lbs.every((r) => r.lb.cluster?.status().redisUp === false), TIMEOUT_MS + BREAKER_BACKOFF_MS + SLACK_MS, 'every instance noticed')
      assert.ok(Date.now() - killedAt <= TIMEOUT_MS + BREAKER_BACKOFF_MS + SLACK_MS)
      // local-share: 30 / 3 live = 10 per instance, for a client new to the window
      const during = await burstInOneWindow(c.lbs, 6, 45, 60_000)
      assert.equal(during.ok, 30, `local-share admitted ${during.ok} (3 x 10 expected)`)
      assert.ok(during.maxMs <= TIMEOUT_MS + ASK_MARGIN_MS + SLACK_MS, `a request took ${during.maxMs} ms while Redis was down`)
      const status = c.lbs[0].lb.cluster?.status()
      assert.equal(status?.mode, 'degraded')
      await redis.restart()
      await waitFor(() => c.lbs.every((r) => r.lb.cluster?.status().redisUp === true), BREAKER_BACKOFF_MS * 3 + SLACK_MS, 'back to global')
      const back = await burstInOneWindow(c.lbs, 7, 45, 60_000)
      assert.equal(back.ok, 30, `global again: admitted ${back.ok} of 45 (limit 30)`)
      assert.ok((c.lbs[0].lb.cluster?.status().degradedSeconds ?? 0) > 0)
    } finally {
      await c.stop()
    }
  })

  test('Redis hung (SIGSTOP): handled like down within timeoutMs + breaker; global again after SIGCONT', async () => {
    const c = await startCluster(redis, [upstream], { rateLimit: { maxRequests: 30, windowMs: 60_000, trustProxy: TRUSTED } })
    try {
      redis.pause()
      const during = await burst(c.lbs, '198.51.100.8', 45)
      assert.ok(during.maxMs <= TIMEOUT_MS + ASK_MARGIN_MS + SLACK_MS, `a request took ${during.maxMs} ms while Redis hung`)
      assert.equal(during.other, 0)
      await waitFor(() => c.lbs.every((r) => r.lb.cluster?.status().redisUp === false), 3 * TIMEOUT_MS + BREAKER_BACKOFF_MS + SLACK_MS, 'the breaker opened everywhere')
      const fallback = await burstInOneWindow(c.lbs, 9, 45, 60_000)
      assert.equal(fallback.ok, 30, `local-share admitted ${fallback.ok} (3 x 10 expected)`)
      redis.resume()
      await waitFor(() => c.lbs.every((r) => r.lb.cluster?.status().redisUp === true), BREAKER_BACKOFF_MS * 3 + SLACK_MS, 'back to global')
      const back = await burstInOneWindow(c.lbs, 10, 45, 60_000)
      assert.equal(back.ok, 30)
    } finally {
      redis.resume()
      await c.stop()
    }
  })

  test('a drain through instance A stops traffic to that upstream on B and C within one heartbeat', async () => {
    const second = await startEchoUpstream('u2')
    // B lists the upstreams in the other order: drains are keyed by address
    const c = await startCluster(redis, [upstream, second], {})
    try {
      const a = c.lbs[0]
      const adminA = adminPort(a)
      const id = a.lb.table.find((u) => u.address === upstream.address)?.id as string
      const drained = await httpRequest(adminA, { method: 'POST', path: `/api/upstreams/${id}/drain` })
      assert.equal(drained.status, 200)
      const at = Date.now()
      await waitFor(() => c.lbs.every((r) => r.lb.upstreamStatus().find((u) => u.address === upstream.address)?.draining === true), HEARTBEAT_MS + SLACK_MS * 2, 'drained everywhere')
      assert.ok(Date.now() - at <= HEARTBEAT_MS + SLACK_MS * 2)
      const counted = upstream.count
      for (const r of c.lbs.slice(1)) {
        for (let i = 0; i < 4; i++) assert.equal((await httpRequest(r.port)).status, 200)
      }
      assert.equal(upstream.count, counted, 'B and C sent nothing to the drained upstream')
      // and enabled everywhere again
      await httpRequest(adminPort(c.lbs[2]), { method: 'POST', path: `/api/upstreams/${c.lbs[2].lb.table.find((u) => u.address === upstream.address)?.id as string}/enable` })
      await waitFor(() => c.lbs.every((r) => r.lb.upstreamStatus().find((u) => u.address === upstream.address)?.draining === false), HEARTBEAT_MS + SLACK_MS * 2, 'enabled everywhere')
    } finally {
      await c.stop()
      await second.close()
    }
  })

  test('shared health: with probeReplicas 2, the upstream sees 2 probe streams, not 3; /api/status lists the instances', async () => {
    const seen = new Map<string, number>()
    const probed = await startEchoUpstream('probed', (req) => {
      const ua = req.headers['user-agent'] ?? ''
      if (ua.startsWith('switchyard-health-check')) seen.set(ua, (seen.get(ua) ?? 0) + 1)
      return false
    })
    const c = await startCluster(redis, [probed], { healthCheck: { active: { intervalMs: 100, timeoutMs: 500 } } }, { health: { share: true, probeReplicas: 2 } })
    try {
      // membership settled (every instance saw all three) plus a heartbeat: count from now
      await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS * 2))
      seen.clear()
      await new Promise((resolve) => setTimeout(resolve, 1500))
      assert.equal(seen.size, 2, `probe streams: ${[...seen.keys()].join(', ')}`)
      const status = JSON.parse((await httpRequest(adminPort(c.lbs[1]), { path: '/api/status' })).body)
      assert.deepEqual(status.cluster.instances.map((m: { id: string }) => m.id), ['inst-0', 'inst-1', 'inst-2'])
      assert.equal(status.cluster.redisUp, true)
      const metrics = (await httpRequest(adminPort(c.lbs[1]), { path: '/metrics' })).body
      assert.match(metrics, /^switchyard_cluster_redis_up 1$/m)
      assert.match(metrics, /^switchyard_cluster_degraded_seconds_total /m)
    } finally {
      await c.stop()
      await probed.close()
    }
  })
})

describe('cluster: Redis unreachable at start', () => {
  for (const mode of ['open', 'closed', 'local-share'] as const) {
    test(`starts and serves; onRedisFailure ${mode}`, async () => {
      const upstream = await startEchoUpstream('u')
      const deadPort = await refusedPort()
      const r = await startLb({
        upstreams: [{ address: upstream.address }],
        rateLimit: { maxRequests: 2, windowMs: 60_000 },
        cluster: { redis: { url: `redis://127.0.0.1:${deadPort}/0`, timeoutMs: 20 }, rateLimit: { onRedisFailure: mode } },
      }, 0)
      try {
        // the local limit is a fixed window aligned to the clock: four requests must not straddle its boundary
        const toBoundary = 60_000 - Date.now() % 60_000
        if (toBoundary < 2000) await new Promise((resolve) => setTimeout(resolve, toBoundary + 50))
        const statuses: number[] = []
        for (let i = 0; i < 4; i++) statuses.push((await httpRequest(r.port)).status)
        const expected = mode === 'open' ? [200, 200, 200, 200] : mode === 'closed' ? [429, 429, 429, 429] : [200, 200, 429, 429]
        assert.deepEqual(statuses, expected)
        assert.equal(r.lb.cluster?.status().redisUp, false)
      } finally {
        await r.stop()
        await upstream.close()
      }
    })
  }
})
