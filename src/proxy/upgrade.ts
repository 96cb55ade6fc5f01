/**
 * Which protocol upgrades go through (RFC 9110 §7.8): only those named in
 * `proxy.allowedUpgrades` (default websocket). Any other Upgrade is dropped
 * from the forwarded request, so the request is answered as plain HTTP: a
 * tunnelled h2c connection would carry requests past the firewall, the rate
 * limits and routing. Runs only for requests and 101s with an Upgrade field.
 */

/** Does allowed entry `entry` ("name" or "name/version", lower case) cover `protocol`? */
function covers (entry: string, protocol: string): boolean {
  return protocol === entry || (!entry.includes('/') && protocol.startsWith(entry + '/'))
}

/**
 * True when `value` (an Upgrade field, a list of protocols) names at least one
 * protocol and every protocol it names is allowed.
 */
export function upgradeAllowed (value: string | null, allowed: readonly string[]): boolean {
  if (value === null || allowed.length === 0) return false
  let named = false
  for (const item of value.split(',')) {
    const protocol = item.trim().toLowerCase()
    if (protocol === '') continue
    named = true
    let ok = false
    for (const entry of allowed) if (covers(entry.toLowerCase(), protocol)) { ok = true; break }
    if (!ok) return false
  }
  return named
}
