/** The logging the Database needs; NestJS's `Logger` fits it. Messages never hold parameter values or passwords. */
export interface Logger {
  log(message: string): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
  debug?(message: string): void;
}
