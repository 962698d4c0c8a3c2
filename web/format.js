// Small pure formatting helpers shared by the pages and the log viewer.

/** "850ms", "2.6s", "1m 05s", "2h 03m". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  return `${m}m ${String(s).padStart(2, '0')}s`;
}

/** Milliseconds since the epoch of an RFC 3339 UTC timestamp as the server writes it. */
export function parseTimestamp(text) {
  // Fast path for "YYYY-MM-DDTHH:MM:SS[.fraction]Z", which is all the server emits.
  if (typeof text !== 'string') return NaN;
  if (text.length >= 20 && text.charCodeAt(10) === 84 /* T */ && text.charCodeAt(text.length - 1) === 90 /* Z */) {
    const day = dayStart(text.slice(0, 10));
    const h = digits(text, 11, 2);
    const m = digits(text, 14, 2);
    const s = digits(text, 17, 2);
    if (day === day && h >= 0 && m >= 0 && s >= 0) {
      let ms = 0;
      if (text.charCodeAt(19) === 46 /* . */) {
        const fraction = text.slice(20, text.length - 1);
        ms = Number(`0.${fraction}`) * 1000;
      }
      return day + ((h * 60 + m) * 60 + s) * 1000 + ms;
    }
  }
  return Date.parse(text);
}

let cachedDay = '';
let cachedDayStart = NaN;

function dayStart(day) {
  if (day !== cachedDay) {
    cachedDay = day;
    cachedDayStart = Date.parse(`${day}T00:00:00Z`);
  }
  return cachedDayStart;
}

function digits(text, at, count) {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    value = value * 10 + c;
  }
  return value;
}

const pad2 = (n) => String(n).padStart(2, '0');

/** "09:00:00.200" in local time. */
export function formatClock(ms) {
  if (!Number.isFinite(ms)) return '';
  const date = new Date(ms);
  return `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

/** "2026-11-26 09:00:00" in local time. */
export function formatDateTime(text) {
  if (!text) return '—';
  const ms = parseTimestamp(text);
  if (!Number.isFinite(ms)) return text;
  const date = new Date(ms);
  return `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())} ${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
}

/** "just now", "5 min ago", "3 h ago", "2 days ago". */
export function formatAgo(ms, now) {
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return `${days} day${days === 1 ? '' : 's'} ago`;
}

/** 1234567 → "1,234,567" (independent of locale, so tests are stable). */
export function formatCount(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** What ended a run, in a few words. */
export function describeOutcome(run) {
  if (run.signal_name || run.signal !== null && run.signal !== undefined) {
    return `signal ${run.signal_name || run.signal}${run.signal_name && run.signal ? ` (${run.signal})` : ''}`;
  }
  if (run.exit_code !== null && run.exit_code !== undefined) return `exit code ${run.exit_code}`;
  if (run.error) return run.error;
  return '—';
}

export const FINAL_STATUSES = new Set(['succeeded', 'failed', 'cancelled', 'timed_out', 'lost']);
export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost'];

export function isFinal(status) {
  return FINAL_STATUSES.has(status);
}

/** The audit page's sentence for `GET /api/v1/audit/verify`: the chain, the signed head, a checkpoint. */
export function auditVerdict(data) {
  if (data.broken_at !== null && data.broken_at !== undefined) {
    return `Broken at record ${data.broken_at}: ${data.reason}`;
  }
  if (!data.ok) return `Broken: ${data.reason} (${data.records} records, every hash matches).`;
  const anchor = data.keyed ? ' and the signed head matches the audit key' : '; no audit key, so only the hashes were checked';
  return `Intact: ${data.records} records, every hash matches${anchor}. Head: ${data.head}.`;
}
