// ANSI/terminal rendering of one log line, as a terminal would show it.
//
// `renderLine(text)` returns a list of spans `{text, style}`; `style` is null for the
// default look or an object {fg, bg, bold, dim, italic, underline, inverse, strike}, where
// fg/bg are null (default), a palette index 0-255, or a "#rrggbb" true colour.
//
// Supported: SGR (16, 256 and 24-bit colours, foreground and background; bold, dim,
// italic, underline, inverse, strikethrough and their resets), `\r` (back to column 0:
// later text overwrites, as in a terminal, so a progress bar shows its final state),
// backspace, `ESC[K` / `ESC[1K` / `ESC[2K` (erase in line), cursor column moves (`ESC[nG`,
// `ESC[nC`, `ESC[nD`). Every other escape sequence (OSC titles and hyperlinks, charset
// selection, cursor up/down, ...) and every other control character is dropped.
// Each code point is one column (wide characters are not measured).
//
// Pure: no DOM here except `appendSpans`, which builds nodes with textContent only — job
// output is never parsed as HTML.

const ESC = 0x1b;

// Anything that is not plain text: a C0 control (tab excepted), DEL or a C1 control.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
// What needs a cell grid rather than appending: moves of the cursor within the line.
const CURSOR_MOVES = /[\r\b]|\x1b\[[0-9;]*[GCDK]/;

const DEFAULT = Object.freeze({
  fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false,
});

/** xterm's colour for a palette index 16-255 (0-15 are themed in CSS). */
export function color256(n) {
  if (n < 16) return null;
  if (n >= 232) {
    const level = 8 + 10 * (n - 232);
    return hex(level, level, level);
  }
  const cube = n - 16;
  const step = (value) => (value === 0 ? 0 : 55 + 40 * value);
  return hex(step(Math.floor(cube / 36)), step(Math.floor(cube / 6) % 6), step(cube % 6));
}

function hex(r, g, b) {
  return '#' + [r, g, b].map((v) => Math.max(0, Math.min(255, v | 0)).toString(16).padStart(2, '0')).join('');
}

function isDefault(style) {
  return style.fg === null && style.bg === null && !style.bold && !style.dim && !style.italic
    && !style.underline && !style.inverse && !style.strike;
}

/**
 * Applies one SGR parameter string ("1;31", "38;5;208", "38:2::255:0:0", "") to `style`,
 * returning a new frozen style (or the same object when nothing changed).
 */
export function applySgr(style, params) {
  const next = { ...style };
  // Parameters are separated by `;`; a parameter may carry `:` sub-parameters (ITU T.416).
  const groups = params === '' ? [''] : params.split(';');
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i];
    if (group.includes(':')) {
      const parts = group.split(':').map((part) => (part === '' ? NaN : Number(part)));
      const code = parts[0];
      if (code === 38 || code === 48) {
        const color = extendedColor(parts.slice(1), true);
        if (color !== undefined) next[code === 38 ? 'fg' : 'bg'] = color;
      } else if (code === 4) {
        next.underline = parts[1] !== 0;
      } else {
        applyCode(next, code);
      }
      continue;
    }
    const code = group === '' ? 0 : Number(group);
    if (code === 38 || code === 48) {
      // 38;5;n or 38;2;r;g;b
      const rest = groups.slice(i + 1).map(Number);
      const color = extendedColor(rest, false);
      const used = rest[0] === 5 ? 2 : rest[0] === 2 ? 4 : rest.length;
      i += used;
      if (color !== undefined) next[code === 38 ? 'fg' : 'bg'] = color;
      continue;
    }
    applyCode(next, code);
  }
  return Object.freeze(next);
}

// `parts` starts with the colour space: 5 then an index, or 2 then r, g, b. With colons,
// 2 may be followed by a colour-space id before r, g, b (`38:2::r:g:b` or `38:2:id:r:g:b`).
function extendedColor(parts, colon) {
  if (parts[0] === 5) {
    const n = parts[1];
    return Number.isInteger(n) && n >= 0 && n <= 255 ? n : undefined;
  }
  if (parts[0] === 2) {
    let rgb = parts.slice(1, 4);
    if (colon && parts.length >= 5) rgb = parts.slice(2, 5);
    if (rgb.length === 3 && rgb.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) return hex(...rgb);
  }
  return undefined;
}

function applyCode(style, code) {
  if (!Number.isInteger(code)) return;
  if (code === 0) Object.assign(style, DEFAULT);
  else if (code === 1) style.bold = true;
  else if (code === 2) style.dim = true;
  else if (code === 3) style.italic = true;
  else if (code === 4 || code === 21) style.underline = true;
  else if (code === 7) style.inverse = true;
  else if (code === 9) style.strike = true;
  else if (code === 22) { style.bold = false; style.dim = false; }
  else if (code === 23) style.italic = false;
  else if (code === 24) style.underline = false;
  else if (code === 27) style.inverse = false;
  else if (code === 29) style.strike = false;
  else if (code >= 30 && code <= 37) style.fg = code - 30;
  else if (code === 39) style.fg = null;
  else if (code >= 40 && code <= 47) style.bg = code - 40;
  else if (code === 49) style.bg = null;
  else if (code >= 90 && code <= 97) style.fg = code - 90 + 8;
  else if (code >= 100 && code <= 107) style.bg = code - 100 + 8;
  // Anything else (blink, conceal, fonts, ...) is ignored.
}

/**
 * Splits `text` into tokens: {kind: 'text', text} | {kind: 'csi', params, final} |
 * {kind: 'ctl', code}. Other escape sequences are consumed and dropped.
 */
function* tokens(text) {
  const n = text.length;
  let i = 0;
  let start = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    const control = c < 0x20 ? c !== 0x09 : (c === 0x7f || (c >= 0x80 && c <= 0x9f));
    if (!control) {
      i++;
      continue;
    }
    if (i > start) yield { kind: 'text', text: text.slice(start, i) };
    if (c === ESC) {
      const next = text.charCodeAt(i + 1);
      if (next === 0x5b /* [ */) {
        // CSI: parameter bytes 0x30-0x3f, intermediate bytes 0x20-0x2f, one final byte 0x40-0x7e.
        let j = i + 2;
        while (j < n && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x3f) j++;
        const params = text.slice(i + 2, j);
        while (j < n && text.charCodeAt(j) >= 0x20 && text.charCodeAt(j) <= 0x2f) j++;
        if (j < n && text.charCodeAt(j) >= 0x40 && text.charCodeAt(j) <= 0x7e) {
          yield { kind: 'csi', params, final: text[j] };
          i = j + 1;
        } else {
          i = j; // malformed: drop what was read
        }
      } else if (next === 0x5d /* ] */ || next === 0x50 /* P */ || next === 0x5f /* _ */ || next === 0x5e /* ^ */) {
        // OSC / DCS / APC / PM: up to BEL or ST (ESC \); an unterminated one eats the line.
        let j = i + 2;
        while (j < n) {
          const d = text.charCodeAt(j);
          if (d === 0x07) { j += 1; break; }
          if (d === ESC && text.charCodeAt(j + 1) === 0x5c) { j += 2; break; }
          j++;
        }
        i = j;
      } else if (next === 0x28 || next === 0x29 || next === 0x2a || next === 0x2b || next === 0x23 || next === 0x25) {
        i += 3; // charset designation and similar: ESC ( B
      } else if (i + 1 < n) {
        i += 2; // two-byte sequence: ESC 7, ESC =, ...
      } else {
        i += 1;
      }
    } else {
      yield { kind: 'ctl', code: c };
      i++;
    }
    start = i;
  }
  if (n > start) yield { kind: 'text', text: text.slice(start) };
}

function num(params, fallback) {
  const value = parseInt(params, 10);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

/** The line as styled spans, in display order. */
export function renderLine(text) {
  if (!CONTROL.test(text)) return text === '' ? [] : [{ text, style: null }];
  return CURSOR_MOVES.test(text) ? renderGrid(text) : renderAppend(text);
}

/** The visible characters of the line (what search looks at). */
export function plainText(text) {
  if (!CONTROL.test(text)) return text;
  let out = '';
  for (const span of renderLine(text)) out += span.text;
  return out;
}

// Common case: colours but no cursor movement. Text is only ever appended.
function renderAppend(text) {
  const spans = [];
  let style = DEFAULT;
  for (const token of tokens(text)) {
    if (token.kind === 'text') {
      const last = spans[spans.length - 1];
      const shown = isDefault(style) ? null : style;
      if (last && last.style === shown) last.text += token.text;
      else spans.push({ text: token.text, style: shown });
    } else if (token.kind === 'csi' && token.final === 'm') {
      style = applySgr(style, token.params);
    }
  }
  return spans;
}

// A one-line terminal: a row of cells and a cursor.
function renderGrid(text) {
  const chars = [];
  const styles = [];
  let col = 0;
  let style = DEFAULT;
  const pad = (to) => {
    while (chars.length < to) {
      chars.push(' ');
      styles.push(DEFAULT);
    }
  };
  for (const token of tokens(text)) {
    if (token.kind === 'text') {
      for (const ch of token.text) {
        pad(col);
        chars[col] = ch;
        styles[col] = style;
        col++;
      }
    } else if (token.kind === 'ctl') {
      if (token.code === 0x0d) col = 0;
      else if (token.code === 0x08) col = Math.max(0, col - 1);
    } else if (token.final === 'm') {
      style = applySgr(style, token.params);
    } else if (token.final === 'K') {
      const mode = token.params === '' ? 0 : parseInt(token.params, 10);
      if (mode === 0) {
        chars.length = Math.min(chars.length, col);
        styles.length = chars.length;
      } else if (mode === 1) {
        for (let k = 0; k <= col && k < chars.length; k++) {
          chars[k] = ' ';
          styles[k] = DEFAULT;
        }
      } else if (mode === 2) {
        chars.length = 0;
        styles.length = 0;
      }
    } else if (token.final === 'G') {
      col = num(token.params, 1) - 1;
    } else if (token.final === 'C') {
      col += num(token.params, 1);
    } else if (token.final === 'D') {
      col = Math.max(0, col - num(token.params, 1));
    }
  }
  // Erased trailing cells that were only padding are not shown.
  let end = chars.length;
  while (end > 0 && chars[end - 1] === ' ' && styles[end - 1] === DEFAULT) end--;
  const spans = [];
  for (let k = 0; k < end; k++) {
    const shown = isDefault(styles[k]) ? null : styles[k];
    const last = spans[spans.length - 1];
    if (last && (last.style === shown || (last.style && shown && sameStyle(last.style, shown)))) last.text += chars[k];
    else spans.push({ text: chars[k], style: shown });
  }
  return spans;
}

function sameStyle(a, b) {
  return a.fg === b.fg && a.bg === b.bg && a.bold === b.bold && a.dim === b.dim && a.italic === b.italic
    && a.underline === b.underline && a.inverse === b.inverse && a.strike === b.strike;
}

/**
 * Cuts spans at highlight boundaries. `ranges` are [start, end, mark] over the line's plain
 * text, sorted and non-overlapping; pieces get `mark` (e.g. 'match' or 'current') or null.
 */
export function applyHighlights(spans, ranges) {
  if (!ranges || ranges.length === 0) return spans.map((span) => ({ ...span, mark: null }));
  const out = [];
  let offset = 0;
  let r = 0;
  for (const span of spans) {
    const spanEnd = offset + span.text.length;
    let pos = offset;
    while (pos < spanEnd) {
      while (r < ranges.length && ranges[r][1] <= pos) r++;
      const range = ranges[r];
      if (!range || range[0] >= spanEnd) {
        out.push({ text: span.text.slice(pos - offset), style: span.style, mark: null });
        pos = spanEnd;
      } else if (range[0] > pos) {
        out.push({ text: span.text.slice(pos - offset, range[0] - offset), style: span.style, mark: null });
        pos = range[0];
      } else {
        const end = Math.min(range[1], spanEnd);
        out.push({ text: span.text.slice(pos - offset, end - offset), style: span.style, mark: range[2] });
        pos = end;
      }
    }
    offset = spanEnd;
  }
  return out;
}

const LITERAL_MONO = { 0: '#000000', 8: '#3d444d', 7: '#e6edf3', 15: '#ffffff' };

/** CSS for one style: classes for themed palette colours, inline colours otherwise. */
export function styleClasses(style) {
  const classes = [];
  const css = {};
  if (!style) return { classes, css };
  let fg = style.fg;
  let bg = style.bg;
  if (style.inverse) {
    [fg, bg] = [bg, fg];
    if (fg === null) classes.push('ansi-inv-fg');
    if (bg === null) classes.push('ansi-inv-bg');
  }
  if (bg !== null && (fg === 0 || fg === 7 || fg === 8 || fg === 15)) {
    // Black and white text on a coloured background: literal colours, not the ones the
    // theme adjusted for contrast with the log's own background.
    css.color = LITERAL_MONO[fg];
  } else if (typeof fg === 'number' && fg < 16) classes.push(`f${fg}`);
  else if (typeof fg === 'number') css.color = color256(fg);
  else if (typeof fg === 'string') css.color = fg;
  if (typeof bg === 'number' && bg < 16) classes.push(`b${bg}`);
  else if (typeof bg === 'number') css.backgroundColor = color256(bg);
  else if (typeof bg === 'string') css.backgroundColor = bg;
  if (style.bold) classes.push('ansi-bold');
  if (style.dim) classes.push('ansi-dim');
  if (style.italic) classes.push('ansi-italic');
  if (style.underline) classes.push('ansi-underline');
  if (style.strike) classes.push('ansi-strike');
  return { classes, css };
}

/** Appends the pieces (spans, optionally with `mark`) to `parent` as DOM nodes. */
export function appendSpans(parent, pieces) {
  const doc = parent.ownerDocument;
  for (const piece of pieces) {
    let node;
    if (!piece.style) {
      node = doc.createTextNode(piece.text);
    } else {
      node = doc.createElement('span');
      const { classes, css } = styleClasses(piece.style);
      if (classes.length) node.className = classes.join(' ');
      if (css.color) node.style.color = css.color;
      if (css.backgroundColor) node.style.backgroundColor = css.backgroundColor;
      node.textContent = piece.text;
    }
    if (piece.mark) {
      const mark = doc.createElement('mark');
      mark.className = piece.mark;
      mark.appendChild(node);
      node = mark;
    }
    parent.appendChild(node);
  }
}
