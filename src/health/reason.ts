/**
 * Human-readable reasons for an active check's outcome, shared by the prober's
 * transition logs and the admin status. U_LAST_CHECK_STATUS holds either an
 * HTTP status or one of the negative CHECK_* codes from the layout.
 */
import { CHECK_BAD_RESPONSE, CHECK_REFUSED, CHECK_RESET, CHECK_TIMEOUT } from '../shared/layout'

/** `timeoutMs` is known to the prober only; the admin view says just "timeout". */
export function describeCheckStatus (status: number, timeoutMs?: number): string {
  switch (status) {
    case CHECK_REFUSED: return 'connection refused'
    case CHECK_TIMEOUT: return timeoutMs === undefined ? 'timeout' : `timeout after ${timeoutMs} ms`
    case CHECK_RESET: return 'connection reset'
    case CHECK_BAD_RESPONSE: return 'bad response'
    default: return `status ${status}`
  }
}
