/** STUB (replaced by the ledger branch). */
export function recordHash(json: string): string {
  let h = 0;
  for (let i = 0; i < json.length; i++) h = (Math.imul(h, 31) + json.charCodeAt(i)) | 0;
  return (h >>> 0).toString(16).padStart(16, "0");
}
