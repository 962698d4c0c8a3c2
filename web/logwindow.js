// The bounded window over a run's log (pure: no DOM, no network).
//
// A run's log is numbered 1..=head without gaps, and the browser holds only some of it: a few
// *blocks*, each a contiguous range of sequence numbers that was fetched (the tail, a page
// around a permalink, the pages the user scrolled through), merged into display rows the way
// a terminal shows them (a line stored in pieces, each piece after the first marked
// `continues`, is one row). Between blocks, and after the last one up to `head`, are gaps.
//
// The view scrolls over the whole log: its row space is the blocks' rows with one placeholder
// row per sequence number of every gap, so the scrollbar means position in the whole log
// before anything but the tail arrived. A fetched gap may hold fewer rows than sequence
// numbers (merged pieces): the view keeps its top line in place by remembering it as a
// sequence number (`indexOfSeq` after a change), not as a row index.
//
// The window holds at most `maxEntries` entries: `evict` drops those farthest from a centre
// (the view), whole rows at a time from the two outer ends, and `planFetches` says which
// gaps near the view to fetch again, as `before`/`after`/`limit` pages of the log API.

import { parseTimestamp } from './format.js';

export const MAX_ENTRIES = 200_000;
export const PAGE_SIZE = 2000;
/** A merged progress line is cut back to about this many characters (at a `\r`). */
export const MAX_MERGED_CHARS = 65536;

const STREAM_CODES = { stdout: 0, stderr: 1, system: 2 };
export const STREAM_NAMES = ['stdout', 'stderr', 'system'];

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

/**
 * One contiguous range of sequence numbers, `from..=to`, as display rows (parallel arrays:
 * text, first sequence number, timestamp, stream). `lead[s]` is the row of stream `s` that
 * began with a `continues` piece whose start lies before `from` (it joins the row before when
 * the block before is fetched), or -1.
 */
export class Block {
  constructor(from) {
    this.from = from;
    this.to = from - 1;
    this.texts = [];
    this.seqs = [];
    this.tss = [];
    this.streams = [];
    this.lastRowOf = [-1, -1, -1];
    this.lead = [-1, -1, -1];
    this.lastTsText = undefined;
    this.lastTs = NaN;
  }

  get rows() {
    return this.texts.length;
  }

  get entries() {
    return this.to - this.from + 1;
  }

  /** Adds entries that follow `to` without a gap. Returns the first local row that changed. */
  push(entries) {
    let changed = this.texts.length;
    for (const entry of entries) {
      const stream = STREAM_CODES[entry.stream] ?? 0;
      const text = typeof entry.text === 'string' ? entry.text : '';
      const previous = this.lastRowOf[stream];
      if (previous >= 0 && continuesLine(this.texts[previous], entry)) {
        if (text !== '') this.texts[previous] = trimMerged(this.texts[previous] + text);
        changed = Math.min(changed, previous);
      } else {
        const i = this.texts.length;
        this.texts.push(text);
        this.seqs.push(entry.seq);
        // Entries of one batch mostly share their timestamp: parse each distinct one once.
        if (entry.ts !== this.lastTsText) {
          this.lastTsText = entry.ts;
          this.lastTs = parseTimestamp(entry.ts);
        }
        this.tss.push(this.lastTs);
        this.streams.push(stream);
        if (previous < 0 && entry?.continues === true) this.lead[stream] = i;
        this.lastRowOf[stream] = i;
      }
      this.to = entry.seq;
    }
    return changed;
  }

  /** Local row holding `seq` (the last row starting at or before it), or -1 before the first. */
  rowOfSeq(seq) {
    const seqs = this.seqs;
    if (seqs.length === 0 || seq < seqs[0]) return -1;
    let lo = 0;
    let hi = seqs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (seqs[mid] <= seq) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Appends `next` (which starts at `to + 1`), joining its leading pieces to rows here. */
  absorb(next) {
    const hadRowOf = this.lastRowOf.slice();
    const joined = new Set();
    for (let s = 0; s < 3; s++) {
      const row = next.lead[s];
      const mine = this.lastRowOf[s];
      if (row >= 0 && mine >= 0 && continuesLine(this.texts[mine], { continues: true, text: next.texts[row] })) {
        if (next.texts[row] !== '') this.texts[mine] = trimMerged(this.texts[mine] + next.texts[row]);
        joined.add(row);
      }
    }
    const map = new Array(next.texts.length);
    for (let i = 0; i < next.texts.length; i++) {
      if (joined.has(i)) continue;
      map[i] = this.texts.length;
      this.texts.push(next.texts[i]);
      this.seqs.push(next.seqs[i]);
      this.tss.push(next.tss[i]);
      this.streams.push(next.streams[i]);
    }
    for (let s = 0; s < 3; s++) {
      const last = next.lastRowOf[s];
      if (last >= 0 && map[last] !== undefined) this.lastRowOf[s] = map[last];
      // Still leading only when nothing of that stream came before it.
      if (this.lead[s] < 0 && hadRowOf[s] < 0 && next.lead[s] >= 0) this.lead[s] = map[next.lead[s]] ?? -1;
    }
    this.to = next.to;
  }

  /** Drops the first `k` rows (whole rows); the block then starts at the next row's seq. */
  dropFront(k) {
    if (k <= 0) return;
    if (k >= this.texts.length) {
      this.from = this.to + 1;
      this.texts = [];
      this.seqs = [];
      this.tss = [];
      this.streams = [];
      this.lastRowOf = [-1, -1, -1];
      this.lead = [-1, -1, -1];
      return;
    }
    this.from = this.seqs[k];
    this.texts.splice(0, k);
    this.seqs.splice(0, k);
    this.tss.splice(0, k);
    this.streams.splice(0, k);
    this.lastRowOf = this.lastRowOf.map((row) => (row >= k ? row - k : -1));
    this.lead = [-1, -1, -1];
  }

  /** Drops the last `k` rows; the block then ends before the first dropped row's seq. */
  dropBack(k) {
    if (k <= 0) return;
    if (k >= this.texts.length) {
      this.dropFront(k);
      this.to = this.from - 1;
      return;
    }
    const keep = this.texts.length - k;
    this.to = this.seqs[keep] - 1;
    this.texts.length = keep;
    this.seqs.length = keep;
    this.tss.length = keep;
    this.streams.length = keep;
    for (let s = 0; s < 3; s++) {
      if (this.lastRowOf[s] >= keep) {
        let row = keep - 1;
        while (row >= 0 && this.streams[row] !== s) row--;
        this.lastRowOf[s] = row;
      }
      if (this.lead[s] >= keep) this.lead[s] = -1;
    }
  }
}

/** Keeps entries inside `(after, before)` that `have(seq)` says are new, as gapless runs. */
function newRuns(entries, isCovered) {
  const runs = [];
  let run = null;
  for (const entry of entries) {
    if (!entry || !Number.isFinite(entry.seq) || isCovered(entry.seq)) {
      run = null;
      continue;
    }
    if (run && entry.seq === run[run.length - 1].seq + 1) run.push(entry);
    else if (!run || entry.seq > run[run.length - 1].seq) {
      run = [entry];
      runs.push(run);
    }
  }
  return runs;
}

export class LogWindow {
  constructor({ maxEntries = MAX_ENTRIES } = {}) {
    this.maxEntries = maxEntries;
    this.head = 0;
    this.blocks = [];
    /** Bumped on every change of the row space (rows added, merged, dropped; head moved). */
    this.version = 0;
    this.starts = null; // per block: its first row index, cached per version
    this.startsVersion = -1;
  }

  /** Every row of the log: the blocks' rows plus one placeholder per missing seq up to `head`. */
  get length() {
    const starts = this.rowStarts();
    const last = this.blocks[this.blocks.length - 1];
    if (!last) return this.head;
    return starts[starts.length - 1] + last.rows + Math.max(0, this.head - last.to);
  }

  /** Entries held (sequence numbers covered by blocks). */
  get entries() {
    let n = 0;
    for (const block of this.blocks) n += block.entries;
    return n;
  }

  rowStarts() {
    if (this.startsVersion === this.version && this.starts) return this.starts;
    const starts = new Array(this.blocks.length);
    let index = 0;
    let seq = 0; // the last seq before the current position
    for (let b = 0; b < this.blocks.length; b++) {
      const block = this.blocks[b];
      index += block.from - seq - 1;
      starts[b] = index;
      index += block.rows;
      seq = block.to;
    }
    this.starts = starts;
    this.startsVersion = this.version;
    return starts;
  }

  setHead(head) {
    if (Number.isFinite(head) && head > this.head) {
      this.head = head;
      this.version++;
    }
  }

  isCovered(seq) {
    return this.blockOfSeq(seq) >= 0;
  }

  /** Index of the block covering `seq`, or -1. */
  blockOfSeq(seq) {
    let lo = 0;
    let hi = this.blocks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const block = this.blocks[mid];
      if (seq < block.from) hi = mid - 1;
      else if (seq > block.to) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /**
   * Adds fetched or live entries (ascending; already held ones are ignored), merging blocks
   * that become adjacent. Returns the first row index that changed, or Infinity.
   */
  insert(entries) {
    if (!entries || entries.length === 0) return Infinity;
    let changed = Infinity;
    const lastSeq = entries[entries.length - 1]?.seq;
    for (const run of newRuns(entries, (seq) => this.isCovered(seq))) {
      const first = run[0].seq;
      // The block this run extends (it ends right before), else a new one in its place.
      let b = this.blocks.findIndex((block) => block.to + 1 === first);
      if (b < 0) {
        b = this.blocks.findIndex((block) => block.from > first);
        if (b < 0) b = this.blocks.length;
        this.blocks.splice(b, 0, new Block(first));
      }
      const block = this.blocks[b];
      const local = block.push(run);
      this.version++;
      changed = Math.min(changed, this.rowStarts()[b] + local);
      const next = this.blocks[b + 1];
      if (next && next.from === block.to + 1) {
        block.absorb(next);
        this.blocks.splice(b + 1, 1);
        this.version++;
      }
      if (b > 0 && this.blocks[b - 1].to + 1 === block.from) {
        const previous = this.blocks[b - 1];
        previous.absorb(block);
        this.blocks.splice(b, 1);
        this.version++;
        changed = Math.min(changed, this.rowStarts()[b - 1]);
      }
    }
    if (Number.isFinite(lastSeq)) this.setHead(lastSeq);
    return changed;
  }

  /** Row `index`: {seq, ts, stream, text} when held, {seq, placeholder: true} in a gap, or null. */
  row(index) {
    const at = this.locate(index);
    if (!at) return null;
    if (at.block === null) return { seq: at.seq, placeholder: true };
    const block = this.blocks[at.block];
    const i = at.row;
    return { seq: block.seqs[i], ts: block.tss[i], stream: STREAM_NAMES[block.streams[i]], text: block.texts[i] };
  }

  /** Where row `index` is: {block, row} when held, {block: null, seq} in a gap, or null. */
  locate(index) {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return null;
    const starts = this.rowStarts();
    // The last block starting at or before `index`.
    let lo = 0;
    let hi = starts.length - 1;
    let b = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= index) {
        b = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (b >= 0) {
      const block = this.blocks[b];
      const offset = index - starts[b];
      if (offset < block.rows) return { block: b, row: offset, seq: block.seqs[offset] };
      return { block: null, seq: block.to + 1 + (offset - block.rows) };
    }
    return { block: null, seq: index + 1 };
  }

  /** The sequence number shown by row `index` (a placeholder's own seq), or 0. */
  seqAt(index) {
    return this.locate(index)?.seq ?? 0;
  }

  /** The row showing `seq` (clamped to 1..=head), or -1 when the log is empty. */
  indexOfSeq(seq) {
    if (this.head === 0) return -1;
    const wanted = Math.min(this.head, Math.max(1, Math.floor(seq)));
    const starts = this.rowStarts();
    let before = 0; // seq before the gap that holds `wanted`
    let index = 0;
    for (let b = 0; b < this.blocks.length; b++) {
      const block = this.blocks[b];
      if (wanted < block.from) break;
      if (wanted <= block.to) return starts[b] + Math.max(0, block.rowOfSeq(wanted));
      before = block.to;
      index = starts[b] + block.rows;
    }
    return index + (wanted - before - 1);
  }

  /**
   * Drops entries farthest from `centerSeq` until at most 90% of `maxEntries` are held (only
   * once over the limit, so live appends do not trim on every batch). Returns whether any was.
   */
  evict(centerSeq) {
    let held = this.entries;
    if (held <= this.maxEntries) return false;
    const target = Math.floor(this.maxEntries * 0.9);
    while (held > target && this.blocks.length) {
      const first = this.blocks[0];
      const last = this.blocks[this.blocks.length - 1];
      const excess = held - target;
      if (centerSeq - first.from >= last.to - centerSeq) {
        // Trim the front: rows up to the excess, but never past the centre.
        const limitSeq = Math.min(first.from + excess, centerSeq);
        let k = 0;
        while (k < first.rows && first.seqs[k] < limitSeq) k++;
        if (k === 0) k = 1;
        const before = first.entries;
        first.dropFront(k);
        held -= before - first.entries;
        if (first.rows === 0) this.blocks.shift();
      } else {
        const limitSeq = Math.max(last.to - excess, centerSeq);
        let k = 0;
        while (k < last.rows && last.seqs[last.rows - 1 - k] > limitSeq) k++;
        if (k === 0) k = 1;
        const before = last.entries;
        last.dropBack(k);
        held -= before - last.entries;
        if (last.rows === 0) this.blocks.pop();
      }
      this.version++;
    }
    return true;
  }

  /** The missing seq ranges [from, to] that rows `firstIndex..=lastIndex` show as placeholders. */
  gapsBetween(firstIndex, lastIndex) {
    const gaps = [];
    if (this.head === 0) return gaps;
    const first = this.locate(Math.max(0, Math.min(firstIndex, this.length - 1)));
    const last = this.locate(Math.max(0, Math.min(lastIndex, this.length - 1)));
    if (!first || !last) return gaps;
    const fromSeq = first.seq;
    const toSeq = last.block === null ? last.seq : this.blocks[last.block].to;
    let seq = 0;
    const push = (a, b) => {
      const lo = Math.max(a, fromSeq);
      const hi = Math.min(b, toSeq);
      if (lo <= hi) gaps.push([lo, hi]);
    };
    for (const block of this.blocks) {
      if (block.from > seq + 1) push(seq + 1, block.from - 1);
      seq = block.to;
      if (seq >= toSeq) break;
    }
    if (seq < this.head) push(seq + 1, this.head);
    return gaps;
  }
}

/**
 * The pages to fetch so rows `firstIndex..=lastIndex` (the view, plus a margin) are held:
 * each gap there, cut into pages of at most `pageSize` entries, skipping ranges already being
 * fetched (`inFlight`: [from, to] pairs). A gap above the view is fetched from its end (the
 * rows nearest the view first), with `before`; one below from its start, with `after`.
 * Returns [{after, before, limit, from, to}] nearest the view first.
 */
export function planFetches(window, firstIndex, lastIndex, { pageSize = PAGE_SIZE, inFlight = [], centerSeq = null } = {}) {
  const center = centerSeq ?? window.seqAt(Math.floor((firstIndex + lastIndex) / 2));
  const pages = [];
  for (const [from, to] of window.gapsBetween(firstIndex, lastIndex)) {
    // Pages run outwards from the centre, so the visible rows come first.
    if (to < center) {
      for (let hi = to; hi >= from; hi -= pageSize) pages.push({ from: Math.max(from, hi - pageSize + 1), to: hi });
    } else if (from > center) {
      for (let lo = from; lo <= to; lo += pageSize) pages.push({ from: lo, to: Math.min(to, lo + pageSize - 1) });
    } else {
      const lo = Math.max(from, center - Math.floor(pageSize / 2));
      const first = { from: lo, to: Math.min(to, lo + pageSize - 1) };
      pages.push(first);
      for (let hi = first.from - 1; hi >= from; hi -= pageSize) pages.push({ from: Math.max(from, hi - pageSize + 1), to: hi });
      for (let next = first.to + 1; next <= to; next += pageSize) pages.push({ from: next, to: Math.min(to, next + pageSize - 1) });
    }
  }
  const overlaps = (page) => inFlight.some(([a, b]) => page.from <= b && a <= page.to);
  return pages
    .filter((page) => !overlaps(page))
    .map((page) => ({ ...page, after: page.from - 1, before: page.to + 1, limit: page.to - page.from + 1 }))
    .sort((a, b) => distance(a, center) - distance(b, center));
}

function distance(page, seq) {
  if (seq < page.from) return page.from - seq;
  if (seq > page.to) return seq - page.to;
  return 0;
}

/**
 * The matches of one server-side search, fetched page by page (`log/search?q=&after=`):
 * sorted sequence numbers, where the scan got to (`next`), and whether it covered the log.
 */
export class MatchList {
  constructor(query) {
    this.query = query;
    this.seqs = [];
    this.next = 0;
    this.done = false;
    this.current = -1;
  }

  /** Takes one search response. */
  add({ matches = [], next, done } = {}) {
    for (const match of matches) {
      const seq = match?.seq;
      if (Number.isFinite(seq) && (this.seqs.length === 0 || seq > this.seqs[this.seqs.length - 1])) this.seqs.push(seq);
    }
    if (Number.isFinite(next) && next > this.next) this.next = next;
    if (done === true) this.done = true;
  }

  /**
   * A live run stored lines past where the finished scan ended (`next`, the head it reached):
   * the scan goes on from there. True when it is open again.
   */
  reopen(head) {
    if (!this.done || !Number.isFinite(head) || head <= this.next) return false;
    this.done = false;
    return true;
  }

  /**
   * The match to go to from `fromSeq` in `direction` (+1/-1): {index} when known, {fetch}
   * when the scan must go on first, or {none} (no matches at all).
   */
  stepFrom(fromSeq, direction) {
    const n = this.seqs.length;
    if (direction > 0) {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.seqs[mid] <= fromSeq) lo = mid + 1;
        else hi = mid;
      }
      if (lo < n) return { index: lo };
      if (!this.done) return { fetch: true };
      return n ? { index: 0 } : { none: true };
    }
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid] < fromSeq) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) return { index: lo - 1 };
    if (!this.done) return { fetch: true };
    return n ? { index: n - 1 } : { none: true };
  }
}
