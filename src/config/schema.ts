/**
 * The JSON Schema of lb.json, checked by ajv with defaults applied.
 * `additionalProperties: false` everywhere: an unknown key is an error (HAProxy's
 * zero-warning spirit), so a typo never silently turns a feature off.
 * Units are in key names (`intervalMs`, `maxBytes`). An absent optional section
 * means that feature is off.
 *
 * Every default is written here and only here: load.ts applies them (ajv
 * `useDefaults`), code that needs one outside a loaded config reads it with
 * `schemaDefault()` (./defaults), and test/unit/config.test.ts checks the
 * README table and the `Config` type against this object.
 */

const hostPort = {
  type: 'string',
  // host:port, host may be a name, IPv4, or a bracketed IPv6 literal
  pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):([0-9]{1,5})$',
} as const

const positiveMs = { type: 'integer', minimum: 1, maximum: 86_400_000 } as const

const cidrList = {
  type: 'array',
  items: { type: 'string', pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$' },
} as const

export const tlsVersions = ['TLSv1.2', 'TLSv1.3'] as const
export const upstreamProxyVersions = ['v1', 'v2'] as const

/**
 * One listener: a plain or TLS socket the primary binds. `listen` is a
 * "HOST:PORT" string (one plain listener, as before listeners existed) or an
 * array of these.
 */
const listenerSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['address'],
  properties: {
    address: hostPort,
    tls: {
      type: 'object',
      additionalProperties: false,
      properties: {
        // PEM files; the first certificate is the default for clients without SNI or with an unknown name
        certificates: {
          type: 'array',
          maxItems: 256,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['certFile', 'keyFile'],
            properties: {
              certFile: { type: 'string', minLength: 1 },
              keyFile: { type: 'string', minLength: 1 },
            },
          },
        },
        minVersion: { enum: tlsVersions, default: 'TLSv1.2' },
        ciphers: { type: 'string', minLength: 1 },
        alpn: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1, maxLength: 255 }, default: ['http/1.1'] },
        // automatic certificates (RFC 8555), HTTP-01 answered by the plain listeners
        acme: {
          type: 'object',
          additionalProperties: false,
          required: ['directoryUrl', 'email', 'domains', 'storageDir'],
          properties: {
            directoryUrl: { type: 'string', pattern: '^https?://' },
            email: { type: 'string', minLength: 3 },
            domains: { type: 'array', minItems: 1, maxItems: 100, items: { type: 'string', pattern: '^[A-Za-z0-9.-]+$' } },
            storageDir: { type: 'string', minLength: 1 },
            caFile: { type: 'string', minLength: 1 },
            renewBeforeDays: { type: 'integer', minimum: 1, maximum: 365, default: 30 },
          },
        },
      },
    },
    proxyProtocol: {
      type: 'object',
      additionalProperties: false,
      required: ['trustedCidrs'],
      properties: {
        trustedCidrs: { ...cidrList, minItems: 1 },
      },
    },
    httpsRedirect: { type: 'boolean', default: false },
  },
} as const

export const algorithms = [
  'round-robin',
  'weighted-round-robin',
  'least-connections',
  'power-of-two-choices',
  'random',
  'ip-hash',
  'consistent-hash',
] as const

export const hashKeySources = ['ip', 'header', 'cookie'] as const
export const rateLimitAlgorithms = ['fixed-window', 'sliding-window', 'token-bucket'] as const
export const firewallActions = ['deny', 'allow', 'log'] as const
export const retryOnValues = ['connect-failure', 'reset', 'timeout', '5xx', 'gateway-error', 'retriable-status'] as const
export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export const clusterScopes = ['global', 'local'] as const
export const redisFailureModes = ['local-share', 'open', 'closed'] as const

const upstreams = {
  type: 'array',
  minItems: 1,
  maxItems: 64,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['address'],
    properties: {
      address: hostPort,
      weight: { type: 'integer', minimum: 1, maximum: 1000, default: 1 },
      // HAProxy / nginx `backup`: traffic only while no primary upstream of its pool is healthy
      backup: { type: 'boolean' },
      // requests in flight to this upstream across all threads (HAProxy maxconn); absent = no cap
      maxConnections: { type: 'integer', minimum: 1, maximum: 1_000_000 },
      // overrides healthCheck.slowStartMs for this upstream
      slowStartMs: { type: 'integer', minimum: 0, maximum: 3_600_000 },
      // true, or an object (`properties` apply to the object form only)
      tls: {
        type: ['boolean', 'object'],
        additionalProperties: false,
        properties: {
          serverName: { type: 'string', minLength: 1, maxLength: 253 },
          caFile: { type: 'string', minLength: 1 },
          verify: { type: 'boolean', default: true },
        },
      },
      proxyProtocol: { enum: upstreamProxyVersions },
    },
  },
} as const

const balancing = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    algorithm: { enum: algorithms, default: 'round-robin' },
    // what ip-hash / consistent-hash hash on
    hashKey: {
      type: 'object',
      additionalProperties: false,
      default: { source: 'ip' },
      required: ['source'],
      properties: {
        source: { enum: hashKeySources },
        name: { type: 'string', minLength: 1, maxLength: 256 },
      },
    },
  },
} as const

const healthCheck = {
  type: 'object',
  additionalProperties: false,
  // always present: passive ejection is always on, even without the section
  // (active checks stay off until `active` is given)
  default: {},
  properties: {
    // Envoy's panic threshold: below this share of healthy upstreams a pool balances over all of them
    panicThresholdPercent: { type: 'integer', minimum: 0, maximum: 100, default: 50 },
    // an upstream that becomes healthy ramps from ~10% to its full weight over this time (0 = off)
    slowStartMs: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 0 },
    active: {
      type: 'object',
      additionalProperties: false,
      properties: {
        path: { type: 'string', pattern: '^/[\\x21-\\x7e]*$', default: '/' },
        intervalMs: { ...positiveMs, default: 5000 },
        timeoutMs: { ...positiveMs, default: 2000 },
        expectStatus: {
          type: 'array',
          minItems: 1,
          default: [200],
          items: {
            anyOf: [
              { type: 'integer', minimum: 100, maximum: 599 },
              { type: 'string', pattern: '^[1-5]xx$' },
            ],
          },
        },
        healthyThreshold: { type: 'integer', minimum: 1, maximum: 100, default: 1 },
        unhealthyThreshold: { type: 'integer', minimum: 1, maximum: 100, default: 1 },
      },
    },
    passive: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // 5, not 1: one client's slow or broken requests must not eject a healthy
        // upstream (HAProxy and Envoy eject after 3-5 consecutive failures)
        maxFailures: { type: 'integer', minimum: 1, maximum: 1000, default: 5 },
        cooldownMs: { ...positiveMs, default: 10_000 },
        // a 503/429 with Retry-After takes the upstream out for that long (capped), on every thread
        honorRetryAfter: { type: 'boolean', default: true },
        maxRetryAfterMs: { ...positiveMs, default: 60_000 },
      },
    },
  },
} as const

// requests waiting for an upstream under its maxConnections (FIFO per pool per thread); absent = no queue
const queue = {
  type: 'object',
  additionalProperties: false,
  properties: {
    maxSize: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 100 },
    timeoutMs: { ...positiveMs, default: 5000 },
  },
} as const

const token = { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" } as const
/** A field value: visible characters, spaces and tabs (RFC 9110 §5.5), never CR or LF. */
const fieldValue = { type: 'string', pattern: '^[\\t\\x20-\\x7e\\x80-\\uffff]*$', maxLength: 4096 } as const
const poolName = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' } as const

/** set / add / remove of header fields on the way up or down (values may name variables, README routing). */
const headerEdits = {
  type: 'object',
  additionalProperties: false,
  properties: {
    set: { type: 'object', propertyNames: token, additionalProperties: fieldValue },
    add: { type: 'object', propertyNames: token, additionalProperties: fieldValue },
    remove: { type: 'array', items: token },
  },
} as const

/**
 * routes[]: evaluated in order, first match wins (src/routing/). No defaults
 * inside a route: an absent key is "off" or "as the top level says".
 */
const routes = {
  type: 'array',
  maxItems: 1024, // one shared hit counter each (layout: routes)
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['match'],
    properties: {
      name: { type: 'string', pattern: '^[A-Za-z0-9_.:/-]{1,64}$' },
      match: {
        type: 'object',
        additionalProperties: false,
        properties: {
          // exact names, or one leading wildcard label (*.example.com)
          host: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^(\\*\\.)?[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.?$' } },
          pathPrefix: { type: 'string', pattern: '^/[\\x21-\\x7e]*$' },
          path: { type: 'string', pattern: '^/[\\x21-\\x7e]*$' },
          pathRegex: { type: 'string', minLength: 1 },
          methods: { type: 'array', minItems: 1, items: token },
          headers: {
            type: 'object',
            propertyNames: token,
            additionalProperties: {
              anyOf: [
                fieldValue,
                { type: 'object', additionalProperties: false, required: ['regex'], properties: { regex: { type: 'string' } } },
                { type: 'object', additionalProperties: false, required: ['present'], properties: { present: { type: 'boolean' } } },
              ],
            },
          },
        },
      },
      pool: poolName,
      stripPathPrefix: { type: 'boolean' },
      rewritePath: {
        type: 'object',
        additionalProperties: false,
        required: ['regex', 'replace'],
        properties: { regex: { type: 'string', minLength: 1 }, replace: { type: 'string', pattern: '^[\\x21-\\x7e]*$' } },
      },
      setHost: { type: 'string', pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$' },
      requestHeaders: headerEdits,
      responseHeaders: headerEdits,
      redirect: {
        type: 'object',
        additionalProperties: false,
        required: ['location'],
        properties: {
          location: { type: 'string', pattern: '^[\\x21-\\x7e]+$' },
          status: { enum: [301, 302, 307, 308] },
        },
      },
      respond: {
        type: 'object',
        additionalProperties: false,
        required: ['status'],
        properties: {
          status: { type: 'integer', minimum: 200, maximum: 599 },
          body: { type: 'string', maxLength: 65_536 },
          contentType: fieldValue,
        },
      },
      rateLimit: {
        type: 'object',
        additionalProperties: false,
        required: ['maxRequests'],
        properties: {
          algorithm: { enum: rateLimitAlgorithms },
          maxRequests: { type: 'integer', minimum: 1, maximum: 16_777_215 },
          windowMs: positiveMs,
          burst: { type: 'integer', minimum: 1, maximum: 16_777_215 },
        },
      },
      cache: { type: 'boolean' },
      timeouts: {
        type: 'object',
        additionalProperties: false,
        properties: { responseMs: positiveMs, upstreamIdleMs: positiveMs, tunnelIdleMs: positiveMs },
      },
      retries: { type: 'integer', minimum: 0, maximum: 10 },
      maxBodyBytes: { type: 'integer', minimum: 0 },
      firewall: { type: 'boolean' },
    },
  },
} as const

export const configSchema = {
  $id: 'https://switchyard.dev/lb.schema.json',
  type: 'object',
  additionalProperties: false,
  // upstreams, or pools (checked in load.ts: a config needs at least one pool)
  required: ['listen'],
  properties: {
    $schema: { type: 'string' },
    // a HOST:PORT string (one plain listener) or an array of listener objects;
    // `pattern` applies to the string form, `items` to the array form
    listen: { type: ['string', 'array'], pattern: hostPort.pattern, minItems: 1, maxItems: 16, items: listenerSchema },
    workers: { type: 'integer', minimum: 0, maximum: 64 },
    // each worker thread's young generation (V8 semi-spaces), MB: capped so that resident memory stays flat
    // under load (src/primary/workers.ts, #18); read at start
    workerMaxYoungGenerationSizeMb: { type: 'integer', minimum: 3, maximum: 1024, default: 12 },
    // how often the primary asks every thread's V8 heap for a memory-reducing collection and calls malloc_trim(0),
    // so that resident memory stays low and flat under load (src/primary/memory-release.ts, #18); 0 = never
    memoryReleaseIntervalMs: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 10_000 },
    upstreams,
    balancing,
    retries: { type: 'integer', minimum: 0, maximum: 10, default: 1 },
    // why a request may be tried again (src/proxy/retry.ts); connect-failure is always on
    retryOn: { type: 'array', items: { enum: retryOnValues }, uniqueItems: true, default: ['connect-failure', 'reset'] },
    retriableStatuses: { type: 'array', items: { type: 'integer', minimum: 100, maximum: 599 }, uniqueItems: true, default: [] },
    // draft-ietf-httpapi-idempotency-key-header: a request with Idempotency-Key may be replayed whatever its method
    retryIdempotencyKey: { type: 'boolean', default: false },
    // a request body up to this size is kept for a replay; a larger one streams and is never retried
    retryBodyMaxBytes: { type: 'integer', minimum: 0, maximum: 16_777_216, default: 65_536 },
    // Envoy's retry budget: retries in flight at most this share of the pool's requests in flight (at least 3)
    retryBudgetPercent: { type: 'integer', minimum: 0, maximum: 100, default: 20 },
    // the default pool's queue (a pool of `pools` has its own `queue`)
    queue,
    timeouts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        connectMs: { ...positiveMs, default: 2000 },
        responseMs: { ...positiveMs, default: 5000 },
        upstreamIdleMs: { ...positiveMs, default: 30_000 },
        clientHeaderMs: { ...positiveMs, default: 10_000 },
        clientIdleMs: { ...positiveMs, default: 60_000 },
        tunnelIdleMs: { ...positiveMs, default: 3_600_000 },
        drainMs: { ...positiveMs, default: 10_000 },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxHeaderBytes: { type: 'integer', minimum: 1024, maximum: 1_048_576, default: 16_384 },
        maxHeaderCount: { type: 'integer', minimum: 8, maximum: 1000, default: 100 },
        maxRequestTargetBytes: { type: 'integer', minimum: 256, maximum: 1_048_576, default: 8192 },
        maxBodyBytes: { type: 'integer', minimum: 0, default: 0, description: '0 = unlimited' },
        // client connections open at once, all listeners and threads together (HAProxy's global maxconn)
        maxConnections: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 0, description: '0 = unlimited' },
        // ... of one client address (after the PROXY protocol header): nginx's limit_conn, HAProxy's src_conn_cur
        maxConnectionsPerClient: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 0, description: '0 = unlimited' },
      },
    },
    pool: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxIdlePerUpstream: { type: 'integer', minimum: 0, maximum: 10_000, default: 128 },
        idleTimeoutMs: { ...positiveMs, default: 30_000 },
      },
    },
    healthCheck,
    pools: {
      type: 'object',
      // each pool has the same keys and defaults as the top level, whose upstreams form the pool "default"
      propertyNames: { pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' },
      maxProperties: 64,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['upstreams'],
        properties: { upstreams, balancing, healthCheck, queue },
      },
    },
    routes,
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      required: ['maxRequests'],
      properties: {
        algorithm: { enum: rateLimitAlgorithms, default: 'fixed-window' },
        // a window's tag and count share one int32 in shared memory: counts stay under 2^24
        maxRequests: { type: 'integer', minimum: 1, maximum: 16_777_215 },
        windowMs: { ...positiveMs, default: 60_000 },
        burst: { type: 'integer', minimum: 1, maximum: 16_777_215 },
        tableSize: { type: 'integer', minimum: 64, maximum: 4_194_304, default: 65_536 },
        trustProxy: { ...cidrList, default: [] },
      },
    },
    stickySessions: {
      type: 'object',
      additionalProperties: false,
      required: ['cookie'],
      properties: {
        cookie: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" },
        secret: { type: 'string', minLength: 16 },
        maxAgeSeconds: { type: 'integer', minimum: 1 },
      },
    },
    cache: {
      type: 'object',
      additionalProperties: false,
      required: ['maxBytes'],
      properties: {
        maxBytes: { type: 'integer', minimum: 1024 },
        maxEntryBytes: { type: 'integer', minimum: 1, default: 1_048_576 },
        cacheAuthorized: { type: 'boolean', default: false },
        // RFC 9213 §2: a targeted cache-control field of our own, obeyed before CDN-Cache-Control ('' = none)
        targetedField: { type: 'string', default: '', pattern: "^([!#$%&'*+.^_`|~0-9A-Za-z-]+)?$", maxLength: 64 },
        // RFC 5861 §4: how long past its freshness a response may be served when the upstream fails, unless it says
        staleIfErrorMs: { type: 'integer', minimum: 0, maximum: 2_147_483_647, default: 0 },
      },
    },
    firewall: {
      type: 'object',
      additionalProperties: false,
      properties: {
        builtin: { type: 'boolean', default: false },
        rules: {
          type: 'array',
          default: [],
          maxItems: 252, // 256 shared hit counters, 4 taken by the built-in rules
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['action'],
            properties: {
              name: { type: 'string' },
              action: { enum: firewallActions },
              methods: { type: 'array', items: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" } },
              path: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  prefix: { type: 'string' },
                  exact: { type: 'string' },
                  regex: { type: 'string' },
                },
              },
              header: {
                type: 'object',
                additionalProperties: false,
                required: ['name'],
                properties: {
                  name: { type: 'string', minLength: 1 },
                  present: { type: 'boolean' },
                  equals: { type: 'string' },
                  regex: { type: 'string' },
                },
              },
              clientCidr: cidrList,
              maxBodyBytes: { type: 'integer', minimum: 0 },
            },
          },
        },
      },
    },
    cluster: {
      type: 'object',
      additionalProperties: false,
      required: ['redis'],
      properties: {
        redis: {
          type: 'object',
          additionalProperties: false,
          properties: {
            url: { type: 'string', pattern: '^rediss?://', default: 'redis://127.0.0.1:6379/0' },
            keyPrefix: { type: 'string', pattern: '^[\\x21-\\x7a\\x7c\\x7e]{0,64}$', default: 'swy:' },
            // every Redis call gives up after this; a request never waits longer for a lease
            timeoutMs: { type: 'integer', minimum: 1, maximum: 60_000, default: 20 },
            tls: {
              type: 'object',
              additionalProperties: false,
              properties: {
                caFile: { type: 'string', minLength: 1 },
                certFile: { type: 'string', minLength: 1 },
                keyFile: { type: 'string', minLength: 1 },
                servername: { type: 'string', minLength: 1 },
                rejectUnauthorized: { type: 'boolean', default: true },
              },
            },
          },
        },
        instanceId: { type: 'string', pattern: '^[\\x21-\\x7a\\x7c\\x7e]{1,128}$' },
        heartbeatMs: { type: 'integer', minimum: 50, maximum: 60_000, default: 1000 },
        rateLimit: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            scope: { enum: clusterScopes, default: 'global' },
            onRedisFailure: { enum: redisFailureModes, default: 'local-share' },
          },
        },
        health: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            share: { type: 'boolean', default: true },
            probeReplicas: { type: 'integer', minimum: 1, maximum: 64, default: 2 },
          },
        },
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      required: ['listen'],
      properties: {
        listen: hostPort,
        token: { type: 'string', minLength: 8 },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: logLevels, default: 'info' },
        access: { type: 'boolean', default: true },
        // the path without its query string (tokens, e-mail addresses) in the access log and warnings
        redactQuery: { type: 'boolean', default: false },
        // access-log lines to this file (appended; reopened on SIGUSR1 for logrotate) instead of stdout
        accessFile: { type: 'string', minLength: 1 },
      },
    },
    requestId: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // on unless turned off: an ID in every request's logs, upstream and in its response
        enabled: { type: 'boolean', default: true },
        header: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", default: 'x-request-id' },
      },
    },
    tracing: {
      type: 'object',
      additionalProperties: false,
      required: ['otlpEndpoint'],
      properties: {
        // OTLP/HTTP (JSON) traces endpoint of a collector
        otlpEndpoint: { type: 'string', pattern: '^https?://[^\\s/]+(/\\S*)?$' },
        sampleRatio: { type: 'number', minimum: 0, maximum: 1, default: 0.01 },
        serviceName: { type: 'string', minLength: 1, maxLength: 256, default: 'switchyard' },
      },
    },
    proxy: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // RFC 9110 §7.6.3: a proxy MUST send Via; pseudonym used in it
        via: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", default: 'switchyard' },
        // Upgrade protocols tunnelled after a 101 (RFC 9110 §7.8); any other Upgrade is dropped
        // (h2c would carry requests past the firewall, rate limits and routing)
        allowedUpgrades: {
          type: 'array',
          items: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+(/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?$" },
          uniqueItems: true,
          default: ['websocket'],
        },
        // RFC 9209 Proxy-Status: add `details` (the failure's description) to the header
        statusDetails: { type: 'boolean', default: false },
      },
    },
  },
} as const
