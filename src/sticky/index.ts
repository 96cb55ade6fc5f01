/**
 * Sticky sessions (./sticky.ts) and the Cookie header scanner they use (./cookie.ts).
 *
 * Wiring: the primary calls resolveStickySecret(config.stickySessions) once and
 * passes the secret to every thread; each thread, whenever its upstream table
 * is (re)built, calls createSticky(config.stickySessions, table, secret).
 */
export { createSticky, resolveStickySecret, stickyCookieValue, type Sticky } from './sticky'
export { findCookie } from './cookie'
