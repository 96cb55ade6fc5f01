/**
 * Proxy-Status (RFC 9209) on every response switchyard makes itself and on a
 * response relayed after retries:
 *
 *   Proxy-Status: switchyard; error=connection_refused
 *   Proxy-Status: switchyard; error=http_response_timeout; details="127.0.0.1:8001: no response within 300 ms"
 *   Proxy-Status: switchyard; received-status=503
 *
 * `details` only with proxy.statusDetails (off by default: it names upstream
 * addresses and internals). The error types are RFC 9209 §2.3's registry.
 */
import type { ErrorCode } from '../errors'

/** RFC 9209 §2.3 proxy error types switchyard reports. */
export type ProxyErrorType =
  | 'destination_unavailable' | 'connection_refused' | 'connection_timeout' | 'connection_terminated'
  | 'connection_read_timeout' | 'connection_limit_reached' | 'http_response_timeout' | 'http_protocol_error'
  | 'http_request_error' | 'http_request_denied' | 'proxy_internal_response' | 'proxy_internal_error'
  | 'proxy_configuration_error'

/** The proxy's name in the header (RFC 9209 §2: a token identifying the intermediary). */
export const PROXY_NAME = 'switchyard'

/** The RFC 9209 error type of a catalogue code; `connectTimedOut` tells a connect timeout from a refusal. */
export function proxyErrorType (code: ErrorCode, connectTimedOut = false): ProxyErrorType {
  switch (code) {
    case 'SWY_ERR_NO_HEALTHY_UPSTREAM': return 'destination_unavailable'
    case 'SWY_ERR_UPSTREAM_CONNECT': return connectTimedOut ? 'connection_timeout' : 'connection_refused'
    case 'SWY_ERR_UPSTREAM_RESET': return 'connection_terminated'
    case 'SWY_ERR_UPSTREAM_PROTOCOL': return 'http_protocol_error'
    case 'SWY_ERR_UPSTREAM_TIMEOUT': return 'http_response_timeout'
    case 'SWY_ERR_UPSTREAM_IDLE': return 'connection_read_timeout'
    case 'SWY_ERR_QUEUE_FULL': case 'SWY_ERR_QUEUE_TIMEOUT': return 'connection_limit_reached'
    case 'SWY_ERR_FIREWALL_DENIED': return 'http_request_denied'
    case 'SWY_ERR_RATE_LIMITED': return 'proxy_internal_response'
    case 'SWY_ERR_WORKER_CRASHED': case 'SWY_ERR_FD_HANDOFF': return 'proxy_internal_error'
    case 'SWY_ERR_CONFIG_INVALID': return 'proxy_configuration_error'
    default: return 'http_request_error' // the client's request was refused (4xx, 505)
  }
}

/** RFC 8941 §3.3.3 sf-string: printable ASCII, `"` and `\` escaped; anything else becomes `?`. */
export function sfString (text: string): string {
  let out = '"'
  for (let i = 0; i < text.length && i < 256; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22 || c === 0x5c) out += '\\' + text[i]
    else if (c >= 0x20 && c <= 0x7e) out += text[i]
    else out += '?'
  }
  return out + '"'
}

/** The header line (CRLF-terminated) for a response switchyard made itself. */
export function proxyStatusLine (type: ProxyErrorType, details: string | null): string {
  return 'Proxy-Status: ' + PROXY_NAME + '; error=' + type + (details !== null ? '; details=' + sfString(details) : '') + '\r\n'
}

/** The header line for a response relayed after `retries` retries (received-status, RFC 9209 §2.1.2). */
export function receivedStatusLine (status: number, retries: number, details: boolean): string {
  return 'Proxy-Status: ' + PROXY_NAME + '; received-status=' + status + (details ? '; details=' + sfString(`after ${retries} retries`) : '') + '\r\n'
}
