/**
 * The events side: one shared pub/sub connection per client, on which every
 * `wait` listens to the channels it needs, and a small inbox a waiter reads
 * its signals from.
 *
 * @module
 */

import type { Redis } from "ioredis";

/** What a channel listener is told. */
export interface ChannelListener {
  /** A message arrived on one of its channels. */
  message(text: string): void;
  /**
   * The subscription was re-established after the connection broke: messages
   * published meanwhile are lost, so whatever it waits on must be read again.
   */
  resync(): void;
}

/** One subscribed channel: who listens, and the subscription's confirmation. */
interface Channel {
  readonly listeners: Set<ChannelListener>;
  ready: Promise<void>;
}

/**
 * Shares one subscriber connection between every waiter of a client. A
 * channel is subscribed while anyone listens to it; a listener is told of
 * messages only once Redis has confirmed the subscription, so whatever is
 * published after {@link EventHub.listen} resolves reaches it.
 */
export class EventHub {
  readonly #open: () => Redis;
  readonly #channels = new Map<string, Channel>();
  #subscriber: Redis | undefined;
  #connectedOnce = false;
  #closed = false;

  /** @param open - Makes the subscriber connection (called once, on first use). */
  constructor(open: () => Redis) {
    this.#open = open;
  }

  /**
   * Listens to `channels` until the returned function is called. Resolves
   * once Redis has confirmed every subscription; rejects (having undone
   * everything) when that fails or takes longer than `timeoutMs`.
   */
  async listen(channels: readonly string[], listener: ChannelListener, timeoutMs: number): Promise<() => void> {
    if (this.#closed) throw new Error("the client is closed");
    const subscriber = this.#connection();
    const fresh: string[] = [];
    const entries: Channel[] = [];
    for (const name of channels) {
      let entry = this.#channels.get(name);
      if (entry === undefined) {
        entry = { listeners: new Set(), ready: Promise.resolve() };
        this.#channels.set(name, entry);
        fresh.push(name);
      }
      entry.listeners.add(listener);
      entries.push(entry);
    }
    if (fresh.length > 0) {
      const ready = subscriber.subscribe(...fresh).then(() => undefined);
      for (const name of fresh) {
        const entry = this.#channels.get(name);
        if (entry !== undefined) entry.ready = ready;
      }
      // A subscription that failed is forgotten, so the next listener tries again.
      ready.catch(() => {
        for (const name of fresh) {
          if (this.#channels.get(name)?.ready === ready) this.#channels.delete(name);
        }
      });
    }
    const unlisten = (): void => this.#unlisten(channels, listener);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all(entries.map((e) => e.ready)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Redis did not confirm the subscription within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (e) {
      unlisten();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return unlisten;
  }

  /** Closes the subscriber connection; listeners are dropped. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    subscriber?.disconnect();
  }

  #unlisten(channels: readonly string[], listener: ChannelListener): void {
    const gone: string[] = [];
    for (const name of channels) {
      const entry = this.#channels.get(name);
      if (entry === undefined || !entry.listeners.delete(listener)) continue;
      if (entry.listeners.size === 0) {
        this.#channels.delete(name);
        gone.push(name);
      }
    }
    if (gone.length > 0 && this.#subscriber !== undefined && !this.#closed) {
      // Sent after any earlier SUBSCRIBE of these channels, and before any
      // later one: the connection keeps the order.
      this.#subscriber.unsubscribe(...gone).catch(() => undefined);
    }
  }

  #connection(): Redis {
    if (this.#subscriber !== undefined) return this.#subscriber;
    const subscriber = this.#open();
    subscriber.on("message", (channel: string, text: string) => {
      const entry = this.#channels.get(channel);
      if (entry === undefined) return;
      for (const listener of [...entry.listeners]) listener.message(text);
    });
    subscriber.on("ready", () => {
      if (!this.#connectedOnce) {
        this.#connectedOnce = true;
        return;
      }
      this.#resubscribed(subscriber);
    });
    this.#subscriber = subscriber;
    return subscriber;
  }

  /**
   * After a reconnect: the connection resubscribes by itself; once this
   * confirmation arrives too, every listener re-reads what it waits on.
   */
  #resubscribed(subscriber: Redis): void {
    const names = [...this.#channels.keys()];
    if (names.length === 0) return;
    subscriber.subscribe(...names).then(
      () => {
        const everyone = new Set<ChannelListener>();
        for (const entry of this.#channels.values()) for (const l of entry.listeners) everyone.add(l);
        for (const listener of everyone) listener.resync();
      },
      // The connection broke again: its next "ready" tries again.
      () => undefined,
    );
  }
}

/**
 * A queue of signals one waiter reads in order: {@link Inbox.next} resolves
 * with the next one, or `undefined` once `timeoutMs` passed without any.
 */
export class Inbox<T> {
  readonly #items: T[] = [];
  #waiter: ((item: T | undefined) => void) | undefined;

  /** Adds a signal, handing it straight to a reader that waits. */
  push(item: T): void {
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = undefined;
      waiter(item);
    } else {
      this.#items.push(item);
    }
  }

  /** The next signal, or `undefined` after `timeoutMs` (omitted: no limit) without one. */
  next(timeoutMs?: number): Promise<T | undefined> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    if (timeoutMs !== undefined && timeoutMs <= 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.#waiter = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#waiter = undefined;
          resolve(undefined);
        }, timeoutMs);
      }
    });
  }
}
