// The path prefix the UI is served under (`[server] base_path`, e.g. `/oneoff`), and the
// app's own paths (`/runs/5`) in and out of it. The prefix is found from this script's own
// URL, which the server put under it: `/oneoff/assets/paths.js` means `/oneoff`. The app
// writes its paths from the root; they get the prefix where they meet the browser (links,
// fetches, history) and lose it where the browser's location is read.

/** The prefix of a script at `scriptUrl` under `PREFIX/assets/`: `''` at the root. */
export function basePathOf(scriptUrl) {
  return new URL('..', scriptUrl).pathname.replace(/\/$/, '');
}

/** This UI's prefix. */
export const BASE = typeof document === 'undefined' ? '' : basePathOf(import.meta.url);

/** `path` under the prefix when it is one of ours (`/…`, not `//host` nor `https://…`). */
export function withBase(path, base = BASE) {
  return typeof path === 'string' && path.startsWith('/') && !path.startsWith('//') ? base + path : path;
}

/** The app's path of a browser path, or null when it is outside the prefix. */
export function appPath(pathname, base = BASE) {
  if (!base) return pathname;
  if (pathname === base) return '/';
  return pathname.startsWith(`${base}/`) ? pathname.slice(base.length) : null;
}
