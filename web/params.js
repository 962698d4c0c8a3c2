// Client-side checks of job parameters, mirroring crates/oneoff-core/src/params.rs so the
// form shows the server's own messages before submitting. The server stays the authority:
// its 422 messages are shown next to the fields too.

/** Longest string value accepted when the schema sets no `max_length` (as on the server). */
export const DEFAULT_MAX_LENGTH = 4096;

/** "since*, batch_size, table, dry_run" (* = required), as `oneoff jobs` prints it. */
export function paramsSummary(params) {
  if (!params || params.length === 0) return 'no parameters';
  return params.map((param) => `${param.name}${param.required ? '*' : ''}`).join(', ');
}

const patternCache = new Map();

// POSIX classes, which Rust accepts inside brackets (`[[:alpha:]_]`) and JS would misread.
const POSIX_CLASSES = {
  alnum: '0-9A-Za-z', alpha: 'A-Za-z', ascii: '\\x00-\\x7F', blank: '\\t ', cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9', lower: 'a-z', space: '\\t\\n\\v\\f\\r ', upper: 'A-Z', word: '0-9A-Za-z_', xdigit: '0-9A-Fa-f',
};

/**
 * The schema's pattern (a Rust regex) as a JS RegExp, or null when it cannot be checked
 * faithfully here (then the server alone checks it). Rust's `is_match` is a search, not a
 * full match, as is `RegExp.test`. A few Rust-only spellings are translated; a pattern that
 * does not compile in JS's strict Unicode mode is left to the server, so the form never
 * refuses what the server would accept because of a syntax difference.
 */
export function compilePattern(pattern) {
  if (typeof pattern !== 'string') return null;
  if (patternCache.has(pattern)) return patternCache.get(pattern);
  let compiled = null;
  let source = pattern;
  let flags = 'u';
  const inline = /^\(\?([imsU]+)\)/.exec(source);
  if (inline) {
    source = source.slice(inline[0].length);
    flags += inline[1].includes('U') ? '!' : inline[1];
  }
  let unknownClass = false;
  source = source
    .replace(/\(\?P</g, '(?<')
    .replace(/\\A/g, '^')
    .replace(/\\z/g, '$')
    .replace(/\[:(\^?)([a-z]+):\]/g, (whole, negated, name) => {
      if (negated || !(name in POSIX_CLASSES)) unknownClass = true;
      return POSIX_CLASSES[name] ?? whole;
    });
  // Inline flags or groups elsewhere, verbose mode and lazy-by-default are Rust-only.
  if (!unknownClass && !flags.includes('!') && !/\(\?[a-zA-Z-]+[:)]/.test(source)) {
    try {
      compiled = new RegExp(source, flags);
    } catch {
      compiled = null;
    }
  }
  patternCache.set(pattern, compiled);
  return compiled;
}

// Rust's `{:?}` of a string, shortened to 40 characters like `quote` in params.rs.
function quote(text) {
  const chars = [...text];
  const shown = chars.length > 40 ? chars.slice(0, 40).join('') : text;
  return JSON.stringify(shown) + (chars.length > 40 ? '…' : '');
}

function checkText(text, maxLength) {
  if (text.includes('\0')) return 'must not contain a NUL character';
  const length = [...text].length;
  const max = maxLength ?? DEFAULT_MAX_LENGTH;
  if (length > max) return `must be at most ${max} characters (got ${length})`;
  return null;
}

/** The shortest secret value accepted, in characters (as `MIN_SECRET_CHARS` on the server). */
export const MIN_SECRET_CHARS = 4;

/** Why a secret value cannot be masked in the log, as the server says it, or null. */
function unmaskableSecret(text) {
  const length = [...text].length;
  if (length < MIN_SECRET_CHARS) {
    return `must be at least ${MIN_SECRET_CHARS} characters (got ${length}): a shorter secret would be masked wherever those characters occur in the log`;
  }
  if (/^\*+$/.test(text)) return 'must not be only `*` characters: the log shows masked secrets as `********`';
  return null;
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/**
 * Checks one field. `raw` is the field's value: a string for text, number, select and
 * password inputs, a boolean for checkboxes. Returns {value} (the JSON value to send;
 * undefined = not given, so the server applies the default) or {error} (the server's message).
 */
export function checkParam(param, raw) {
  if (param.type === 'boolean') {
    if (typeof raw === 'boolean') return { value: raw };
    if (raw === '' || raw === null || raw === undefined) return absent(param);
    const word = String(raw).trim().toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(word)) return { value: true };
    if (['false', 'no', 'off', '0'].includes(word)) return { value: false };
    return { error: `must be true or false, not ${quote(String(raw))}` };
  }
  if (raw === '' || raw === null || raw === undefined) return absent(param);
  const text = String(raw);
  switch (param.type) {
    case 'integer': {
      const trimmed = text.trim();
      if (!/^[+-]?[0-9]+$/.test(trimmed)) return { error: `must be an integer, not ${quote(text)}` };
      const big = BigInt(trimmed);
      if (big < I64_MIN || big > I64_MAX) return { error: `must be an integer, not ${quote(text)}` };
      if (param.min !== undefined && param.min !== null && big < BigInt(param.min)) {
        return { error: `must be at least ${param.min}` };
      }
      if (param.max !== undefined && param.max !== null && big > BigInt(param.max)) {
        return { error: `must be at most ${param.max}` };
      }
      const number = Number(big);
      return { value: Number.isSafeInteger(number) ? number : trimmed };
    }
    case 'choice': {
      const choices = param.choices || [];
      if (choices.includes(text)) return { value: text };
      return { error: `must be one of: ${choices.join(', ')}` };
    }
    case 'secret': {
      const problem = checkText(text, param.max_length) ?? unmaskableSecret(text);
      return problem ? { error: problem } : { value: text };
    }
    default: {
      // "string", and any type this UI does not know yet: check what we can.
      const problem = checkText(text, param.max_length);
      if (problem) return { error: problem };
      const pattern = compilePattern(param.pattern);
      if (pattern && !pattern.test(text)) return { error: `must match the pattern ${param.pattern}` };
      return { value: text };
    }
  }
}

function absent(param) {
  if (param.default !== undefined && param.default !== null) return { value: undefined };
  if (param.required) return { error: 'is required' };
  return { value: undefined };
}

/**
 * Checks every field. `values` maps names to raw values. Returns {params, errors}: the JSON
 * body's `params` and a map of field name to message.
 */
export function checkParams(schema, values) {
  const params = {};
  const errors = {};
  for (const param of schema) {
    const result = checkParam(param, values[param.name]);
    if (result.error) errors[param.name] = result.error;
    else if (result.value !== undefined) params[param.name] = result.value;
  }
  return { params, errors };
}

/**
 * The query string of a launch form prefilled with a run's parameters ("Run again"):
 * secrets are left out (the server only ever shows them masked), as are unset values.
 */
export function rerunQuery(schema, runParams) {
  const secret = new Set(schema.filter((param) => param.type === 'secret').map((param) => param.name));
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(runParams || {})) {
    if (secret.has(name) || value === null || value === undefined) continue;
    query.set(name, String(value));
  }
  return query.toString();
}

/** The initial value of each field: the URL's value if given (never for secrets), else the default. */
export function initialValue(param, query) {
  if (param.type !== 'secret' && query && query.has(param.name)) {
    const given = query.get(param.name);
    if (param.type === 'boolean') return ['true', 'yes', 'on', '1'].includes(given.trim().toLowerCase());
    return given;
  }
  if (param.type === 'secret') return '';
  if (param.default === undefined || param.default === null) return param.type === 'boolean' ? false : '';
  if (param.type === 'boolean') return param.default === true;
  return String(param.default);
}
