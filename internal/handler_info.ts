// The info a handler gets beside its Request. Most handlers read none of it,
// so everything that costs something (the client address object, the list
// of variables in wire order, the completion promise) is made on first read,
// as Deno.serve does with its own info. Private to the package.

import { variableList } from "../codec/_variables.ts";
import type { CgiEnv, CgiVariableList } from "../codec/request_head.ts";

/** What the info is read from: the connection (or the test client). */
export interface InfoSource {
  /** The front end's connection. */
  readonly connAddr: Deno.Addr;
  /** Settles when the answer was written in full, or could not be. */
  readonly completed: Promise<void>;
}

/** The `ScgiHandlerInfo` of one request, with lazily made fields. */
export class HandlerInfo {
  /** Every CGI variable by name. */
  readonly env: CgiEnv;
  readonly #source: InfoSource;
  readonly #strings: string[];
  #envList: CgiVariableList | undefined;
  #remoteAddr: Deno.Addr | undefined;

  /**
   * @param strings The decoded names and values (name, value, …, ""), from
   * which the list is made when asked for; or the list itself.
   */
  constructor(
    source: InfoSource,
    env: CgiEnv,
    strings: string[] | CgiVariableList,
  ) {
    this.#source = source;
    this.env = env;
    if (typeof strings[0] === "string" || strings.length === 1) {
      this.#strings = strings as string[];
    } else {
      this.#strings = [];
      this.#envList = strings as CgiVariableList;
    }
  }

  /** The client as the front end reports it, else the front end itself. */
  get remoteAddr(): Deno.Addr {
    if (this.#remoteAddr === undefined) {
      const env = this.env;
      this.#remoteAddr = env.REMOTE_ADDR
        ? {
          transport: "tcp",
          hostname: env.REMOTE_ADDR,
          port: Number(env.REMOTE_PORT) || 0,
        }
        : this.#source.connAddr;
    }
    return this.#remoteAddr;
  }

  /** The front end's connection to this server. */
  get connAddr(): Deno.Addr {
    return this.#source.connAddr;
  }

  /** Fulfils once the answer was written in full; rejects if it could not be. */
  get completed(): Promise<void> {
    return this.#source.completed;
  }

  /** Every variable as received: wire order, repeats kept. */
  get envList(): CgiVariableList {
    return this.#envList ??= variableList(this.#strings);
  }
}
