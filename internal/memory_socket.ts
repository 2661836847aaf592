// A connected pair of in-memory sockets with the behaviour of a loopback
// stream socket that matters to the server and the client: bytes arrive in
// order; a write waits while the peer holds a full window unread
// (backpressure); `closeWrite()` is an end of input for the peer once it has
// read what came before; `close()` makes the peer's reads end and its writes
// fail with a broken pipe, and fails this side's own pending read. The test
// client runs the server's connection and the client's call over it, so a
// unit test goes through exactly the code a front end reaches. Private to
// the package.

import type { ConnectionSocket } from "./connection.ts";

// What a side holds unread before its peer's writes wait.
const WINDOW_BYTES = 64 * 1024;
// The port a connection comes from: an ephemeral one, new for each pair.
let nextPort = 49152;

/** One end of an in-memory connection. */
export class MemorySocket implements ConnectionSocket {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  peer!: MemorySocket;
  // What came from the peer and was not read yet.
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false; // the peer will send nothing more
  #closed = false; // this end is closed
  #reader: PromiseWithResolvers<void> | undefined;
  #writers: PromiseWithResolvers<void>[] = [];

  constructor(remoteAddr: Deno.NetAddr, localAddr: Deno.NetAddr) {
    this.remoteAddr = remoteAddr;
    this.localAddr = localAddr;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#buffered === 0) {
      if (this.#closed) throw new Deno.errors.BadResource("socket closed");
      if (this.#ended) return null;
      this.#reader = Promise.withResolvers<void>();
      await this.#reader.promise;
    }
    if (this.#closed) throw new Deno.errors.BadResource("socket closed");
    let count = 0;
    while (count < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.length, buffer.length - count);
      buffer.set(chunk.subarray(0, take), count);
      count += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= count;
    // Room again: the peer's waiting writes go on.
    for (const writer of this.#writers.splice(0)) writer.resolve();
    return count;
  }

  async write(bytes: Uint8Array): Promise<number> {
    const peer = this.peer;
    while (true) {
      if (this.#closed) throw new Deno.errors.BadResource("socket closed");
      if (peer.#closed) {
        throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      }
      if (peer.#ended) {
        throw new Deno.errors.BrokenPipe("the write side was shut down");
      }
      if (peer.#buffered < WINDOW_BYTES) break;
      const waiting = Promise.withResolvers<void>();
      peer.#writers.push(waiting);
      await waiting.promise;
    }
    // Like a socket, it takes what there is room for.
    const count = Math.min(bytes.length, WINDOW_BYTES - peer.#buffered);
    if (count === 0) return 0;
    peer.#chunks.push(bytes.slice(0, count));
    peer.#buffered += count;
    peer.#wake();
    return count;
  }

  closeWrite(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new Deno.errors.BadResource("socket closed"));
    }
    this.peer.#end();
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("socket closed");
    this.#closed = true;
    this.#chunks = [];
    this.#buffered = 0;
    this.#wake();
    for (const writer of this.#writers.splice(0)) writer.resolve();
    this.peer.#end();
  }

  #end(): void {
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    const reader = this.#reader;
    this.#reader = undefined;
    reader?.resolve();
  }
}

/** A connected pair: the client's end and the server's end. */
export function memorySocketPair(): [
  client: MemorySocket,
  server: MemorySocket,
] {
  const clientAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: nextPort,
  };
  nextPort = nextPort === 65535 ? 49152 : nextPort + 1;
  const serverAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 4000,
  };
  const client = new MemorySocket(serverAddr, clientAddr);
  const server = new MemorySocket(clientAddr, serverAddr);
  client.peer = server;
  server.peer = client;
  return [client, server];
}
