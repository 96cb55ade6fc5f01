/**
 * The error catalogue. Every error switchyard reports has a stable `code`, the
 * HTTP status a client sees when it ends a request, and a short response flag
 * for the access log in the style of Envoy's (`UF`, `UT`, ...). Match on
 * `.code`, never on messages.
 *
 * The data path does not throw these: parsers and the proxy return the code
 * (see ErrorCode) and the connection layer answers once with `describe(code)`.
 * The classes exist for the control plane (config, start-up, admin).
 */

export interface ErrorInfo {
  readonly status: number
  readonly flag: string
  readonly message: string
}

export const errorCatalogue = {
  // Downstream (client) protocol errors: RFC 9112 rejections.
  SWY_ERR_BAD_REQUEST: { status: 400, flag: 'DPE', message: 'Bad Request' },
  SWY_ERR_BAD_REQUEST_LINE: { status: 400, flag: 'DPE', message: 'Malformed request line' },
  SWY_ERR_BAD_METHOD: { status: 400, flag: 'DPE', message: 'Invalid method token' },
  SWY_ERR_BAD_VERSION: { status: 505, flag: 'DPE', message: 'HTTP version not supported' },
  SWY_ERR_BAD_HEADER: { status: 400, flag: 'DPE', message: 'Malformed header field' },
  SWY_ERR_OBS_FOLD: { status: 400, flag: 'DPE', message: 'Obsolete line folding is not allowed' },
  SWY_ERR_BARE_CR_LF: { status: 400, flag: 'DPE', message: 'Line ends must be CRLF' },
  SWY_ERR_BAD_CONTENT_LENGTH: { status: 400, flag: 'DPE', message: 'Invalid Content-Length' },
  SWY_ERR_CL_AND_TE: { status: 400, flag: 'DPE', message: 'Both Content-Length and Transfer-Encoding' },
  SWY_ERR_BAD_TRANSFER_ENCODING: { status: 400, flag: 'DPE', message: 'Unsupported Transfer-Encoding' },
  SWY_ERR_TE_NOT_IMPLEMENTED: { status: 501, flag: 'DPE', message: 'Transfer coding not implemented' },
  SWY_ERR_BAD_CHUNK: { status: 400, flag: 'DPE', message: 'Invalid chunked encoding' },
  SWY_ERR_MISSING_HOST: { status: 400, flag: 'DPE', message: 'Missing or invalid Host header' },
  SWY_ERR_HEADERS_TOO_LARGE: { status: 431, flag: 'DPE', message: 'Request header fields too large' },
  SWY_ERR_URI_TOO_LONG: { status: 414, flag: 'DPE', message: 'URI too long' },
  SWY_ERR_BODY_TOO_LARGE: { status: 413, flag: 'DPE', message: 'Content too large' },
  SWY_ERR_CLIENT_TIMEOUT: { status: 408, flag: 'DT', message: 'Request timeout' },
  // An upgraded connection (after a 101) with no byte either way for tunnelIdleMs: both sides are closed.
  SWY_ERR_TUNNEL_IDLE: { status: 408, flag: 'SI', message: 'Upgraded connection idle' },
  // Policy.
  SWY_ERR_RATE_LIMITED: { status: 429, flag: 'RL', message: 'Too many requests' },
  SWY_ERR_FIREWALL_DENIED: { status: 403, flag: 'FW', message: 'Forbidden' },
  // Routing: no route matched and there is no pool "default" (Envoy's NR, no route configured).
  SWY_ERR_NO_ROUTE: { status: 404, flag: 'NR', message: 'No route for this request' },
  // Upstream side.
  SWY_ERR_NO_HEALTHY_UPSTREAM: { status: 502, flag: 'UH', message: 'No healthy upstream' },
  SWY_ERR_UPSTREAM_CONNECT: { status: 502, flag: 'UF', message: 'Upstream connect failure' },
  SWY_ERR_UPSTREAM_RESET: { status: 502, flag: 'UC', message: 'Upstream connection closed' },
  SWY_ERR_UPSTREAM_PROTOCOL: { status: 502, flag: 'UPE', message: 'Invalid response from upstream' },
  SWY_ERR_UPSTREAM_TIMEOUT: { status: 504, flag: 'UT', message: 'Upstream response timeout' },
  SWY_ERR_UPSTREAM_IDLE: { status: 502, flag: 'UT', message: 'Upstream stalled mid-response' },
  SWY_ERR_QUEUE_FULL: { status: 503, flag: 'UO', message: 'Upstreams at their connection limit and the queue is full' },
  SWY_ERR_QUEUE_TIMEOUT: { status: 503, flag: 'UQ', message: 'Timed out waiting for an upstream connection slot' },
  // Control plane.
  SWY_ERR_CONFIG_INVALID: { status: 500, flag: '-', message: 'Invalid configuration' },
  SWY_ERR_FD_HANDOFF: { status: 500, flag: '-', message: 'Descriptor hand-off to a worker failed' },
  SWY_ERR_WORKER_CRASHED: { status: 502, flag: 'WC', message: 'Worker thread crashed' },
  SWY_ERR_ADMIN_UNAUTHORIZED: { status: 401, flag: '-', message: 'Unauthorized' },
  // TLS and PROXY protocol at the listeners (the connection closes: no HTTP answer is possible).
  SWY_ERR_TLS_HANDSHAKE: { status: 400, flag: 'TLS', message: 'TLS handshake failed' },
  // (this one is answered, in plain text, before the close: the client speaks HTTP, just not TLS)
  SWY_ERR_TLS_PLAIN_HTTP: { status: 400, flag: 'TLS', message: 'Plain HTTP request sent to an HTTPS port' },
  SWY_ERR_PROXY_PROTOCOL: { status: 400, flag: 'PPE', message: 'Missing, malformed or untrusted PROXY protocol header' },
  SWY_ERR_TLS_CERTIFICATE: { status: 500, flag: '-', message: 'Certificate or key cannot be used' },
  // limits.maxConnections reached: the new connection is closed at once, before any byte is read
  SWY_ERR_CONNECTION_LIMIT: { status: 503, flag: '-', message: 'Connection limit reached' },
} as const satisfies Record<string, ErrorInfo>

export type ErrorCode = keyof typeof errorCatalogue

export function describe (code: ErrorCode): ErrorInfo {
  return errorCatalogue[code]
}

export class SwitchyardError extends Error {
  readonly code: ErrorCode
  readonly status: number
  constructor (code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? errorCatalogue[code].message, options)
    this.name = 'SwitchyardError'
    this.code = code
    this.status = errorCatalogue[code].status
  }
}

/** Config validation failed; `errors` lists every problem with its JSON path. */
export class ConfigError extends SwitchyardError {
  readonly errors: readonly string[]
  constructor (errors: readonly string[], source: string) {
    super('SWY_ERR_CONFIG_INVALID', `invalid configuration in ${source}:\n  ${errors.join('\n  ')}`)
    this.name = 'ConfigError'
    this.errors = errors
  }
}

/** Errors cross postMessage as plain data (a subclass arrives as a bare Error). */
export function toWire (err: unknown): { code: string, message: string } {
  if (err instanceof SwitchyardError) return { code: err.code, message: err.message }
  if (err instanceof Error) return { code: (err as NodeJS.ErrnoException).code ?? 'ERR_UNKNOWN', message: err.message }
  return { code: 'ERR_UNKNOWN', message: String(err) }
}
