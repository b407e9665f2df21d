// The dashboard's frame: the router (#/ pages), one subscription to the API's event
// stream shared by every page, and the login page when the API asks for a token.

import { Refused, get, stream } from './api.js';

// The overview's data is asked for before anything else loads: on the first page, the
// request and the page's modules travel at the same time.
const home = !location.hash || location.hash === '#/' || location.hash === '#';
const early = home ? get('/api/v1/overview') : null;
early?.catch(() => {});

const esc = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const main = document.getElementById('main');
const live = document.getElementById('live');

/** Every event of /api/v1/events, re-dispatched as a DOM event named after its type. */
export const events = new EventTarget();

const PAGES = [
  [/^#?\/?$/, () => import('./pages/overview.js')],
  [/^#\/object\/([^/]+)\/([^/]+)$/, () => import('./pages/object.js')],
  [/^#\/run\/([^/]+)$/, () => import('./pages/run.js')],
  [/^#\/backup\/([^/]+)\/([^/]+)\/([^/]+)$/, () => import('./pages/backup.js')],
];

let current = null;
let earlyTaken = false;

/** The overview fetched at start, once: later visits read it afresh. */
function takeEarly() {
  if (earlyTaken) return null;
  earlyTaken = true;
  return early;
}

async function route() {
  if (current?.leave) current.leave();
  current = null;
  const hash = location.hash || '#/';
  for (const [pattern, load] of PAGES) {
    const match = hash.match(pattern);
    if (!match) continue;
    const page = await load();
    const args = match.slice(1).map(decodeURIComponent);
    current = page;
    try {
      await page.show(main, args, { events, fail, early: takeEarly() });
    } catch (error) {
      fail(error);
    }
    return;
  }
  main.innerHTML = `<h1>Not found</h1><p>No page at ${esc(hash)}. <a href="#/">Back to the overview</a>.</p>`;
}

/** The login page is up: later refusals of the same attempt change nothing. */
let locked = false;

function fail(error) {
  if (error instanceof Refused) {
    if (locked) return;
    locked = true;
    if (current?.leave) current.leave();
    current = null;
    connected = false;
    controller?.abort();
    import('./pages/login.js').then((login) => login.show(main, error, start));
    live.textContent = 'locked';
    return;
  }
  main.insertAdjacentHTML('afterbegin', `<p class="error" role="alert">${esc(error.message)}</p>`);
}

let controller = null;
let connected = false;

/** Keeps one event stream open, reconnecting with a growing pause when it drops. */
async function listen() {
  let pause = 500;
  connected = true;
  while (connected) {
    controller = new AbortController();
    try {
      await stream('/api/v1/events', (name, data) => {
        let detail;
        try {
          detail = JSON.parse(data);
        } catch {
          return;
        }
        events.dispatchEvent(new CustomEvent(name, { detail }));
        events.dispatchEvent(new CustomEvent('any', { detail: { name, ...detail } }));
      }, controller.signal, () => {
        live.dataset.state = 'live';
        live.textContent = 'live';
        pause = 500;
      });
    } catch (error) {
      if (error instanceof Refused) {
        fail(error);
        return;
      }
    }
    if (!connected) return;
    live.dataset.state = 'down';
    live.textContent = 'reconnecting…';
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10000);
    // Whatever happened while the stream was down: the page reads it again.
    events.dispatchEvent(new CustomEvent('reconnected'));
  }
}

function start() {
  locked = false;
  if (!connected) listen();
  route();
}

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (e) => {
  if (e.reason instanceof Refused) fail(e.reason);
});
live.dataset.state = 'connecting';
start();
