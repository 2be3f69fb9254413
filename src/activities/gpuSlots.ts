/**
 * GPU devices of one worker, handed to training runs one device per run through
 * CUDA_VISIBLE_DEVICES, so that a worker with `--gpus 0,1,2,3` trains four trials side by side.
 */
export class GpuSlots {
  private readonly free: string[];
  private readonly waiters: Array<(device: string) => void> = [];

  constructor(devices: string[]) {
    if (devices.length === 0) throw new Error('GpuSlots needs at least one device id');
    this.free = [...devices];
  }

  get size(): number {
    return this.free.length;
  }

  /** Waits for a free device; rejects when `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<string> {
    const device = this.free.shift();
    if (device !== undefined) return Promise.resolve(device);
    return new Promise<string>((resolve, reject) => {
      const waiter = (granted: string) => {
        signal.removeEventListener('abort', onAbort);
        resolve(granted);
      };
      const onAbort = () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(new Error('cancelled while waiting for a free GPU'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(device: string): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(device);
    else this.free.push(device);
  }
}
