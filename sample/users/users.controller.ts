import { Controller, Get, NotFoundException, Param, Query, Res } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';
import { UsersService } from './users.service.js';

/** The methods of Express's `Response` used here (`Response` itself, with @types/express). */
interface TextResponse {
  type(contentType: string): unknown;
  write(chunk: string): boolean;
  end(): void;
  once(event: 'drain', listener: () => void): unknown;
}

@Controller('users')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  /**
   * `GET /users`: every user, one JSON object per line, streamed from the database with
   * backpressure: a slow client holds one connection and a batch of rows, never the whole table.
   * `?throttleMs=100` waits that long after each row, to watch it (and a graceful shutdown) happen.
   */
  @Get()
  async export(@Query('throttleMs') throttleMs: string | undefined, @Res() res: TextResponse): Promise<void> {
    res.type('application/x-ndjson');
    const pause = Math.min(Number(throttleMs) || 0, 5000);
    for await (const user of this.users.all()) {
      if (!res.write(JSON.stringify(user) + '\n')) await new Promise<void>((resolve) => res.once('drain', resolve));
      if (pause > 0) await delay(pause);
    }
    res.end();
  }

  /** `GET /users/yoen` → Mr 'Yoen Van der Veld' is connected under 'yoen' */
  @Get(':login')
  async greet(@Param('login') login: string, @Res({ passthrough: true }) res: TextResponse): Promise<string> {
    const user = await this.users.find(login);
    if (!user) throw new NotFoundException(`No user '${login}'`);
    // Set here rather than with @Header(), which would also label the 404's JSON as text.
    res.type('text/plain');
    return `Mr '${user.forname} ${user.name}' is connected under '${user.login}'`;
  }
}
