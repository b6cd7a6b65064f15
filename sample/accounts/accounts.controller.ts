import { Body, Controller, Get, HttpCode, ParseIntPipe, Post } from '@nestjs/common';
import { AccountsRepository, type Account } from './accounts.repository.js';
import { TransferService } from './transfer.service.js';

@Controller('accounts')
export class AccountsController {
  constructor(
    private readonly accounts: AccountsRepository,
    private readonly transfers: TransferService,
  ) {}

  @Get()
  list(): Promise<Account[]> {
    return this.accounts.findAll();
  }

  /** `POST /accounts/transfer {"from": 1, "to": 2, "amount": 30}` → every balance after it. */
  @Post('transfer')
  @HttpCode(200)
  transfer(
    @Body('from', ParseIntPipe) from: number,
    @Body('to', ParseIntPipe) to: number,
    @Body('amount', ParseIntPipe) amount: number,
  ): Promise<Account[]> {
    return this.transfers.transfer(from, to, amount);
  }
}
