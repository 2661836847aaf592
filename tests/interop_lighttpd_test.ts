// lighttpd (mod_scgi) in front of serve(), over TCP and a Unix socket, with
// the configs docs/deployment.md shows (docs/configs/lighttpd*.conf).

import { type FrontEndQuirks, frontEndSuite } from "./_front_end.ts";
import { peerTest } from "./_peer.ts";

const LIGHTTPD: FrontEndQuirks = {
  // lighttpd joins a repeated header into one variable itself.
  repeatsHeaderVariables: false,
  joinedCookie: "a=1; b=2",
  chunkedUpload: "body",
  streams: true,
  clientGone: "aborted",
  // `fix-root-scriptname`: the whole path is PATH_INFO at the root mount.
  scriptNameAndPathInfo: ["", "/echo/café/a b"],
  backendDown: 503,
};

frontEndSuite("lighttpd", "tcp", "lighttpd.conf", LIGHTTPD, peerTest);
frontEndSuite("lighttpd", "unix", "lighttpd-unix.conf", LIGHTTPD, peerTest);
