import { BadRequestException, Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { Database, InjectDatabase } from '../../lib/index.js';
import { TABLE_CHANGES, TableChangesListener, type TableMatches } from './table-changes.listener.js';

@Controller('notify')
export class NotificationsController {
  constructor(
    @InjectDatabase() private readonly db: Database,
    private readonly listener: TableChangesListener,
  ) {}

  /** `POST /notify {"fragment": "acc"}`: a NOTIFY that every instance listening gets, this one too. */
  @Post()
  @HttpCode(202)
  async notify(@Body('fragment') fragment: unknown): Promise<{ channel: string; payload: string }> {
    if (typeof fragment !== 'string' || fragment.length === 0) throw new BadRequestException('fragment must be a non-empty string');
    await this.db.notify(TABLE_CHANGES, fragment);
    return { channel: TABLE_CHANGES, payload: fragment };
  }

  /** The tables matched by the last notification this instance received. */
  @Get('last')
  last(): TableMatches {
    return this.listener.last;
  }
}
