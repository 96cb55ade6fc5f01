/**
 * The validated, defaulted, frozen configuration every thread works from.
 * Written by hand, checked against the schema by test/unit/config.test.ts
 * (every key path both ways, which keys are always present, value types on a
 * complete sample); literal unions come from the schema's own lists.
 */
import type { algorithms, clusterScopes, firewallActions, hashKeySources, logLevels, rateLimitAlgorithms, redisFailureModes, retryOnValues, tlsVersions, upstreamProxyVersions } from './schema'

export type Algorithm = typeof algorithms[number]
export type HashKeySource = typeof hashKeySources[number]
export type RateLimitAlgorithm = typeof rateLimitAlgorithms[number]
export type FirewallAction = typeof firewallActions[number]
export type LogLevel = typeof logLevels[number]
export type RetryOn = typeof retryOnValues[number]
export type ClusterScope = typeof clusterScopes[number]
export type RedisFailureMode = typeof redisFailureModes[number]
export type TlsVersion = typeof tlsVersions[number]

export interface CertificateFileConfig {
  certFile: string
  keyFile: string
}

export interface AcmeConfig {
  directoryUrl: string
  email: string
  domains: string[]
  storageDir: string
  caFile?: string
  renewBeforeDays: number
}

export interface ListenerTlsConfig {
  certificates?: CertificateFileConfig[]
  acme?: AcmeConfig
  minVersion: TlsVersion
  ciphers?: string
  alpn: string[]
}

export interface ListenerConfig {
  address: string
  tls?: ListenerTlsConfig
  proxyProtocol?: { trustedCidrs: string[] }
  httpsRedirect: boolean
}

export interface UpstreamTlsConfig {
  serverName?: string
  caFile?: string
  verify: boolean
}

export interface UpstreamConfig {
  address: string
  weight: number
  /** absent = false */
  backup?: boolean
  maxConnections?: number
  slowStartMs?: number
  /** TLS to this upstream: true (system CAs, verified) or the object form. */
  tls?: boolean | UpstreamTlsConfig
  proxyProtocol?: typeof upstreamProxyVersions[number]
}

export interface HashKeyConfig {
  source: HashKeySource
  name?: string
}

export interface ActiveHealthConfig {
  path: string
  intervalMs: number
  timeoutMs: number
  expectStatus: Array<number | string>
  healthyThreshold: number
  unhealthyThreshold: number
}

export interface PassiveHealthConfig {
  maxFailures: number
  cooldownMs: number
  honorRetryAfter: boolean
  maxRetryAfterMs: number
}

export interface RateLimitConfig {
  algorithm: RateLimitAlgorithm
  maxRequests: number
  windowMs: number
  burst?: number
  tableSize: number
  trustProxy: string[]
}

export interface StickyConfig {
  cookie: string
  secret?: string
  maxAgeSeconds?: number
}

export interface CacheConfig {
  maxBytes: number
  maxEntryBytes: number
  cacheAuthorized: boolean
  targetedField: string
  staleIfErrorMs: number
}

export interface FirewallRuleConfig {
  name?: string
  action: FirewallAction
  methods?: string[]
  path?: { prefix?: string, exact?: string, regex?: string }
  header?: { name: string, present?: boolean, equals?: string, regex?: string }
  clientCidr?: string[]
  maxBodyBytes?: number
}

export interface FirewallConfig {
  builtin: boolean
  rules: FirewallRuleConfig[]
}

export interface QueueConfig {
  maxSize: number
  timeoutMs: number
}

export interface ClusterConfig {
  redis: {
    url: string
    keyPrefix: string
    timeoutMs: number
    tls?: { caFile?: string, certFile?: string, keyFile?: string, servername?: string, rejectUnauthorized: boolean }
  }
  /** absent = `<hostname>:<listen port>:<pid>` */
  instanceId?: string
  heartbeatMs: number
  rateLimit: { scope: ClusterScope, onRedisFailure: RedisFailureMode }
  health: { share: boolean, probeReplicas: number }
}

export interface RequestIdConfig {
  enabled: boolean
  /** the field that carries the ID (any case; sent as written here, capitalised) */
  header: string
}

export interface TracingConfig {
  otlpEndpoint: string
  sampleRatio: number
  serviceName: string
}

export interface HealthCheckConfig {
  panicThresholdPercent: number
  slowStartMs: number
  /** absent = no active checks */
  active?: ActiveHealthConfig
  /** always present: passive ejection is always on */
  passive: PassiveHealthConfig
}

/** pools.NAME: the same keys and defaults as the top level (whose upstreams form the pool "default"). */
export interface PoolConfig {
  upstreams: UpstreamConfig[]
  balancing: { algorithm: Algorithm, hashKey: HashKeyConfig }
  healthCheck: HealthCheckConfig
  queue?: QueueConfig
}

/** requestHeaders / responseHeaders of a route. */
export interface HeaderEditsConfig {
  set?: Record<string, string>
  add?: Record<string, string>
  remove?: string[]
}

export type HeaderConditionConfig = string | { regex: string } | { present: boolean }

export interface RouteMatchConfig {
  host?: string[]
  pathPrefix?: string
  path?: string
  pathRegex?: string
  methods?: string[]
  headers?: Record<string, HeaderConditionConfig>
}

export interface RouteConfig {
  name?: string
  match: RouteMatchConfig
  pool?: string
  stripPathPrefix?: boolean
  rewritePath?: { regex: string, replace: string }
  setHost?: string
  requestHeaders?: HeaderEditsConfig
  responseHeaders?: HeaderEditsConfig
  redirect?: { location: string, status?: 301 | 302 | 307 | 308 }
  respond?: { status: number, body?: string, contentType?: string }
  rateLimit?: { algorithm?: RateLimitAlgorithm, maxRequests: number, windowMs?: number, burst?: number }
  cache?: boolean
  timeouts?: { responseMs?: number, upstreamIdleMs?: number, tunnelIdleMs?: number }
  retries?: number
  maxBodyBytes?: number
  firewall?: boolean
}

export interface Config {
  $schema?: string
  /** One plain listener ("HOST:PORT") or several listeners: read it through listenersOf() (./listeners). */
  listen: string | ListenerConfig[]
  workers: number
  /** Worker threads' resourceLimits.maxYoungGenerationSizeMb (src/primary/workers.ts). */
  workerMaxYoungGenerationSizeMb: number
  /** How often the primary has every thread's V8 heap and malloc arenas give memory back, 0 = never (src/primary/memory-release.ts). */
  memoryReleaseIntervalMs: number
  /** The pool "default" (absent when only `pools` are given). */
  upstreams?: UpstreamConfig[]
  balancing: { algorithm: Algorithm, hashKey: HashKeyConfig }
  retries: number
  retryOn: RetryOn[]
  retriableStatuses: number[]
  retryIdempotencyKey: boolean
  retryBodyMaxBytes: number
  retryBudgetPercent: number
  queue?: QueueConfig
  timeouts: {
    connectMs: number
    responseMs: number
    upstreamIdleMs: number
    clientHeaderMs: number
    clientIdleMs: number
    tunnelIdleMs: number
    drainMs: number
  }
  limits: {
    maxHeaderBytes: number
    maxHeaderCount: number
    maxRequestTargetBytes: number
    maxBodyBytes: number
    /** Client connections open at once, all listeners and threads; 0 = no cap. */
    maxConnections: number
    /** ... of one client address; 0 = no cap. */
    maxConnectionsPerClient: number
  }
  pool: { maxIdlePerUpstream: number, idleTimeoutMs: number }
  healthCheck: HealthCheckConfig
  pools?: Record<string, PoolConfig>
  routes?: RouteConfig[]
  rateLimit?: RateLimitConfig
  stickySessions?: StickyConfig
  cache?: CacheConfig
  firewall?: FirewallConfig
  cluster?: ClusterConfig
  admin?: { listen: string, token?: string }
  log: { level: LogLevel, access: boolean, redactQuery: boolean, accessFile?: string }
  requestId: RequestIdConfig
  /** absent = no tracing */
  tracing?: TracingConfig
  proxy: { via: string, allowedUpgrades: string[], statusDetails: boolean }
}

/** host:port split once at load time. `host` has no brackets. */
export interface HostPort {
  host: string
  port: number
}

export function parseHostPort (value: string): HostPort {
  const colon = value.lastIndexOf(':')
  let host = value.slice(0, colon)
  if (host.startsWith('[')) host = host.slice(1, -1)
  return { host, port: Number(value.slice(colon + 1)) }
}
