import { FileStore } from "../../lib/state/file_store.ts";
import { storeCases, tempPlace } from "./store_cases.ts";

storeCases({
  name: "FileStore",
  kind: "file",
  place: () => tempPlace("sync_jobs.json", (path, clock) => FileStore.open(path, { clock })),
  persists: true,
});
