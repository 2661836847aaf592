/**
 * A small XML-RPC encoder and decoder, enough for rtorrent's API: method
 * calls with strings, integers (`i4`, or `i8` past 32 bits), doubles,
 * booleans, base64, dates, arrays and structs; responses with the same, or a
 * fault. It belongs to the examples, not to the library: the library speaks
 * SCGI and leaves the body to the application.
 *
 * @example
 * ```ts
 * import { decodeMethodResponse, encodeMethodCall } from "./xmlrpc.ts";
 *
 * const call = encodeMethodCall("d.multicall2", ["", "main", "d.name="]);
 * console.assert(call.includes("<methodName>d.multicall2</methodName>"));
 * const value = decodeMethodResponse(
 *   "<?xml version='1.0'?><methodResponse><params><param><value><array><data>" +
 *     "<value><array><data><value><string>a &amp; b</string></value></data></array></value>" +
 *     "</data></array></value></param></params></methodResponse>",
 * );
 * console.assert(JSON.stringify(value) === '[["a & b"]]');
 * ```
 *
 * @module
 */

/** A value XML-RPC can carry. */
export type XmlRpcValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | Date
  | Uint8Array
  | XmlRpcValue[]
  | { [name: string]: XmlRpcValue };

/** A `<fault>` answer: the server's error code and message. */
export class XmlRpcFault extends Error {
  /** The `faultCode`. */
  readonly code: number;

  /**
   * Creates the fault.
   *
   * @param code The `faultCode`.
   * @param message The `faultString`.
   */
  constructor(code: number, message: string) {
    super(message);
    this.name = "XmlRpcFault";
    this.code = code;
  }
}

function escapeXml(text: string): string {
  return text.replace(
    /[&<>]/g,
    (char) => char === "&" ? "&amp;" : char === "<" ? "&lt;" : "&gt;",
  );
}

function encodeValue(value: XmlRpcValue): string {
  if (value === null) return "<value><nil/></value>";
  if (typeof value === "string") {
    return `<value><string>${escapeXml(value)}</string></value>`;
  }
  if (typeof value === "boolean") {
    return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  }
  if (typeof value === "bigint") return `<value><i8>${value}</i8></value>`;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new TypeError(`XML-RPC can't carry ${value}`);
    }
    if (!Number.isInteger(value)) {
      return `<value><double>${value}</double></value>`;
    }
    return Math.abs(value) < 2 ** 31
      ? `<value><i4>${value}</i4></value>`
      : `<value><i8>${value}</i8></value>`;
  }
  if (value instanceof Date) {
    const iso = value.toISOString().replace(/\.\d{3}Z$/, "").replaceAll(
      "-",
      "",
    );
    return `<value><dateTime.iso8601>${iso}</dateTime.iso8601></value>`;
  }
  if (value instanceof Uint8Array) {
    let binary = "";
    for (const byte of value) binary += String.fromCharCode(byte);
    return `<value><base64>${btoa(binary)}</base64></value>`;
  }
  if (Array.isArray(value)) {
    return `<value><array><data>${
      value.map(encodeValue).join("")
    }</data></array></value>`;
  }
  return `<value><struct>${
    Object.entries(value).map(([name, member]) =>
      `<member><name>${escapeXml(name)}</name>${encodeValue(member)}</member>`
    ).join("")
  }</struct></value>`;
}

/**
 * Encodes a `<methodCall>`.
 *
 * @param method The method name.
 * @param params The parameters.
 * @returns The XML document.
 *
 * @example
 * ```ts
 * import { encodeMethodCall } from "./xmlrpc.ts";
 *
 * console.assert(encodeMethodCall("system.client_version").startsWith("<?xml"));
 * ```
 */
export function encodeMethodCall(
  method: string,
  params: readonly XmlRpcValue[] = [],
): string {
  if (!/^[A-Za-z0-9_.:/]+$/.test(method)) {
    throw new TypeError(`${JSON.stringify(method)} is not a method name`);
  }
  return `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>${
    params.map((param) => `<param>${encodeValue(param)}</param>`).join("")
  }</params></methodCall>`;
}

type Token =
  | { kind: "open"; name: string; empty: boolean }
  | { kind: "close"; name: string }
  | { kind: "text"; text: string };

const TAG =
  /<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|<\?[^>]*\?>|<!--[\s\S]*?-->/g;

function tokenize(xml: string): Token[] {
  const tokens: Token[] = [];
  let last = 0;
  for (const match of xml.matchAll(TAG)) {
    if (match.index > last) {
      tokens.push({ kind: "text", text: xml.slice(last, match.index) });
    }
    last = match.index + match[0].length;
    if (match[2] === undefined) continue; // declaration or comment
    if (match[1]) tokens.push({ kind: "close", name: match[2] });
    else tokens.push({ kind: "open", name: match[2], empty: !!match[3] });
  }
  if (last < xml.length) tokens.push({ kind: "text", text: xml.slice(last) });
  return tokens;
}

function unescapeXml(text: string): string {
  return text.replace(
    /&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);/g,
    (_, entity: string) => {
      if (entity.startsWith("#x")) {
        return String.fromCodePoint(parseInt(entity.slice(2), 16));
      }
      if (entity.startsWith("#")) {
        return String.fromCodePoint(Number(entity.slice(1)));
      }
      return { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" }[entity]!;
    },
  );
}

class Parser {
  #tokens: Token[];
  #at = 0;

  constructor(xml: string) {
    // Whitespace between elements means nothing; inside <string> it does,
    // and text() reads it from the tokens before skipping happens.
    this.#tokens = tokenize(xml);
  }

  #peek(): Token | undefined {
    while (true) {
      const token = this.#tokens[this.#at];
      if (token?.kind === "text" && token.text.trim() === "") {
        this.#at++;
        continue;
      }
      return token;
    }
  }

  open(name: string): boolean {
    const token = this.#peek();
    if (token?.kind !== "open" || token.name !== name) {
      throw new SyntaxError(`expected <${name}>, found ${describe(token)}`);
    }
    this.#at++;
    return token.empty;
  }

  close(name: string): void {
    const token = this.#peek();
    if (token?.kind !== "close" || token.name !== name) {
      throw new SyntaxError(`expected </${name}>, found ${describe(token)}`);
    }
    this.#at++;
  }

  nextOpen(): string | undefined {
    const token = this.#peek();
    return token?.kind === "open" ? token.name : undefined;
  }

  // The raw text up to the next tag (whitespace kept).
  text(): string {
    const token = this.#tokens[this.#at];
    if (token?.kind === "text") {
      this.#at++;
      return unescapeXml(token.text);
    }
    return "";
  }

  value(): XmlRpcValue {
    if (this.open("value")) return "";
    const type = this.nextOpen();
    if (type === undefined) {
      // A bare value is a string.
      const text = this.text();
      this.close("value");
      return text;
    }
    const empty = this.open(type);
    let result: XmlRpcValue;
    switch (type) {
      case "string":
        result = empty ? "" : this.text();
        break;
      case "i4":
      case "int":
      case "i8": {
        const text = empty ? "" : this.text().trim();
        if (!/^[+-]?[0-9]+$/.test(text)) {
          throw new SyntaxError(`<${type}> ${JSON.stringify(text)}`);
        }
        const big = BigInt(text);
        result = big >= BigInt(Number.MIN_SAFE_INTEGER) &&
            big <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(big)
          : big;
        break;
      }
      case "boolean": {
        const text = empty ? "" : this.text().trim();
        if (text !== "0" && text !== "1") {
          throw new SyntaxError(`<boolean> ${JSON.stringify(text)}`);
        }
        result = text === "1";
        break;
      }
      case "double": {
        const number = Number(empty ? "" : this.text().trim());
        if (Number.isNaN(number)) {
          throw new SyntaxError("<double> not a number");
        }
        result = number;
        break;
      }
      case "nil":
        result = null;
        break;
      case "base64": {
        const binary = atob((empty ? "" : this.text()).replace(/\s+/g, ""));
        result = Uint8Array.from(binary, (char) => char.charCodeAt(0));
        break;
      }
      case "dateTime.iso8601": {
        const text = empty ? "" : this.text().trim();
        const match = text.match(
          /^(\d{4})-?(\d\d)-?(\d\d)T(\d\d):(\d\d):(\d\d)/,
        );
        if (!match) throw new SyntaxError(`date ${JSON.stringify(text)}`);
        const [, y, mo, d, h, mi, s] = match.map(Number) as number[];
        result = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
        break;
      }
      case "array": {
        const items: XmlRpcValue[] = [];
        if (!empty) {
          if (!this.open("data")) {
            while (this.nextOpen() === "value") items.push(this.value());
            this.close("data");
          }
        }
        result = items;
        break;
      }
      case "struct": {
        const members: { [name: string]: XmlRpcValue } = {};
        if (!empty) {
          while (this.nextOpen() === "member") {
            this.open("member");
            this.open("name");
            const name = this.text();
            this.close("name");
            members[name] = this.value();
            this.close("member");
          }
        }
        result = members;
        break;
      }
      default:
        throw new SyntaxError(`unknown XML-RPC type <${type}>`);
    }
    if (!empty) this.close(type);
    this.close("value");
    return result;
  }

  end(): void {
    const token = this.#peek();
    if (token) throw new SyntaxError(`unexpected ${describe(token)}`);
  }
}

function describe(token: Token | undefined): string {
  if (!token) return "the end";
  if (token.kind === "text") return JSON.stringify(token.text.slice(0, 40));
  return token.kind === "open" ? `<${token.name}>` : `</${token.name}>`;
}

/**
 * Decodes a `<methodResponse>`.
 *
 * @param xml The response document.
 * @returns The value of its one parameter.
 * @throws {XmlRpcFault} For a `<fault>` answer.
 * @throws {SyntaxError} For a document that isn't an XML-RPC response.
 *
 * @example
 * ```ts
 * import { decodeMethodResponse } from "./xmlrpc.ts";
 *
 * const xml = "<methodResponse><params><param><value><i8>4294967296</i8></value></param></params></methodResponse>";
 * console.assert(decodeMethodResponse(xml) === 4294967296);
 * ```
 */
export function decodeMethodResponse(xml: string): XmlRpcValue {
  const parser = new Parser(xml);
  parser.open("methodResponse");
  if (parser.nextOpen() === "fault") {
    parser.open("fault");
    const fault = parser.value() as Record<string, XmlRpcValue>;
    throw new XmlRpcFault(
      Number(fault?.faultCode ?? 0),
      String(fault?.faultString ?? "XML-RPC fault"),
    );
  }
  parser.open("params");
  parser.open("param");
  const value = parser.value();
  parser.close("param");
  parser.close("params");
  parser.close("methodResponse");
  parser.end();
  return value;
}
