import { Body, ConflictException, Controller, Get, HttpCode, NotFoundException, ParseIntPipe, Post } from '@nestjs/common';
import { ForeignKeyViolation } from '../../lib/index.js';
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

  /** `POST /accounts {"id": 3, "owner": "mohamed"}` → 201; 409 when the id is taken, 404 for no such user. */
  @Post()
  async open(@Body('id', ParseIntPipe) id: number, @Body('owner') owner: string): Promise<Account> {
    const opened = await this.accounts.open(id, String(owner ?? '')).catch((e: unknown) => {
      if (e instanceof ForeignKeyViolation) throw new NotFoundException(`No user '${owner}'`);
      throw e;
    });
    if (!opened) throw new ConflictException(`Account ${id} exists`);
    return { id, owner, balance: 0 };
  }

  /** `POST /accounts/transfer {"from": 1, "to": 2, "amount": 30}` → every balance after it. */
  @Post('transfer')
  @HttpCode(200)
  transfer(@Body('from', ParseIntPipe) from: number, @Body('to', ParseIntPipe) to: number, @Body('amount', ParseIntPipe) amount: number): Promise<Account[]> {
    return this.transfers.transfer(from, to, amount);
  }
}
