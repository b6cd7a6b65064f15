/**
 * Scrubs secrets from text that may reach an error message or a log: the password itself
 * (when it is a known string, also URL-encoded), any `scheme://user:password@` in a URL, and
 * `password=…` pairs of connection strings. Drivers call it on every message they translate,
 * because some put the connection URL in their errors (mysql2 does, for a malformed URL).
 *
 * @example
 * redact('bad url mysql://root:hunter2@db/app'); // 'bad url mysql://root:***@db/app'
 */
export function redact(text: string, password?: unknown): string {
  let out = text
    // Up to the last @ of the URL: in a malformed one (what mysql2 echoes) the password itself may hold an @.
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):\S*@/gi, '$1:***@')
    .replace(/\b(password|passwd|pwd)=(?:'[^']*'|"[^"]*"|[^\s&;,)]+)/gi, '$1=***')
    .replace(/("(?:password|passwd|pwd)"\s*:\s*)"(?:[^"\\]|\\.)*"/gi, '$1"***"');
  // Shorter strings would turn ordinary words into asterisks; such a password is no secret anyway.
  if (typeof password === 'string' && password.length >= 3) {
    for (const form of new Set([password, encodeURIComponent(password)])) out = out.split(form).join('***');
  }
  return out;
}

/**
 * Scrubs, in place, every string property of a driver error and of its causes (`message`,
 * `stack`, and such as the `input` a WHATWG `URL` error carries: the whole URL). The error
 * is kept as the `cause` of ours, and `util.inspect` shows a cause even when it is not
 * enumerable, so what it holds must be as clean as our own message. Returns `error`.
 */
export function redactError<T>(error: T, password?: unknown): T {
  const seen = new Set<unknown>();
  for (let e: unknown = error, depth = 0; e !== null && typeof e === 'object' && depth < 4 && !seen.has(e); depth++) {
    seen.add(e);
    for (const key of Object.getOwnPropertyNames(e)) {
      const descriptor = Object.getOwnPropertyDescriptor(e, key);
      if (!descriptor || typeof descriptor.value !== 'string') continue;
      const clean = redact(descriptor.value, password);
      if (clean === descriptor.value) continue;
      try {
        Object.defineProperty(e, key, { ...descriptor, value: clean });
      } catch {
        // A frozen or non-configurable property: nothing can be done, and nothing is made worse.
      }
    }
    e = (e as { cause?: unknown }).cause;
  }
  return error;
}

/**
 * Turns the password fields of a driver's own config object into hidden accessors: mysql2
 * keeps them in `connection.config`, which `util.inspect` of anything holding a connection
 * (a `Transaction`, say) would print; even `{ showHidden: true }` shows only `[Getter/Setter]`.
 * The driver still reads (and may replace) them by name.
 */
export function hidePasswords(config: object | undefined): void {
  if (!config) return;
  for (const key of ['password', 'password1', 'password2', 'password3', 'passwordSha1']) {
    const descriptor = Object.getOwnPropertyDescriptor(config, key);
    if (!descriptor || !descriptor.configurable || !('value' in descriptor)) continue;
    let value: unknown = descriptor.value;
    Object.defineProperty(config, key, {
      get: () => value,
      set: (next: unknown) => {
        value = next;
      },
      enumerable: false,
      configurable: true,
    });
  }
}
