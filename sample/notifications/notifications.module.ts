import { Module } from '@nestjs/common';
import { NotificationsController } from './notifications.controller.js';
import { TableChangesListener } from './table-changes.listener.js';

/** PostgreSQL only: AppModule imports it when DATABASE_URL is postgres://. */
@Module({ controllers: [NotificationsController], providers: [TableChangesListener] })
export class NotificationsModule {}
