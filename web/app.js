// The oneoff web UI: a small router over the History API and one function per page.
//
// Pages: `/` job catalog, `/jobs/{name}` launch form, `/runs` history, `/runs/{id}` run page
// with the live log. Everything a job or a user provided is put in the DOM with textContent
// (through `h`), never parsed as HTML.
//
// Identity: normally the browser's own (an SSO proxy's cookie and headers). When the server
// answers 401, the page offers to use a pasted API token instead, kept in sessionStorage
// (this tab only) and sent as `Authorization: Bearer`; live logs then use single-use stream
// tickets (see transport.js), since WebSocket and EventSource cannot send that header.

import { LogView, TAIL_ENTRIES } from './logview.js';
import { LogStream, LABELS } from './transport.js';
import { checkParam, paramsSummary, rerunQuery, initialValue, compilePattern } from './params.js';
import { commandLine, shellQuote } from './shell.js';
import {
  formatDuration, formatDateTime, formatAgo, describeOutcome, isFinal, parseTimestamp, STATUSES, auditVerdict,
} from './format.js';
import { BASE, appPath, withBase } from './paths.js';
import { AUDIT_ACTIONS, activeChildren, formatIn, localInputValue, prettyDetail, tokenState, windowBound } from './admin.js';

const main = document.getElementById('main');

// ---------------------------------------------------------------------------------------
// DOM helpers

/** `h('a', {href: '/x', class: 'y', onclick: fn}, 'text', child, [more])`; strings become text nodes. */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'value') node.value = value;
    else if (key === 'checked') node.checked = value;
    else if (key === 'href' && tag === 'a') node.setAttribute(key, withBase(String(value)));
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  appendChildren(node, children);
  return node;
}

function appendChildren(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendChildren(node, child);
    else if (typeof child === 'string' || typeof child === 'number') node.append(document.createTextNode(String(child)));
    else node.append(child);
  }
}

function statusLabel(status) {
  return String(status).replace(/_/g, ' ');
}

function badge(status) {
  return h('span', { class: `badge status-${status}` }, statusLabel(status));
}

function timeElement(text) {
  if (!text) return '—';
  const ms = parseTimestamp(text);
  return h('time', { datetime: text, title: `${formatDateTime(text)} (${formatAgo(ms, Date.now())})` }, formatDateTime(text));
}

function setTitle(text) {
  document.title = text ? `${text} · oneoff` : 'oneoff';
}

function errorBox(message) {
  return h('p', { class: 'notice error', role: 'alert' }, message);
}

// ---------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, body, fallback) {
    super(body?.error?.message || fallback || `the server answered HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.code = body?.error?.code || null;
  }
}

const TOKEN_KEY = 'oneoff.token';

/** The pasted API token of this tab, or null (the browser's own identity is used). */
function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

function saveToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
    return true;
  } catch {
    return false; // storage disabled: the token cannot be kept
  }
}

function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

/** `signInOn401: false` lets the sign-in form itself see a refused token. */
async function api(path, { method = 'GET', body, signal, signInOn401 = true } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, signal, cache: 'no-store' };
  const token = readToken();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(withBase(path), init);
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    throw new ApiError(0, null, 'the server cannot be reached');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && signInOn401) showSignIn(error.message);
    throw error;
  }
  return { status: response.status, data, response };
}

function isAbort(error) {
  return error?.name === 'AbortError';
}

// ---------------------------------------------------------------------------------------
// Router

const routes = [
  { pattern: /^\/$/, page: catalogPage, nav: 'jobs' },
  { pattern: /^\/jobs\/([^/]+)$/, page: launchPage, nav: 'jobs' },
  { pattern: /^\/runs$/, page: historyPage, nav: 'runs' },
  { pattern: /^\/runs\/([^/]+)$/, page: runPage, nav: 'runs' },
  { pattern: /^\/tokens$/, page: tokensPage, nav: 'tokens' },
  { pattern: /^\/audit$/, page: auditPage, nav: 'audit' },
];

let current = null; // {key, abort, cleanups, onHash}

/** The page for a browser path (under the prefix), or null. */
function routeFor(pathname) {
  pathname = appPath(pathname);
  if (pathname === null) return null;
  for (const route of routes) {
    const match = route.pattern.exec(pathname);
    if (match) return { route, args: match.slice(1).map((part) => safeDecode(part)) };
  }
  return null;
}

function safeDecode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function leavePage() {
  if (!current) return;
  current.abort.abort();
  for (const fn of current.cleanups) {
    try {
      fn();
    } catch {
      // a page's cleanup must not break navigation
    }
  }
}

function render({ focus = false } = {}) {
  leavePage();
  const ctx = {
    key: location.pathname + location.search,
    abort: new AbortController(),
    cleanups: [],
    onHash: null,
    query: new URLSearchParams(location.search),
  };
  ctx.signal = ctx.abort.signal;
  ctx.onCleanup = (fn) => ctx.cleanups.push(fn);
  current = ctx;
  main.replaceChildren();
  const found = routeFor(location.pathname);
  for (const link of document.querySelectorAll('nav [data-nav]')) {
    if (found && link.dataset.nav === found.route.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (focus) {
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  const page = found ? found.route.page(ctx, ...found.args) : notFoundPage(ctx);
  Promise.resolve(page).catch((error) => {
    if (isAbort(error) || ctx !== current) return;
    main.append(errorBox(error?.message || String(error)));
  });
}

/** Goes to the app's path `url` (from the root; the prefix is added here). */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', withBase(url));
  else history.pushState(null, '', withBase(url));
  render({ focus: true });
}

window.addEventListener('popstate', () => {
  if (current && current.key === location.pathname + location.search) {
    current.onHash?.();
  } else {
    render({ focus: true });
  }
});

window.addEventListener('hashchange', () => {
  if (current && current.key === location.pathname + location.search) current.onHash?.();
});

document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const link = event.target.closest?.('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !routeFor(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(appPath(url.pathname) + url.search + url.hash);
});

// ---------------------------------------------------------------------------------------
// Sign-in: the server does not know this browser. Either the SSO proxy is not in front of
// this address, or the user works with an API token.

function showSignIn(reason) {
  if (current?.signIn) return; // already shown for this page
  leavePage();
  const ctx = { key: location.pathname + location.search, abort: new AbortController(), cleanups: [], onHash: null, signIn: true };
  ctx.signal = ctx.abort.signal;
  current = ctx;
  setTitle('Sign in');
  const hadToken = Boolean(readToken());
  if (hadToken) forgetToken(); // refused: it will not work on the next request either
  document.querySelector('.topbar .identity')?.remove(); // nobody is signed in any more
  const input = h('input', {
    type: 'password', id: 'api-token', name: 'token', required: true, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'oneoff_…', 'aria-describedby': 'api-token-help',
  });
  const failure = h('p', { class: 'notice error', role: 'alert', hidden: true });
  const form = h('form', { class: 'filters', 'aria-label': 'Use an API token' },
    h('div', { class: 'filter' }, h('label', { for: 'api-token' }, 'API token'), input),
    h('button', { type: 'submit' }, 'Use token'));
  main.replaceChildren(
    h('h1', {}, 'Sign in'),
    h('p', { class: 'notice' }, hadToken ? `The API token was refused: ${reason}` : `The server did not recognise you: ${reason}`),
    h('p', {}, 'If your organisation signs you in through an SSO proxy, open oneoff through that proxy\'s address. ',
      'Otherwise paste an API token (', h('code', {}, 'oneoff token create --name browser'), ', or ask an administrator).'),
    form,
    h('p', { class: 'muted', id: 'api-token-help' },
      'The token stays in this browser tab only (sessionStorage) and is sent as an Authorization header; live logs use short-lived single-use tickets instead, so the token never appears in a URL.'),
    failure,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    failure.hidden = true;
    const token = input.value.trim();
    if (!token.startsWith('oneoff_')) {
      failure.textContent = 'An API token starts with “oneoff_”.';
      failure.hidden = false;
      return;
    }
    if (!saveToken(token)) {
      failure.textContent = 'This browser does not allow the page to keep the token (storage is disabled).';
      failure.hidden = false;
      return;
    }
    try {
      const { data } = await api('/api/v1/whoami', { signal: ctx.signal, signInOn401: false });
      showIdentity(data);
      render({ focus: true });
    } catch (error) {
      if (isAbort(error)) return;
      forgetToken();
      failure.textContent = error.status === 401 ? `The token was refused: ${error.message}` : error.message;
      failure.hidden = false;
      input.focus();
    }
  });
  input.focus();
}

/** With a pasted token, the top bar says whose it is and offers to forget it. */
function showIdentity(who) {
  document.querySelector('.topbar .identity')?.remove();
  if (!who || !readToken()) return;
  const forget = h('button', { type: 'button', class: 'secondary', onclick: () => {
    forgetToken();
    document.querySelector('.topbar .identity')?.remove();
    render({ focus: true });
  } }, 'Forget token');
  document.querySelector('.topbar')?.append(
    h('span', { class: 'identity' }, h('span', { class: 'muted' }, `${who.user} (${who.source})`), forget));
}

function notFoundPage() {
  setTitle('Not found');
  main.append(
    h('h1', {}, 'Page not found'),
    h('p', {}, 'There is nothing at this address. ', h('a', { href: '/' }, 'Back to the job catalog'), '.'),
  );
}

// ---------------------------------------------------------------------------------------
// `/`: the job catalog

async function catalogPage(ctx) {
  setTitle('Jobs');
  const filter = h('input', {
    type: 'search', id: 'job-filter', value: ctx.query.get('q') || '', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'name, description or parameter', 'aria-controls': 'job-list',
  });
  const count = h('p', { class: 'muted', role: 'status', id: 'job-count' });
  const list = h('ul', { class: 'job-list', id: 'job-list' });
  main.append(
    h('div', { class: 'page-head' },
      h('h1', {}, 'Jobs'),
      h('div', { class: 'filter' }, h('label', { for: 'job-filter' }, 'Filter jobs'), filter)),
    count,
    list,
  );
  const { data } = await api('/api/v1/jobs', { signal: ctx.signal });
  const jobs = data.jobs || [];
  const cards = jobs.map((job) => ({ job, node: jobCard(job), haystack: jobHaystack(job) }));
  const apply = () => {
    const terms = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const shown = cards.filter((card) => terms.every((term) => card.haystack.includes(term)));
    list.replaceChildren(...shown.map((card) => card.node));
    if (jobs.length === 0) count.textContent = 'No jobs are configured. Add [[job]] entries to the configuration file.';
    else if (shown.length === 0) count.textContent = `No job matches “${filter.value.trim()}”.`;
    else if (terms.length) count.textContent = `${shown.length} of ${jobs.length} jobs`;
    else count.textContent = `${jobs.length} job${jobs.length === 1 ? '' : 's'}`;
    const url = withBase(filter.value ? `/?q=${encodeURIComponent(filter.value)}` : '/');
    if (url !== location.pathname + location.search) {
      history.replaceState(null, '', url);
      ctx.key = location.pathname + location.search;
    }
  };
  filter.addEventListener('input', apply);
  apply();
}

function jobHaystack(job) {
  return [job.name, job.description, ...(job.params || []).map((param) => `${param.name} ${param.description || ''}`)]
    .join(' ').toLowerCase();
}

function jobCard(job) {
  const limits = [];
  if (job.timeout_seconds) limits.push(`timeout ${formatDuration(job.timeout_seconds * 1000)}`);
  if (job.max_concurrent) limits.push(`at most ${job.max_concurrent} at once`);
  return h('li', { class: 'job-card' },
    h('h2', {}, h('a', { href: `/jobs/${encodeURIComponent(job.name)}` }, job.name)),
    h('p', { class: 'job-desc' }, job.description || 'No description.'),
    h('p', { class: 'job-params' }, h('span', { class: 'muted' }, 'Parameters: '), h('code', {}, paramsSummary(job.params))),
    limits.length ? h('p', { class: 'job-limits muted' }, limits.join(' · ')) : null,
    h('p', { class: 'job-access muted' }, `Who may run it: ${whoMayRun(job.allow_run)}`));
}

/** "everyone", or the users and groups of the job's `allow_run` list. */
function whoMayRun(list) {
  if (!list) return 'everyone';
  const names = [...(list.users || []), ...(list.groups || []).map((group) => `group ${group}`)];
  return names.length ? names.join(', ') : 'administrators only';
}

// ---------------------------------------------------------------------------------------
// `/jobs/{name}`: the launch form

async function launchPage(ctx, name) {
  setTitle(`Run ${name}`);
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/' }, 'Jobs'), ' / ', name);
  main.append(crumbs);
  let job;
  try {
    ({ data: job } = await api(`/api/v1/jobs/${encodeURIComponent(name)}`, { signal: ctx.signal }));
  } catch (error) {
    if (error.status === 404) {
      main.append(h('h1', {}, name), errorBox(`There is no job named “${name}”.`), h('p', {}, h('a', { href: '/' }, 'See all jobs')));
      return;
    }
    throw error;
  }
  const fields = job.params.map((param, index) => paramField(param, index, ctx.query));
  const formError = h('div', { class: 'notice error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, `Run ${job.name}`);
  const form = h('form', { class: 'launch-form', novalidate: true, 'aria-labelledby': 'launch-title' },
    fields.length ? fields.map((field) => field.node) : h('p', { class: 'muted' }, 'This job takes no parameters.'),
    formError,
    h('div', { class: 'form-actions' }, submit,
      h('span', { class: 'muted' }, fields.some((field) => field.param.required) ? '* required' : '')));
  main.append(
    h('div', { class: 'page-head' }, h('h1', { id: 'launch-title' }, job.name)),
    h('p', { class: 'lead' }, job.description || ''),
    h('details', { class: 'command' },
      h('summary', {}, 'Command and limits'),
      h('p', {}, h('code', { class: 'argv' }, (job.command || []).map(shellWord).join(' '))),
      h('p', { class: 'muted' }, [
        job.timeout_seconds ? `Timeout ${formatDuration(job.timeout_seconds * 1000)}` : 'No timeout',
        job.max_concurrent ? `at most ${job.max_concurrent} at once` : null,
        `cancel grace ${formatDuration(job.grace_seconds * 1000)}`,
      ].filter(Boolean).join(' · '))),
    form,
  );
  let submitted = false;
  for (const field of fields) {
    const recheck = () => {
      if (submitted || field.touched) field.show(checkParam(field.param, field.read()).error || null);
    };
    field.input.addEventListener('blur', (event) => {
      field.touched = true;
      // Leaving the field for the Run button: the submit shows every error at once. Showing
      // this one now would move the button under the pointer before the click lands.
      if (event.relatedTarget && event.relatedTarget.type === 'submit') return;
      recheck();
    });
    field.input.addEventListener('input', recheck);
    field.input.addEventListener('change', recheck);
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submitted = true;
    formError.hidden = true;
    const params = {};
    let firstInvalid = null;
    for (const field of fields) {
      const result = checkParam(field.param, field.read());
      field.show(result.error || null);
      if (result.error) firstInvalid ??= field;
      else if (result.value !== undefined) params[field.param.name] = result.value;
    }
    if (firstInvalid) {
      firstInvalid.input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Starting…';
    try {
      const { data: run } = await api('/api/v1/runs', { method: 'POST', body: { job: job.name, params }, signal: ctx.signal });
      navigate(`/runs/${run.id}`);
    } catch (error) {
      if (isAbort(error)) return;
      const unmatched = [];
      if (error.status === 422 && Array.isArray(error.body?.error?.fields) && error.body.error.fields.length) {
        for (const problem of error.body.error.fields) {
          const field = fields.find((candidate) => candidate.param.name === problem.field);
          if (field) {
            field.show(problem.message);
            firstInvalid ??= field;
          } else {
            unmatched.push(`${problem.field}: ${problem.message}`);
          }
        }
      }
      if (unmatched.length || !firstInvalid) {
        formError.replaceChildren(
          h('p', {}, unmatched.length ? 'The server refused these parameters:' : `Could not start the run: ${error.message}`),
          unmatched.length ? h('ul', {}, unmatched.map((line) => h('li', {}, line))) : null,
        );
        formError.hidden = false;
      }
      if (firstInvalid) {
        firstInvalid.input.focus();
      } else {
        formError.setAttribute('tabindex', '-1');
        formError.focus();
      }
    } finally {
      submit.disabled = false;
      submit.textContent = `Run ${job.name}`;
    }
  });
}

/** A command template's word: `{param}` placeholders stay readable, the rest is quoted as
 * the run page quotes argv (control characters as `$'…'`, never raw). */
function shellWord(word, index) {
  return /^[A-Za-z0-9_./:=@%+,{}-]+$/.test(word) ? word : shellQuote(word, index === 0);
}

/** One labelled input for a parameter, with its hint and error slot. */
function paramField(param, index, query) {
  const id = `param-${index}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const initial = initialValue(param, query);
  const hints = [];
  if (param.description) hints.push(param.description);
  let input;
  switch (param.type) {
    case 'boolean':
      input = h('input', { type: 'checkbox', id, checked: initial === true });
      if (param.default !== undefined) hints.push(`default: ${param.default ? 'on' : 'off'}`);
      break;
    case 'integer': {
      input = h('input', {
        type: 'number', id, step: '1', inputmode: 'numeric', value: initial,
        min: param.min ?? null, max: param.max ?? null,
      });
      if (param.min !== undefined && param.max !== undefined) hints.push(`${param.min} to ${param.max}`);
      else if (param.min !== undefined) hints.push(`at least ${param.min}`);
      else if (param.max !== undefined) hints.push(`at most ${param.max}`);
      if (param.default !== undefined) hints.push(`default: ${param.default}`);
      break;
    }
    case 'choice': {
      const options = [];
      const hasDefault = param.default !== undefined && param.default !== null;
      if (!hasDefault) options.push(h('option', { value: '' }, param.required ? 'Choose…' : '(not set)'));
      for (const choice of param.choices || []) options.push(h('option', { value: choice }, choice));
      input = h('select', { id }, options);
      input.value = (param.choices || []).includes(initial) ? initial : (hasDefault ? String(param.default) : '');
      if (hasDefault) hints.push(`default: ${param.default}`);
      break;
    }
    case 'secret':
      input = h('input', {
        type: 'password', id, autocomplete: 'new-password', spellcheck: 'false', value: '',
        maxlength: param.max_length ?? null,
      });
      hints.push('secret: passed to the job in its environment only, never stored or shown');
      break;
    default: {
      input = h('input', {
        type: 'text', id, value: initial, spellcheck: 'false', autocomplete: 'off',
        maxlength: param.max_length && param.max_length < 1_000_000 ? param.max_length : null,
      });
      if (param.pattern) {
        hints.push(`must match ${param.pattern}${compilePattern(param.pattern) ? '' : ' (checked by the server)'}`);
      }
      if (param.default !== undefined) hints.push(`default: ${param.default}`);
    }
  }
  if (param.required) input.setAttribute('aria-required', 'true');
  input.setAttribute('aria-describedby', hintId);
  input.name = param.name;
  const error = h('p', { class: 'field-error', id: errorId, hidden: true });
  const label = h('label', { for: id },
    h('span', { class: 'field-name' }, param.name),
    param.required ? h('span', { class: 'required', title: 'required' }, h('span', { 'aria-hidden': 'true' }, '*'), h('span', { class: 'visually-hidden' }, ' (required)')) : null,
    h('span', { class: 'field-type' }, param.type));
  const hint = h('p', { class: 'hint', id: hintId }, hints.join(' · '));
  const node = param.type === 'boolean'
    ? h('div', { class: 'field field-checkbox' }, h('div', { class: 'checkbox-row' }, input, label), hint, error)
    : h('div', { class: 'field' }, label, input, hint, error);
  return {
    param,
    node,
    input,
    touched: false,
    read() {
      if (param.type === 'boolean') return input.checked;
      if (param.type === 'integer' && input.validity?.badInput) return 'not a number';
      return input.value;
    },
    show(message) {
      error.textContent = message ? `${param.name} ${message}` : '';
      error.hidden = !message;
      if (message) {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', `${errorId} ${hintId}`);
      } else {
        input.removeAttribute('aria-invalid');
        input.setAttribute('aria-describedby', hintId);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------
// `/runs/{id}`: one run and its live log

async function runPage(ctx, idText) {
  setTitle(`Run #${idText}`);
  if (!/^[0-9]+$/.test(idText)) {
    main.append(h('h1', {}, 'No such run'), errorBox(`“${idText}” is not a run number.`));
    return;
  }
  const id = idText;
  let run;
  try {
    ({ data: run } = await api(`/api/v1/runs/${id}`, { signal: ctx.signal }));
  } catch (error) {
    if (error.status === 404) {
      main.append(h('h1', {}, `Run #${id}`), errorBox(`There is no run #${id} (it may have been deleted after the retention period).`),
        h('p', {}, h('a', { href: '/runs' }, 'See all runs')));
      return;
    }
    throw error;
  }

  const statusSlot = h('span', { class: 'status-slot', role: 'status' });
  const actions = h('div', { class: 'run-actions' });
  const actionMessage = h('p', { class: 'notice', role: 'status', hidden: true });
  const details = h('dl', { class: 'run-details' });
  const paramsSlot = h('div', { class: 'run-params' });
  main.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/runs' }, 'Runs'), ` / #${id}`),
    h('div', { class: 'page-head' },
      h('h1', {}, `Run #${id} `, h('span', { class: 'run-job' }, run.job)),
      statusSlot, actions),
    actionMessage,
    h('div', { class: 'run-summary' }, details, paramsSlot),
  );

  const logRoot = h('div', { class: 'log-section' });
  main.append(h('h2', { class: 'visually-hidden' }, 'Log'), logRoot);
  const view = new LogView(logRoot, { downloadUrl: withBase(`/api/v1/runs/${id}/log.txt`) });
  ctx.onCleanup(() => view.destroy());
  if (readToken()) {
    // A download link cannot send the token: give it a single-use ticket at click time.
    logRoot.querySelector('a[download]')?.addEventListener('click', async (event) => {
      event.preventDefault();
      try {
        const { data } = await api(`/api/v1/runs/${id}/log/ticket`, { method: 'POST', signal: ctx.signal });
        const link = h('a', { href: `/api/v1/runs/${id}/log.txt?ticket=${encodeURIComponent(data.ticket)}`, download: '' });
        link.click();
      } catch (error) {
        if (!isAbort(error)) view.addNotice(errorBox(`Cannot download the log: ${error.message}`));
      }
    });
  }

  let fetchedAt = performance.now();
  let durationCell = null;
  let job = null;
  let confirming = false;

  const renderRun = () => {
    setTitle(`#${run.id} ${run.job} · ${statusLabel(run.status)}`);
    statusSlot.replaceChildren(badge(run.status));
    const rows = [
      ['Job', h('a', { href: `/jobs/${encodeURIComponent(run.job)}` }, run.job)],
      ['Requested by', run.requested_by || h('span', { class: 'muted' }, 'anonymous')],
      ['Created', timeElement(run.created_at)],
      ['Started', run.started_at ? timeElement(run.started_at) : h('span', { class: 'muted' }, run.status === 'queued' ? 'waiting in the queue' : '—')],
      ['Duration', h('span', { class: 'duration' })],
      ['Result', isFinal(run.status) ? describeOutcome(run) : h('span', { class: 'muted' }, 'not finished')],
    ];
    if (run.finished_at) rows.splice(4, 0, ['Finished', timeElement(run.finished_at)]);
    // The replica that runs or ran it; absent while queued and for runs from before replicas.
    if (run.replica) rows.push(['Replica', run.replica]);
    details.replaceChildren(...rows.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
    durationCell = details.querySelector('.duration');
    tick();
    const names = Object.keys(run.params || {});
    paramsSlot.replaceChildren(
      h('h2', { class: 'params-title' }, 'Parameters'),
      names.length === 0
        ? h('p', { class: 'muted' }, 'No parameters.')
        : h('table', { class: 'params-table' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
          h('tbody', {}, names.map((name) => h('tr', {},
            h('th', { scope: 'row' }, h('code', {}, name)),
            h('td', {}, h('code', {}, run.params[name] === null ? '—' : String(run.params[name]))))))),
      run.argv?.length ? h('details', { class: 'command' }, h('summary', {}, 'Command line'),
        h('code', { class: 'argv' }, commandLine(run.argv))) : null,
    );
    if (!confirming) renderActions();
  };

  const tick = () => {
    if (!durationCell) return;
    let ms = run.duration_ms;
    if (run.status === 'running' && typeof ms === 'number') ms += performance.now() - fetchedAt;
    durationCell.textContent = run.status === 'queued' ? '—' : formatDuration(ms);
  };
  const ticker = setInterval(tick, 1000);
  ctx.onCleanup(() => clearInterval(ticker));

  const renderActions = () => {
    const items = [];
    if (!isFinal(run.status)) {
      items.push(h('button', { type: 'button', class: 'danger', onclick: askCancel }, 'Cancel run'));
    }
    if (job) {
      const query = rerunQuery(job.params, run.params);
      items.push(h('a', { class: 'button-link', href: `/jobs/${encodeURIComponent(run.job)}${query ? `?${query}` : ''}` }, 'Run again'));
    }
    actions.replaceChildren(...items);
  };

  const say = (message, isError = false) => {
    actionMessage.textContent = message;
    actionMessage.className = isError ? 'notice error' : 'notice';
    actionMessage.hidden = !message;
  };

  function askCancel() {
    confirming = true;
    const yes = h('button', { type: 'button', class: 'danger', onclick: () => doCancel() }, 'Yes, cancel it');
    const no = h('button', { type: 'button', onclick: () => { confirming = false; renderActions(); actions.querySelector('button')?.focus(); } }, 'Keep it running');
    const box = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm cancel' },
      h('span', {}, run.status === 'queued'
        ? `Cancel run #${run.id}? It has not started yet.`
        : `Cancel run #${run.id}? Its processes get SIGTERM, then SIGKILL after the grace period.`),
      yes, no);
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') no.click();
    });
    actions.replaceChildren(box);
    yes.focus();
  }

  async function doCancel() {
    confirming = false;
    actions.replaceChildren(h('span', { class: 'muted' }, 'Cancelling…'));
    try {
      const { data } = await api(`/api/v1/runs/${id}/cancel`, { method: 'POST', signal: ctx.signal });
      run = data;
      fetchedAt = performance.now();
      say(run.status === 'cancelled' ? 'The run was cancelled.' : 'Cancel requested: the run is stopping.');
    } catch (error) {
      if (isAbort(error)) return;
      if (error.status === 409) say(`Nothing to cancel: ${error.message}.`);
      else say(`Could not cancel: ${error.message}`, true);
      await refresh();
    }
    renderRun();
    scheduleRefresh();
  }

  const refresh = async () => {
    try {
      const { data } = await api(`/api/v1/runs/${id}`, { signal: ctx.signal });
      run = data;
      fetchedAt = performance.now();
      renderRun();
    } catch (error) {
      if (isAbort(error)) throw error;
      // Keep showing what we have; the log stream reports connectivity.
    }
  };

  let refreshTimer = null;
  const scheduleRefresh = () => {
    clearTimeout(refreshTimer);
    if (isFinal(run.status) || ctx.signal.aborted) return;
    refreshTimer = setTimeout(async () => {
      await refresh().catch(() => {});
      scheduleRefresh();
    }, run.status === 'queued' ? 1500 : 3000);
  };
  ctx.onCleanup(() => clearTimeout(refreshTimer));

  renderRun();
  scheduleRefresh();
  api(`/api/v1/jobs/${encodeURIComponent(run.job)}`, { signal: ctx.signal })
    .then(({ data }) => {
      job = data;
      if (!confirming) renderActions();
    })
    .catch(() => {});

  // Permalinks: #L123 scrolls to and highlights the line holding sequence 123 (its page is
  // fetched when the view does not hold it).
  const hashSeq = () => {
    const match = /^#L([0-9]+)$/.exec(location.hash);
    return match ? Number(match[1]) : null;
  };
  const followHash = () => {
    const seq = hashSeq();
    if (seq !== null) view.setTarget(seq);
  };
  ctx.onHash = followHash;

  // Tail first: the page opens at the end of the log (or around a permalink's line), learns
  // the head from that page, and follows live from the head. Earlier lines are fetched when
  // the view comes to them.
  const logPath = `/api/v1/runs/${id}/log`;
  view.setSource({
    fetchPage: async ({ after: afterSeq, before, limit }) =>
      (await api(`${logPath}?after=${afterSeq}&before=${before}&limit=${limit}`, { signal: ctx.signal })).data,
    search: async (query, afterSeq, limit) =>
      (await api(`${logPath}/search?q=${encodeURIComponent(query)}&after=${afterSeq}&limit=${limit}`, { signal: ctx.signal })).data,
  });
  const wanted = hashSeq();
  let opening = null;
  try {
    const first = wanted === null
      ? `${logPath}?tail=${TAIL_ENTRIES}`
      : `${logPath}?after=${Math.max(0, wanted - TAIL_ENTRIES / 2)}&limit=${TAIL_ENTRIES}`;
    ({ data: opening } = await api(first, { signal: ctx.signal }));
  } catch (error) {
    if (isAbort(error)) throw error;
    // The stream then starts from the beginning: the window still bounds what is kept.
    view.addNotice(errorBox(`Cannot load the end of the log (${error.message}); reading it from the start.`));
  }
  if (opening) view.loadPage(opening);
  followHash();
  const openingEntries = opening?.entries || [];
  const liveAfter = Number.isFinite(opening?.head) ? opening.head : (openingEntries.at(-1)?.seq ?? 0);

  // The live log.
  const transportBadge = h('span', { class: 'transport', role: 'status', title: '' });
  view.setTransportBadge(transportBadge);
  const fallbackNotice = h('div', { class: 'notice fallback', hidden: true });
  view.addNotice(fallbackNotice);
  let sawEntries = false;
  const stream = new LogStream(id, {
    base: BASE,
    after: liveAfter,
    token: readToken(),
    onEntries: (entries) => {
      view.append(entries);
      if (!sawEntries && run.status === 'queued') refresh().catch(() => {});
      sawEntries = true;
    },
    onDone: (done) => {
      view.finish();
      if (done.status && done.status !== run.status) {
        run = { ...run, status: done.status };
        statusSlot.replaceChildren(badge(run.status));
      }
      refresh().catch(() => {});
    },
    onState: (state) => {
      showTransport(transportBadge, fallbackNotice, state);
      // The stream stops for good when its ticket is refused, e.g. the token was revoked or
      // expired: ask the server whether the token still works; a 401 brings the sign-in page.
      if (state.state === 'failed' && readToken()) api('/api/v1/whoami', { signal: ctx.signal }).catch(() => {});
    },
  });
  ctx.onCleanup(() => stream.stop());
  stream.start();
}

function showTransport(badgeNode, notice, { transport, state, fallbacks, reason, retryInMs }) {
  const label = LABELS[transport] || transport;
  let stateText = state;
  if (state === 'reconnecting') {
    stateText = retryInMs ? `reconnecting… (retry in ${Math.max(1, Math.round(retryInMs / 1000))} s)` : 'reconnecting…';
  } else if (state === 'done') {
    stateText = 'complete';
  }
  badgeNode.className = `transport transport-${state}`;
  badgeNode.replaceChildren(
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', { class: 'visually-hidden' }, 'Live log transport: '),
    h('strong', {}, label),
    ` · ${stateText}`,
  );
  badgeNode.title = reason ? `${label}: ${stateText} (${reason})` : `${label}: ${stateText}`;
  if (state === 'failed') {
    notice.hidden = false;
    notice.className = 'notice error fallback';
    notice.replaceChildren(`The live log stopped: ${reason}.`);
    return;
  }
  if (!fallbacks || fallbacks.length === 0) {
    notice.hidden = true;
    return;
  }
  notice.hidden = false;
  notice.className = 'notice fallback';
  const lines = fallbacks.map((fallback) => {
    const when = fallback.remembered
      ? ` (remembered from ${formatAgo(fallback.at, Date.now())}; ${LABELS[fallback.from]} is tried again after an hour)`
      : '';
    return h('li', {}, `${LABELS[fallback.from]} is not used: ${fallback.reason || 'it failed'}${when}.`);
  });
  notice.replaceChildren(
    h('p', {}, h('strong', {}, `Live log over ${label}.`), ' ', 'It works the same, with the same lines, just through a different kind of connection.'),
    h('ul', {}, lines),
    h('p', { class: 'muted' }, 'How to let WebSocket and Server-Sent Events through your proxies: see ',
      h('a', { href: '/docs/deployment.md', target: '_blank', rel: 'noopener' }, 'the deployment guide'),
      ', or run ', h('code', {}, 'oneoff doctor'), ' against this address to find the hop that breaks it.'),
  );
}

// ---------------------------------------------------------------------------------------
// `/runs`: history

const PAGE_SIZE = 50;

async function historyPage(ctx) {
  setTitle('Runs');
  const q = ctx.query;
  const jobSelect = h('select', { id: 'filter-job', name: 'job' }, h('option', { value: '' }, 'All jobs'));
  const statusSelect = h('select', { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((status) => h('option', { value: status }, statusLabel(status))));
  statusSelect.value = q.get('status') || '';
  const userInput = h('input', { type: 'search', id: 'filter-user', name: 'user', value: q.get('user') || '', autocomplete: 'off', placeholder: 'e.g. alice' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    h('div', { class: 'filter' }, h('label', { for: 'filter-job' }, 'Job'), jobSelect),
    h('div', { class: 'filter' }, h('label', { for: 'filter-status' }, 'Status'), statusSelect),
    h('div', { class: 'filter' }, h('label', { for: 'filter-user' }, 'Requested by'), userInput),
    h('button', { type: 'submit' }, 'Apply'));
  const note = h('p', { class: 'notice', role: 'status', hidden: true });
  const tableSlot = h('div', { class: 'runs-table-wrap' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Runs')), form, note, tableSlot, pager);

  const apply = () => {
    const params = new URLSearchParams();
    if (jobSelect.value) params.set('job', jobSelect.value);
    if (statusSelect.value) params.set('status', statusSelect.value);
    if (userInput.value.trim()) params.set('user', userInput.value.trim());
    navigate(`/runs${params.toString() ? `?${params}` : ''}`);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  jobSelect.addEventListener('change', apply);
  statusSelect.addEventListener('change', apply);

  api('/api/v1/jobs', { signal: ctx.signal }).then(({ data }) => {
    const names = (data.jobs || []).map((job) => job.name);
    const wanted = q.get('job');
    if (wanted && !names.includes(wanted)) names.push(wanted);
    jobSelect.append(...names.map((name) => h('option', { value: name }, name)));
    jobSelect.value = wanted || '';
  }).catch(() => {});

  const user = q.get('user') || '';
  const filterOnPage = (data) => {
    note.textContent = 'This server cannot filter by user: only this page of runs is filtered.';
    note.hidden = false;
    return { ...data, runs: data.runs.filter((run) => (run.requested_by || '').includes(user)) };
  };
  const load = async () => {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const key of ['job', 'status', 'before']) if (q.get(key)) params.set(key, q.get(key));
    const serverFilters = user && !userFilterUnsupported();
    if (serverFilters) params.set('requested_by', user);
    try {
      const { data } = await api(`/api/v1/runs?${params}`, { signal: ctx.signal });
      note.hidden = true;
      return user && !serverFilters ? filterOnPage(data) : data;
    } catch (error) {
      if (!(serverFilters && error.status === 400 && /requested_by/.test(error.message))) throw error;
      // This server cannot filter by user (yet): filter the page instead, and do not ask
      // again in this session.
      rememberUserFilterUnsupported();
      params.delete('requested_by');
      const { data } = await api(`/api/v1/runs?${params}`, { signal: ctx.signal });
      return filterOnPage(data);
    }
  };

  const draw = (data) => {
    const runs = data.runs || [];
    if (runs.length === 0) {
      const filtered = q.get('job') || q.get('status') || user;
      tableSlot.replaceChildren(h('p', { class: 'muted empty' }, filtered
        ? 'No run matches these filters.'
        : q.get('before') ? 'No older runs.' : 'No runs yet. Launch one from the job catalog.'));
    } else {
      tableSlot.replaceChildren(h('table', { class: 'runs-table data-table' },
        h('thead', {}, h('tr', {}, ['Run', 'Job', 'Status', 'Requested by', 'Created', 'Duration', 'Result']
          .map((title) => h('th', { scope: 'col' }, title)))),
        h('tbody', {}, runs.map(runRow))));
    }
    const links = [];
    if (q.get('before')) {
      const newest = new URLSearchParams(q);
      newest.delete('before');
      links.push(h('a', { href: `/runs${newest.toString() ? `?${newest}` : ''}` }, '← Newest runs'));
    }
    if (data.next_before !== null && data.next_before !== undefined) {
      const older = new URLSearchParams(q);
      older.set('before', String(data.next_before));
      links.push(h('a', { href: `/runs?${older}`, rel: 'next' }, 'Older runs →'));
    }
    pager.replaceChildren(...links);
  };

  let data = await load();
  draw(data);
  // The first page refreshes itself while runs on it are live.
  let last = JSON.stringify(data);
  const timer = setInterval(async () => {
    if (q.get('before') || !data.runs.some((run) => !isFinal(run.status))) return;
    if (tableSlot.contains(document.activeElement)) return;
    try {
      const fresh = await load();
      const text = JSON.stringify(fresh);
      if (text !== last) {
        last = text;
        data = fresh;
        draw(data);
      }
    } catch {
      // keep the current table
    }
  }, 3000);
  ctx.onCleanup(() => clearInterval(timer));
}

const USER_FILTER_KEY = 'oneoff.runs.requested_by.unsupported';

function userFilterUnsupported() {
  try {
    return sessionStorage.getItem(USER_FILTER_KEY) === '1';
  } catch {
    return false;
  }
}

function rememberUserFilterUnsupported() {
  try {
    sessionStorage.setItem(USER_FILTER_KEY, '1');
  } catch {
    // a convenience only
  }
}

function runRow(run) {
  const duration = run.status === 'queued' ? '—' : formatDuration(run.duration_ms);
  return h('tr', {},
    h('td', { 'data-label': 'Run' }, h('a', { href: `/runs/${run.id}` }, `#${run.id}`)),
    h('td', { 'data-label': 'Job' }, run.job),
    h('td', { 'data-label': 'Status' }, badge(run.status)),
    h('td', { 'data-label': 'Requested by' }, run.requested_by || h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Created' }, timeElement(run.created_at)),
    h('td', { 'data-label': 'Duration', class: 'num' }, duration),
    h('td', { 'data-label': 'Result' }, isFinal(run.status) ? describeOutcome(run) : ''));
}

// ---------------------------------------------------------------------------------------
// `/tokens`: your API tokens (all of them for an administrator)

/** A date on one line, and under it how long ago or how far ahead it is. */
function whenCell(text, { future = false, none = '—' } = {}) {
  if (!text) return h('span', { class: 'muted' }, none);
  const ms = parseTimestamp(text);
  const now = Date.now();
  const relative = future && ms > now ? formatIn(ms, now) : formatAgo(ms, now);
  return [timeElement(text), h('span', { class: 'when-relative' }, relative)];
}

async function tokensPage(ctx) {
  setTitle('API tokens');
  const name = h('input', { id: 'token-name', name: 'name', required: true, maxlength: 64, autocomplete: 'off', placeholder: 'e.g. laptop' });
  const expires = h('select', { id: 'token-expires', name: 'expires' },
    ['30d', '90d', '1y'].map((value) => h('option', { value }, value)), h('option', { value: '' }, 'never'));
  const shown = h('div', { class: 'notice', role: 'status', hidden: true });
  const failure = h('p', { class: 'notice error', role: 'alert', hidden: true });
  const form = h('form', { class: 'filters', 'aria-label': 'Create a token' },
    h('div', { class: 'filter' }, h('label', { for: 'token-name' }, 'Name'), name),
    h('div', { class: 'filter' }, h('label', { for: 'token-expires' }, 'Expires in'), expires),
    h('button', { type: 'submit', class: 'primary' }, 'Create token'));
  const tableSlot = h('div', { class: 'data-table-wrap' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'API tokens')),
    h('p', { class: 'muted' }, 'Tokens let the CLI and scripts act as you: ', h('code', {}, 'ONEOFF_TOKEN=… oneoff run …'),
      '. A token made with another token is its child: it expires no later and is revoked with it.'),
    form, shown, failure, tableSlot);

  const draw = async () => {
    const { data } = await api('/api/v1/tokens', { signal: ctx.signal });
    const tokens = data.tokens || [];
    if (tokens.length === 0) {
      tableSlot.replaceChildren(h('p', { class: 'muted empty' }, 'No tokens yet. Create one above.'));
      return;
    }
    const now = Date.now();
    const byId = new Map(tokens.map((token) => [token.id, token]));
    const rows = tokens.map((token) => {
      const { state, label } = tokenState(token, now);
      const parent = token.parent_id === null || token.parent_id === undefined ? null : byId.get(token.parent_id);
      const children = activeChildren(token, tokens, now);
      const revokeTitle = children.length
        ? `Revoke ${token.name} and the ${children.length} token${children.length === 1 ? '' : 's'} made with it`
        : `Revoke ${token.name}`;
      return h('tr', { class: `token-${state}`, 'data-token': String(token.id) },
        h('td', { 'data-label': 'Name' }, h('strong', {}, token.name), ' ', h('span', { class: 'muted' }, `#${token.id}`)),
        h('td', { 'data-label': 'User' }, token.user,
          token.groups?.length ? h('span', { class: 'when-relative' }, token.groups.join(', ')) : null),
        h('td', { 'data-label': 'State' }, h('span', { class: `badge token-state state-${state}` }, label),
          state === 'revoked' ? h('span', { class: 'when-relative' }, formatDateTime(token.revoked_at)) : null),
        h('td', { 'data-label': 'Expires' }, whenCell(token.expires_at, { future: true, none: 'never' })),
        h('td', { 'data-label': 'Last used' }, whenCell(token.last_used_at, { none: 'never used' })),
        h('td', { 'data-label': 'Created' }, whenCell(token.created_at),
          token.created_by && token.created_by !== token.user ? h('span', { class: 'when-relative' }, `by ${token.created_by}`) : null),
        h('td', { 'data-label': 'Made with' }, token.parent_id === null || token.parent_id === undefined
          ? h('span', { class: 'muted' }, '—')
          : h('span', { class: 'token-parent' }, parent ? `${parent.name} ` : 'token ', h('span', { class: 'muted' }, `#${token.parent_id}`))),
        h('td', { class: 'actions' }, state === 'revoked' ? '' : h('button', {
          type: 'button', class: 'danger', title: revokeTitle, 'aria-label': revokeTitle, onclick: () => revoke(token),
        }, 'Revoke')));
    });
    tableSlot.replaceChildren(h('table', { class: 'data-table tokens-table' },
      h('thead', {}, h('tr', {}, ['Name', 'User', 'State', 'Expires', 'Last used', 'Created', 'Made with', '']
        .map((title) => h('th', { scope: 'col' }, title || h('span', { class: 'visually-hidden' }, 'Actions'))))),
      h('tbody', {}, rows)));
  };
  const revoke = async (token) => {
    try {
      await api(`/api/v1/tokens/${token.id}`, { method: 'DELETE', signal: ctx.signal });
      await draw();
    } catch (error) {
      failure.textContent = error.message;
      failure.hidden = false;
    }
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    failure.hidden = true;
    try {
      const body = { name: name.value.trim(), ...(expires.value ? { expires_in: expires.value } : {}) };
      const { data } = await api('/api/v1/tokens', { method: 'POST', body, signal: ctx.signal });
      shown.replaceChildren(h('p', {}, h('strong', {}, `Your new token “${data.info.name}”`), ' (shown only now; copy it):'),
        h('code', { class: 'token-secret' }, data.token));
      shown.hidden = false;
      name.value = '';
      await draw();
    } catch (error) {
      if (isAbort(error)) return;
      failure.textContent = error.message;
      failure.hidden = false;
    }
  });
  try {
    await draw();
  } catch (error) {
    if (isAbort(error)) return;
    failure.textContent = error.message;
    failure.hidden = false;
  }
}

// ---------------------------------------------------------------------------------------
// `/audit`: the audit trail (administrators)

const AUDIT_FILTERS = ['actor', 'action', 'job', 'since', 'until'];

async function auditPage(ctx) {
  setTitle('Audit trail');
  const q = ctx.query;
  const verdict = h('p', { class: 'notice', role: 'status', hidden: true });
  const verify = h('button', { type: 'button' }, 'Verify the chain');
  const actor = h('input', { type: 'search', id: 'audit-actor', name: 'actor', value: q.get('actor') || '', autocomplete: 'off', placeholder: 'e.g. alice' });
  const action = h('select', { id: 'audit-action', name: 'action' }, h('option', { value: '' }, 'Any action'),
    AUDIT_ACTIONS.map(({ code, label }) => h('option', { value: code, title: label }, code)));
  const wantedAction = q.get('action') || '';
  if (wantedAction && !AUDIT_ACTIONS.some(({ code }) => code === wantedAction)) action.append(h('option', { value: wantedAction }, wantedAction));
  action.value = wantedAction;
  const jobs = h('datalist', { id: 'audit-jobs' });
  const job = h('input', { type: 'search', id: 'audit-job', name: 'job', value: q.get('job') || '', autocomplete: 'off', list: 'audit-jobs', placeholder: 'any job' });
  const since = h('input', { type: 'datetime-local', id: 'audit-since', name: 'since', value: localInputValue(q.get('since')) });
  const until = h('input', { type: 'datetime-local', id: 'audit-until', name: 'until', value: localInputValue(q.get('until'), { end: true }) });
  const filtered = AUDIT_FILTERS.some((key) => q.get(key));
  const form = h('form', { class: 'filters audit-filters', role: 'search', 'aria-label': 'Filter the audit trail' },
    h('div', { class: 'filter' }, h('label', { for: 'audit-actor' }, 'Actor'), actor),
    h('div', { class: 'filter' }, h('label', { for: 'audit-action' }, 'Action'), action),
    h('div', { class: 'filter' }, h('label', { for: 'audit-job' }, 'Job'), job, jobs),
    h('div', { class: 'filter' }, h('label', { for: 'audit-since' }, 'From'), since),
    h('div', { class: 'filter' }, h('label', { for: 'audit-until' }, 'To'), until),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      filtered ? h('a', { href: '/audit', class: 'button-link' }, 'Clear') : null));
  const tableSlot = h('div', { class: 'data-table-wrap' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Audit trail'), verify), verdict, form, tableSlot, pager);
  verify.addEventListener('click', async () => {
    try {
      const { data } = await api('/api/v1/audit/verify', { signal: ctx.signal });
      verdict.textContent = auditVerdict(data);
    } catch (error) {
      verdict.textContent = error.message;
    }
    verdict.hidden = false;
  });
  const windowError = h('p', { class: 'notice error', role: 'alert', hidden: true });
  form.after(windowError);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const [from, to] = [windowBound(since.value), windowBound(until.value, { end: true })];
    windowError.hidden = !(from && to && from >= to);
    if (!windowError.hidden) {
      windowError.textContent = '“From” must be before “To”: no record can be in this window.';
      since.setAttribute('aria-invalid', 'true');
      return;
    }
    since.removeAttribute('aria-invalid');
    const params = new URLSearchParams();
    if (actor.value.trim()) params.set('actor', actor.value.trim());
    if (action.value) params.set('action', action.value);
    if (job.value.trim()) params.set('job', job.value.trim());
    if (windowBound(since.value)) params.set('since', windowBound(since.value));
    if (windowBound(until.value, { end: true })) params.set('until', windowBound(until.value, { end: true }));
    navigate(`/audit${params.toString() ? `?${params}` : ''}`);
  });
  action.addEventListener('change', () => form.requestSubmit());
  api('/api/v1/jobs', { signal: ctx.signal }).then(({ data }) => {
    jobs.append(...(data.jobs || []).map((entry) => h('option', { value: entry.name })));
  }).catch(() => {});

  const params = new URLSearchParams();
  for (const key of [...AUDIT_FILTERS, 'before']) if (q.get(key)) params.set(key, q.get(key));
  params.set('limit', '100');
  let data;
  try {
    ({ data } = await api(`/api/v1/audit?${params}`, { signal: ctx.signal }));
  } catch (error) {
    if (isAbort(error)) return;
    tableSlot.replaceChildren(h('p', { class: 'notice error', role: 'alert' }, error.message));
    if (error.status === 403) verify.hidden = true;
    return;
  }
  const records = data.records || [];
  if (records.length === 0) {
    tableSlot.replaceChildren(h('p', { class: 'muted empty' }, filtered
      ? 'No record matches these filters.' : q.get('before') ? 'No older records.' : 'The audit trail is empty.'));
  } else {
    const columns = ['When', 'Actor', 'Action', 'What happened', 'Job', 'Run', ''];
    const rows = records.flatMap((record) => auditRows(record, columns.length));
    tableSlot.replaceChildren(h('table', { class: 'data-table audit-table' },
      h('thead', {}, h('tr', {}, columns.map((title) => h('th', { scope: 'col' }, title || h('span', { class: 'visually-hidden' }, 'Details'))))),
      h('tbody', {}, rows)));
  }
  const links = [];
  if (q.get('before')) {
    const newest = new URLSearchParams(q);
    newest.delete('before');
    links.push(h('a', { href: `/audit${newest.toString() ? `?${newest}` : ''}` }, '← Newest records'));
  }
  if (data.next_before) {
    const older = new URLSearchParams(q);
    older.set('before', String(data.next_before));
    links.push(h('a', { href: `/audit?${older}`, rel: 'next' }, 'Older records →'));
  }
  pager.replaceChildren(...links);
}

/** One audit record: its row, and the hidden row under it with every field and the detail. */
function auditRows(record, span) {
  const detailId = `audit-detail-${record.id}`;
  const toggle = h('button', { type: 'button', class: 'icon details-toggle', 'aria-expanded': 'false', 'aria-controls': detailId, title: 'Show every field of this record' }, 'Details');
  const denied = String(record.action).startsWith('denied.');
  const row = h('tr', { class: denied ? 'audit-denied' : null },
    h('td', { 'data-label': 'When', class: 'nowrap' }, timeElement(record.at)),
    h('td', { 'data-label': 'Actor' }, record.actor),
    h('td', { 'data-label': 'Action' }, h('code', { class: `action${denied ? ' action-denied' : ''}` }, record.action)),
    h('td', { 'data-label': 'What', class: 'audit-message' }, record.message || h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Job' }, record.job || h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Run' }, record.run_id ? h('a', { href: `/runs/${record.run_id}` }, `#${record.run_id}`) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'actions' }, toggle));
  const pretty = prettyDetail(record.detail);
  const fields = [
    ['Record', `#${record.id}`], ['At', record.at], ['Actor', record.actor], ['Identity from', record.source],
    ['Client', record.client], ['Action', record.action], ['Hash', record.hash],
  ];
  const detail = h('tr', { class: 'audit-detail', id: detailId, hidden: true },
    h('td', { colspan: String(span) },
      h('dl', { class: 'record-fields' }, fields.map(([term, value]) => [h('dt', {}, term), h('dd', {}, h('code', {}, String(value ?? '—')))])),
      pretty ? h('pre', { class: 'record-detail', 'aria-label': 'Detail (JSON)' }, pretty) : h('p', { class: 'muted' }, 'No further detail.')));
  toggle.addEventListener('click', () => {
    const open = detail.hidden;
    detail.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? 'Hide' : 'Details';
  });
  return [row, detail];
}

render();
if (readToken()) {
  api('/api/v1/whoami').then(({ data }) => showIdentity(data)).catch(() => {});
}
