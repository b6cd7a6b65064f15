import { BadRequestException, Injectable, NotFoundException } from '@nestjs/common';
import { Transactional } from '../../lib/index.js';
import { AccountsRepository, type Account } from './accounts.repository.js';

/** Keeps every balance well inside a 32-bit INTEGER column. */
export const MAX_TRANSFER = 1_000_000;

@Injectable()
export class TransferService {
  constructor(private readonly accounts: AccountsRepository) {}

  /**
   * Moves `amount` from one account to another, all or nothing: the repository's queries join
   * this method's transaction, and any exception below rolls the withdrawal back.
   */
  @Transactional()
  async transfer(from: number, to: number, amount: number): Promise<Account[]> {
    if (from === to) throw new BadRequestException('from and to must be different accounts');
    if (amount < 1 || amount > MAX_TRANSFER) throw new BadRequestException(`amount must be between 1 and ${MAX_TRANSFER}`);
    // Both rows changed in id order: two opposite transfers then queue instead of deadlocking.
    const changes = new Map([
      [from, -amount],
      [to, amount],
    ]);
    for (const id of [from, to].sort((a, b) => a - b)) {
      const balance = await this.accounts.add(id, changes.get(id)!);
      if (balance === undefined) throw new NotFoundException(`No account ${id}`);
      if (balance < 0 && id === from) throw new BadRequestException(`Insufficient funds on account ${from}`);
    }
    return this.accounts.findAll();
  }
}
