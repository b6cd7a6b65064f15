/**
 * The iterator behind `Database.stream()`: it reads the driver's cursor a batch at a time and
 * hands out rows from the batch, so a row costs one resolved promise, as a Node Readable's
 * iterator does. Breaking out of `for await`, or an error, closes the cursor and gives the
 * connection back (`finish`), exactly once.
 */
import type { Connection, RowCursor, StreamOptions } from '../drivers/driver.js';
import type { DatabaseError } from '../core/errors.js';
import { restack } from '../core/caller-stack.js';
import type { LeaseHolder } from '../transactions/transaction.context.js';

/** Where a stream runs: opened when iteration starts. */
export interface StreamSource {
  connection: Connection;
  text: string;
  values: unknown[];
  /** The pool lease the stream took for itself (not inside a transaction). */
  lease?: object;
  /** Called once the cursor's statement was handed to the connection. */
  opened?(): void;
  /** Called once when the stream ends, with the error if it failed. */
  finish(error?: unknown): void;
}

export class RowIterator<T> implements AsyncIterableIterator<T>, LeaseHolder {
  private batch: unknown[] = [];
  private index = 0;
  private source?: StreamSource;
  private cursor?: RowCursor;
  private ended = false;
  /** A row was handed out and the next one not asked for yet: the consumer's loop body runs. */
  private inBody = false;

  constructor(
    private readonly open: (iterator: RowIterator<T>) => Promise<StreamSource>,
    private readonly options: StreamOptions,
    private readonly translate: (error: unknown) => DatabaseError,
    /** Checked before each batch: an error to end the stream with (its AbortSignal fired, its timeoutMs passed). */
    private readonly interruption?: () => DatabaseError | undefined,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.index < this.batch.length) {
      this.inBody = true;
      return Promise.resolve({ value: this.batch[this.index++] as T, done: false });
    }
    this.inBody = false;
    return this.fill();
  }

  /** The stream's connection, while the code reading it is inside its loop body (and so cannot give it back). */
  heldLease(): object | undefined {
    return this.inBody && !this.finished ? this.source?.lease : undefined;
  }

  async return(): Promise<IteratorResult<T>> {
    this.inBody = false;
    if (!this.ended) {
      this.ended = true;
      try {
        await this.cursor?.close();
      } finally {
        this.finishOnce();
      }
    }
    return { value: undefined, done: true };
  }

  async throw(error: unknown): Promise<IteratorResult<T>> {
    await this.return();
    throw error;
  }

  private finished = false;
  private opening = false;

  /** True once the stream holds no connection and never will again. */
  get released(): boolean {
    return this.finished || (this.ended && this.source === undefined && !this.opening);
  }

  /** Gives the connection back exactly once, however return(), an error and the end race. */
  private finishOnce(error?: unknown): void {
    if (this.finished || !this.source) return;
    this.finished = true;
    this.source.finish(error);
  }

  private async fill(): Promise<IteratorResult<T>> {
    if (this.ended) return { value: undefined, done: true };
    const stop = this.interruption?.();
    if (stop) {
      await this.return();
      throw stop;
    }
    try {
      if (!this.source) {
        this.opening = true;
        let source: StreamSource;
        try {
          source = this.source = await this.open(this);
        } finally {
          this.opening = false;
        }
        let reading: Promise<unknown[]>;
        try {
          if (this.ended) {
            // return() came while the connection was being taken: give it back at once.
            this.finishOnce();
            return { value: undefined, done: true };
          }
          this.cursor = source.connection.cursor(source.text, source.values, this.options);
          reading = this.cursor.read();
        } finally {
          source.opened?.();
        }
        this.batch = await reading;
      } else {
        this.batch = await this.cursor!.read();
      }
      this.index = 0;
    } catch (error) {
      this.ended = true;
      const translated = this.translate(error);
      this.finishOnce(translated);
      restack(translated);
      throw translated;
    }
    if (this.batch.length === 0 || this.ended) {
      this.ended = true;
      this.finishOnce();
      return { value: undefined, done: true };
    }
    this.inBody = true;
    return { value: this.batch[this.index++] as T, done: false };
  }
}
