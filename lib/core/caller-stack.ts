/**
 * Stacks that name the caller. An error made deep in a driver callback has a stack of driver
 * internals only; re-capturing it where the public call awaits gives V8's async frames, that
 * is the caller's own functions (`at async UsersService.find`). Costs nothing unless a call fails.
 */
export async function withCallerStack<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    restack(error);
    throw error;
  }
}

/** Re-captures `error`'s stack here (inside an async function, so the awaiting callers show). */
export function restack(error: unknown): void {
  if (error instanceof Error && Object.isExtensible(error)) Error.captureStackTrace(error, restack);
}
