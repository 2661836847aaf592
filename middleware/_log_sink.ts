// Where the lines of a file or stream sink of the access log go: a file
// (written directly, one write call a batch), a byte stream's writer, or
// standard output.

// Where the bytes go.
export interface Output {
  write(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

// Straight to the file, one write call a batch (no buffer of Deno's
// between: FsFile.writable holds 64 KiB back).
export function fileOutput(
  file: { write(bytes: Uint8Array): Promise<number>; close(): void },
): Output {
  return {
    async write(bytes) {
      let written = 0;
      while (written < bytes.length) {
        written += await file.write(bytes.subarray(written));
      }
    },
    close() {
      try {
        file.close();
      } catch {
        // Closed already by its owner.
      }
      return Promise.resolve();
    },
  };
}

// A byte stream, through the writer taken when the log is made.
export function streamOutput(
  writer: WritableStreamDefaultWriter<Uint8Array>,
): Output {
  return {
    write: (bytes) => writer.write(bytes),
    close: () => writer.close().catch(() => {}),
  };
}

// Standard output through write calls of its own, so that several logs (and
// the rest of the program) can write to it: Deno.stdout.writable has one
// writer. Never closed.
export const STDOUT: Output = {
  ...fileOutput(Deno.stdout),
  close: () => Promise.resolve(),
};
