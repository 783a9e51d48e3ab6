// Verifies the Addon-Signature header of a provisioning request (Node.js, no dependencies).
//
//   node verify_signature.mjs HEADER < body    # PROVISIONER_SIGNING_SECRET in the environment
import { createHmac, timingSafeEqual } from "node:crypto";

export function verify(secret, header, body, toleranceSeconds = 300) {
  const fields = header.split(",").map((part) => part.trim().split("="));
  const timestamp = fields.find(([key]) => key === "t")?.[1] ?? "";
  if (!/^\d+$/.test(timestamp)) return false;
  const expected = createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest();
  const signed = fields
    .filter(([key, value]) => key === "v1" && /^[0-9a-f]{64}$/.test(value ?? ""))
    .some(([, value]) => timingSafeEqual(expected, Buffer.from(value, "hex")));
  return signed && Math.abs(Date.now() / 1000 - Number(timestamp)) <= toleranceSeconds;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const valid = verify(process.env.PROVISIONER_SIGNING_SECRET, process.argv[2], Buffer.concat(chunks));
  console.log(valid ? "valid" : "invalid");
  process.exit(valid ? 0 : 1);
}
