/**
 * Every offset into the shared state buffer, named in one place. Nothing else
 * computes an index by hand: use the accessors in ./state.
 *
 * One SharedArrayBuffer, viewed as Int32 (Atomics work on Int32Array):
 *
 *   +--------------------------+  0
 *   | header      (HEADER_INTS)|  cursors, global counters
 *   +--------------------------+  UPSTREAMS_OFFSET
 *   | upstream 0 (UPSTREAM_INTS)|  health, load, counters, latency histogram
 *   | upstream 1               |
 *   | ... MAX_UPSTREAMS slots  |
 *   +--------------------------+  WORKERS_OFFSET
 *   | worker slot 0 (WORKER_INTS)| thread id, connections, requests, loop lag,
 *   |                          |  client responses by source x class, bytes, duration histogram
 *   | ... MAX_WORKER_SLOTS     |
 *   +--------------------------+  FIREWALL_OFFSET
 *   | hits per firewall rule   |  MAX_FIREWALL_RULES ints
 *   +--------------------------+  HOLDINGS_OFFSET
 *   | holdings                 |  MAX_WORKER_SLOTS x MAX_UPSTREAMS x HOLDING_INTS, see below
 *   +--------------------------+  TRACING_OFFSET
 *   | tracing span counters    |  TRACING_INTS ints
 *   +--------------------------+  LISTENERS_OFFSET
 *   | listener 0 (LISTENER_INTS)| connections, TLS handshakes by result, PROXY rejects
 *   | ... MAX_LISTENERS        |
 *   +--------------------------+  POOLS_OFFSET
 *   | pool 0 (POOL_INTS)       |  cursor, requests routed (owner: src/routing); resilience: panic, queue, retries
 *   | ... MAX_POOLS slots      |
 *   +--------------------------+  ROUTES_OFFSET
 *   | hits per route           |  MAX_ROUTES ints (owner: src/routing)
 *   +--------------------------+  CLIENT_TABLE_OFFSET
 *   | client connection table  |  CLIENT_TABLE_INTS (owner: src/net/client-table.ts)
 *   +--------------------------+  RATE_OFFSET
 *   | rate-limit table         |  tableSize * RATE_SLOT_INTS (0 when rate limiting is off)
 *   +--------------------------+
 *
 * Counters are 32-bit and wrap: readers treat them as uint32 (`>>> 0`) and the
 * primary's sampler turns them into 64-bit totals by accumulating deltas.
 * Timestamps are milliseconds since the state's epoch (passed to every thread),
 * compared with wrap-safe subtraction.
 */

export const MAX_UPSTREAMS = 64
export const MAX_WORKER_SLOTS = 64
export const MAX_FIREWALL_RULES = 256

// ---- header -----------------------------------------------------------------
export const H_MAGIC = 0 //               written once by the primary
export const H_RR_CURSOR = 1 //           unused since pools: each pool has its own cursor (P_RR_CURSOR)
export const H_UPSTREAM_GENERATION = 2 // bumped by the primary when the upstream table is swapped
export const H_RATE_LIMITED = 3 //        requests answered 429 (all threads)
export const H_FIREWALL_BLOCKED = 4 //    requests answered 403 by the firewall (all threads)
export const H_PROTOCOL_ERRORS = 5 //     requests answered 4xx by the parser (all threads)
export const H_RATE_EVICTIONS = 6 //      rate-limit slots taken over from another live key
export const H_RATE_SLOTS_USED = 7 //     rate-limit slots ever claimed (usage gauge)
export const H_RATE_TABLE_FULL = 8 //     lookups that found no slot (answered by the full-table policy)
export const H_WORKER_RESTARTS = 9 //     workers replaced after a crash (primary)
export const H_CONNECTIONS_ACCEPTED = 10 // client connections accepted (primary)
export const H_CACHE_HITS = 11
export const H_CACHE_MISSES = 12
export const H_CACHE_BYTES = 13 //        bytes held by the shared cache (owner: cache store)
export const H_CACHE_ENTRIES = 14
export const H_STICKY_HITS = 15 //        requests routed by a valid sticky cookie
// cluster (src/cluster, written by the primary's ClusterNode only; read by every thread's global limiter)
export const H_CLUSTER_CLOCK_OFFSET = 26 // Redis TIME minus Date.now(), ms (windows are aligned on Redis's clock)
export const H_CLUSTER_LIVE = 27 //       live instances as last known (local-share divides by it; >= 1)
export const H_CLUSTER_MODE = 28 //       CLUSTER_* below: whether leases come from Redis or the failure mode applies
// resilience 22..25
export const H_HEALTH_GENERATION = 22 //  bumped after every change of U_HEALTHY or U_ADMIN_STATE (any thread):
//                                        a pool's eligibility view is recomputed only when it moves
export const HEADER_INTS = 32

export const CLUSTER_GLOBAL = 0 //       Redis answers: limits count across instances
export const CLUSTER_DEGRADED = 1 //     Redis down, hung or unreachable: cluster.rateLimit.onRedisFailure applies

export const MAGIC = 0x53575931 // 'SWY1'

// ---- per upstream -----------------------------------------------------------
// Who writes: HEALTHY by the primary's active prober and by passive ejection in
// any thread; ADMIN_STATE by the primary (admin API); the load counters by
// whichever thread serves the request. Everyone reads.
export const U_HEALTHY = 0 //            1 healthy, 0 ejected
export const U_ADMIN_STATE = 1 //        ADMIN_* below
export const U_CONSECUTIVE_FAILURES = 2
export const U_EJECTED_AT = 3 //         ms since epoch when ejected (passive or active; valid while !HEALTHY)
export const U_ACTIVE_REQUESTS = 4 //    requests in flight to this upstream (least-connections)
export const U_OPEN_SOCKETS = 5 //       sockets open to this upstream, busy or idle in a pool
export const U_REQUESTS = 6 //           requests sent (counter)
export const U_FAILURES = 7 //           connect failures, resets, timeouts (counter)
export const U_LAST_CHECK_STATUS = 8 //  active check: HTTP status, or CHECK_* (negative) below; 0 = never
export const U_LAST_CHECK_LATENCY_US = 9
export const U_LAST_CHECK_AT = 10 //     ms since epoch
export const U_HEALTH_TRANSITIONS = 11 // counter
export const U_STATUS_1XX = 12 //        responses by class: 12..16 = 1xx..5xx
export const U_LATENCY_SUM_US = 17 //    sum of response-head latency, µs (counter; wraps after ~71 min of summed latency, the sampler accumulates)
export const U_LATENCY_BUCKETS = 18 //   LATENCY_BOUNDS_MS.length + 1 counters (last one is +Inf)
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] as const
export const U_RETRIES = U_LATENCY_BUCKETS + LATENCY_BOUNDS_MS.length + 1 // 32
export const U_IN_USE = U_RETRIES + 1 //  1 while the slot belongs to a configured upstream
export const U_LAST_RESPONSE_AT = U_IN_USE + 1 // ms since epoch of the latest response head (passive health: a timeout on a live upstream is the request's, not the upstream's)
export const U_LAST_FAILED_CLIENT = U_LAST_RESPONSE_AT + 1 // hash of the client whose failed request was last counted (one client's requests count once in a row)
// resilience 36..39
export const U_EJECT_SOURCE = 36 //      EJECT_* below: who took it out (valid while !HEALTHY)
export const U_RAMP_START = 37 //        ms since epoch when it last became healthy (slow start ramps from here)
export const U_HOLD_UNTIL = 38 //        ms since epoch until which a Retry-After keeps it out (EJECT_RETRY_AFTER)
export const U_RETRIES_ACTIVE = 39 //    retry attempts in flight to this upstream (retry budget; a held gauge)
// 36..39 resilience, 40..43 routing, 44..47 cluster (COORDINATION.md); 48..55 metrics:
// written by the thread that answers the client (SharedState.recordClientResponse)
export const U_LOCAL_4XX = 48 //         local answers (not relayed) to requests sent toward this upstream, 4xx
export const U_LOCAL_5XX = 49 //         ... 5xx (502 connect failure, 504 timeout)
export const U_REQUEST_BYTES = 50 //     client request bytes of the requests it served (low 32 bits; wraps)
export const U_REQUEST_BYTES_HI = 51 //  whole 2^32s of single requests of 4 GiB or more
export const U_RESPONSE_BYTES = 52 //    response bytes relayed from it to clients (low 32 bits; wraps)
export const U_RESPONSE_BYTES_HI = 53
export const UPSTREAM_INTS = 56

export const EJECT_PASSIVE = 0 //        consecutive request failures
export const EJECT_ACTIVE = 1 //         the active prober
export const EJECT_RETRY_AFTER = 2 //    a 503/429 with Retry-After

export const ADMIN_ENABLED = 0
export const ADMIN_DRAINING = 1 //       no new requests; in-flight ones finish

export const CHECK_REFUSED = -1
export const CHECK_TIMEOUT = -2
export const CHECK_RESET = -3
export const CHECK_BAD_RESPONSE = -4

// ---- per worker slot --------------------------------------------------------
// Written by the worker that claimed the slot; THREAD_ID cleared by the primary
// when that worker exits.
export const W_THREAD_ID = 0 //          0 = free
export const W_OPEN_CONNECTIONS = 1
export const W_REQUESTS = 2 //           counter
export const W_LOOP_LAG_US = 3 //        event-loop delay p99 over the last second, sampling interval subtracted
export const W_HEAP_USED_KB = 4 //       this thread's V8 heap in use, KiB (once a second)
export const W_ACCEPTED_OPEN = 5 //      client connections this thread accepted and has not closed (TLS handshakes and
//                                       PROXY headers included): their sum over the slots is what limits.maxConnections caps
// 6..7 free. Every response a client receives, counted by the thread that
// wrote it (SharedState.recordClientResponse), so that no two threads bump
// the same cells:
//   W_RESPONSES + source * 5 + (class - 1)   source 0 = relayed from an upstream, 1 = answered locally
export const W_RESPONSES = 8 //          10 counters: SOURCE_UPSTREAM 1xx..5xx, SOURCE_LOCAL 1xx..5xx
export const SOURCE_UPSTREAM = 0
export const SOURCE_LOCAL = 1
export const W_REQUEST_BYTES = 18 //     request bytes read, head and body (Exchange.bytesIn; low 32 bits, wraps, the sampler accumulates)
export const W_REQUEST_BYTES_HI = 19 //  whole 2^32s of single requests of 4 GiB or more
export const W_RESPONSE_BYTES = 20 //    bytes written to clients
export const W_RESPONSE_BYTES_HI = 21
export const W_DURATION_SUM_US = 22 //   request head received -> last response byte written, µs (counter)
export const W_DURATION_BUCKETS = 23 //  LATENCY_BOUNDS_MS.length + 1 counters (last one is +Inf), through 36
export const WORKER_INTS = 40

// ---- holdings: what each worker added to an upstream's gauges -----------------
// A worker that dies cannot take back its +1s on U_ACTIVE_REQUESTS and
// U_OPEN_SOCKETS (its requests and sockets die with it, no JS runs), and
// least-connections would count them for ever. So each worker also keeps its
// own share of those two gauges here, and the primary, when it sees the worker
// exit, subtracts that share from the upstream and zeroes it.
//
//   HOLDINGS_OFFSET + (workerSlot * MAX_UPSTREAMS + upstreamSlot) * HOLDING_INTS:
//   +-------------------+-------------------+
//   | HELD_ACTIVE (i32) | HELD_SOCKETS (i32)|   worker 0, upstream 0
//   +-------------------+-------------------+
//   | ...               | ...               |   worker 0, upstream 1 .. 63, then worker 1 ...
//
// Who writes: the worker that owns workerSlot (SharedState.addHeld, together
// with the upstream's gauge), and the primary after that worker has exited
// (releaseWorkerHoldings); never both at once, as the slot is freed only after.
export const HELD_ACTIVE_REQUESTS = 0 // this worker's part of U_ACTIVE_REQUESTS
export const HELD_OPEN_SOCKETS = 1 //    this worker's part of U_OPEN_SOCKETS
export const HELD_RETRIES_ACTIVE = 2 //  this worker's part of U_RETRIES_ACTIVE
export const HOLDING_INTS = 3

// ---- tracing (src/tracing): spans of every thread, by outcome ------------------
// Written by each thread's span exporter (Atomics.add); read by the admin API.
export const T_SPANS_EXPORTED = 0 //     spans the collector accepted
export const T_SPANS_DROPPED = 1 //      spans lost: export failed (collector down) or too many waiting
export const TRACING_INTS = 2

// ---- per listener (TLS and PROXY protocol) ----------------------------------
// Listener i is the i-th entry of `listen` (a string is listener 0). Written by
// whichever thread serves the connection; L_ACCEPTED by the primary. Everyone reads.
export const MAX_LISTENERS = 16
export const L_OPEN_CONNECTIONS = 0 //   gauge: accepted and not yet closed (handshaking included)
export const L_ACCEPTED = 1 //           counter (primary)
export const L_HANDSHAKES_OK = 2 //      completed TLS handshakes, resumed ones included
export const L_HANDSHAKES_RESUMED = 3 // of which resumed a session (a ticket from any thread)
export const L_HANDSHAKE_ERRORS = 4 //   TLS_ERROR_REASONS.length counters, one per reason
export const TLS_ERROR_REASONS = ['timeout', 'plain_http', 'protocol', 'reset', 'other'] as const
export const L_PROXY_REJECTED = L_HANDSHAKE_ERRORS + TLS_ERROR_REASONS.length // 9: PROXY protocol header missing, malformed or untrusted
export const L_REDIRECTS = L_PROXY_REJECTED + 1 // httpsRedirect answers
export const L_REFUSED = L_REDIRECTS + 1 // connections closed at once: limits.maxConnections reached
export const L_REFUSED_PER_CLIENT = L_REFUSED + 1 // ... limits.maxConnectionsPerClient reached
export const LISTENER_INTS = 16

// ---- per pool (owner: src/routing/pools.ts) --------------------------------
// A pool keeps its slot across reloads while its name stays (like an upstream
// its slot by address). Who writes: IN_USE by the primary; the cursor and the
// counter by whichever thread routes a request to the pool. Everyone reads.
// Per-pool state of other features (resilience, cluster) goes in the spare words.
export const MAX_POOLS = 64
export const P_IN_USE = 0 //             1 while the slot belongs to a configured pool
export const P_RR_CURSOR = 1 //          the pool's round-robin cursor: Atomics.add by every thread
export const P_REQUESTS = 2 //           requests routed to the pool (counter)
export const P_NO_UPSTREAM = 3 //        requests answered 502 UH: no available upstream in the pool (counter)
// 4..7 spare
// resilience 8..19 (src/proxy/pool-gate.ts, request-queue.ts, retry.ts). Who writes: the gauges and counters
// by whichever thread serves the request; P_PANIC by the first thread that sees the pool's healthy share
// cross the threshold (compare-and-swap, so the switch is logged and counted once).
export const P_PANIC = 8 //              1 while the pool balances over all its upstreams (panic mode)
export const P_PANIC_TRANSITIONS = 9 //  counter: switches into or out of panic mode
export const P_QUEUE_WAITING = 10 //     gauge: requests waiting in the pool's queues (all threads)
export const P_QUEUE_TIMEOUTS = 11 //    counter: 503 SWY_ERR_QUEUE_TIMEOUT
export const P_QUEUE_FULL = 12 //        counter: 503 SWY_ERR_QUEUE_FULL
export const P_RETRY_BUDGET_DENIED = 13 // counter: retries refused by the retry budget
export const P_RETRIES = 14 //           counters by reason: RETRY_REASONS order, 14..19
export const RETRY_REASON_COUNT = 6
export const POOL_INTS = 24 //           20..23 spare

// ---- per route (owner: src/routing) -------------------------------------------
// One hit counter per position in the route table, Atomics.add by the thread that
// matched; zeroed by the primary for positions whose route changed on reload.
export const MAX_ROUTES = 1024

// ---- client connection table (owner: src/net/client-table.ts) ---------------
// Connections open per client address for limits.maxConnectionsPerClient: a seed word, then entries of a key
// word and one count per worker slot (so that a dead worker's counts can be zeroed, as its holdings are).
export const CLIENT_TABLE_ENTRIES = 4096
export const CLIENT_ENTRY_INTS = 1 + MAX_WORKER_SLOTS
export const CLIENT_TABLE_INTS = 1 + CLIENT_TABLE_ENTRIES * CLIENT_ENTRY_INTS

// ---- rate-limit table slot --------------------------------------------------
export const RATE_SLOT_INTS = 4 //       layout owned by src/ratelimit

// ---- offsets ----------------------------------------------------------------
export const UPSTREAMS_OFFSET = HEADER_INTS
export const WORKERS_OFFSET = UPSTREAMS_OFFSET + MAX_UPSTREAMS * UPSTREAM_INTS
export const FIREWALL_OFFSET = WORKERS_OFFSET + MAX_WORKER_SLOTS * WORKER_INTS
export const HOLDINGS_OFFSET = FIREWALL_OFFSET + MAX_FIREWALL_RULES
export const TRACING_OFFSET = HOLDINGS_OFFSET + MAX_WORKER_SLOTS * MAX_UPSTREAMS * HOLDING_INTS
export const LISTENERS_OFFSET = TRACING_OFFSET + TRACING_INTS
export const POOLS_OFFSET = LISTENERS_OFFSET + MAX_LISTENERS * LISTENER_INTS
export const ROUTES_OFFSET = POOLS_OFFSET + MAX_POOLS * POOL_INTS
export const CLIENT_TABLE_OFFSET = ROUTES_OFFSET + MAX_ROUTES
export const RATE_OFFSET = CLIENT_TABLE_OFFSET + CLIENT_TABLE_INTS

export function stateInts (rateTableSlots: number): number {
  return RATE_OFFSET + rateTableSlots * RATE_SLOT_INTS
}
