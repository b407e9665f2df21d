// The login page: shown when the API asks for a token (a listener off loopback). The
// token is kept in this tab's session storage only, and sent as a bearer header.

import { setToken, token } from '../api.js';
import { esc } from '../format.js';

export function show(main, refusal, retry) {
  const had = token();
  setToken(null);
  const why = had
    ? `The token was refused: ${refusal.message}`
    : 'This holdfast asks for a token. Ask whoever runs it for one with the scope "read".';
  main.innerHTML = `
    <section class="login">
      <h1>Sign in</h1>
      <p id="login-why" class="${had ? 'error' : 'muted'}">${esc(why)}</p>
      <form id="login-form" autocomplete="off">
        <label for="login-token">API token</label>
        <input id="login-token" name="token" type="password" required spellcheck="false" autocomplete="off">
        <button type="submit">Open the dashboard</button>
      </form>
      <p class="muted">It is kept in this tab only and forgotten when the tab closes.</p>
    </section>`;
  const input = main.querySelector('#login-token');
  input.focus();
  main.querySelector('#login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    retry();
  });
}
