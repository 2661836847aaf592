// Apache httpd (mod_proxy_scgi) in front of serve(), over TCP and a Unix
// socket, with the configs docs/deployment.md shows
// (docs/configs/apache*.conf).

import { type FrontEndQuirks, frontEndSuite } from "./_front_end.ts";
import { peerTest } from "./_peer.ts";

const APACHE: FrontEndQuirks = {
  // Apache joins a repeated header itself, cookies included, with ", ".
  repeatsHeaderVariables: false,
  joinedCookie: "a=1, b=2",
  // mod_proxy_scgi needs the length up front: a chunked upload gets 411
  // without the backend being asked.
  chunkedUpload: 411,
  streams: true,
  clientGone: "aborted",
  // SCRIPT_NAME is the whole decoded path; no PATH_INFO.
  scriptNameAndPathInfo: ["/echo/café/a b", undefined],
  backendDown: 503,
};

frontEndSuite("apache", "tcp", "apache.conf", APACHE, peerTest);
frontEndSuite("apache", "unix", "apache-unix.conf", APACHE, peerTest);
