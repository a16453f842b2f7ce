#!/usr/bin/env node
// Starts the Firestore emulator ingest's tests run against
// (@firestore-emulator/server, pinned in package.json) on 127.0.0.1 only.
//
//   node start.js PORT     PORT 0 lets the kernel pick a free one
//
// Once it accepts connections it prints one line to stdout:
//
//   firestore emulator ready on 127.0.0.1:PORT
//
// and serves until SIGTERM or SIGINT. Point the client library at it with
// FIRESTORE_EMULATOR_HOST=127.0.0.1:PORT. It keeps everything in memory and
// forgets it on exit. scripts/test starts and stops it.
"use strict";

const path = require("node:path");

const arg = process.argv[2];
const port = Number(arg);
if (arg === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`usage: node ${path.basename(__filename)} PORT (0 for any free port; got ${JSON.stringify(arg)})`);
  process.exit(2);
}

// The package binds 0.0.0.0, which would serve the whole network an
// unauthenticated database. Rewrite the bind address on the grpc-js copy the
// package itself loads, and refuse to run if the rewrite was not used.
const pkgDir = path.dirname(require.resolve("@firestore-emulator/server"));
const grpc = require(require.resolve("@grpc/grpc-js", { paths: [pkgDir] }));
const { FirestoreServer } = require("@firestore-emulator/server");

let bound = null;
const bindAsync = grpc.Server.prototype.bindAsync;
grpc.Server.prototype.bindAsync = function (addr, creds, callback) {
  const local = String(addr).replace(/^0\.0\.0\.0:/, "127.0.0.1:");
  return bindAsync.call(this, local, creds, (err, actual) => {
    if (!err) bound = `${local.slice(0, local.lastIndexOf(":"))}:${actual}`;
    callback(err, actual);
  });
};

const server = new FirestoreServer();
server.start(port).then(
  () => {
    if (bound === null || !bound.startsWith("127.0.0.1:")) {
      console.error(`firestore emulator: bound ${bound ?? "an unknown address"}, not 127.0.0.1: ` +
        "the package no longer binds through grpc-js's Server.bindAsync; update start.js");
      server.stop();
      process.exit(1);
    }
    process.stdout.write(`firestore emulator ready on ${bound}\n`);
  },
  (err) => {
    console.error(`firestore emulator: cannot listen on 127.0.0.1:${port}: ${err.message}`);
    process.exit(1);
  },
);

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.stop();
    process.exit(0);
  });
}
