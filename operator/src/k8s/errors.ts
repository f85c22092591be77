/**
 * Typed errors for calls to the Kubernetes API, and predicates on the status codes a controller
 * cares about, so that callers never match on message text.
 */

/** A call to the Kubernetes API failed. `status` is the HTTP status, 0 for transport errors. */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  constructor(
    /** What was attempted, e.g. `patch StatefulSet ns/name`. */
    readonly operation: string,
    readonly status: number,
    /** The API server's `Status.reason` (`NotFound`, `Conflict`, `Invalid`, ...) when it sent one. */
    readonly reason: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${operation}: ${message}`, options);
  }
}

/** The kubeconfig could not be loaded, or its credential plugin failed. */
export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
}

/** Converts whatever the client threw into a {@link KubeApiError}. */
export function toKubeError(operation: string, error: unknown): KubeApiError {
  if (error instanceof KubeApiError) {
    return error.operation === operation ? error
      : new KubeApiError(operation, error.status, error.reason, error.message, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new KubeApiError(operation, 0, undefined, message, { cause: error });
}

/** Runs `call` and rethrows any failure as a {@link KubeApiError} naming `operation`. */
export async function kubeCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toKubeError(operation, error);
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof KubeApiError && error.status === 404;
}

export function isConflict(error: unknown): boolean {
  return error instanceof KubeApiError && error.status === 409 && error.reason !== 'AlreadyExists';
}

export function isAlreadyExists(error: unknown): boolean {
  return error instanceof KubeApiError && error.status === 409 && error.reason === 'AlreadyExists';
}

/** Runs `call`; a 404 yields `undefined` instead of an error. */
export async function getOrUndefined<T>(operation: string, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await kubeCall(operation, call);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}
