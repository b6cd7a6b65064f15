import { Injectable, Logger } from '@nestjs/common';
import { Database, InjectDatabase, OnNotify, sql, type Notification } from '../../lib/index.js';

export const TABLE_CHANGES = 'table_changes';

export interface TableMatches {
  /** The payload of the last notification, a fragment of a table name; null before the first. */
  fragment: string | null;
  tables: string[];
  receivedAt: string | null;
}

/** After txpostgres's example: each NOTIFY carries a table-name fragment; log the tables it matches. */
@Injectable()
export class TableChangesListener {
  private readonly logger = new Logger(TableChangesListener.name);
  last: TableMatches = { fragment: null, tables: [], receivedAt: null };

  constructor(@InjectDatabase() private readonly db: Database) {}

  /** Runs off the listener's socket, one notification at a time; a throw is logged by the module. */
  @OnNotify(TABLE_CHANGES)
  async onTableChanges({ payload }: Notification): Promise<void> {
    const rows = await this.db.runQuery<{ table_name: string }>(sql`
      SELECT table_name FROM information_schema.tables
      WHERE table_schema = current_schema() AND table_name LIKE ${`%${payload}%`}
      ORDER BY table_name`);
    const tables = rows.map((r) => r.table_name);
    this.last = { fragment: payload, tables, receivedAt: new Date().toISOString() };
    this.logger.log(`Tables matching '${payload}': ${tables.join(', ') || '(none)'}`);
  }
}
