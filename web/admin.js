// Pure helpers of the Tokens and Audit pages: the audit action codes, the time-window
// filter (the form's local `datetime-local` values ↔ the API's RFC 3339 `since`/`until`),
// a token's state in words, and the details view's JSON. No DOM here, so Node tests it.

import { parseTimestamp } from './format.js';

/** The stable audit action codes (docs/API.md), in the order the filter offers them. */
export const AUDIT_ACTIONS = [
  ['run.start', 'run started'],
  ['run.cancel', 'run cancelled'],
  ['token.create', 'token created'],
  ['token.revoke', 'token revoked'],
  ['audit.anchor', 'audit key anchored'],
  ['denied.run', 'denied: start a run'],
  ['denied.cancel', 'denied: cancel a run'],
  ['denied.view', 'denied: view a run'],
  ['denied.audit.read', 'denied: read the audit trail'],
  ['denied.audit.verify', 'denied: verify the audit trail'],
  ['denied.token.create', 'denied: create a token'],
  ['denied.token.create_for_others', 'denied: create a token for others'],
  ['denied.token.revoke', 'denied: revoke a token'],
  ['denied.debug.echo', 'denied: /debug/echo'],
].map(([code, label]) => ({ code, label }));

const pad2 = (n) => String(n).padStart(2, '0');

/**
 * An API time as a `datetime-local` value ("2026-12-01T10:05", local time), or '' when it is
 * not one. With `end`, the value names the minute an exclusive `until` closes (one minute
 * earlier), so that the form shows what the user picked.
 */
export function localInputValue(text, { end = false } = {}) {
  let ms = parseTimestamp(text);
  if (!Number.isFinite(ms)) return '';
  if (end) ms -= 60_000;
  const date = new Date(ms);
  return `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}T${pad2(date.getHours())}:${pad2(date.getMinutes())}`;
}

/**
 * A `datetime-local` value (local time) as the API's RFC 3339 bound, or '' when empty or
 * invalid. `end`: the picked minute is included ("to 10:05" keeps 10:05:59), so the exclusive
 * `until` is the minute after it.
 */
export function windowBound(value, { end = false } = {}) {
  if (!value) return '';
  const ms = new Date(value).getTime(); // a date-time without a zone is local time
  if (!Number.isFinite(ms)) return '';
  return new Date(end ? ms + 60_000 : ms).toISOString().replace('.000Z', 'Z');
}

/** "in 5 min", "in 3 h", "in 29 days" (the future counterpart of formatAgo). */
export function formatIn(ms, now) {
  const seconds = Math.max(0, Math.round((ms - now) / 1000));
  if (seconds < 60) return 'in under a minute';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `in ${minutes} min`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `in ${hours} h`;
  const days = Math.round(hours / 24);
  return `in ${days} day${days === 1 ? '' : 's'}`;
}

/**
 * A token's state: `{state, label}` with state `revoked`, `expired` or `active` (revoked
 * wins: it is what was done to it; an expired token that is also revoked says revoked).
 */
export function tokenState(token, now) {
  if (token.revoked_at) return { state: 'revoked', label: 'Revoked' };
  const expires = token.expires_at ? parseTimestamp(token.expires_at) : NaN;
  if (Number.isFinite(expires) && expires <= now) return { state: 'expired', label: 'Expired' };
  return { state: 'active', label: 'Active' };
}

/** The tokens made with `token` (its children), still active, from one listing. */
export function activeChildren(token, tokens, now) {
  return tokens.filter((other) => other.parent_id === token.id && tokenState(other, now).state === 'active');
}

/** A record's `detail` for people: indented JSON, or null when there is nothing in it. */
export function prettyDetail(detail) {
  if (detail === null || detail === undefined) return null;
  if (typeof detail === 'object' && Object.keys(detail).length === 0) return null;
  return JSON.stringify(detail, null, 2);
}
