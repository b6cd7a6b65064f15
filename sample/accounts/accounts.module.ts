import { Module } from '@nestjs/common';
import { AccountsController } from './accounts.controller.js';
import { AccountsRepository } from './accounts.repository.js';
import { TransferService } from './transfer.service.js';

@Module({ controllers: [AccountsController], providers: [AccountsRepository, TransferService] })
export class AccountsModule {}
