// The log viewer: a virtualised view over a bounded window of a run's log, and search.
//
// The log itself is held by `LogWindow` (logwindow.js): the tail the page opened with, the
// pages scrolled through, the live entries, at most about 200,000 entries; the rest shows as
// placeholder rows that are fetched (`log?before=&after=&limit=`) when they come into view.
// The row space covers the whole log (sized by its head), so the scrollbar means position
// in the whole log.
//
// View (`LogView`): without wrapping, rows have a fixed height and only the visible ones are
// in the DOM (a pool of row elements positioned by transform), updated at most once per
// animation frame. With wrapping, heights vary, so the view instead renders a window of at
// most 1,000 consecutive rows (the latest ones while following), with buttons to move the
// window. Search runs on the server (`log/search`), over the whole log; a match, like a
// permalink, is fetched when it is not held.

import { renderLine, applyHighlights, appendSpans } from './ansi.js';
import { formatClock, formatCount } from './format.js';
import { LogWindow, MatchList, planFetches } from './logwindow.js';

export { continuesLine } from './logwindow.js';

export const ROW_HEIGHT = 20;
export const WRAP_WINDOW = 1000;
/** The last screens fetched first when a run page opens. */
export const TAIL_ENTRIES = 500;
/** The search keeps counting (in the background, page by page) up to this many matches. */
export const MAX_MATCHES = 10_000;
/** How long new lines of a live run wait before a finished search scans them too. */
const SEARCH_FOLLOW_MS = 1000;
/** Matches per search request. */
const SEARCH_PAGE = 1000;
/** Pages fetched at once while scrolling. */
const MAX_IN_FLIGHT = 2;
/** Rows beyond the view (either side) fetched ahead of scrolling. */
const FETCH_MARGIN_ROWS = 600;
/** Browsers cap element heights (Firefox near 17.9M px): beyond this the scroll is scaled. */
const MAX_SCROLL_PX = 8_000_000;

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
   * `root`: an element to fill. Options: downloadUrl (the raw log). The log arrives through
   * `setSource` (how to fetch pages and search), `loadPage` (a fetched page) and `append`
   * (live entries from the stream).
   */
  constructor(root, { downloadUrl } = {}) {
    this.doc = root.ownerDocument;
    this.win = this.doc.defaultView;
    this.log = new LogWindow();
    this.source = null;
    this.inFlight = []; // [from, to] of pages being fetched
    this.fetchFailures = 0;
    this.fetchRetry = null;
    this.follow = true;
    this.wrap = readSetting('oneoff.log.wrap', false);
    this.showTimestamps = readSetting('oneoff.log.timestamps', false);
    this.search = null; // a MatchList
    this.searchTimer = null;
    this.searchFollowTimer = null;
    this.searching = false;
    this.pendingStep = 0; // a step (+1/-1) waiting for the search to scan further
    this.autoJump = false; // jump to the first match once one is found (typed, no Enter yet)
    this.revealMark = false;
    this.pendingWrapScroll = undefined;
    // The line at the top of the view while paused, as a sequence number (row indices move
    // when a fetched gap merges pieces into fewer rows) and the fraction of a row above it.
    this.anchorSeq = null;
    this.anchorFrac = 0;
    this.renderedScrollTop = 0;
    this.targetSeq = null;
    this.targetPending = false;
    // A sequence number to bring into view once its page arrives: {seq, match}.
    this.reveal = null;
    this.dirtyFrom = Infinity;
    this.dirtyAll = true;
    this.frame = 0;
    this.expectedScrollTop = -1;
    this.pool = [];
    this.wrapRows = []; // [{abs, node}] in wrap mode, in order
    this.wrapStartSeq = 1;
    this.wrapStart = 0;
    this.wrapEnd = 0;
    this.newWhilePaused = 0;
    this.finished = false;
    this.opened = false; // the first page arrived (until then "Loading…", not "nothing")
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
    this.win.clearTimeout(this.searchFollowTimer);
    this.win.clearTimeout(this.fetchRetry);
    this.resizeObserver?.disconnect();
  }

  // -- data

  /**
   * How to read the log: `fetchPage({after, before, limit})` and `search(query, after, limit)`,
   * each a promise of the API's answer (a `LogPage`; `{matches, next, done, head}`).
   */
  setSource(source) {
    this.source = source;
    this.invalidate();
  }

  /** A fetched page of the log: the tail, or a page a scroll, a permalink or a match asked for. */
  loadPage(page) {
    this.opened = true;
    const changed = this.log.insert(Array.isArray(page?.entries) ? page.entries : []);
    this.log.setHead(page?.head);
    this.afterChange(changed);
  }

  /** Live entries from the stream (they follow the head without a gap). */
  append(entries) {
    if (!entries.length) return;
    this.opened = true;
    const log = this.log;
    const last = log.blocks[log.blocks.length - 1];
    const extendsTail = log.head === 0 || (last !== undefined && last.to === log.head);
    let changed = Infinity;
    // Far from the end (the tail was dropped to bound the window), only the head moves: the
    // rows are fetched again if the view comes back.
    if (this.follow || extendsTail) changed = log.insert(entries);
    else log.setHead(entries[entries.length - 1].seq);
    if (!this.follow) this.newWhilePaused += entries.length;
    this.afterChange(changed);
    this.followSearch();
  }

  /**
   * A search that covered the log as it was goes on over the lines stored since, at most
   * once a SEARCH_FOLLOW_MS, so a live run's new matches are counted without a request per batch.
   */
  followSearch() {
    const search = this.search;
    if (!search?.done || search.error || this.searchFollowTimer !== null || this.log.head <= search.next) return;
    this.searchFollowTimer = this.win.setTimeout(() => {
      this.searchFollowTimer = null;
      if (this.search === search && !this.destroyed && search.reopen(this.log.head)) this.continueSearch();
    }, SEARCH_FOLLOW_MS);
  }

  afterChange(changed) {
    this.dirtyFrom = Math.min(this.dirtyFrom, changed);
    if (this.log.evict(this.centerSeq())) this.dirtyAll = true;
    this.resolveReveal();
    this.invalidate();
  }

  /** The sequence number at the middle of the view (the window is kept around it). */
  centerSeq() {
    if (this.follow) return this.log.head;
    const rows = Math.ceil(this.scroller.clientHeight / ROW_HEIGHT);
    return this.log.seqAt(Math.min(this.log.length - 1, this.topRow() + Math.floor(rows / 2))) || this.log.head;
  }

  /** Fetches the gaps around rows `first..=last` (the view), a few pages at a time. */
  fetchMissing(first, last) {
    if (!this.source || this.destroyed || this.fetchRetry || this.log.head === 0) return;
    const room = MAX_IN_FLIGHT - this.inFlight.length;
    if (room <= 0) return;
    const centerSeq = this.log.seqAt(Math.max(0, Math.floor((first + last) / 2)));
    const pages = planFetches(this.log, Math.max(0, first - FETCH_MARGIN_ROWS), last + FETCH_MARGIN_ROWS,
      { inFlight: this.inFlight, centerSeq });
    for (const page of pages.slice(0, room)) this.fetchPage(page);
  }

  async fetchPage(page) {
    const range = [page.from, page.to];
    this.inFlight.push(range);
    try {
      const result = await this.source.fetchPage({ after: page.after, before: page.before, limit: page.limit });
      if (this.destroyed) return;
      const entries = Array.isArray(result?.entries) ? result.entries : [];
      if (!entries.some((entry) => entry?.seq >= page.from && entry?.seq <= page.to)) {
        throw new Error(`the server sent no lines for ${formatCount(page.from)}–${formatCount(page.to)}`);
      }
      this.fetchFailures = 0;
      this.notices.querySelector('.notice-fetch')?.remove();
      this.loadPage(result);
    } catch (error) {
      if (this.destroyed || error?.name === 'AbortError') return;
      this.fetchFailures += 1;
      this.showFetchNotice(error?.message || String(error));
      const delay = Math.min(15000, 500 * 2 ** Math.min(5, this.fetchFailures));
      this.fetchRetry = this.win.setTimeout(() => {
        this.fetchRetry = null;
        this.invalidate();
      }, delay);
    } finally {
      this.inFlight = this.inFlight.filter((item) => item !== range);
      this.invalidate();
    }
  }

  showFetchNotice(message) {
    let notice = this.notices.querySelector('.notice-fetch');
    if (!notice) {
      notice = el(this.doc, 'p', { class: 'notice error notice-fetch', role: 'status' });
      this.notices.append(notice);
    }
    notice.textContent = `Cannot load these lines: ${message}. Trying again…`;
  }

  /** The run ended: no more entries will come. */
  finish() {
    this.finished = true;
    this.invalidate();
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
      this.setFollow(atBottom && (!this.wrap || this.wrapEnd >= this.log.length));
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
    this.reveal = null;
    this.setFollow(true);
    this.invalidate(true);
    this.scroller.focus({ preventScroll: true });
  }

  setScrollTop(value) {
    this.scroller.scrollTop = value;
    this.expectedScrollTop = this.scroller.scrollTop;
  }

  /** Remembers row position `row` (fractional) as the line at the top while paused. */
  setAnchor(row) {
    const index = Math.max(0, Math.floor(row));
    this.anchorSeq = this.log.seqAt(index) || null;
    this.anchorFrac = row - index;
  }

  anchorIndex() {
    if (this.anchorSeq === null) return null;
    return Math.max(0, this.log.indexOfSeq(this.anchorSeq)) + this.anchorFrac;
  }

  // -- permalinks and jumps

  /** Highlights the row holding `seq` and scrolls to it (now, or when its page arrives). */
  setTarget(seq, { scroll = true } = {}) {
    this.targetSeq = seq;
    if (scroll) this.goTo(seq, false);
    this.dirtyAll = true;
    this.invalidate(true);
  }

  /** Scrolls to the row holding `seq`, fetching its page first when it is not held. */
  goTo(seq, match) {
    this.setFollow(false);
    this.reveal = { seq, match, placed: false };
    this.resolveReveal();
  }

  resolveReveal() {
    const reveal = this.reveal;
    if (!reveal || this.log.head === 0) return;
    const seq = Math.min(this.log.head, Math.max(1, reveal.seq));
    if (this.log.isCovered(seq)) {
      this.reveal = null;
      this.scrollToRow(this.log.indexOfSeq(seq));
      if (reveal.match) this.revealMark = true;
      this.dirtyAll = true;
    } else if (!reveal.placed) {
      // Its placeholder comes into view, so the page holding it is fetched.
      reveal.placed = true;
      this.scrollToRow(this.log.indexOfSeq(seq));
    }
  }

  scrollToRow(abs) {
    this.setFollow(false);
    if (this.wrap) {
      if (abs < this.wrapStart || abs >= this.wrapEnd) {
        this.wrapStart = Math.max(0, abs - WRAP_WINDOW / 2);
        this.wrapStartSeq = this.log.seqAt(this.wrapStart) || 1;
        this.renderWrap(true);
      }
      this.pendingWrapScroll = abs;
    } else {
      const vh = this.scroller.clientHeight;
      this.scrollToContent(Math.max(0, abs * ROW_HEIGHT - vh / 2 + ROW_HEIGHT / 2));
    }
    this.invalidate(true);
  }

  /** Scrolls the virtual view so that content offset `p` is at the top. */
  scrollToContent(p) {
    const maxP = Math.max(0, this.log.length * ROW_HEIGHT - this.scroller.clientHeight);
    const clamped = Math.min(maxP, Math.max(0, p));
    this.setAnchor(clamped / ROW_HEIGHT);
    this.setScrollTop(this.scrollTopFor(clamped));
    this.renderedScrollTop = this.scroller.scrollTop;
  }

  // -- search (on the server, over the whole log)

  setQuery(query) {
    this.search = query ? new MatchList(query) : null;
    this.pendingStep = 0;
    this.autoJump = Boolean(query);
    this.dirtyAll = true;
    if (this.search) this.continueSearch();
    this.updateCount();
    this.invalidate();
  }

  runSearchNow() {
    this.win.clearTimeout(this.searchTimer);
    const query = this.searchInput.value;
    if ((this.search?.query || '') !== query) this.setQuery(query);
  }

  /**
   * Asks the server for matches, page by page, until the log is covered, MAX_MATCHES are
   * counted, or a step waits for a match beyond those known. One request at a time.
   */
  async continueSearch() {
    const search = this.search;
    if (!search || this.searching || !this.source) return;
    this.searching = true;
    this.updateCount();
    try {
      while (search === this.search && !this.destroyed && !search.done
        && (search.seqs.length < MAX_MATCHES || this.pendingStep !== 0)) {
        const from = search.next;
        const found = search.seqs.length;
        const response = await this.source.search(search.query, from, SEARCH_PAGE);
        if (search !== this.search || this.destroyed) break;
        search.add(response);
        this.log.setHead(response?.head);
        if (!search.done && search.next <= from && search.seqs.length === found) {
          throw new Error('the server’s search did not move on');
        }
        this.searchProgress();
      }
    } catch (error) {
      if (search === this.search && error?.name !== 'AbortError') search.error = error?.message || String(error);
    } finally {
      this.searching = false;
      if (this.search && this.search !== search) this.continueSearch();
      else {
        this.searchProgress();
        // Lines that arrived while this scan ran may lie past where it ended.
        this.followSearch();
      }
    }
  }

  searchProgress() {
    const search = this.search;
    if (!search) return;
    this.dirtyAll = true;
    if (this.pendingStep !== 0) this.stepMatch(this.pendingStep);
    else if (this.autoJump && search.seqs.length > 0) {
      // Typed without Enter: show the first match from the top line once one is known.
      const step = search.stepFrom(this.topSeq() - 1, 1);
      if (step.index !== undefined) {
        this.autoJump = false;
        search.current = step.index;
        this.revealCurrent();
      } else if (search.done) this.autoJump = false;
    }
    this.updateCount();
    this.invalidate();
  }

  /** The sequence number of the line at the top of the view. */
  topSeq() {
    return this.log.seqAt(this.topRow()) || 1;
  }

  stepMatch(direction) {
    const search = this.search;
    if (!search) return;
    this.autoJump = false;
    const from = search.current >= 0 ? search.seqs[search.current] : (direction > 0 ? this.topSeq() - 1 : this.topSeq());
    const step = search.stepFrom(from, direction);
    if (step.fetch) {
      // Beyond the matches known so far: the scan goes on, and this step resolves then.
      this.pendingStep = direction;
      if (search.error) this.pendingStep = 0;
      else this.continueSearch();
      return;
    }
    this.pendingStep = 0;
    if (step.index !== undefined) {
      search.current = step.index;
      this.revealCurrent();
    }
    this.updateCount();
  }

  revealCurrent() {
    const search = this.search;
    if (!search || search.current < 0) return;
    this.goTo(search.seqs[search.current], true);
    this.dirtyAll = true;
    this.updateCount();
    this.invalidate();
  }

  updateCount() {
    const search = this.search;
    let text = '';
    if (search) {
      const scanning = !search.done && this.searching;
      const total = `${formatCount(search.seqs.length)}${search.done ? '' : '+'}`;
      if (search.error) text = `search failed: ${search.error}`;
      else if (search.seqs.length === 0) text = search.done ? 'no matches' : 'searching…';
      else if (search.current >= 0) text = `${formatCount(search.current + 1)} of ${total}${scanning ? '…' : ''}`;
      else text = `${formatCount(search.seqs.length)}${search.done ? '' : '+'} match${search.seqs.length === 1 && search.done ? '' : 'es'}${scanning ? '…' : ''}`;
    }
    this.countLabel.textContent = text;
    this.prevButton.disabled = !search || search.seqs.length === 0;
    this.nextButton.disabled = !search || search.seqs.length === 0;
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
    // Swapping the scroller's content resets its scrollTop: that scroll event is ours, and
    // must not turn following off.
    this.expectedScrollTop = 0;
    if (on) {
      this.scroller.replaceChildren(this.earlierButton, this.wrapList, this.laterButton);
      if (this.follow) {
        this.wrapStart = Math.max(0, this.log.length - WRAP_WINDOW);
        this.wrapStartSeq = this.log.seqAt(this.wrapStart) || 1;
      } else {
        this.wrapStart = Math.max(0, top);
        this.wrapStartSeq = this.log.seqAt(this.wrapStart) || 1;
        this.pendingWrapScroll = top;
      }
    } else {
      this.scroller.replaceChildren(this.layer, this.spacer);
      if (!this.follow) {
        this.invalidate(true);
        this.renderNow();
        this.scrollToContent(top * ROW_HEIGHT);
      }
    }
    this.invalidate(true);
  }

  moveWrapWindow(direction) {
    const step = Math.floor(WRAP_WINDOW / 2);
    if (direction < 0) {
      const old = this.wrapStart;
      this.wrapStart = Math.max(0, this.wrapStart - step);
      this.pendingWrapScroll = old;
    } else {
      this.wrapStart = Math.max(0, Math.min(this.log.length - WRAP_WINDOW, this.wrapStart + step));
    }
    this.wrapStartSeq = this.log.seqAt(this.wrapStart) || 1;
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
    const totalPx = this.log.length * ROW_HEIGHT;
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
    const totalPx = this.log.length * ROW_HEIGHT;
    const virtualPx = Math.min(totalPx, MAX_SCROLL_PX);
    let p = this.scroller.scrollTop;
    if (totalPx > virtualPx && virtualPx > vh) p = (p * (totalPx - vh)) / (virtualPx - vh);
    return Math.max(0, Math.min(this.log.length - 1, Math.floor(p / ROW_HEIGHT)));
  }

  renderNow() {
    if (this.destroyed) return;
    const log = this.log;
    this.empty.hidden = log.length > 0;
    this.empty.textContent = this.finished && this.opened ? 'This run printed nothing.' : 'Waiting for output…';
    const digits = String(Math.max(1, log.head)).length;
    if (digits !== this.noWidth) {
      this.noWidth = digits;
      this.root.style.setProperty('--no-width', `${digits}ch`);
    }
    const search = this.search;
    this.currentMatchRow = search && search.current >= 0 && log.isCovered(search.seqs[search.current])
      ? log.indexOfSeq(search.seqs[search.current]) : -1;
    this.targetRow = this.targetSeq !== null && log.isCovered(this.targetSeq) ? log.indexOfSeq(this.targetSeq) : -1;
    if (this.wrap) this.renderWrap();
    else this.renderVirtual();
    this.dirtyAll = false;
    this.dirtyFrom = Infinity;
    this.updateJump();
    // What the window holds, for the curious (and the browser tests): entries and the head.
    this.root.dataset.held = String(log.entries);
    this.root.dataset.head = String(log.head);
    if (this.revealMark) {
      const mark = this.scroller.querySelector('mark.current');
      if (mark) {
        this.revealMark = false;
        // Rows are already in view vertically; bring the match into view horizontally, inside
        // the log only (scrollIntoView would scroll the page too).
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
    const log = this.log;
    const length = log.length;
    const scroller = this.scroller;
    const vh = scroller.clientHeight;
    const totalPx = length * ROW_HEIGHT;
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
      this.setAnchor(p / ROW_HEIGHT);
    } else if (userScrolled || this.anchorSeq === null) {
      p = fromScrollTop();
      this.setAnchor(p / ROW_HEIGHT);
    } else {
      // Paused: keep the same line at the top while the log grows (with a scaled scrollbar
      // the same scrollTop would otherwise show another line), a gap above is fetched (its
      // pieces may merge into fewer rows) or the window drops rows far away.
      p = Math.min(maxP, Math.max(0, this.anchorIndex() * ROW_HEIGHT));
      const want = this.scrollTopFor(p);
      if (Math.abs(want - scroller.scrollTop) >= 1) this.setScrollTop(want);
    }
    this.renderedScrollTop = scroller.scrollTop;
    const first = Math.floor(p / ROW_HEIGHT);
    const offset = first * ROW_HEIGHT - p;
    const count = Math.max(0, Math.min(length - first, Math.ceil(vh / ROW_HEIGHT) + 1));
    const poolSize = Math.ceil(vh / ROW_HEIGHT) + 2;
    while (this.pool.length < poolSize) {
      const node = el(this.doc, 'div', { class: 'log-row' });
      node.abs = -1;
      this.layer.append(node);
      this.pool.push(node);
    }
    const used = new Set();
    for (let k = 0; k < count; k++) {
      const abs = first + k;
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
    if (count > 0) this.fetchMissing(first, first + count - 1);
  }

  renderWrap(windowOnly = false) {
    const log = this.log;
    const length = log.length;
    if (this.follow) {
      this.wrapStart = Math.max(0, length - WRAP_WINDOW);
      this.wrapStartSeq = log.seqAt(this.wrapStart) || 1;
    } else if (!windowOnly) {
      this.wrapStart = Math.max(0, log.indexOfSeq(this.wrapStartSeq));
    }
    this.wrapEnd = Math.min(length, this.wrapStart + WRAP_WINDOW);
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
    this.earlierButton.hidden = this.wrapStart <= 0;
    this.laterButton.hidden = this.wrapEnd >= length;
    this.earlierButton.textContent = `Show earlier lines (${formatCount(this.wrapStart)} more)`;
    this.laterButton.textContent = `Show later lines (${formatCount(length - this.wrapEnd)} more)`;
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
    if (this.wrapEnd > this.wrapStart) this.fetchMissing(this.wrapStart, this.wrapEnd - 1);
  }

  newWrapRow(abs) {
    const node = el(this.doc, 'div', { class: 'log-row' });
    this.fillRow(node, abs);
    return { abs, node };
  }

  fillRow(node, abs) {
    node.abs = abs;
    const row = this.log.row(abs);
    if (!row) {
      node.replaceChildren();
      return;
    }
    const doc = this.doc;
    const seq = row.seq;
    const number = el(doc, 'a', { class: 'log-no', href: `#L${seq}`, 'data-seq': String(seq), tabindex: '-1' }, String(seq));
    if (row.placeholder) {
      // Not fetched yet: its page is on the way (the view asks for what it shows).
      node.className = 'log-row placeholder';
      node.replaceChildren(number, el(doc, 'span', { class: 'log-ts' }), el(doc, 'span', { class: 'log-text', 'aria-busy': 'true' }));
      return;
    }
    let className = 'log-row';
    if (row.stream === 'stderr') className += ' stderr';
    else if (row.stream === 'system') className += ' system';
    if (abs === this.targetRow) className += ' target';
    node.className = className;
    const ts = el(doc, 'span', { class: 'log-ts' }, this.showTimestamps ? formatClock(row.ts) : '');
    const text = el(doc, 'span', { class: 'log-text' });
    if (row.stream !== 'stdout') text.append(el(doc, 'span', { class: 'visually-hidden' }, `${row.stream}: `));
    let spans = renderLine(row.text);
    const search = this.search;
    if (search && search.query) {
      // The server matches case-insensitively, on the text as shown.
      const needle = search.query.toLowerCase();
      const plain = spans.map((span) => span.text).join('');
      const starts = findAll(plain, needle, true);
      if (starts.length) {
        const currentStart = abs === this.currentMatchRow ? starts[0] : -1;
        const ranges = starts.map((start) => [start, start + needle.length, start === currentStart ? 'current' : 'match']);
        spans = applyHighlights(spans, ranges);
      }
    }
    appendSpans(text, spans);
    node.replaceChildren(number, ts, text);
  }
}
