import { hidePasswords, redact, redactError } from '../../lib/drivers/redact.js';
import { inspect } from 'node:util';

describe('redact', () => {
  it('hides the password of a URL, even a malformed one whose password holds @ : / ?', () => {
    expect(redact('Invalid URL mysql://root:se@cr:et/?#@host:notaport/db')).toBe('Invalid URL mysql://root:***@host:notaport/db');
    expect(redact("connect 'postgres://u:p@h/d' failed")).toBe("connect 'postgres://u:***@h/d' failed");
  });

  it('hides password= pairs and JSON password fields, and the known password in any form', () => {
    expect(redact('host=h password=hunter2 user=u')).toBe('host=h password=*** user=u');
    expect(redact('{"user":"u","password":"hun\\"ter2"}')).toBe('{"user":"u","password":"***"}');
    expect(redact('x p@ss/w0rd y p%40ss%2Fw0rd', 'p@ss/w0rd')).toBe('x *** y ***');
  });

  it('keeps messages that only mention passwords', () => {
    const message = "Access denied for user 'u'@'h' (using password: YES)";
    expect(redact(message)).toBe(message);
  });

  it('scrubs every string property of an error and its causes, in place', () => {
    const inner = Object.assign(new TypeError('Invalid URL'), { input: 'mysql://u:topsecret@h:x/d' });
    const outer = new Error('failed with topsecret', { cause: inner });
    redactError(outer, 'topsecret');
    expect(inspect(outer, { depth: 5 })).not.toContain('topsecret');
    expect(inner.input).toBe('mysql://u:***@h:x/d');
  });

  it('turns password fields into hidden accessors that still read and write', () => {
    const config: Record<string, unknown> = { user: 'u', password: 'topsecret' };
    hidePasswords(config);
    expect(config.password).toBe('topsecret');
    expect(JSON.stringify(config)).not.toContain('topsecret');
    expect(inspect(config, { showHidden: true })).not.toContain('topsecret');
    config.password = 'next';
    expect(config.password).toBe('next');
  });
});
