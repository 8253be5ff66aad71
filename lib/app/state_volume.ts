/**
 * Whether the state's folder survives the container. In a container, a folder that is not on
 * a mounted volume lives in the container's own writable layer: the state is gone with the
 * container, and the next one syncs every list from scratch without a word. The image used
 * to declare `VOLUME /app`, which hid that by creating an anonymous volume nobody would
 * mount again; it now declares none and sets SYNC_REQUIRE_STATE_VOLUME=1, and the program
 * compares the device of the state's folder with that of `/`: a volume (named, or a host
 * folder) is another filesystem than the container's root, so a folder on the root's device
 * is refused. (The mount table would also tell a tmpfs apart, but Deno lets only
 * `--allow-all` read `/proc`; `stat` needs `--allow-read`.)
 *
 * @module
 */

/** What {@linkcode stateVolumeProblem} compares: `stat().dev` of two folders. */
export interface StateVolumeFacts {
  /** The state's folder, absolute and resolved, for the message. */
  folder: string;
  /** The device the folder is on. */
  folderDevice: number;
  /** The device `/` is on: in a container, its own layer. */
  rootDevice: number;
}

/**
 * What is wrong with keeping the state in `facts.folder`, or undefined when it is on a
 * filesystem of its own, as a mounted volume is: the same device as `/` means the container's
 * own layer, which is lost with the container.
 */
export function stateVolumeProblem(facts: StateVolumeFacts): string | undefined {
  if (facts.folderDevice !== facts.rootDevice) return undefined;
  const { folder } = facts;
  return `The state folder ${folder} is not on a mounted volume (SYNC_REQUIRE_STATE_VOLUME=1, ` +
    `which the image sets): the state would be lost with this container, and the next one ` +
    `would sync every list from scratch. Mount a volume there (docker run -v ` +
    `sync-data:${folder} …, or -v with a host folder that uid 65532 may write), or add ` +
    `-e SYNC_REQUIRE_STATE_VOLUME=0 to run with a state that is lost with the container.`;
}
