// The info a handler gets beside its Request. Most handlers read none of it,
// so everything that costs something (the env object, the client address,
// the list of variables in wire order, the completion promise) is made on
// first read, as Deno.serve does with its own info. Private to the package.

import type { CgiEnv, CgiVariableList } from "../codec/request_head.ts";

/** What the info is read from: the connection (or the test client). */
export interface InfoSource {
  /** The front end's connection. */
  readonly connAddr: Deno.Addr;
  /** Settles when the answer was written in full, or could not be. */
  readonly completed: Promise<void>;
}

/** The variables of the request, each form made when first read. */
export interface InfoVariables {
  readonly env: CgiEnv;
  readonly envList: CgiVariableList;
  /** Picked out already (the server's scan), else read from `env`. */
  readonly REMOTE_ADDR?: string | undefined;
  readonly REMOTE_PORT?: string | undefined;
}

/** The `ScgiHandlerInfo` of one request, with lazily made fields. */
export class HandlerInfo {
  readonly #source: InfoSource;
  readonly #variables: InfoVariables;
  #envList: CgiVariableList | undefined;
  #remoteAddr: Deno.Addr | undefined;

  constructor(source: InfoSource, variables: InfoVariables) {
    this.#source = source;
    this.#variables = variables;
  }

  /** Every CGI variable by name. */
  get env(): CgiEnv {
    return this.#variables.env;
  }

  /** The client as the front end reports it, else the front end itself. */
  get remoteAddr(): Deno.Addr {
    if (this.#remoteAddr === undefined) {
      const variables = this.#variables;
      const from = "REMOTE_ADDR" in variables ? variables : variables.env;
      const hostname = from.REMOTE_ADDR;
      this.#remoteAddr = hostname
        ? {
          transport: "tcp",
          hostname,
          port: Number(from.REMOTE_PORT) || 0,
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
    return this.#envList ??= this.#variables.envList;
  }
}
