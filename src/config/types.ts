/**
 * The validated, defaulted, frozen configuration every thread works from.
 * Written by hand, checked against the schema by test/unit/config.test.ts
 * (every key path both ways, which keys are always present, value types on a
 * complete sample); literal unions come from the schema's own lists.
 */
import type { algorithms, clusterScopes, firewallActions, hashKeySources, logLevels, rateLimitAlgorithms, redisFailureModes, tlsVersions, upstreamProxyVersions } from './schema'

export type Algorithm = typeof algorithms[number]
export type HashKeySource = typeof hashKeySources[number]
export type RateLimitAlgorithm = typeof rateLimitAlgorithms[number]
export type FirewallAction = typeof firewallActions[number]
export type LogLevel = typeof logLevels[number]
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
  /** absent = no active checks */
  active?: ActiveHealthConfig
  /** always present: passive ejection is always on */
  passive: PassiveHealthConfig
}

export interface Config {
  $schema?: string
  /** One plain listener ("HOST:PORT") or several listeners: read it through listenersOf() (./listeners). */
  listen: string | ListenerConfig[]
  workers: number
  upstreams: UpstreamConfig[]
  balancing: { algorithm: Algorithm, hashKey: HashKeyConfig }
  retries: number
  timeouts: {
    connectMs: number
    responseMs: number
    upstreamIdleMs: number
    clientHeaderMs: number
    clientIdleMs: number
    drainMs: number
  }
  limits: {
    maxHeaderBytes: number
    maxHeaderCount: number
    maxRequestTargetBytes: number
    maxBodyBytes: number
  }
  pool: { maxIdlePerUpstream: number, idleTimeoutMs: number }
  healthCheck: HealthCheckConfig
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
  proxy: { via: string, allowedUpgrades: string[] }
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
