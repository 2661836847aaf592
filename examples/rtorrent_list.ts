#!/usr/bin/env -S deno run --allow-net=127.0.0.1:5000
/**
 * Lists rtorrent's torrents (the `main` view: name, info hash, size,
 * completion) over its XML-RPC interface, which rtorrent serves over SCGI.
 *
 *     # rtorrent.rc: network.scgi.open_port = 127.0.0.1:5000
 *     deno run --allow-net=127.0.0.1:5000 examples/rtorrent_list.ts
 *     deno run --allow-net=127.0.0.1:5001 examples/rtorrent_list.ts scgi://127.0.0.1:5001/RPC2
 *
 * For a Unix socket (`network.scgi.open_local = /run/rtorrent/rpc.sock`),
 * pass `scgi+unix://%2Frun%2Frtorrent%2Frpc.sock/RPC2` and allow
 * `--allow-read=/run/rtorrent/rpc.sock --allow-write=/run/rtorrent/rpc.sock
 * --allow-net=unix:/run/rtorrent/rpc.sock`.
 *
 * Anyone who can reach rtorrent's SCGI port can make it run commands
 * (`execute`), so keep it on loopback or a socket with tight permissions.
 *
 * @module
 */
import { scgiFetch } from "../mod.ts";
import {
  decodeMethodResponse,
  encodeMethodCall,
  type XmlRpcValue,
} from "./xmlrpc.ts";

/** One torrent as the listing shows it. */
export interface TorrentRow {
  name: string;
  /** The info hash, 40 hex digits. */
  hash: string;
  sizeBytes: number;
  completedBytes: number;
  /** Completion in percent, 0 to 100. */
  percent: number;
}

/**
 * Calls one XML-RPC method through SCGI.
 *
 * @param url The SCGI URL of rtorrent (`scgi://127.0.0.1:5000/RPC2`).
 * @param method The method name.
 * @param params Its parameters.
 * @returns The decoded result.
 */
export async function xmlRpcCall(
  url: string,
  method: string,
  params: XmlRpcValue[] = [],
): Promise<XmlRpcValue> {
  const response = await scgiFetch(url, {
    method: "POST",
    headers: { "content-type": "text/xml" },
    body: encodeMethodCall(method, params),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`rtorrent answered ${response.status}`);
  }
  return decodeMethodResponse(await response.text());
}

/**
 * Lists the torrents of rtorrent's `main` view with one `d.multicall2`.
 *
 * @param url The SCGI URL of rtorrent.
 * @returns One row per torrent.
 */
export async function listTorrents(url: string): Promise<TorrentRow[]> {
  const rows = await xmlRpcCall(url, "d.multicall2", [
    "", // target: none
    "main", // the view
    "d.name=",
    "d.hash=",
    "d.size_bytes=",
    "d.completed_bytes=",
  ]);
  if (!Array.isArray(rows)) throw new TypeError("d.multicall2: not a list");
  return rows.map((row) => {
    if (!Array.isArray(row) || row.length !== 4) {
      throw new TypeError(`d.multicall2: unexpected row ${String(row)}`);
    }
    const [name, hash, size, completed] = row;
    const sizeBytes = Number(size);
    const completedBytes = Number(completed);
    return {
      name: String(name),
      hash: String(hash),
      sizeBytes,
      completedBytes,
      percent: sizeBytes > 0 ? (completedBytes / sizeBytes) * 100 : 100,
    };
  });
}

if (import.meta.main) {
  const url = Deno.args[0] ?? "scgi://127.0.0.1:5000/RPC2";
  const torrents = await listTorrents(url);
  if (torrents.length === 0) console.log("no torrents");
  for (const torrent of torrents) {
    console.log(
      `${torrent.hash}  ${torrent.percent.toFixed(1).padStart(5)}%  ${
        String(torrent.sizeBytes).padStart(12)
      }  ${torrent.name}`,
    );
  }
}
