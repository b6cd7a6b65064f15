/**
 * Scrubs secrets from text that may reach an error message or a log: the password itself
 * (when it is a known string) and any `scheme://user:password@` in a URL. Drivers call it on
 * every message they translate, because some put the connection URL in their errors.
 */
export function redact(text: string, password?: unknown): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):[^@\s]*@/gi, '$1:***@');
  if (typeof password === 'string' && password.length >= 3) out = out.split(password).join('***');
  return out;
}
