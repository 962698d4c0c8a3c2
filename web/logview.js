// The log viewer: compact storage of a run's entries, search, and a virtualised view.
//
// Storage (`LogStore`, pure): one row per displayed line, as parallel arrays — the text (a
// JS string), the first sequence number and timestamp (Float64Array) and the stream
// (Uint8Array) — so a million lines cost little more than their text. A line stored in
// pieces (a `\r` progress bar the server stores while it runs, a line cut at
// `max_line_bytes`: each piece after the first is marked `continues`) is merged into one row,
// so it shows one line updating, like a terminal would. The
// store keeps at most `maxRows` rows; beyond, the oldest tenth is dropped at a time (with a
// notice pointing at the raw download).
//
// View (`LogView`): without wrapping, rows have a fixed height and only the visible ones are
// in the DOM (a pool of row elements positioned by transform), updated at most once per
// animation frame. With wrapping, heights vary, so the view instead renders a window of at
// most 1,000 consecutive rows (the latest ones while following), with buttons to move the
// window; the whole log stays searchable and reachable by permalink.

import { renderLine, plainText, applyHighlights, appendSpans } from './ansi.js';
import { parseTimestamp, formatClock, formatCount } from './format.js';

export const MAX_ROWS = 2_000_000;
export const ROW_HEIGHT = 20;
export const WRAP_WINDOW = 1000;
export const MAX_MATCHES = 100_000;
/** Browsers cap element heights (Firefox near 17.9M px): beyond this the scroll is scaled. */
const MAX_SCROLL_PX = 8_000_000;
/** A merged progress line is cut back to about this many characters (at a `\r`). */
const MAX_MERGED_CHARS = 65536;

const STREAM_CODES = { stdout: 0, stderr: 1, system: 2 };
const STREAM_NAMES = ['stdout', 'stderr', 'system'];

/**
 * Whether `entry` joins `prev`, the text of the last row of the same stream (the server
 * splits each pipe into lines separately), instead of starting a new row: the server marks
 * every piece after the first of a line with `continues: true`. An empty piece is the
 * newline that ended a line stored in pieces, not a blank line. A row stays within about
 * MAX_MERGED_CHARS: a `\r` line is cut back to its latest states, and a long plain line
 * (cut at `max_line_bytes`) goes on in a new row rather than lose its start.
 */
export function continuesLine(prev, entry) {
  if (prev === undefined || entry?.continues !== true) return false;
  const text = typeof entry.text === 'string' ? entry.text : '';
  return prev.length + text.length <= MAX_MERGED_CHARS || prev.includes('\r') || text.includes('\r');
}

function trimMerged(text) {
  if (text.length <= MAX_MERGED_CHARS) return text;
  const cut = text.indexOf('\r', text.length - MAX_MERGED_CHARS / 2);
  return cut > 0 ? text.slice(cut) : text.slice(text.length - MAX_MERGED_CHARS / 2);
}

export class LogStore {
  constructor({ maxRows = MAX_ROWS } = {}) {
    this.maxRows = maxRows;
    this.dropChunk = Math.max(1, Math.floor(maxRows / 10));
    this.base = 0; // absolute index of local row 0 (rows dropped from the head)
    this.texts = [];
    this.capacity = 1024;
    this.seqs = new Float64Array(this.capacity);
    this.tss = new Float64Array(this.capacity);
    this.streams = new Uint8Array(this.capacity);
    this.lastSeq = 0;
    this.droppedThroughSeq = 0;
    this.lastRowOf = [-1, -1, -1]; // local index of each stream's last row
  }

  get length() {
    return this.texts.length;
  }

  /** One past the last absolute row index. */
  get end() {
    return this.base + this.texts.length;
  }

  grow(needed) {
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    const seqs = new Float64Array(capacity);
    seqs.set(this.seqs.subarray(0, this.length));
    const tss = new Float64Array(capacity);
    tss.set(this.tss.subarray(0, this.length));
    const streams = new Uint8Array(capacity);
    streams.set(this.streams.subarray(0, this.length));
    this.seqs = seqs;
    this.tss = tss;
    this.streams = streams;
    this.capacity = capacity;
  }

  /**
   * Adds entries (in sequence order, already deduplicated). Returns {from, dropped}: the
   * first absolute row that changed (a merged row or the first new one), and how many rows
   * were dropped from the head.
   */
  append(entries) {
    let from = this.end;
    let dropped = 0;
    for (const entry of entries) {
      const stream = STREAM_CODES[entry.stream] ?? 0;
      const text = typeof entry.text === 'string' ? entry.text : '';
      const previous = this.lastRowOf[stream];
      if (previous >= 0 && continuesLine(this.texts[previous], entry)) {
        if (text !== '') this.texts[previous] = trimMerged(this.texts[previous] + text);
        from = Math.min(from, this.base + previous);
      } else {
        if (this.texts.length >= this.maxRows) {
          dropped += this.dropHead(this.dropChunk);
          from = Math.max(this.base, Math.min(from, this.end));
        }
        const i = this.texts.length;
        this.grow(i + 1);
        this.texts.push(text);
        this.seqs[i] = entry.seq;
        this.tss[i] = parseTimestamp(entry.ts);
        this.streams[i] = stream;
        this.lastRowOf[stream] = i;
      }
      this.lastSeq = entry.seq;
    }
    return { from, dropped };
  }

  dropHead(count) {
    const k = Math.min(count, this.texts.length);
    if (k === 0) return 0;
    this.droppedThroughSeq = k < this.texts.length ? this.seqs[k] - 1 : this.lastSeq;
    this.texts.splice(0, k);
    this.seqs.copyWithin(0, k, this.texts.length + k);
    this.tss.copyWithin(0, k, this.texts.length + k);
    this.streams.copyWithin(0, k, this.texts.length + k);
    this.lastRowOf = this.lastRowOf.map((row) => (row >= k ? row - k : -1));
    this.base += k;
    return k;
  }

  /** Row `abs` (absolute index) as {seq, ts, stream, text}, or null when not stored. */
  row(abs) {
    const i = abs - this.base;
    if (i < 0 || i >= this.texts.length) return null;
    return { seq: this.seqs[i], ts: this.tss[i], stream: STREAM_NAMES[this.streams[i]], text: this.texts[i] };
  }

  text(abs) {
    return this.texts[abs - this.base];
  }

  /** The absolute row holding `seq`, or -1 (not arrived yet, or dropped). */
  rowOfSeq(seq) {
    const n = this.texts.length;
    if (n === 0 || seq < this.seqs[0] || seq > this.lastSeq) return -1;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.seqs[mid] <= seq) lo = mid;
      else hi = mid - 1;
    }
    return this.base + lo;
  }
}

/** Smart case: case-insensitive unless the query has an upper-case letter. */
export function searchMode(query) {
  return { needle: query === query.toLowerCase() ? query.toLowerCase() : query, fold: query === query.toLowerCase() };
}

/** Start offsets of `needle` in `haystack` (non-overlapping), at most `limit`. */
export function findAll(haystack, needle, fold, limit = 1000) {
  const out = [];
  if (!needle) return out;
  const text = fold ? haystack.toLowerCase() : haystack;
  let at = text.indexOf(needle);
  while (at !== -1 && out.length < limit) {
    out.push(at);
    at = text.indexOf(needle, at + needle.length);
  }
  return out;
}

/** Matches of one query over a store: parallel arrays of absolute rows and offsets. */
export class LogSearch {
  constructor(query) {
    this.query = query;
    const { needle, fold } = searchMode(query);
    this.needle = needle;
    this.fold = fold;
    this.rows = [];
    this.starts = [];
    this.scanned = 0; // absolute row up to which the store was scanned
    this.capped = false;
    this.current = -1;
  }

  /** Scans rows [scanned, until) of `store`. */
  scan(store, until) {
    let abs = Math.max(this.scanned, store.base);
    const end = Math.min(until, store.end);
    for (; abs < end; abs++) {
      for (const start of findAll(plainText(store.text(abs)), this.needle, this.fold)) {
        if (this.rows.length >= MAX_MATCHES) {
          this.capped = true;
          this.scanned = store.end;
          return;
        }
        this.rows.push(abs);
        this.starts.push(start);
      }
    }
    this.scanned = Math.max(this.scanned, end);
  }

  /** Forgets matches at or after row `from` (it changed) and before `base` (dropped). */
  invalidate(from, base) {
    let keepFrom = 0;
    while (keepFrom < this.rows.length && this.rows[keepFrom] < base) keepFrom++;
    let keepTo = this.rows.length;
    while (keepTo > keepFrom && this.rows[keepTo - 1] >= from) keepTo--;
    if (keepFrom > 0 || keepTo < this.rows.length) {
      const currentRow = this.rows[this.current];
      const currentStart = this.starts[this.current];
      this.rows = this.rows.slice(keepFrom, keepTo);
      this.starts = this.starts.slice(keepFrom, keepTo);
      this.current = this.indexOf(currentRow, currentStart);
      if (this.capped) this.capped = false;
    }
    this.scanned = Math.min(this.scanned, from);
  }

  indexOf(row, start) {
    for (let i = 0; i < this.rows.length; i++) if (this.rows[i] === row && this.starts[i] === start) return i;
    return -1;
  }

  /** Index of the first match at or after `row` (wrapping to 0), or -1. */
  firstFrom(row) {
    if (this.rows.length === 0) return -1;
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows[mid] < row) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.rows.length ? lo : 0;
  }

  step(direction) {
    const n = this.rows.length;
    if (n === 0) return -1;
    if (this.current < 0) this.current = direction > 0 ? 0 : n - 1;
    else this.current = (this.current + direction + n) % n;
    return this.current;
  }
}

function el(doc, tag, attrs = {}, text) {
  const node = doc.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function readSetting(key, fallback) {
  try {
    const value = globalThis.localStorage?.getItem(key);
    return value === null || value === undefined ? fallback : value === '1';
  } catch {
    return fallback;
  }
}

function writeSetting(key, on) {
  try {
    globalThis.localStorage?.setItem(key, on ? '1' : '0');
  } catch {
    // settings are a convenience
  }
}

let viewCount = 0;

export class LogView {
  /**
   * `root`: an element to fill. Options: downloadUrl, onTarget(seq) (a line number was chosen).
   */
  constructor(root, { downloadUrl } = {}) {
    this.doc = root.ownerDocument;
    this.win = this.doc.defaultView;
    this.store = new LogStore();
    this.follow = true;
    this.wrap = readSetting('oneoff.log.wrap', false);
    this.showTimestamps = readSetting('oneoff.log.timestamps', false);
    this.search = null;
    this.searchTimer = null;
    this.scanHandle = null;
    this.scanActive = false;
    this.firstJumpDone = false;
    this.revealMark = false;
    this.pendingWrapScroll = undefined;
    this.anchorRow = null;
    this.renderedScrollTop = 0;
    this.targetSeq = null;
    this.targetAbs = -1;
    this.targetPending = false;
    this.dirtyFrom = Infinity;
    this.dirtyAll = true;
    this.frame = 0;
    this.expectedScrollTop = -1;
    this.pool = [];
    this.wrapRows = []; // [{abs, node}] in wrap mode, in order
    this.wrapStart = 0;
    this.wrapEnd = 0;
    this.newWhilePaused = 0;
    this.finished = false;
    this.noWidth = 0;
    this.destroyed = false;
    this.id = `log${++viewCount}`;
    this.build(root, downloadUrl);
    this.resizeObserver = typeof this.win.ResizeObserver === 'function'
      ? new this.win.ResizeObserver(() => this.invalidate(true)) : null;
    this.resizeObserver?.observe(this.scroller);
    this.invalidate(true);
  }

  build(root, downloadUrl) {
    const doc = this.doc;
    const id = this.id;
    this.root = el(doc, 'section', { class: 'logview', 'aria-label': 'Log' });

    const toolbar = el(doc, 'div', { class: 'log-toolbar' });
    this.transportSlot = el(doc, 'div', { class: 'log-transport' });
    toolbar.append(this.transportSlot);

    const searchForm = el(doc, 'form', { class: 'log-search', role: 'search' });
    searchForm.append(el(doc, 'label', { for: `${id}-q`, class: 'visually-hidden' }, 'Search the log'));
    this.searchInput = el(doc, 'input', {
      id: `${id}-q`, type: 'search', placeholder: 'Search log', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': `${id}-count`,
    });
    this.prevButton = el(doc, 'button', { type: 'button', class: 'icon', title: 'Previous match (Shift+Enter)', 'aria-label': 'Previous match' }, '↑');
    this.nextButton = el(doc, 'button', { type: 'button', class: 'icon', title: 'Next match (Enter)', 'aria-label': 'Next match' }, '↓');
    this.countLabel = el(doc, 'span', { id: `${id}-count`, class: 'log-count', 'aria-live': 'polite' });
    searchForm.append(this.searchInput, this.prevButton, this.nextButton, this.countLabel);
    toolbar.append(searchForm);

    const toggles = el(doc, 'div', { class: 'log-toggles' });
    this.tsToggle = el(doc, 'input', { type: 'checkbox', id: `${id}-ts` });
    this.tsToggle.checked = this.showTimestamps;
    this.wrapToggle = el(doc, 'input', { type: 'checkbox', id: `${id}-wrap` });
    this.wrapToggle.checked = this.wrap;
    const tsLabel = el(doc, 'label', { for: `${id}-ts` });
    tsLabel.append(this.tsToggle, doc.createTextNode(' Timestamps'));
    const wrapLabel = el(doc, 'label', { for: `${id}-wrap` });
    wrapLabel.append(this.wrapToggle, doc.createTextNode(' Wrap'));
    toggles.append(tsLabel, wrapLabel);
    if (downloadUrl) {
      toggles.append(el(doc, 'a', { href: downloadUrl, class: 'button-link', download: '' }, 'Download raw'));
    }
    toolbar.append(toggles);

    this.notices = el(doc, 'div', { class: 'log-notices' });

    const frame = el(doc, 'div', { class: 'log-frame' });
    this.scroller = el(doc, 'div', {
      class: 'log-scroller', tabindex: '0', role: 'region', 'aria-label': 'Log output (scroll with the arrow keys)',
    });
    this.layer = el(doc, 'div', { class: 'log-layer' });
    this.spacer = el(doc, 'div', { class: 'log-spacer' });
    this.wrapList = el(doc, 'div', { class: 'log-wraplist' });
    this.earlierButton = el(doc, 'button', { type: 'button', class: 'log-more' }, 'Show earlier lines');
    this.laterButton = el(doc, 'button', { type: 'button', class: 'log-more' }, 'Show later lines');
    this.scroller.append(this.layer, this.spacer);
    this.empty = el(doc, 'p', { class: 'log-empty' }, 'Waiting for output…');
    this.jumpButton = el(doc, 'button', { type: 'button', class: 'log-jump', hidden: true }, 'Jump to latest ↓');
    frame.append(this.scroller, this.empty, this.jumpButton);

    this.root.append(toolbar, this.notices, frame);
    root.append(this.root);
    this.applyClasses();

    this.onScroll = () => this.handleScroll();
    this.scroller.addEventListener('scroll', this.onScroll, { passive: true });
    this.jumpButton.addEventListener('click', () => this.jumpToLatest());
    this.tsToggle.addEventListener('change', () => {
      this.showTimestamps = this.tsToggle.checked;
      writeSetting('oneoff.log.timestamps', this.showTimestamps);
      this.applyClasses();
      this.invalidate(true);
    });
    this.wrapToggle.addEventListener('change', () => this.setWrap(this.wrapToggle.checked));
    searchForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.runSearchNow();
      this.stepMatch(1);
    });
    this.searchInput.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.runSearchNow();
        this.stepMatch(event.shiftKey ? -1 : 1);
      } else if (event.key === 'Escape' && this.searchInput.value) {
        event.preventDefault();
        this.searchInput.value = '';
        this.setQuery('');
      }
    });
    this.searchInput.addEventListener('input', () => {
      this.win.clearTimeout(this.searchTimer);
      this.searchTimer = this.win.setTimeout(() => this.setQuery(this.searchInput.value), 150);
    });
    this.prevButton.addEventListener('click', () => {
      this.runSearchNow();
      this.stepMatch(-1);
    });
    this.nextButton.addEventListener('click', () => {
      this.runSearchNow();
      this.stepMatch(1);
    });
    this.earlierButton.addEventListener('click', () => this.moveWrapWindow(-1));
    this.laterButton.addEventListener('click', () => this.moveWrapWindow(1));
    this.scroller.addEventListener('click', (event) => {
      const link = event.target.closest?.('a.log-no');
      if (!link) return;
      // Update the URL without a history entry per click, then highlight.
      event.preventDefault();
      const seq = Number(link.dataset.seq);
      this.win.history.replaceState(this.win.history.state, '', `#L${seq}`);
      this.setTarget(seq, { scroll: false });
    });
  }

  applyClasses() {
    this.root.classList.toggle('show-ts', this.showTimestamps);
    this.root.classList.toggle('wrap', this.wrap);
  }

  destroy() {
    this.destroyed = true;
    this.win.cancelAnimationFrame(this.frame);
    this.win.clearTimeout(this.searchTimer);
    this.win.clearTimeout(this.scanHandle);
    this.resizeObserver?.disconnect();
  }

  // -- data

  append(entries) {
    if (!entries.length) return;
    const { from, dropped } = this.store.append(entries);
    this.dirtyFrom = Math.min(this.dirtyFrom, from);
    if (dropped) {
      this.dirtyAll = true;
      this.showDropNotice();
    }
    if (this.search) {
      this.search.invalidate(from, this.store.base);
      this.continueScan();
    }
    if (!this.follow) this.newWhilePaused += entries.length;
    if (this.targetPending) this.resolveTarget();
    this.invalidate();
  }

  /** The run ended: no more entries will come. */
  finish() {
    this.finished = true;
    this.invalidate();
  }

  showDropNotice() {
    let notice = this.notices.querySelector('.notice-dropped');
    if (!notice) {
      notice = el(this.doc, 'p', { class: 'notice notice-dropped', role: 'status' });
      this.notices.append(notice);
    }
    notice.textContent = `This log is long: the viewer keeps the latest ${formatCount(this.store.maxRows)} lines, `
      + `so lines up to ${formatCount(this.store.droppedThroughSeq)} are not shown here. Download the raw log for all of it.`;
  }

  setTransportBadge(node) {
    this.transportSlot.replaceChildren(node);
  }

  addNotice(node) {
    this.notices.append(node);
  }

  // -- scrolling and follow

  handleScroll() {
    const top = this.scroller.scrollTop;
    const programmatic = this.expectedScrollTop >= 0 && Math.abs(top - this.expectedScrollTop) < 2;
    if (!programmatic) {
      const atBottom = top + this.scroller.clientHeight >= this.scroller.scrollHeight - 4;
      this.setFollow(atBottom && (!this.wrap || this.wrapEnd >= this.store.end));
    }
    this.expectedScrollTop = -1;
    this.invalidate();
  }

  setFollow(on) {
    if (this.follow === on) return;
    this.follow = on;
    if (on) this.newWhilePaused = 0;
    this.updateJump();
  }

  updateJump() {
    this.jumpButton.hidden = this.follow;
    this.jumpButton.textContent = this.newWhilePaused > 0 && !this.finished
      ? `Jump to latest ↓ (${formatCount(this.newWhilePaused)} new)`
      : 'Jump to latest ↓';
  }

  jumpToLatest() {
    this.setFollow(true);
    this.invalidate(true);
    this.scroller.focus({ preventScroll: true });
  }

  setScrollTop(value) {
    this.scroller.scrollTop = value;
    this.expectedScrollTop = this.scroller.scrollTop;
  }

  // -- permalinks

  /** Highlights the row holding `seq` and scrolls to it (now, or when it arrives). */
  setTarget(seq, { scroll = true } = {}) {
    this.targetSeq = seq;
    this.targetPending = scroll;
    if (scroll) this.setFollow(false);
    this.resolveTarget(scroll);
    this.invalidate(true);
  }

  resolveTarget(scroll = this.targetPending) {
    if (this.targetSeq === null) return;
    const abs = this.store.rowOfSeq(this.targetSeq);
    this.targetAbs = abs;
    if (abs < 0) {
      if (this.targetSeq <= this.store.droppedThroughSeq) this.targetPending = false;
      return;
    }
    this.dirtyAll = true;
    if (scroll) {
      this.targetPending = false;
      this.scrollToRow(abs);
    }
  }

  scrollToRow(abs) {
    this.setFollow(false);
    if (this.wrap) {
      if (abs < this.wrapStart || abs >= this.wrapEnd) {
        this.wrapStart = Math.max(this.store.base, abs - WRAP_WINDOW / 2);
        this.wrapEnd = Math.min(this.store.end, this.wrapStart + WRAP_WINDOW);
        this.renderWrap(true);
      }
      this.pendingWrapScroll = abs;
    } else {
      const vh = this.scroller.clientHeight;
      this.scrollToContent(Math.max(0, (abs - this.store.base) * ROW_HEIGHT - vh / 2 + ROW_HEIGHT / 2));
    }
    this.invalidate(true);
  }

  /** Scrolls the virtual view so that content offset `p` is at the top. */
  scrollToContent(p) {
    const maxP = Math.max(0, this.store.length * ROW_HEIGHT - this.scroller.clientHeight);
    const clamped = Math.min(maxP, Math.max(0, p));
    this.anchorRow = this.store.base + clamped / ROW_HEIGHT;
    this.setScrollTop(this.scrollTopFor(clamped));
    this.renderedScrollTop = this.scroller.scrollTop;
  }

  // -- search

  setQuery(query) {
    this.win.clearTimeout(this.scanHandle);
    this.scanHandle = null;
    this.scanActive = false;
    this.search = query ? new LogSearch(query) : null;
    this.firstJumpDone = false;
    this.dirtyAll = true;
    if (this.search) this.continueScan();
    this.updateCount();
    this.invalidate();
  }

  runSearchNow() {
    this.win.clearTimeout(this.searchTimer);
    const query = this.searchInput.value;
    if ((this.search?.query || '') !== query) this.setQuery(query);
  }

  /** Scans in slices of ~12 ms so a million lines never block the page. */
  continueScan() {
    const search = this.search;
    if (!search || this.scanActive) return;
    this.scanActive = true;
    const slice = () => {
      this.scanHandle = null;
      if (search !== this.search || this.destroyed) {
        this.scanActive = false;
        return;
      }
      const started = performance.now();
      while (search.scanned < this.store.end && performance.now() - started < 12) {
        search.scan(this.store, search.scanned + 5000);
        if (search.capped) break;
      }
      this.updateCount();
      this.dirtyAll = true;
      this.invalidate();
      if (search.scanned < this.store.end && !search.capped) {
        this.scanHandle = this.win.setTimeout(slice, 0);
      } else {
        this.scanActive = false;
        if (!this.firstJumpDone && search.rows.length) {
          this.firstJumpDone = true;
          if (search.current < 0) {
            search.current = search.firstFrom(this.topRow());
            this.revealCurrent();
          }
        }
      }
    };
    this.scanHandle = this.win.setTimeout(slice, 0);
  }

  stepMatch(direction) {
    if (!this.search) return;
    const search = this.search;
    if (search.rows.length === 0 && search.scanned < this.store.end && !search.capped) {
      // Enter before the scan found anything (a long log takes many slices): leave the
      // first jump to the scan's end, which reveals the first match from the top row.
      return;
    }
    this.firstJumpDone = true;
    if (search.step(direction) >= 0) this.revealCurrent();
    this.updateCount();
  }

  revealCurrent() {
    const search = this.search;
    if (!search || search.current < 0) return;
    this.scrollToRow(search.rows[search.current]);
    this.revealMark = true;
    this.dirtyAll = true;
    this.updateCount();
    this.invalidate();
  }

  updateCount() {
    const search = this.search;
    let text = '';
    if (search) {
      const scanning = search.scanned < this.store.end && !search.capped;
      const total = `${formatCount(search.rows.length)}${search.capped ? '+' : ''}`;
      if (search.rows.length === 0) text = scanning ? 'searching…' : 'no matches';
      else if (search.current >= 0) text = `${formatCount(search.current + 1)} of ${total}${scanning ? '…' : ''}`;
      else text = `${total} match${search.rows.length === 1 ? '' : 'es'}${scanning ? '…' : ''}`;
    }
    this.countLabel.textContent = text;
    this.prevButton.disabled = !search || search.rows.length === 0;
    this.nextButton.disabled = !search || search.rows.length === 0;
  }

  // -- wrap mode

  setWrap(on) {
    const top = this.topRow();
    this.wrap = on;
    writeSetting('oneoff.log.wrap', on);
    this.applyClasses();
    this.pool = [];
    this.wrapRows = [];
    this.layer.replaceChildren();
    this.wrapList.replaceChildren();
    if (on) {
      this.scroller.replaceChildren(this.earlierButton, this.wrapList, this.laterButton);
      if (this.follow) {
        this.wrapEnd = this.store.end;
        this.wrapStart = Math.max(this.store.base, this.wrapEnd - WRAP_WINDOW);
      } else {
        this.wrapStart = Math.max(this.store.base, top);
        this.wrapEnd = Math.min(this.store.end, this.wrapStart + WRAP_WINDOW);
        this.pendingWrapScroll = top;
      }
    } else {
      this.scroller.replaceChildren(this.layer, this.spacer);
      if (!this.follow) {
        this.invalidate(true);
        this.renderNow();
        this.scrollToRowTop(top);
      }
    }
    this.invalidate(true);
  }

  scrollToRowTop(abs) {
    if (this.wrap) return;
    this.scrollToContent((abs - this.store.base) * ROW_HEIGHT);
  }

  moveWrapWindow(direction) {
    const size = this.wrapEnd - this.wrapStart;
    const step = Math.floor(WRAP_WINDOW / 2);
    if (direction < 0) {
      this.wrapStart = Math.max(this.store.base, this.wrapStart - step);
      this.wrapEnd = Math.min(this.wrapEnd, this.wrapStart + Math.max(size, WRAP_WINDOW));
      this.pendingWrapScroll = this.wrapStart + step;
    } else {
      this.wrapEnd = Math.min(this.store.end, this.wrapEnd + step);
      this.wrapStart = Math.max(this.wrapStart, this.wrapEnd - WRAP_WINDOW);
    }
    this.setFollow(false);
    this.invalidate(true);
  }

  // -- rendering

  invalidate(all = false) {
    if (all) this.dirtyAll = true;
    if (this.frame || this.destroyed) return;
    this.frame = this.win.requestAnimationFrame(() => {
      this.frame = 0;
      this.renderNow();
    });
  }

  /** Maps a content offset to the scroller's (possibly scaled) scrollTop. */
  scrollTopFor(p) {
    const vh = this.scroller.clientHeight;
    const totalPx = this.store.length * ROW_HEIGHT;
    const virtualPx = Math.min(totalPx, MAX_SCROLL_PX);
    if (totalPx <= virtualPx || virtualPx <= vh) return p;
    return (p * (virtualPx - vh)) / (totalPx - vh);
  }

  /** The first row at the top of the view. */
  topRow() {
    if (this.wrap) {
      const top = this.scroller.scrollTop;
      for (const { abs, node } of this.wrapRows) if (node.offsetTop + node.offsetHeight > top) return abs;
      return this.wrapStart;
    }
    const vh = this.scroller.clientHeight;
    const totalPx = this.store.length * ROW_HEIGHT;
    const virtualPx = Math.min(totalPx, MAX_SCROLL_PX);
    let p = this.scroller.scrollTop;
    if (totalPx > virtualPx && virtualPx > vh) p = (p * (totalPx - vh)) / (virtualPx - vh);
    return this.store.base + Math.floor(p / ROW_HEIGHT);
  }

  renderNow() {
    if (this.destroyed) return;
    const store = this.store;
    this.empty.hidden = store.length > 0;
    this.empty.textContent = this.finished ? 'This run printed nothing.' : 'Waiting for output…';
    const digits = String(Math.max(1, store.lastSeq)).length;
    if (digits !== this.noWidth) {
      this.noWidth = digits;
      this.root.style.setProperty('--no-width', `${digits}ch`);
    }
    if (this.wrap) this.renderWrap();
    else this.renderVirtual();
    this.dirtyAll = false;
    this.dirtyFrom = Infinity;
    this.updateJump();
    if (this.revealMark) {
      this.revealMark = false;
      // Rows are already in view vertically; bring the match into view horizontally, inside
      // the log only (scrollIntoView would scroll the page too).
      const mark = this.scroller.querySelector('mark.current');
      if (mark) {
        const box = mark.getBoundingClientRect();
        const frame = this.scroller.getBoundingClientRect();
        const gutter = this.scroller.querySelector('.log-no')?.getBoundingClientRect().width || 0;
        if (box.right > frame.right - 24) this.scroller.scrollLeft += box.right - frame.right + 80;
        else if (box.left < frame.left + gutter) this.scroller.scrollLeft -= frame.left + gutter - box.left + 80;
        // The log may reach below the window (a short one, or the page scrolled): scroll
        // the page just enough that the match itself is on screen.
        const row = mark.closest('.log-row')?.getBoundingClientRect() || box;
        const margin = 2 * ROW_HEIGHT;
        if (row.bottom > this.win.innerHeight) this.win.scrollBy(0, row.bottom - this.win.innerHeight + margin);
        else if (row.top < 0) this.win.scrollBy(0, row.top - margin);
      }
    }
  }

  renderVirtual() {
    const store = this.store;
    const scroller = this.scroller;
    const vh = scroller.clientHeight;
    const totalPx = store.length * ROW_HEIGHT;
    const virtualPx = Math.min(totalPx, MAX_SCROLL_PX);
    this.layer.style.height = `${vh}px`;
    this.spacer.style.height = `${Math.max(0, virtualPx - vh)}px`;
    const maxP = Math.max(0, totalPx - vh);
    const fromScrollTop = () => {
      let offset = scroller.scrollTop;
      if (totalPx > virtualPx && virtualPx > vh) offset = (offset * (totalPx - vh)) / (virtualPx - vh);
      return Math.min(maxP, offset);
    };
    let p;
    const userScrolled = Math.abs(scroller.scrollTop - this.renderedScrollTop) >= 1;
    if (this.follow) {
      this.setScrollTop(scroller.scrollHeight);
      p = fromScrollTop();
      this.anchorRow = store.base + p / ROW_HEIGHT;
    } else if (userScrolled || this.anchorRow === null) {
      p = fromScrollTop();
      this.anchorRow = store.base + p / ROW_HEIGHT;
    } else {
      // Paused: keep the same line at the top while the log grows (with a scaled scrollbar
      // the same scrollTop would otherwise show another line) or its head is dropped.
      p = Math.min(maxP, Math.max(0, (this.anchorRow - store.base) * ROW_HEIGHT));
      const want = this.scrollTopFor(p);
      if (Math.abs(want - scroller.scrollTop) >= 1) this.setScrollTop(want);
    }
    this.renderedScrollTop = scroller.scrollTop;
    const first = Math.floor(p / ROW_HEIGHT);
    const offset = first * ROW_HEIGHT - p;
    const count = Math.min(store.length - first, Math.ceil(vh / ROW_HEIGHT) + 1);
    const poolSize = Math.ceil(vh / ROW_HEIGHT) + 2;
    while (this.pool.length < poolSize) {
      const node = el(this.doc, 'div', { class: 'log-row' });
      node.abs = -1;
      this.layer.append(node);
      this.pool.push(node);
    }
    const used = new Set();
    for (let k = 0; k < count; k++) {
      const abs = store.base + first + k;
      const node = this.pool[abs % this.pool.length];
      used.add(node);
      if (node.abs !== abs || this.dirtyAll || abs >= this.dirtyFrom) this.fillRow(node, abs);
      node.hidden = false;
      node.style.transform = `translateY(${k * ROW_HEIGHT + offset}px)`;
    }
    for (const node of this.pool) {
      if (!used.has(node)) {
        node.hidden = true;
        node.abs = -1;
      }
    }
  }

  renderWrap(windowOnly = false) {
    const store = this.store;
    if (this.follow) {
      this.wrapEnd = store.end;
      this.wrapStart = Math.max(store.base, this.wrapEnd - WRAP_WINDOW);
    }
    this.wrapStart = Math.max(this.wrapStart, store.base);
    this.wrapEnd = Math.min(Math.max(this.wrapEnd, this.wrapStart), store.end);
    // Drop rows outside the window, then add the missing ones at either end.
    const rows = this.wrapRows.filter(({ abs, node }) => {
      const keep = abs >= this.wrapStart && abs < this.wrapEnd;
      if (!keep) node.remove();
      return keep;
    });
    const firstKept = rows.length ? rows[0].abs : this.wrapEnd;
    const lastKept = rows.length ? rows[rows.length - 1].abs + 1 : this.wrapEnd;
    const before = [];
    for (let abs = this.wrapStart; abs < firstKept; abs++) before.push(this.newWrapRow(abs));
    if (before.length) this.wrapList.prepend(...before.map((row) => row.node));
    const after = [];
    for (let abs = Math.max(lastKept, this.wrapStart); abs < this.wrapEnd; abs++) after.push(this.newWrapRow(abs));
    if (after.length) this.wrapList.append(...after.map((row) => row.node));
    this.wrapRows = [...before, ...rows, ...after];
    if (!windowOnly) {
      for (const row of rows) if (this.dirtyAll || row.abs >= this.dirtyFrom) this.fillRow(row.node, row.abs);
    }
    this.earlierButton.hidden = this.wrapStart <= store.base;
    this.laterButton.hidden = this.wrapEnd >= store.end;
    this.earlierButton.textContent = `Show earlier lines (${formatCount(this.wrapStart - store.base)} more)`;
    this.laterButton.textContent = `Show later lines (${formatCount(store.end - this.wrapEnd)} more)`;
    if (windowOnly) return;
    if (this.pendingWrapScroll !== undefined) {
      const target = this.wrapRows.find((row) => row.abs === this.pendingWrapScroll);
      this.pendingWrapScroll = undefined;
      if (target) {
        const top = target.node.offsetTop - this.scroller.clientHeight / 3;
        this.setScrollTop(Math.max(0, top));
      }
    } else if (this.follow) {
      this.setScrollTop(this.scroller.scrollHeight);
    }
  }

  newWrapRow(abs) {
    const node = el(this.doc, 'div', { class: 'log-row' });
    this.fillRow(node, abs);
    return { abs, node };
  }

  fillRow(node, abs) {
    node.abs = abs;
    const row = this.store.row(abs);
    if (!row) {
      node.replaceChildren();
      return;
    }
    const doc = this.doc;
    let className = 'log-row';
    if (row.stream === 'stderr') className += ' stderr';
    else if (row.stream === 'system') className += ' system';
    if (abs === this.targetAbs) className += ' target';
    node.className = className;
    const seq = row.seq;
    const number = el(doc, 'a', { class: 'log-no', href: `#L${seq}`, 'data-seq': String(seq), tabindex: '-1' }, String(seq));
    const ts = el(doc, 'span', { class: 'log-ts' }, this.showTimestamps ? formatClock(row.ts) : '');
    const text = el(doc, 'span', { class: 'log-text' });
    if (row.stream !== 'stdout') text.append(el(doc, 'span', { class: 'visually-hidden' }, `${row.stream}: `));
    let spans = renderLine(row.text);
    const search = this.search;
    if (search && search.needle) {
      const plain = spans.map((span) => span.text).join('');
      const starts = findAll(plain, search.needle, search.fold);
      if (starts.length) {
        const currentStart = search.current >= 0 && search.rows[search.current] === abs ? search.starts[search.current] : -1;
        const ranges = starts.map((start) => [start, start + search.needle.length, start === currentStart ? 'current' : 'match']);
        spans = applyHighlights(spans, ranges);
      }
    }
    appendSpans(text, spans);
    node.replaceChildren(number, ts, text);
  }
}
