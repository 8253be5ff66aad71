/**
 * A tiny real file system to fill up: a tmpfs of a few KiB mounted at a new folder. Mounting
 * needs root (or CAP_SYS_ADMIN in a container); where it is refused, tests that need a full
 * disk are skipped and say why. No fake: the program meets the kernel's own ENOSPC.
 *
 * @module
 */

/** A mounted tmpfs; `close` unmounts it and removes its folder. */
export interface TinyFileSystem {
  dir: string;
  close(): Promise<void>;
}

/** Mounts a tmpfs of `kib` KiB at a new temporary folder, or resolves why it cannot. */
export async function tinyFileSystem(kib: number): Promise<TinyFileSystem | string> {
  const dir = await Deno.makeTempDir({ prefix: "full_disk_" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${kib}k`, "tmpfs", dir],
    stdout: "null",
    stderr: "piped",
  }).output().catch((error) => ({
    success: false,
    stderr: new TextEncoder().encode(String(error)),
  }));
  if (!mount.success) {
    await Deno.remove(dir);
    return new TextDecoder().decode(mount.stderr).trim() || "mount failed";
  }
  return {
    dir,
    async close() {
      await new Deno.Command("umount", { args: [dir] }).output();
      await Deno.remove(dir);
    },
  };
}

/** Why full-disk tests cannot run here, or undefined when they can (mounts and unmounts once). */
export async function fullDiskUnavailable(): Promise<string | undefined> {
  const probe = await tinyFileSystem(64);
  if (typeof probe === "string") return probe;
  await probe.close();
  return undefined;
}

/** Fills the file system holding `dir` to the last byte (a file `filler` takes the rest). */
export async function fill(dir: string): Promise<void> {
  const file = await Deno.open(`${dir}/filler`, { write: true, create: true });
  try {
    for (const size of [4096, 1]) {
      try {
        for (;;) await file.write(new Uint8Array(size));
      } catch (error) {
        if ((error as { code?: string }).code !== "ENOSPC") throw error;
      }
    }
  } finally {
    file.close();
  }
}

/** Runs `fn` with the folder of a fresh 64 KiB tmpfs filled to the last byte, then unmounts it. */
export async function withFullDisk(fn: (dir: string) => Promise<void>): Promise<void> {
  const disk = await tinyFileSystem(64);
  if (typeof disk === "string") throw new Error(`Cannot mount a tmpfs: ${disk}`);
  try {
    await fill(disk.dir);
    await fn(disk.dir);
  } finally {
    await disk.close();
  }
}
